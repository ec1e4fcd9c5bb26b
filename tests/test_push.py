"""`distill push` with a stand-in for the huggingface_hub API object."""

import huggingface_hub
import pytest
from conftest import StandInHub, assert_one_line_error, write_jsonl

from distill.hub import push_run

TOKEN = "hf_pushsecret0123456789"


@pytest.fixture
def run_dir(cli, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"q{i}"} for i in range(6)])
    out = tmp_path / "run"
    assert cli("generate", "completions", "--input", prompts, "--backend", "fake", "--test-size", "2", "--format", "jsonl", "-o", out, "-q").code == 0
    return out


def test_push_creates_the_repo_and_uploads_exactly_the_dataset(run_dir):
    hub = StandInHub()
    url = push_run(run_dir, "my-org/my-data", private=True, api=hub)
    assert url == "https://hub.invalid/datasets/my-org/my-data"
    assert hub.calls[0] == ("create_repo", "my-org/my-data", {"repo_type": "dataset", "private": True, "exist_ok": True})
    upload = hub.calls[1][2]
    assert upload["repo_type"] == "dataset" and upload["revision"] is None
    assert set(hub.uploaded) == {"README.md", "data/train-00000-of-00001.parquet", "data/test-00000-of-00001.parquet",
                                 "trl/train-00000-of-00001.parquet", "trl/test-00000-of-00001.parquet"}
    card = hub.uploaded["README.md"].decode()
    assert 'load_dataset("my-org/my-data")' in card and "YOUR_ORG" not in card


def test_push_to_a_branch(run_dir):
    hub = StandInHub()
    push_run(run_dir, "org/name", revision="v2", api=hub)
    assert [c[0] for c in hub.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert hub.calls[1][2] == {"branch": "v2", "repo_type": "dataset", "exist_ok": True}
    assert hub.calls[2][2]["revision"] == "v2"


def test_cli_push_reads_the_token_from_the_environment_and_never_writes_it(cli, run_dir, monkeypatch):
    hub = StandInHub()
    made = {}

    def fake_api(token=None):
        made["token"] = token
        return hub

    monkeypatch.setattr(huggingface_hub, "HfApi", fake_api)
    result = cli("push", run_dir, "--repo-id", "org/name", env={"HF_TOKEN": TOKEN})
    assert result.code == 0, result.err
    assert made["token"] == TOKEN and "org/name" in result.out
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_no_token(cli, run_dir, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert_one_line_error(cli("push", run_dir, "--repo-id", "org/name"), "HF_TOKEN")


@pytest.mark.parametrize("repo_id", ["just-a-name", "org/name/extra", "-org/name", "org/", "org/na me"])
def test_repo_id_of_the_wrong_form(cli, run_dir, repo_id):
    assert_one_line_error(cli("push", run_dir, "--repo-id", repo_id), "org/name")


def test_run_without_a_final_dataset(cli, tmp_path):
    empty = tmp_path / "unfinished"
    empty.mkdir()
    (empty / "records.jsonl").write_text("")
    assert_one_line_error(cli("push", empty, "--repo-id", "org/name"), "no final dataset")
    assert_one_line_error(cli("push", tmp_path / "missing", "--repo-id", "org/name"), "not a run directory")


def test_hub_refusal_is_one_line(cli, run_dir, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: StandInHub(fail_status=401))
    result = cli("push", run_dir, "--repo-id", "org/name", env={"HF_TOKEN": TOKEN})
    assert_one_line_error(result, "refused the token")
    assert TOKEN not in result.err


def test_missing_shards_are_caught_before_uploading(run_dir):
    (run_dir / "data" / "test-00000-of-00001.parquet").unlink()
    hub = StandInHub()
    with pytest.raises(Exception, match="no files for data/test-"):
        push_run(run_dir, "org/name", api=hub)
    assert hub.calls == []


# -- issue 11, item 20: what the Hub would refuse, and a Hub that cannot be reached ---------------------------


@pytest.mark.parametrize("repo_id, needle", [
    ("org/name.git", ".git"), ("org/name.GIT", ".git"), ("org/name.", "org/name"), ("org/name-", "org/name"),
    ("org/.name", "org/name"), ("org/na--me", "'--'"), ("org/na..me", "'..'"), ("org/" + "a" * 97, "96"),
    ("o rg/name", "org/name"), ("org/naïve", "org/name"), ("/name", "empty"),
])
def test_repo_ids_the_hub_refuses_are_refused_before_anything(cli, run_dir, repo_id, needle):
    card = (run_dir / "README.md").read_bytes()
    assert_one_line_error(cli("push", run_dir, "--repo-id", repo_id), needle)
    assert (run_dir / "README.md").read_bytes() == card


@pytest.mark.parametrize("repo_id", ["org/name", "Org_1/my.data-set_2", "a/" + "b" * 96, "user/name.gitx", "_org/_name"])
def test_repo_ids_the_hub_takes(repo_id):
    from distill.hub import check_repo_id

    check_repo_id(repo_id, "--repo-id")


class Unreachable(StandInHub):
    """A Hub whose endpoint refuses connections, as huggingface_hub reports it (an httpx error, no OSError)."""

    def create_repo(self, repo_id, **kwargs):
        try:
            import httpx2 as httpx
        except ImportError:
            import httpx

        raise httpx.ConnectError("[Errno 111] Connection refused")


def test_an_unreachable_hub_is_one_line_and_the_card_stays_as_it_was(cli, run_dir, monkeypatch):
    card = (run_dir / "README.md").read_bytes()
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: Unreachable())
    result = cli("push", run_dir, "--repo-id", "org/name", env={"HF_TOKEN": TOKEN})
    assert_one_line_error(result, "push to org/name failed: cannot reach the Hub", "Connection refused")
    assert TOKEN not in result.err
    assert (run_dir / "README.md").read_bytes() == card  # the repository's name is written in only by a push that went


@pytest.mark.parametrize("header, needle", [
    (b"\xff\xfe not text", "not UTF-8"), ("---\nconfigs: [\n---\n", "not valid YAML"), ("---\n- a\n---\n", "not a mapping"),
    ("---\nconfigs: 3\n---\n", "not a list"),
], ids=["binary", "bad-yaml", "a-list", "configs-not-a-list"])
def test_a_damaged_card_is_one_line(cli, run_dir, header, needle):
    (run_dir / "README.md").write_bytes(header if isinstance(header, bytes) else header.encode())
    assert_one_line_error(cli("push", run_dir, "--repo-id", "org/name"), "README.md", needle)

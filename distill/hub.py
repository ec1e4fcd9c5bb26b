"""Uploads to the Hub: a run's exported dataset (`distill push`) and a trained model.

The token comes from HF_TOKEN or the user's `hf auth login`, never from a flag, and is
never written anywhere. Only the card and the shards its configs name are uploaded: the
request cache, records and config stay on this machine. A model is uploaded with its card
and tokenizer, without the checkpoints and trainer state beside it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from distill.card import for_hub
from distill.errors import ConfigError, DistillError
from distill.run import write_atomic

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def card_header(card: str) -> dict[str, Any]:
    if not card.startswith("---\n"):
        return {}
    head = card[4:].split("\n---\n", 1)[0]
    return yaml.safe_load(head) or {}


def dataset_files(run_path: Path) -> list[str]:
    """What `distill push` uploads: the card and the parquet shards of the configs it declares,
    each a file in a config's own folder. Whatever the card says (it may have been edited),
    nothing else goes: not the cache, the records, the config or the stats."""
    from distill.export import CONFIG_NAME, SPLIT_NAME

    card = run_path / "README.md"
    if not card.is_file():
        raise DistillError(f"{run_path} has no final dataset (no README.md): finish the run first")
    files = ["README.md"]
    for config in card_header(card.read_text(encoding="utf-8")).get("configs", []):
        for entry in config.get("data_files", []) if isinstance(config, dict) else []:
            pattern = str(entry.get("path", "")) if isinstance(entry, dict) else ""
            folder, _, name = pattern.partition("/")
            split = name.removesuffix("-*")
            if not (CONFIG_NAME.match(folder) and ".." not in folder and name.endswith("-*") and SPLIT_NAME.match(split)):
                raise DistillError(f"{run_path}/README.md names data files {pattern!r}, which distill does not upload "
                                   "(a config's shards are FOLDER/SPLIT-*)")
            shards = sorted(p for p in (run_path / folder).glob(f"{split}-*.parquet") if p.is_file() and not p.is_symlink())
            if not shards:
                raise DistillError(f"{run_path} has no files for {pattern}: re-run the command to export again")
            files += [p.relative_to(run_path).as_posix() for p in shards]
    if len(files) == 1:
        raise DistillError(f"{run_path}/README.md declares no data files")
    return list(dict.fromkeys(files))


def check_repo_id(repo_id: str, flag: str) -> None:
    if not REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id:
        raise ConfigError(f"{flag} must look like org/name, not {repo_id!r}")


def hub_api():
    """An HfApi with the user's token; a clear error when there is none."""
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise ConfigError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    return HfApi(token=token)


def upload(api, repo_id: str, repo_type: str, folder: Path, private: bool = False, revision: str | None = None,
           **patterns) -> str:
    """Create the repository if needed and upload `folder` (filtered by allow/ignore patterns)."""
    try:
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type, revision=revision,
                          commit_message=f"Upload a {repo_type} made with distill", **patterns)
    except OSError as err:  # HfHubHTTPError and connection errors are OSErrors
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise DistillError(f"the Hub refused the token for {repo_id} (HTTP {status})") from None
        raise DistillError(f"push to {repo_id} failed: {' '.join(str(err).split())[:300]}") from None
    return str(url)


def push_run(run_path: Path, repo_id: str, private: bool = False, revision: str | None = None, api=None) -> str:
    run_path = Path(run_path)
    check_repo_id(repo_id, "--repo-id")
    if not run_path.is_dir():
        raise DistillError(f"{run_path} is not a run directory")
    patterns = dataset_files(run_path)
    api = api or hub_api()
    # The card's loading snippet names the repository once it is known.
    card_path = run_path / "README.md"
    write_atomic(card_path, for_hub(card_path.read_text(encoding="utf-8"), repo_id))
    return upload(api, repo_id, "dataset", run_path, private=private, revision=revision, allow_patterns=patterns)


# What a training output_dir holds beside the model: resumable state, not for the Hub.
MODEL_IGNORE = ["checkpoint-*", "checkpoint-*/**", "training_args.bin", "runs/**"]


def push_model(model_dir: Path, repo_id: str, private: bool = False, api=None) -> str:
    """Upload a trained model (weights, tokenizer, card, metrics) from a training output_dir."""
    return upload(api or hub_api(), repo_id, "model", Path(model_dir), private=private, ignore_patterns=MODEL_IGNORE)

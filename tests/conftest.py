import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from distill.cli import main

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `distill ...` in this process; returns exit code, stdout and stderr."""

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as done:
            code = done.code or 0
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_subprocess(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "distill", *map(str, args)], capture_output=True, text=True, env=full_env, timeout=timeout)


def start_distill(*args, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`distill ...` in a child process, to be killed or interrupted by a test."""
    return subprocess.Popen([sys.executable, "-m", "distill", *map(str, args)], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_after_answers(proc: subprocess.Popen, server, answers: int) -> None:
    """SIGKILL the child once the loopback server has answered this many requests."""
    deadline = time.monotonic() + 60
    while server.stats.answered_total < answers and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def record_fake_requests(monkeypatch) -> list:
    """Every request the fake backend receives from now on (a fresh list per call)."""
    from distill.backends import fake

    received = []
    complete = fake.FakeBackend.complete

    async def recorded(self, request):
        received.append(request)
        return await complete(self, request)

    monkeypatch.setattr(fake.FakeBackend, "complete", recorded)
    return received


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_dataset(run_dir: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(run_dir / "data" / "train-00000-of-00001.parquet").to_pylist()


@pytest.fixture
def prompts_file(tmp_path):
    return write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Question number {i}: why?"} for i in range(20)])


def assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.code != 0, result
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), result.err
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


class StandInHub:
    """Records what the real huggingface_hub.HfApi would be asked, and which files an upload would send."""

    def __init__(self, fail_status=None):
        self.calls = []
        self.uploaded: dict[str, bytes] = {}
        self.fail_status = fail_status

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        if self.fail_status:
            import huggingface_hub

            try:  # the HTTP library huggingface_hub is built on
                import httpx2 as httpx
            except ImportError:
                import httpx

            request = httpx.Request("POST", "https://hub.invalid/api/repos/create")
            response = httpx.Response(self.fail_status, request=request)
            raise huggingface_hub.errors.HfHubHTTPError("401 Client Error: Unauthorized", response=response)
        return f"https://hub.invalid/{kwargs.get('repo_type', 'model')}s/{repo_id}"

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        from huggingface_hub.utils import filter_repo_objects

        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        root = Path(kwargs["folder_path"])
        files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        for name in filter_repo_objects(files, allow_patterns=kwargs.get("allow_patterns"),
                                        ignore_patterns=kwargs.get("ignore_patterns")):
            self.uploaded[name] = (root / name).read_bytes()

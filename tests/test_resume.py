"""Crash and resume: a run killed with SIGKILL half-way asks the server only for what is missing."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

from conftest import read_dataset, write_jsonl
from distill.testing.openai_server import LoopbackServer

N = 120


def start(prompts, server, out):
    args = ["generate", "completions", "--input", prompts, "--backend", "openai", "--model", "m", "--base-url",
            server.url, "--concurrency", "4", "-o", out, "-q"]
    env = {**os.environ, "OPENAI_API_KEY": "k"}
    return subprocess.Popen([sys.executable, "-m", "distill", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cached_keys(run_dir):
    with sqlite3.connect(run_dir / "cache.sqlite") as db:
        return {row[0] for row in db.execute("SELECT key FROM responses")}


def test_sigkill_then_resume_sends_only_the_missing_requests(tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"tell me about item {i}"} for i in range(N)])
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    with LoopbackServer(latency=0.03) as server:
        proc = start(prompts, server, killed)
        deadline = time.monotonic() + 60
        while server.stats.answered_total < N // 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        answered_before = server.stats.answered_total
        assert N // 3 <= answered_before < N
        kept = len(cached_keys(killed))
        # Whatever arrived at the client was committed; at most the requests in flight are lost.
        assert answered_before - 4 <= kept <= answered_before

        received_before = server.stats.received
        rerun = start(prompts, server, killed)
        assert rerun.wait(120) == 0, rerun.stderr.read()
        assert server.stats.received - received_before == N - kept  # only the missing ones
        assert len(cached_keys(killed)) == N

        straight = start(prompts, server, whole)
        assert straight.wait(120) == 0, straight.stderr.read()
    assert read_dataset(killed) == read_dataset(whole)
    assert len(read_dataset(whole)) == N

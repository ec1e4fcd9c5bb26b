"""Crash and resume: a run killed with SIGKILL half-way asks the server only for what is missing."""

import json
import os
import signal
import sqlite3
import time

from conftest import read_dataset, start_distill, write_jsonl

from distill.testing.openai_server import LoopbackServer

N = 120


def start(prompts, server, out):
    return start_distill("generate", "completions", "--input", prompts, "--backend", "openai", "--model", "m",
                         "--base-url", server.url, "--concurrency", "4", "-o", out, "-q", env={"OPENAI_API_KEY": "k"})


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


def test_ctrl_c_and_sigterm_stop_gracefully_and_keep_every_response(tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"item {i}"} for i in range(N)])
    out = tmp_path / "run"
    with LoopbackServer(latency=0.03) as server:
        for rounds, sig in enumerate((signal.SIGINT, signal.SIGTERM), start=1):
            proc = start(prompts, server, out)
            records_file = out / "records.jsonl"
            before = records_file.read_text().count("\n") if records_file.exists() else 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until 20 more items are recorded by the client
                if records_file.exists() and records_file.read_text().count("\n") >= before + 20:
                    break
                time.sleep(0.01)
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 130, err
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: interrupted") and "resume" in lines[0]
            # Graceful: the answers that reached the client are cached (only those cut off in
            # flight, at most the concurrency each time, are not), the records log is whole,
            # and the stats are written.
            answered, kept = server.stats.answered_total, len(cached_keys(out))
            assert answered - 4 * rounds <= kept <= answered
            records = (out / "records.jsonl").read_text()
            assert records.endswith("\n") and records.count("\n") == kept >= before + 20
            stats = json.loads((out / "stats.json").read_text())
            assert stats["stopped"].startswith("interrupted") and stats["items"]["done"] == records.count("\n")
        received, kept = server.stats.received, len(cached_keys(out))
        rerun = start(prompts, server, out)
        assert rerun.wait(120) == 0, rerun.stderr.read()
        assert server.stats.received - received == N - kept
    assert len(read_dataset(out)) == N

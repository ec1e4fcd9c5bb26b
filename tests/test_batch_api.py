"""--batch-api: requests through the provider's Batch API, on the loopback server's /v1/batches."""

import json
import time

import datasets
from conftest import assert_one_line_error, start_distill, write_jsonl

from distill.testing.openai_server import LoopbackServer

FAST = ["--batch-window", "0.05", "--batch-poll", "0.05"]
KEY = {"OPENAI_API_KEY": "k"}


def completions(cli, server, prompts, out, *args):
    return cli("generate", "completions", "--input", prompts, "--backend", "openai", "--model", "m", "--base-url", server.url,
               "-o", out, "-q", *args, env=KEY)


def kill_once_a_batch_exists(process, server, settle: float = 0.0) -> None:
    deadline = time.monotonic() + 60
    while server.stats.batches_created == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(settle)
    process.kill()
    process.wait()


def rows(out):
    return datasets.load_dataset(str(out), split="train").to_list()


def test_a_batch_run_makes_the_dataset_a_direct_run_makes_at_half_the_price(cli, tmp_path, prompts_file):
    prices = tmp_path / "prices.yaml"
    prices.write_text("m: {input: 1.0, output: 2.0}\n")
    with LoopbackServer() as server:
        server.batch_polls = 3
        result = completions(cli, server, prompts_file, tmp_path / "batch", "--batch-api", "--prices", prices, *FAST)
        assert result.code == 0, result.err
        assert server.stats.batches_created == 1 and server.stats.batch_lines == 20
        assert server.stats.received == 20  # nothing went to /v1/chat/completions directly
        assert completions(cli, server, prompts_file, tmp_path / "direct", "--prices", prices).code == 0
    assert rows(tmp_path / "batch") == rows(tmp_path / "direct")
    cost = {name: json.loads((tmp_path / name / "stats.json").read_text())["cost_usd"] for name in ("batch", "direct")}
    assert cost["direct"] > 0 and abs(cost["batch"] - cost["direct"] / 2) < 1e-9
    journal = [json.loads(line) for line in (tmp_path / "batch" / "batches.jsonl").read_text().splitlines()]
    assert [(j["batch"], len(j["keys"])) for j in journal] == [("batch_1", 20)]


def test_multi_turn_dialogues_go_through_a_batch_per_turn(cli, tmp_path):
    from test_ultrachat import body_reply

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": f"text number {i}"} for i in range(4)])
    args = ["generate", "ultrachat", "--backend", "openai", "--model", "m", "-n", "4", "--sectors", "materials=1",
            "--materials", corpus, "--materials-rounds", "2", "-q"]
    with LoopbackServer(reply=body_reply) as server:
        assert cli(*args, "--base-url", server.url, "-o", tmp_path / "batch", "--batch-api", *FAST, env=KEY).code == 0
        # the requests about each text, answer 1, user turn, answer 2: four rounds, each waiting on the last
        assert server.stats.batches_created == 4 and server.stats.batch_lines == 16
        assert cli(*args, "--base-url", server.url, "-o", tmp_path / "direct", env=KEY).code == 0
    batch = datasets.load_dataset(str(tmp_path / "batch"), split="train_sft").to_list()
    assert batch == datasets.load_dataset(str(tmp_path / "direct"), split="train_sft").to_list()


def test_a_killed_run_waits_for_its_batch_instead_of_sending_it_again(tmp_path, prompts_file):
    args = ["generate", "completions", "--input", prompts_file, "--backend", "openai", "--model", "m", "-q", *FAST,
            "--batch-api", "-o", tmp_path / "run"]
    with LoopbackServer() as server:
        server.hold_batches = True
        first = start_distill(*args, "--base-url", server.url, env=KEY)
        kill_once_a_batch_exists(first, server, settle=0.2)  # polled a few times, still running
        assert server.stats.batches_created == 1 and server.stats.batch_lines == 0
        server.hold_batches = False
        again = start_distill(*args, "--base-url", server.url, env=KEY)
        assert again.wait(60) == 0, again.stderr.read()
        assert server.stats.batches_created == 1  # the same batch, read when it ended
        assert server.stats.batch_lines == 20 and max(server.stats.answered.values()) == 1
    assert len(rows(tmp_path / "run")) == 20


def test_failed_lines_and_expired_batches(cli, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in ["fine one", "bad one", "flaky one", "late one", "fine two"]])
    seen = set()

    def line(body):
        text = body["messages"][-1]["content"]
        first = text not in seen
        seen.add(text)
        if text.startswith("bad"):
            return 400  # rejected: the item goes to failed.jsonl
        if text.startswith("flaky") and first:
            return 500  # retried, in a later batch
        if text.startswith("late") and first:
            return None  # unanswered: the batch expires, the request goes in a later batch
        return 200

    with LoopbackServer() as server:
        server.batch_line = line
        result = completions(cli, server, prompts, tmp_path / "run", "--batch-api", *FAST)
        assert result.code == 0, result.err
        # The two retries (after the client's backoff) may share a later batch or not.
        assert server.stats.batch_lines == 7 and server.stats.batches_created in (2, 3)
    assert sorted(r["prompt"] for r in rows(tmp_path / "run")) == ["fine one", "fine two", "flaky one", "late one"]
    failed = [json.loads(line) for line in (tmp_path / "run" / "failed.jsonl").read_text().splitlines()]
    assert len(failed) == 1 and "HTTP 400" in failed[0]["error"]


def test_batch_api_needs_one_openai_endpoint(cli, tmp_path, prompts_file):
    result = cli("generate", "completions", "--input", prompts_file, "--backend", "fake", "--batch-api", "-o", tmp_path / "a")
    assert_one_line_error(result, "--batch-api", "openai backend")
    result = cli("generate", "completions", "--input", prompts_file, "--backend", "openai", "--model", "m", "--batch-api",
                 "--base-url", "http://127.0.0.1:9/v1", "--base-url", "http://127.0.0.1:10/v1", "-o", tmp_path / "b", env=KEY)
    assert_one_line_error(result, "one --base-url")


def test_a_batch_that_cannot_be_looked_at_for_a_while_is_waited_for_not_sent_again(cli, tmp_path, prompts_file):
    with LoopbackServer() as server:
        server.failing_polls = 3
        result = completions(cli, server, prompts_file, tmp_path / "run", "--batch-api", *FAST)
        assert result.code == 0, result.err
        assert server.stats.batches_created == 1 and server.stats.batch_lines == 20
    assert len(rows(tmp_path / "run")) == 20


def test_a_refused_batch_stops_the_run(cli, tmp_path, prompts_file):
    with LoopbackServer() as server:
        server.refuse_batches("line 3: unknown parameter")
        result = completions(cli, server, prompts_file, tmp_path / "refused", "--batch-api", *FAST)
        assert_one_line_error(result, "refused batch", "unknown parameter")
        assert server.stats.batches_created == 1  # not sent again and again


def test_a_batch_the_endpoint_no_longer_knows_is_sent_again(tmp_path, prompts_file):
    args = ["generate", "completions", "--input", prompts_file, "--backend", "openai", "--model", "m", "-q", *FAST,
            "--batch-api", "-o", tmp_path / "run"]
    with LoopbackServer() as first_server:
        first_server.hold_batches = True
        port, url = first_server.port, first_server.url
        first = start_distill(*args, "--base-url", url, env=KEY)
        kill_once_a_batch_exists(first, first_server)
    with LoopbackServer(port=port) as server:  # the same address, but batch_1 is gone
        again = start_distill(*args, "--base-url", url, env=KEY)
        assert again.wait(60) == 0, again.stderr.read()
        # Each request sent once more (in as many batches as the retries' jitter spread over the window).
        assert server.stats.batch_lines == 20 and max(server.stats.answered.values()) == 1
    assert len(rows(tmp_path / "run")) == 20


def test_a_distilabel_task_sends_each_round_as_one_batch(cli, tmp_path):
    source = write_jsonl(tmp_path / "rows.jsonl", [{"instruction": f"Name a use for item {i}."} for i in range(7)])
    args = ["generate", "task", "EvolInstruct", "--input", source, "--arg", "num_evolutions=2", "--backend", "openai",
            "--model", "m", "-q"]
    with LoopbackServer() as server:
        assert cli(*args, "--base-url", server.url, "-o", tmp_path / "batch", "--batch-api", *FAST, env=KEY).code == 0
        assert server.stats.batches_created == 2 and server.stats.batch_lines == 14  # a batch per evolution round
        assert cli(*args, "--base-url", server.url, "-o", tmp_path / "direct", env=KEY).code == 0
    assert rows(tmp_path / "batch") == rows(tmp_path / "direct")

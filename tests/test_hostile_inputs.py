"""Issue 11, item 20: hostile inputs, through every command.

Each case is a bad input (a missing, empty, binary or damaged file, a bad option value, a
wrong folder, the user's disk or network failing) run through one command in this process.
Every one must end with exactly one line on stderr, `error: ...`, never "internal error" or
a traceback, a non-zero exit, and nothing that was already written changed: the files
under the test's folder are compared, name and bytes, before and after, and nothing may
appear beside it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import assert_one_line_error

from distill.cli import main

BINARY = bytes(range(256)) * 4
DEEP = "[" * 100_000 + "]" * 100_000
PROMPTS = [{"prompt": f"Question number {i}: why is the sky blue on day {i}?"} for i in range(6)]
FAKE = ("--backend", "fake", "-q")
# What sqlite and the lock leave beside a run: bookkeeping, not the user's data.
BOOKKEEPING = {".lock", "cache.sqlite-wal", "cache.sqlite-shm"}


def _distill(*args) -> None:
    try:
        main([str(a) for a in args])
    except SystemExit as done:
        assert not done.code, f"setting up: distill {' '.join(map(str, args))} failed"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Finished runs every case may start from (copied into its own folder, never changed)."""
    root = tmp_path_factory.mktemp("world")
    prompts = _jsonl(root / "prompts.jsonl", PROMPTS)
    _distill("generate", "completions", "--input", prompts, *FAKE, "-o", root / "run")
    _distill("rate", "ultrafeedback", "--input", prompts, *FAKE, "--models", "a,b,c", "--completions-per-prompt", "3",
             "--judge", "j", "-o", root / "rated")
    for k in range(2):
        _distill("generate", "completions", "--input", prompts, *FAKE, "--shard", f"{k}/2", "-o", root / f"shard{k}")
    import datasets

    datasets.Dataset.from_list(PROMPTS).save_to_disk(str(root / "saved"))
    return root


class Where:
    """A case's own folder: the files it is given, and copies of the world's runs."""

    def __init__(self, tmp: Path, world: Path):
        self.tmp = tmp
        self.world = world

    def __truediv__(self, name: str) -> Path:
        return self.tmp / name

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    def jsonl(self, name: str, rows: list[dict]) -> Path:
        return _jsonl(self.tmp / name, rows)

    @property
    def prompts(self) -> Path:
        path = self.tmp / "prompts.jsonl"
        if not path.exists():
            _jsonl(path, PROMPTS)
        return path

    def copy(self, name: str) -> Path:
        """A copy of a world run, as if it had been made here (its config names this folder)."""
        target = self.tmp / name
        if not target.exists():
            shutil.copytree(self.world / name, target)
            config = target / "config.yaml"
            if config.is_file():  # its -o and its --input, here
                config.write_text(config.read_text().replace(str(self.world), str(self.tmp)))
            self.prompts  # noqa: B018 - the input it was made from
        return target

    @property
    def run(self) -> Path:
        return self.copy("run")

    def resumable(self, damage: Callable[[Path], None] | None = None) -> Path:
        """The finished run with all but one record gone (a resume must ask the cache), maybe damaged."""
        run = self.run
        records = run / "records.jsonl"
        records.write_text(records.read_text().splitlines()[0] + "\n")
        if damage:
            damage(run / "cache.sqlite")
        return run

    def recipe(self, data: Path, **extra) -> Path:
        import yaml

        return self.file("recipe.yaml", yaml.safe_dump({
            "model": {"name_or_path": "tiny/model"}, "datasets": [{"path": str(data)}],
            "output_dir": str(self.tmp / "trained"), **extra}))


@dataclass
class Case:
    id: str
    make: Callable[[Where], list]
    needles: tuple[str, ...] = ()
    may_change: frozenset[str] = frozenset()  # files a stopped run rewrites by design (its stats)
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    marks: tuple = ()


def gen(w: Where, *extra, input=None, out=None) -> list:
    return ["generate", "completions", "--input", input or w.prompts, *FAKE, "-o", out or w / "out", *extra]


def uf(w: Where, *extra, input=None) -> list:
    return ["rate", "ultrafeedback", "--input", input or w.prompts, *FAKE, "--models", "a,b", "--completions-per-prompt",
            "2", "--judge", "j", "-o", w / "out", *extra]


def uc(w: Where, *extra) -> list:
    return ["generate", "ultrachat", *FAKE, "-n", "2", "-o", w / "out", *extra]


def camel(w: Where, *extra) -> list:
    return ["generate", "camel", *FAKE, "-n", "2", "-o", w / "out", *extra]


def si(w: Where, *extra) -> list:
    return ["generate", "self-instruct", *FAKE, "-n", "2", "-o", w / "out", *extra]


def task(w: Where, name: str, *extra, input=None) -> list:
    return ["generate", "task", name, "--input", input or w.prompts, "--column-map", "prompt=instruction", *FAKE,
            "-o", w / "out", *extra]


def dedup(w: Where, *extra, source=None, out=None) -> list:
    return ["filter", "dedup", source or w.prompts, "--column", "prompt", "-o", out or w / "clean", *extra]


def plan(w: Where, text: bytes | str) -> list:
    return ["filter", "run", w.prompts, "--config", w.file("plan.yaml", text), "-o", w / "clean"]


def blocklist(w: Where, words: Path) -> list:
    return plan(w, f"column: prompt\nfilters:\n  - blocklist: {{file: {words}}}\n")


def train(w: Where, *extra) -> list:
    return ["train", "sft", "--dry-run", *extra]


def zephyr(w: Where, *extra) -> list:
    return ["zephyr", *FAKE, "--pool", "a,b", "-o", w / "z", "--dry-run", *extra]


def card(w: Where, text: bytes | str) -> Path:
    run = w.run
    (run / "README.md").write_bytes(text if isinstance(text, bytes) else text.encode())
    return run


def fifo(w: Where, name: str) -> Path:
    """A named pipe; should a command wrongly read it, a writer that closes at once ends the read."""
    import threading

    path = w / name
    os.mkfifo(path)
    threading.Thread(target=lambda: open(path, "wb").close(), daemon=True).start()
    return path


def unreadable(w: Where, name: str) -> Path:
    """A file whose read fails (EIO) even for root, who may read any file whatever its mode."""
    if not Path("/proc/self/mem").exists():
        pytest.skip("needs Linux's /proc/self/mem")
    (w / name).symlink_to("/proc/self/mem")
    return w / name


def sql(statement: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        with sqlite3.connect(path) as db:
            db.execute(statement)
        db.close()

    return damage


def foreign_database(path: Path) -> None:
    path.unlink()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE responses (x)")
    db.commit()
    db.close()


def raises(target: str, code: int, message: str):
    """A monkeypatch that makes `target` (module:attr or module:Class.attr) fail with an OSError."""
    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        def fail(*args, **kwargs):
            raise OSError(code, message)

        module, _, attr = target.partition(":")
        owner = __import__(module, fromlist=["_"])
        *parents, last = attr.split(".")
        for part in parents:
            owner = getattr(owner, part)
        monkeypatch.setattr(owner, last, fail)

    return patch


ENOSPC = (errno.ENOSPC, "No space left on device")
EROFS = (errno.EROFS, "Read-only file system")
STATS = frozenset({"stats.json"})
try:
    import trl  # noqa: F401

    needs_train = ()
except ImportError:
    needs_train = (pytest.mark.skip(reason="needs the train extra"),)


CASES = [
    # -- input files of every type: missing, empty, binary, damaged ---------------------------------
    Case("input-missing", lambda w: gen(w, input=w / "nope.jsonl"), ("does not exist",)),
    Case("input-empty-jsonl", lambda w: gen(w, input=w.file("in.jsonl", "")), ("is empty",)),
    Case("input-empty-json", lambda w: gen(w, input=w.file("in.json", "")), ("invalid JSON",)),
    Case("input-empty-csv", lambda w: gen(w, input=w.file("in.csv", "")), ("cannot read as csv",)),
    Case("input-empty-parquet", lambda w: gen(w, input=w.file("in.parquet", b"")), ("cannot read as parquet",)),
    Case("input-empty-txt", lambda w: gen(w, input=w.file("in.txt", "\n  \n")), ("is empty",)),
    Case("input-binary-jsonl", lambda w: gen(w, input=w.file("in.jsonl", BINARY)), ("not UTF-8", "line 2")),
    Case("input-binary-json", lambda w: gen(w, input=w.file("in.json", BINARY)), ("not UTF-8",)),
    Case("input-binary-txt", lambda w: gen(w, input=w.file("in.txt", BINARY)), ("not UTF-8",)),
    Case("input-binary-csv", lambda w: gen(w, input=w.file("in.csv", BINARY)), ("in.csv",)),
    Case("input-binary-parquet", lambda w: gen(w, input=w.file("in.parquet", BINARY)), ("cannot read as parquet",)),
    Case("input-unknown-suffix", lambda w: gen(w, input=w.file("in.bin", BINARY)), ("unsupported file type .bin",)),
    Case("input-bad-json-line", lambda w: gen(w, input=w.file("in.jsonl", '{"prompt": "a"}\n{"prompt": \n')),
         ("line 2", "not valid JSON")),
    Case("input-line-not-an-object", lambda w: gen(w, input=w.file("in.jsonl", '["a"]\n')), ("not a JSON object",)),
    Case("input-json-not-a-list", lambda w: gen(w, input=w.file("in.json", '"text"')), ("list of objects",)),
    Case("input-lone-surrogate-jsonl", lambda w: gen(w, input=w.file("in.jsonl", '{"prompt": "ok"}\n{"prompt": "\\ud800"}\n')),
         ("in.jsonl", "line 2", "\\ud800")),
    Case("input-lone-surrogate-json", lambda w: gen(w, input=w.file("in.json", '[\n{"prompt": "a \\udfff"}\n]')),
         ("in.json", "line 2", "\\udfff")),
    Case("input-lone-surrogate-key", lambda w: gen(w, input=w.file("in.jsonl", '{"prompt": "a", "\\udbff": 1}\n')),
         ("line 1", "surrogate")),
    Case("input-deep-jsonl-value", lambda w: gen(w, input=w.file("in.jsonl", '{"prompt": "a"}\n{"prompt": ' + DEEP + "}\n")),
         ("in.jsonl", "line 2", "nested too deeply")),
    Case("input-deep-jsonl-line", lambda w: gen(w, input=w.file("in.jsonl", DEEP + "\n")), ("line 1", "nested too deeply")),
    Case("input-deep-json", lambda w: gen(w, input=w.file("in.json", '[{"prompt": "a"},\n' + DEEP + "]")),
         ("in.json", "line 2", "nested too deeply")),
    Case("input-parquet-not-utf8", lambda w: gen(w, input=_bad_utf8_parquet(w / "in.parquet")), ("not UTF-8",)),
    Case("input-csv-not-utf8", lambda w: gen(w, input=w.file("in.csv", b"prompt\nok\ncaf\xe9\n")),
         ("column 'prompt' is not UTF-8",)),
    Case("input-directory-named-jsonl", lambda w: gen(w, input=_mkdir(w / "in.jsonl")), ("no dataset",)),
    Case("input-fifo", lambda w: gen(w, input=fifo(w, "in.jsonl")), ("not a regular file",)),
    Case("input-unreadable", lambda w: gen(w, input=unreadable(w, "in.jsonl")), ("cannot read", "in.jsonl")),
    Case("input-damaged-saved-dataset", lambda w: gen(w, input=_damage(w.copy("saved"), "state.json", BINARY)),
         ("cannot read the saved dataset",)),
    Case("input-damaged-saved-arrow", lambda w: gen(w, input=_damage(w.copy("saved"), "data-00000-of-00001.arrow", b"junk")),
         ("cannot read the saved dataset",)),
    Case("input-damaged-run-shard", lambda w: gen(w, input=_damage(w.copy("shard0"), "data/train-00000-of-00001.parquet", b"x")),
         ("cannot read as parquet",)),
    # -- what the rows hold ------------------------------------------------------------------------
    Case("prompt-not-a-string", lambda w: gen(w, input=w.jsonl("in.jsonl", [{"prompt": 3}])), ("row 1", "got int")),
    Case("prompt-empty", lambda w: gen(w, input=w.jsonl("in.jsonl", [{"prompt": "a"}, {"prompt": " "}])), ("row 2", "empty")),
    Case("prompt-column-missing", lambda w: gen(w, input=w.jsonl("in.jsonl", [{"q": "a"}])), ("none of the columns",)),
    Case("row-with-no-columns", lambda w: gen(w, input=w.jsonl("in.jsonl", [{}])), ("columns: none",)),
    Case("column-unknown", lambda w: gen(w, "--column", "nope"), ("no column 'nope'",)),
    Case("split-unknown", lambda w: gen(w, "--split", "nope"), ("no split 'nope'",)),
    Case("subset-of-a-file", lambda w: gen(w, "--subset", "other"), ("--subset",)),
    Case("subset-unknown", lambda w: gen(w, "--subset", "nope", input=w.run), ("no subset 'nope'",)),
    Case("revision-of-a-file", lambda w: gen(w, "--revision", "main"), ("--revision",)),
    Case("column-map-no-equals", lambda w: gen(w, "--column-map", "prompt"), ("OLD=NEW",)),
    Case("column-map-empty-old", lambda w: gen(w, "--column-map", "=x"), ("OLD=NEW",)),
    Case("column-map-unknown-column", lambda w: gen(w, "--column-map", "nope=prompt"), ("no column 'nope' to rename",)),
    Case("hub-id-offline", lambda w: gen(w, input="distill-test-org/no-such-dataset"), ("cannot load Hub dataset",)),
    # -- option values ------------------------------------------------------------------------------
    Case("limit-negative", lambda w: gen(w, "-n", "-1"), ("--limit",)),
    Case("limit-zero", lambda w: gen(w, "-n", "0"), ("--limit",)),
    Case("limit-banana", lambda w: gen(w, "-n", "banana"), ("banana",)),
    Case("temperature-nan", lambda w: gen(w, "--temperature", "nan"), ("--temperature",)),
    Case("temperature-inf", lambda w: gen(w, "--temperature", "inf"), ("--temperature",)),
    Case("temperature-negative", lambda w: gen(w, "--temperature", "-1"), ("--temperature",)),
    Case("top-p-above-one", lambda w: gen(w, "--top-p", "2"), ("--top-p",)),
    Case("max-new-tokens-negative", lambda w: gen(w, "--max-new-tokens", "-5"), ("--max-new-tokens",)),
    Case("samples-zero", lambda w: gen(w, "--samples", "0"), ("--samples",)),
    Case("rpm-nan", lambda w: gen(w, "--rpm", "nan"), ("--rpm",)),
    Case("timeout-zero", lambda w: gen(w, "--timeout", "0"), ("--timeout",)),
    Case("max-cost-nan", lambda w: gen(w, "--max-cost-usd", "nan"), ("--max-cost-usd",)),
    Case("concurrency-zero", lambda w: gen(w, "--concurrency", "0"), ("--concurrency",)),
    Case("test-size-negative", lambda w: gen(w, "--test-size", "-1"), ("--test-size",)),
    Case("test-size-nan", lambda w: gen(w, "--test-size", "nan"), ("--test-size",)),
    Case("test-size-inf", lambda w: gen(w, "--test-size", "inf"), ("--test-size",)),
    Case("test-size-all-prompts", lambda w: gen(w, "--test-size", "1000"), ("--test-size", "no training rows")),
    Case("shard-k-past-n", lambda w: gen(w, "--shard", "3/2"), ("--shard",)),
    Case("shard-banana", lambda w: gen(w, "--shard", "a/b"), ("--shard",)),
    Case("shard-zero", lambda w: gen(w, "--shard", "0/0"), ("--shard",)),
    Case("api-key-as-env-name", lambda w: gen(w, "--api-key-env", "sk-secret123"), ("--api-key-env",)),
    Case("n-ctx-tiny", lambda w: gen(w, "--n-ctx", "10"), ("--n-ctx",)),
    Case("mode-banana", lambda w: gen(w, "--mode", "banana"), ("banana",)),
    Case("batch-api-on-fake", lambda w: gen(w, "--batch-api"), ("--batch-api",)),
    Case("gguf-missing", lambda w: ["generate", "completions", "--input", w.prompts, "--backend", "llamacpp", "--model",
                                    w / "nope.gguf", "-o", w / "out", "-q"], ("nope.gguf",)),
    Case("openai-without-model", lambda w: ["generate", "completions", "--input", w.prompts, "--backend", "openai",
                                            "--base-url", "http://127.0.0.1:9/v1", "-o", w / "out", "-q"], ("--model",)),
    # -- the output folder ----------------------------------------------------------------------------
    Case("output-is-a-file", lambda w: gen(w, out=w.file("out", "mine")), ("is a file",)),
    Case("output-under-a-file", lambda w: gen(w, out=w.file("out", "mine") / "run"), ("directory",)),
    Case("output-holds-other-files", lambda w: gen(w, out=w.file("out/thesis.tex", "years").parent), ("not empty",)),
    Case("output-is-another-commands-run", lambda w: gen(w, out=w.copy("rated")), ("rate ultrafeedback",)),
    Case("output-holds-a-run-with-other-settings", lambda w: gen(w, "--seed", "7", out=w.run), ("seed",)),
    Case("output-run-config-binary", lambda w: gen(w, out=_damage(w.run, "config.yaml", BINARY)), ("config.yaml", "--fresh")),
    # -- the request cache of a run, damaged --------------------------------------------------------------
    Case("cache-junk", lambda w: gen(w, out=w.resumable(lambda p: p.write_bytes(b"junk" * 1000))),
         ("cache.sqlite is damaged", "--fresh", "records.jsonl")),
    Case("cache-truncated", lambda w: gen(w, out=w.resumable(lambda p: p.write_bytes(p.read_bytes()[:5000]))),
         ("cache.sqlite is damaged", "--fresh")),
    Case("cache-of-another-program", lambda w: gen(w, out=w.resumable(foreign_database)), ("cache.sqlite is damaged", "--fresh")),
    Case("cache-entry-not-json", lambda w: gen(w, out=w.resumable(sql("UPDATE responses SET response = 'junk'"))),
         ("cache.sqlite is damaged", "--fresh"), may_change=STATS),
    Case("cache-entry-not-a-response", lambda w: gen(w, out=w.resumable(sql("UPDATE responses SET response = '[1]'"))),
         ("cache.sqlite is damaged", "--fresh"), may_change=STATS),
    # -- the user's disk ------------------------------------------------------------------------------------
    Case("disk-full-writing-the-dataset", lambda w: gen(w, "--export-only", out=w.run), ("disk full", "run the same command"),
         patch=raises("datasets:Dataset.to_parquet", *ENOSPC)),
    Case("read-only-writing-the-dataset", lambda w: gen(w, "--export-only", out=w.run), ("read-only file system",),
         patch=raises("datasets:Dataset.to_parquet", *EROFS)),
    Case("disk-full-writing-a-file", lambda w: gen(w, "--export-only", out=w.run), ("disk full",),
         patch=raises("distill.run_dir:os.replace", *ENOSPC)),
    Case("disk-full-writing-a-filter-output", lambda w: dedup(w), ("disk full",),
         patch=raises("datasets:Dataset.to_parquet", *ENOSPC)),
    Case("read-only-output-folder", lambda w: gen(w), ("cannot write", "read-only file system"),
         patch=raises("pathlib:Path.mkdir", *EROFS)),
    # -- config files ------------------------------------------------------------------------------------------
    Case("config-missing", lambda w: gen(w, "--config", w / "nope.yaml"), ("cannot read config",)),
    Case("config-directory", lambda w: gen(w, "--config", w.tmp), ("cannot read config",)),
    Case("config-binary", lambda w: gen(w, "--config", w.file("c.yaml", BINARY)), ("not UTF-8",)),
    Case("config-unreadable", lambda w: gen(w, "--config", unreadable(w, "c.yaml")), ("cannot read config",)),
    Case("config-deep", lambda w: gen(w, "--config", w.file("c.yaml", "a: " + DEEP)), ("not valid YAML", "too deeply")),
    Case("config-a-list", lambda w: gen(w, "--config", w.file("c.yaml", "- a\n")), ("mapping",)),
    Case("config-bad-yaml", lambda w: gen(w, "--config", w.file("c.yaml", "a: [1\n")), ("not valid YAML",)),
    Case("config-unknown-key", lambda w: gen(w, "--config", w.file("c.yaml", "concurency: 3\n")), ("concurency",)),
    Case("config-bad-value", lambda w: gen(w, "--config", w.file("c.yaml", "concurrency: banana\n")), ("--concurrency",)),
    Case("config-python-tag", lambda w: gen(w, "--config", w.file("c.yaml", "seed: !!python/object:os.system {}\n")),
         ("not valid YAML",)),
    Case("prices-missing", lambda w: gen(w, "--prices", w / "nope.yaml"), ("cannot read price table",)),
    Case("prices-binary", lambda w: gen(w, "--prices", w.file("p.yaml", BINARY)), ("price table", "not UTF-8")),
    Case("prices-deep", lambda w: gen(w, "--prices", w.file("p.yaml", "m: " + DEEP)), ("price table",)),
    Case("prices-negative", lambda w: gen(w, "--prices", w.file("p.yaml", "m: {input: -1, output: 1}\n")), (">= 0",)),
    Case("prices-a-list", lambda w: gen(w, "--prices", w.file("p.yaml", "- 1\n")), ("price table",)),
    # -- generate task (distilabel) --------------------------------------------------------------------------------
    Case("task-input-binary", lambda w: task(w, "TextGeneration", input=w.file("rows.jsonl", BINARY)), ("not UTF-8",)),
    Case("task-arg-deep", lambda w: task(w, "TextGeneration", "--arg", "columns=" + DEEP), ("--arg columns",)),
    Case("task-arg-not-yaml", lambda w: task(w, "TextGeneration", "--arg", "num_generations=[2"), ("--arg num_generations",)),
    Case("task-arg-wrong-type", lambda w: task(w, "TextGeneration", "--arg", "num_generations=many"),
         ("--arg num_generations",)),
    Case("task-columns-not-in-template", lambda w: task(w, "TextGeneration", "--arg", "columns=[a]"), ("TextGeneration",)),
    Case("task-abstract", lambda w: task(w, "distilabel.steps.tasks.base.Task"), ("abstract",)),
    Case("task-not-a-task", lambda w: task(w, "os.path"), ("not a distilabel task",)),
    # -- generate ultrachat, camel, self-instruct -----------------------------------------------------------------
    Case("ultrachat-sectors-banana", lambda w: uc(w, "--sectors", "banana"), ("--sectors",)),
    Case("ultrachat-sector-weight-nan", lambda w: uc(w, "--sectors", "world=nan"), ("--sectors",)),
    Case("ultrachat-rounds-reversed", lambda w: uc(w, "--world-rounds", "7-3"), ("--world-rounds",)),
    Case("ultrachat-topics-binary", lambda w: uc(w, "--topics", w.file("topics.txt", BINARY)), ("not UTF-8",)),
    Case("ultrachat-topics-surrogate", lambda w: uc(w, "--topics", w.file("t.jsonl", '{"topic": "\\ud800"}\n')), ("surrogate",)),
    Case("ultrachat-materials-deep", lambda w: uc(w, "--sectors", "materials=1", "--materials",
                                                  w.file("m.jsonl", '{"text": ' + DEEP + "}\n")), ("nested too deeply",)),
    Case("ultrachat-materials-missing", lambda w: uc(w, "--sectors", "materials=1", "--materials", w / "nope.jsonl"),
         ("does not exist",)),
    Case("ultrachat-bad-regex", lambda w: uc(w, "--disclaimer-patterns", "("), ("regular expression",)),
    Case("camel-roles-missing", lambda w: camel(w, "--assistant-roles", w / "nope.txt"), ("does not exist",)),
    Case("camel-roles-empty", lambda w: camel(w, "--assistant-roles", w.file("roles.txt", "")), ("empty",)),
    Case("camel-roles-surrogate", lambda w: camel(w, "--user-roles", w.file("roles.jsonl", '{"role": "\\udc00"}\n')),
         ("surrogate",)),
    Case("camel-min-turns-past-max", lambda w: camel(w, "--min-turns", "5", "--max-turns", "2"), ("--min-turns",)),
    Case("camel-no-dialogues", lambda w: camel(w, "-n", "0"), ("--num-dialogues",)),
    Case("self-instruct-seeds-missing", lambda w: si(w, "--seeds", w / "nope.jsonl"), ("does not exist",)),
    Case("self-instruct-seeds-surrogate", lambda w: si(w, "--seeds", w.file("s.jsonl", '{"instruction": "\\ud83d"}\n')),
         ("surrogate",)),
    Case("self-instruct-seeds-without-instructions", lambda w: si(w, "--seeds", w.jsonl("s.jsonl", [{"q": "x"}])),
         ("none of the columns",)),
    Case("self-instruct-human-per-prompt-zero", lambda w: si(w, "--human-per-prompt", "0"), ("--human-per-prompt",)),
    Case("self-instruct-rouge-nan", lambda w: si(w, "--rouge-threshold", "nan"), ("--rouge-threshold",)),
    Case("self-instruct-words-reversed", lambda w: si(w, "--min-words", "10", "--max-words", "2"), ("--min-words",)),
    # -- rate ultrafeedback, binarize ----------------------------------------------------------------------------
    Case("ultrafeedback-one-model", lambda w: ["rate", "ultrafeedback", "--input", w.prompts, *FAKE, "--models", "a",
                                               "-o", w / "out"], ("--models",)),
    Case("ultrafeedback-model-url-bad", lambda w: uf(w, "--models", "a@notaurl,b"), ("not an http(s) URL",)),
    Case("ultrafeedback-score-banana", lambda w: uf(w, "--score", "banana"), ("--score",)),
    Case("ultrafeedback-principles-banana", lambda w: uf(w, "--principles", "banana"), ("--principles",)),
    Case("ultrafeedback-input-surrogate", lambda w: uf(w, input=w.file("in.jsonl", '{"prompt": "\\ud800"}\n')),
         ("surrogate",)),
    Case("ultrafeedback-input-binary", lambda w: uf(w, input=w.file("in.jsonl", BINARY)), ("not UTF-8",)),
    Case("binarize-a-completions-run", lambda w: ["binarize", w.run], ("not 'rate ultrafeedback'",)),
    Case("binarize-missing", lambda w: ["binarize", w / "nope"], ("not a run directory",)),
    Case("binarize-a-file", lambda w: ["binarize", w.prompts], ("is a file",)),
    Case("binarize-score-banana", lambda w: ["binarize", w.copy("rated"), "--score", "banana"], ("--score",)),
    Case("binarize-test-size-all", lambda w: ["binarize", w.copy("rated"), "--test-size", "1000"], ("--test-size",)),
    # -- filter -------------------------------------------------------------------------------------------------
    Case("dedup-input-missing", lambda w: dedup(w, source=w / "nope.jsonl"), ("does not exist",)),
    Case("dedup-threshold-nan", lambda w: dedup(w, "--threshold", "nan"), ("threshold",)),
    Case("dedup-threshold-one", lambda w: dedup(w, "--threshold", "1"), ("threshold",)),
    Case("dedup-num-perm-zero", lambda w: dedup(w, "--num-perm", "0"), ("num-perm",)),
    Case("dedup-column-unknown", lambda w: dedup(w, "--column", "nope"), ("'nope'",)),
    Case("dedup-output-a-file", lambda w: dedup(w, out=w.file("clean", "mine")), ("is a file",)),
    Case("dedup-output-someone-elses", lambda w: dedup(w, out=w.file("clean/notes.txt", "mine").parent), ("not empty",)),
    Case("dedup-output-a-generating-run", lambda w: dedup(w, out=w.run), ("choose another -o",)),
    Case("dedup-input-surrogate", lambda w: dedup(w, source=w.file("in.jsonl", '{"prompt": "a \\ud800"}\n')), ("surrogate",)),
    Case("dedup-input-deep", lambda w: dedup(w, source=w.file("in.jsonl", '{"prompt": ' + DEEP + "}\n")),
         ("nested too deeply",)),
    Case("dedup-column-of-mixed-types", lambda w: dedup(w, source=w.jsonl("in.jsonl", [
        {"prompt": "one two three four", "n": 1}, {"prompt": "five six seven eight", "n": "two"}])), ("column 'n'",)),
    Case("dedup-number-past-64-bits", lambda w: dedup(w, source=w.file("in.jsonl", '{"prompt": "a b c", "n": 1}\n'
                                                                        '{"prompt": "d e f", "n": 123456789012345678901234567890}\n')),
         ("column 'n'",)),
    Case("dedup-empty-object-column", lambda w: dedup(w, source=w.jsonl("in.jsonl", [{"prompt": "a b c", "meta": {}}])),
         ("column 'meta'",)),
    Case("decontaminate-against-missing", lambda w: ["filter", "decontaminate", w.prompts, "--against", w / "nope.jsonl",
                                                     "-o", w / "clean"], ("does not exist",)),
    Case("decontaminate-against-binary", lambda w: ["filter", "decontaminate", w.prompts, "--against",
                                                    w.file("b.jsonl", BINARY), "-o", w / "clean"], ("not UTF-8",)),
    Case("decontaminate-against-surrogate", lambda w: ["filter", "decontaminate", w.prompts, "--against",
                                                       w.file("b.jsonl", '{"prompt": "\\ud800"}\n'), "-o", w / "clean"],
         ("surrogate",)),
    Case("decontaminate-ngram-zero", lambda w: ["filter", "decontaminate", w.prompts, "--against", w.prompts, "--ngram", "0",
                                                "-o", w / "clean"], ("ngram",)),
    Case("plan-missing", lambda w: ["filter", "run", w.prompts, "--config", w / "nope.yaml", "-o", w / "clean"],
         ("cannot read filter plan",)),
    Case("plan-binary", lambda w: plan(w, BINARY), ("filter plan", "not UTF-8")),
    Case("plan-deep", lambda w: plan(w, "filters: " + DEEP), ("filter plan", "too deeply")),
    Case("plan-empty", lambda w: plan(w, ""), ("filter plan", "filters")),
    Case("plan-a-list", lambda w: plan(w, "- dedup\n"), ("filter plan", "mapping")),
    Case("plan-unknown-filter", lambda w: plan(w, "filters: [lenght]\n"), ("lenght",)),
    Case("plan-unknown-key", lambda w: plan(w, "colum: prompt\nfilters: [refusal]\n"), ("colum",)),
    Case("blocklist-missing", lambda w: blocklist(w, w / "nope.txt"), ("cannot read blocklist",)),
    Case("blocklist-binary", lambda w: blocklist(w, w.file("words.txt", BINARY)), ("blocklist", "not UTF-8")),
    Case("blocklist-directory", lambda w: blocklist(w, w.tmp), ("cannot read blocklist",)),
    Case("blocklist-unreadable", lambda w: blocklist(w, unreadable(w, "words.txt")), ("cannot read blocklist",)),
    # -- merge, stats ---------------------------------------------------------------------------------------------
    Case("merge-missing-run", lambda w: ["merge", w / "nope", w.copy("shard1"), "-o", w / "merged"], ("not a distill run",)),
    Case("merge-not-shards", lambda w: ["merge", w.run, w.copy("shard1"), "-o", w / "merged"], ("not a shard",)),
    Case("merge-one-shard-missing", lambda w: ["merge", w.copy("shard0"), "-o", w / "merged"], ("missing",)),
    Case("merge-output-not-empty", lambda w: ["merge", w.copy("shard0"), w.copy("shard1"), "-o", w.run], ("not empty",)),
    Case("merge-shard-config-binary", lambda w: ["merge", _damage(w.copy("shard0"), "config.yaml", BINARY), w.copy("shard1"),
                                                 "-o", w / "merged"], ("config.yaml",)),
    Case("merge-shard-cache-junk", lambda w: ["merge", _damage(w.copy("shard0"), "cache.sqlite", b"junk" * 1000),
                                              w.copy("shard1"), "-o", w / "merged"], ("cache.sqlite",)),
    Case("merge-shard-stats-binary", lambda w: ["merge", w.copy("shard0"), _damage(w.copy("shard1"), "stats.json", BINARY),
                                                "-o", w / "merged"], ("stats.json",)),
    # -- a run's own files, nested past the stack (json/yaml raise RecursionError, no ValueError) ----------------------
    Case("output-run-config-deep", lambda w: gen(w, out=_damage(w.run, "config.yaml", "a: " + DEEP)), ("config.yaml",)),
    Case("dedup-output-stats-deep", lambda w: dedup(w, out=_damage(_mkdir(w / "clean"), "stats.json", DEEP)),
         ("choose another -o",)),
    Case("stats-run-stats-deep", lambda w: ["stats", _damage(w.run, "stats.json", DEEP)], ("stats.json",)),
    Case("stats-missing", lambda w: ["stats", w / "nope.jsonl"], ("does not exist",)),
    Case("stats-binary", lambda w: ["stats", w.file("in.jsonl", BINARY)], ("not UTF-8",)),
    Case("stats-surrogate", lambda w: ["stats", w.file("in.jsonl", '{"prompt": "\\ud800"}\n')], ("surrogate",)),
    Case("stats-deep", lambda w: ["stats", w.file("in.json", DEEP)], ("nested too deeply",)),
    Case("stats-fifo", lambda w: ["stats", fifo(w, "in.jsonl")], ("not a regular file",)),
    Case("stats-split-unknown", lambda w: ["stats", w.run, "--split", "nope"], ("no split 'nope'",)),
    Case("stats-subset-unknown", lambda w: ["stats", w.run, "--subset", "../x"], ("no subset",)),
    Case("stats-run-stats-binary", lambda w: ["stats", _damage(w.run, "stats.json", BINARY)], ("stats.json",)),
    Case("stats-records-surrogate", lambda w: ["stats", w.file("r/records.jsonl", '{"id": "a", "x": "\\ud800"}\n').parent],
         ("surrogate",)),
    # -- push ---------------------------------------------------------------------------------------------------
    Case("push-repo-id-dot-git", lambda w: ["push", w.run, "--repo-id", "org/name.git"], (".git",)),
    Case("push-repo-id-ends-with-dot", lambda w: ["push", w.run, "--repo-id", "org/name."], ("org/name",)),
    Case("push-repo-id-ends-with-dash", lambda w: ["push", w.run, "--repo-id", "org/name-"], ("org/name",)),
    Case("push-repo-id-double-dash", lambda w: ["push", w.run, "--repo-id", "org/na--me"], ("'--'",)),
    Case("push-repo-id-double-dot", lambda w: ["push", w.run, "--repo-id", "org/na..me"], ("org/name",)),
    Case("push-repo-id-too-long", lambda w: ["push", w.run, "--repo-id", "org/" + "a" * 97], ("96",)),
    Case("push-repo-id-three-parts", lambda w: ["push", w.run, "--repo-id", "a/b/c"], ("org/name",)),
    Case("push-repo-id-space", lambda w: ["push", w.run, "--repo-id", "org/na me"], ("org/name",)),
    Case("push-not-a-run", lambda w: ["push", w / "nope", "--repo-id", "org/name"], ("not a run directory",)),
    Case("push-a-file", lambda w: ["push", w.prompts, "--repo-id", "org/name"], ("is a file",)),
    Case("push-card-binary", lambda w: ["push", card(w, BINARY), "--repo-id", "org/name"], ("README.md", "not UTF-8")),
    Case("push-card-bad-yaml", lambda w: ["push", card(w, "---\nconfigs: [\n---\n"), "--repo-id", "org/name"],
         ("README.md", "YAML")),
    Case("push-card-header-a-list", lambda w: ["push", card(w, "---\n- a\n---\n"), "--repo-id", "org/name"], ("README.md",)),
    Case("push-card-configs-not-a-list", lambda w: ["push", card(w, "---\nconfigs: 3\n---\n"), "--repo-id", "org/name"],
         ("configs",)),
    Case("push-no-token", lambda w: ["push", w.run, "--repo-id", "org/name"], ("HF_TOKEN",),
         patch=lambda mp: mp.setattr("huggingface_hub.get_token", lambda: None)),
    # -- train sft --dry-run, zephyr --dry-run ------------------------------------------------------------------------
    Case("train-recipe-missing", lambda w: train(w, "--config", w / "nope.yaml"), ("no recipe",), marks=needs_train),
    Case("train-recipe-binary", lambda w: train(w, "--config", w.file("r.yaml", BINARY)), ("not UTF-8",), marks=needs_train),
    Case("train-recipe-deep", lambda w: train(w, "--config", w.file("r.yaml", "a: " + DEEP)), ("too deeply",),
         marks=needs_train),
    Case("train-recipe-a-list", lambda w: train(w, "--config", w.file("r.yaml", "- a\n")), ("mapping",), marks=needs_train),
    Case("train-override-not-key-value", lambda w: train(w, "--config", "zephyr-7b-beta/sft_paper", "banana"), ("KEY=VALUE",),
         marks=needs_train),
    Case("train-override-nan", lambda w: train(w, "--config", "zephyr-7b-beta/sft_paper", "training.learning_rate=nan"),
         ("learning_rate",), marks=needs_train),
    Case("train-override-deep", lambda w: train(w, "--config", "zephyr-7b-beta/sft_paper", "training.learning_rate=" + DEEP),
         ("learning_rate",), marks=needs_train),
    Case("train-gpus-negative", lambda w: train(w, "--config", "zephyr-7b-beta/sft_paper", "--num-gpus", "-1"), ("-1",),
         marks=needs_train),
    Case("train-hub-id-dot-git", lambda w: train(w, "--config", "zephyr-7b-beta/sft_paper", "--push-to-hub", "--hub-model-id",
                                                 "me/model.git"), (".git",), marks=needs_train),
    Case("train-data-surrogate", lambda w: train(w, "--config", w.recipe(w.file("d.jsonl", '{"messages": "\\ud800"}\n'))),
         ("surrogate",), marks=needs_train),
    Case("train-data-deep", lambda w: train(w, "--config", w.recipe(w.file("d.jsonl", '{"messages": ' + DEEP + "}\n"))),
         ("nested too deeply",), marks=needs_train),
    Case("train-data-missing", lambda w: train(w, "--config", w.recipe(w / "nope.jsonl")), ("does not exist",), marks=needs_train),
    Case("train-output-a-file", lambda w: train(w, "--config", w.recipe(w.prompts, output_dir=str(w.file("trained", "x")))),
         ("not a directory",), marks=needs_train),
    Case("zephyr-config-binary", lambda w: zephyr(w, "--config", w.file("z.yaml", BINARY)), ("not UTF-8",)),
    Case("zephyr-config-unknown-key", lambda w: zephyr(w, "--config", w.file("z.yaml", "dialogs: 3\n")), ("dialogs",)),
    Case("zephyr-filters-binary", lambda w: zephyr(w, "--filters", w.file("f.yaml", BINARY)), ("filter plan", "not UTF-8")),
    Case("zephyr-filters-missing", lambda w: zephyr(w, "--filters", w / "nope.yaml"), ("cannot read filter plan",)),
    Case("zephyr-push-id-dot-git", lambda w: zephyr(w, "--push-to-hub", "me/zephyr.git"), (".git",)),
    Case("zephyr-dialogues-negative", lambda w: zephyr(w, "--dialogues", "-1"), ("--dialogues",)),
    Case("zephyr-output-a-file", lambda w: ["zephyr", *FAKE, "--pool", "a,b", "-o", w.file("z", "x"), "--dry-run"],
         ("is a file",)),
    Case("zephyr-prices-binary", lambda w: zephyr(w, "--prices", w.file("p.yaml", BINARY)), ("not UTF-8",)),
    Case("zephyr-pool-url-bad", lambda w: ["zephyr", *FAKE, "--pool", "a@notaurl,b", "-o", w / "z", "--dry-run"],
         ("not an http(s) URL",)),
]


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _damage(folder: Path, name: str, content: bytes | str) -> Path:
    (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def _bad_utf8_parquet(path: Path) -> Path:
    """A parquet file whose string column holds bytes that are not UTF-8 (another writer's)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = pa.array([b"fine", b"caf\xe9"], type=pa.binary())
    pq.write_table(pa.table({"prompt": pa.Array.from_buffers(pa.string(), 2, raw.buffers())}), path)
    return path


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root: a file's bytes, None for a folder or a FIFO."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        found[name] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return found


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_a_hostile_input_gets_one_line_and_changes_nothing(cli, tmp_path, world, monkeypatch, case):
    where = Where(tmp_path, world)
    monkeypatch.chdir(tmp_path)
    args = case.make(where)
    beside = sorted(p.name for p in tmp_path.parent.iterdir())
    before = snapshot(tmp_path)
    if case.patch:
        case.patch(monkeypatch)
    result = cli(*args, env=case.env)
    monkeypatch.undo()  # the patches end before anything is compared
    assert_one_line_error(result, *case.needles)
    assert "internal error" not in result.err
    after = snapshot(tmp_path)
    changed = sorted(name for name in before if name in after and before[name] != after[name]
                     and Path(name).name not in BOOKKEEPING and Path(name).name not in case.may_change)
    gone = sorted(set(before) - set(after))
    assert not changed and not gone, f"changed: {changed}, gone: {gone}"
    # New files only in a folder the command made itself (a new -o), none in a folder that was there before.
    folders = {name for name, data in before.items() if data is None} | {"."}
    new = sorted(name for name in set(after) - set(before)
                 if after[name] is not None and Path(name).name not in BOOKKEEPING and Path(name).parent.as_posix() in folders)
    assert not new, f"new files in folders that were there before: {new}"
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == beside  # nothing written beside the test's folder


# -- the Hub's endpoint cannot be reached (huggingface_hub reads HF_ENDPOINT at import: a child process) ------


def test_push_to_an_unreachable_endpoint_is_one_line_and_leaves_the_run_as_it_was(world, tmp_path):
    where = Where(tmp_path, world)
    run = where.run
    before = snapshot(run)
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_unreachable0123456789"}
    done = subprocess.run([sys.executable, "-m", "distill", "push", str(run), "--repo-id", "org/name"], check=False,
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: push to org/name failed: cannot reach the Hub at "
                                                   "http://127.0.0.1:9"), done.stderr
    assert "internal error" not in done.stderr and "hf_unreachable" not in done.stderr
    after = snapshot(run)
    assert {k: v for k, v in after.items() if Path(k).name not in BOOKKEEPING} == \
        {k: v for k, v in before.items() if Path(k).name not in BOOKKEEPING}  # the card too: no repo id written in

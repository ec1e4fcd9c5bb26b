"""Every command in the README is run by a test, so the README cannot go stale (issue 11, item 30).

The README's ```bash blocks are read as a shell would (`\\` continuations joined, `&&` split,
trailing `# comments` dropped). Each `distill ...` command must be a key of COMMANDS, the
table below that says how it is run, and every key must still be in the README. The commands
then run in README order, in-process, in a scratch folder (so `runs/ultrachat` made by the
quickstart is what `rate`, `filter`, `push` and `stats` read), against what stands in for
what a test cannot reach: loopback OpenAI-compatible servers answering in the shape each
prompt asks for (for OpenAI and for `http://gpuN:8000/v1`), a stand-in for the Hub API, a
stand-in vLLM engine. Where a command cannot run as written (paper-scale sizes, unreachable
hosts, GPU training), the table lists each substitution and why, and the test checks the
replaced text is still in the README command. Synopsis lines (`[--option ...]`, `RUN_DIR`,
`FILE_OR_DATASET`, `M`) are checked against `--help`, then run with the placeholders filled.

Every other command is in OTHER_COMMANDS: the install lines (the test runs inside what they
install), the test command (which must be, verbatim, what .ci/run runs), the `export` lines
(run in order: they set the environment of the commands after them) and the benchmarks
(each file exists and answers --help, or has the smoke mode it documents).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import StandInHub, write_jsonl

from distill.testing.openai_server import LoopbackServer

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
KEY = "sk-readme-0123456789"  # what `export OPENAI_API_KEY=...` stands for
HF_TOKEN = "hf_readme0123456789"  # what `export HF_TOKEN=...` stands for


# -- reading the README as a shell would ------------------------------------------------------------


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def strip_comment(line: str) -> str:
    """Drop a `# comment`: a # that starts a word outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def block_lines(block: str) -> list[str]:
    """The logical lines of a block: continuations joined, comments dropped, blank lines skipped."""
    lines, pending = [], ""
    for raw in block.splitlines():
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = strip_comment(pending + raw)
        pending = ""
        if line.strip():
            lines.append(" ".join(line.split()))
    assert not pending, f"a README bash block ends on a continuation: {block!r}"
    return lines


def readme_commands(text: str | None = None) -> list[str]:
    """Every command of the README's bash blocks, in order, whitespace normalised."""
    text = README.read_text(encoding="utf-8") if text is None else text
    commands = []
    for block in bash_blocks(text):
        for line in block_lines(block):
            commands += [part.strip() for part in re.split(r"\s&&\s", line) if part.strip()]
    return commands


def test_the_reader_reads_as_a_shell_would():
    text = ("```bash\nexport A=1    # why\n# a comment line\ndistill x --a 'b # c' \\\n    --d e  # f\n"
            "p install . && distill y   &&  z\n```\n```yaml\nnot: bash\n```\n")
    assert readme_commands(text) == ["export A=1", "distill x --a 'b # c' --d e", "p install .", "distill y", "z"]


# -- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sub:
    """`old` (which must be in the README command) is replaced by `new`, for the reason `why`.
    In `new`, <openai>, <gpu1>, <gpu2>, <gpu3> stand for loopback server URLs."""

    old: str
    new: str
    why: str


@dataclass(frozen=True)
class How:
    how: str  # in words: what the command runs against
    check: Callable  # check(ctx, result): what its output must hold
    subs: tuple[Sub, ...] = ()
    variants: tuple[tuple[Sub, ...], ...] = ((),)  # the command runs once per variant (its subs on top)
    synopsis: bool = False  # its flags and choices are checked against --help (test_a_synopsis_shows_only_...)
    openai_env: bool = False  # OPENAI_BASE_URL points at the <openai> loopback server while it runs
    vllm: bool = False  # `import vllm` gives the stand-in engine while it runs
    hub: bool = False  # huggingface_hub.HfApi is the StandInHub while it runs
    place: str = "main"  # the scratch folder it runs in (main: where the quickstart's runs/ultrachat is)
    expect_error: str | None = None  # the one line the README says it refuses with


# Substitutions used by several rows.
FAKE_FOR_SYNOPSIS = ("a synopsis names no teacher: it runs on the fake backend "
                     "(the README: 'any command runs end to end offline in seconds')")
SMALL = "paper scale; a few items show the command works"
STYLES = ("auto", "chat", "completion")
DRY = "trains a 7B model on GPUs: --dry-run checks it as the run would (the README's own train example does)"


def gpu(n: int) -> Sub:
    return Sub(f"http://gpu{n}:8000/v1", f"<gpu{n}>", f"gpu{n} is not reachable from a test: a loopback server stands in")


COMMANDS: dict[str, How] = {
    # Quickstart: the headline, on the embedded llama.cpp model for real.
    "distill generate ultrachat -n 10 -o runs/ultrachat": How(
        "embedded llama.cpp model (SmolLM2-135M-Instruct), for real",
        lambda ctx, r: check_quickstart(ctx),  # as written: ten dialogues take 2-3 minutes on two cores; fewer can
                                                # leave the 270M base model no row that the README's filters keep
    ),
    "distill generate ultrachat -n 1000 --backend openai --model gpt-4o-mini --test-size 0.05 -o runs/ultrachat-gpt": How(
        "openai backend, OPENAI_BASE_URL -> loopback server (shaped replies)",
        lambda ctx, r: (check_rows(ctx, "runs/ultrachat-gpt", "train_sft"), check_rows(ctx, "runs/ultrachat-gpt", "test_sft"),
                        check_server(ctx, "openai")),
        subs=(Sub("-n 1000", "-n 20", SMALL + "; 20 is the fewest whose 0.05 test split holds a prompt"),), openai_env=True,
    ),
    "distill generate completions --input examples/prompts.jsonl --backend openai --model gpt-4o-mini -o runs/gpt": How(
        "openai backend, OPENAI_BASE_URL -> loopback server, as written",
        lambda ctx, r: (check_rows(ctx, "runs/gpt", "train", exactly=prompt_count()), check_server(ctx, "openai")),
        openai_env=True,
    ),
    "distill generate completions --input examples/prompts.jsonl --model mistralai/Mistral-7B-Instruct-v0.2 "
    "--base-url http://gpu1:8000/v1 --base-url http://gpu2:8000/v1 -o runs/mistral": How(
        "two --base-url endpoints -> two loopback servers (the backend is chosen by --base-url alone)",
        lambda ctx, r: (check_rows(ctx, "runs/mistral", "train", exactly=prompt_count()),
                        check_server(ctx, "gpu1"), check_server(ctx, "gpu2")),
        subs=(gpu(1), gpu(2)),
    ),
    "distill generate ultrachat -n 20000 --backend openai --model gpt-4o --batch-api -o runs/ultrachat": How(
        "openai Batch API on the loopback server (it runs /v1/files and /v1/batches); own folder: the quickstart "
        "already made runs/ultrachat with other settings, which a run there would refuse",
        lambda ctx, r: (check_rows(ctx, "runs/ultrachat", "train_sft"), check_batches(ctx)),
        subs=(Sub("-n 20000", "-n 2", SMALL),
              Sub("--batch-api", "--batch-api --batch-window 0.05 --batch-poll 0.05",
                  "the default 10 s window and 30 s poll are a provider's pace; every dialogue turn is a later batch")),
        openai_env=True, place="batch",
    ),
    "distill generate ultrachat -n 1000 [--sectors world=0.5,creation=0.3,materials=0.2] [--materials corpus.jsonl] "
    "[--topics topics.txt] [--assistant-model M --user-model M2] -o RUN_DIR": How(
        "synopsis: flags checked against --help, then run with every option and the placeholders filled",
        lambda ctx, r: check_rows(ctx, "runs/synopsis-ultrachat", "train_sft"),
        subs=(Sub("-n 1000", "-n 3", SMALL),
              Sub("--assistant-model M --user-model M2", "--assistant-model teacher --user-model user-simulator",
                  "placeholders"),
              Sub("-o RUN_DIR", "--backend fake -o runs/synopsis-ultrachat", FAKE_FOR_SYNOPSIS)),
        synopsis=True,
    ),
    "distill generate self-instruct -n 1000 [--seeds seed_tasks.jsonl] [--include-seeds] [--batch-size 5] "
    "[--rouge-threshold 0.7] [--prompt-style auto|chat|completion] -o RUN_DIR": How(
        "synopsis: flags and the three prompt styles checked against --help, then run once per style",
        lambda ctx, r: check_rows(ctx, f"runs/synopsis-self-instruct-{STYLES[ctx.variant]}", "train"),
        subs=(Sub("-n 1000", "-n 3", SMALL),),
        variants=tuple((Sub("auto|chat|completion", style, "each choice the synopsis shows"),
                        Sub("-o RUN_DIR", f"--backend fake -o runs/synopsis-self-instruct-{style}", FAKE_FOR_SYNOPSIS))
                       for style in STYLES),
        synopsis=True,
    ),
    "distill generate alpaca -n 1000 [--seeds seed_tasks.jsonl] [--batch-size 5] [--rouge-threshold 0.7] "
    "[--prompt-style auto|chat|completion] -o RUN_DIR": How(
        "synopsis: flags and the three prompt styles checked against --help, then run once per style",
        lambda ctx, r: check_rows(ctx, f"runs/synopsis-alpaca-{STYLES[ctx.variant]}", "train"),
        subs=(Sub("-n 1000", "-n 3", SMALL),),
        variants=tuple((Sub("auto|chat|completion", style, "each choice the synopsis shows"),
                        Sub("-o RUN_DIR", f"--backend fake -o runs/synopsis-alpaca-{style}", FAKE_FOR_SYNOPSIS))
                       for style in STYLES),
        synopsis=True,
    ),
    "distill generate camel -n 1000 [--num-roles 50] [--tasks-per-pair 10] [--assistant-roles roles.txt] "
    "[--user-roles users.txt] [--assistant-model M --user-model M2 --task-model M3] -o RUN_DIR": How(
        "synopsis: flags checked against --help, then run with every option and the placeholders filled",
        lambda ctx, r: check_rows(ctx, "runs/synopsis-camel", "train_sft"),
        subs=(Sub("-n 1000", "-n 3", SMALL),
              Sub("--assistant-model M --user-model M2 --task-model M3",
                  "--assistant-model assistant --user-model user --task-model tasks", "placeholders"),
              Sub("-o RUN_DIR", "--backend fake -o runs/synopsis-camel", FAKE_FOR_SYNOPSIS)),
        synopsis=True,
    ),
    "distill rate ultrafeedback --input runs/ultrachat --models gpt-4o-mini,gpt-4.1-mini,gpt-4.1-nano,gpt-4o "
    "--judge gpt-4.1 --backend openai --test-size 0.05 -o runs/feedback": How(
        "openai backend, OPENAI_BASE_URL -> loopback server, as written, on the quickstart's dialogues",
        lambda ctx, r: (check_rows(ctx, "runs/feedback", "train_prefs"), check_rows(ctx, "runs/feedback/completions"),
                        check_server(ctx, "openai")),
        openai_env=True,
    ),
    "distill eval pairwise --prompts examples/prompts.jsonl --models smollm2-135m-instruct --baseline gemma3-270m "
    "-o runs/pairwise": How(
        "both embedded llama.cpp models for real (SmolLM2 also judges, through its JSON grammar)",
        lambda ctx, r: (check_rows(ctx, "runs/pairwise", "train", exactly=2), check_results(ctx, "runs/pairwise")),
        subs=(Sub("--prompts examples/prompts.jsonl", "--prompts examples/prompts.jsonl -n 2 --max-new-tokens 48",
                  "two prompts and short answers show the command works on the real models"),),
    ),
    "distill eval pairwise --prompts examples/reference_answers.jsonl --baseline-column output --models MODEL "
    "--judge JUDGE -o runs/reference": How(
        "the fake backend answers for MODEL and JUDGE; the baseline is the file's own answers",
        lambda ctx, r: (check_rows(ctx, "runs/reference", "train", exactly=3), check_results(ctx, "runs/reference")),
        subs=(Sub("--models MODEL --judge JUDGE", "--models model --judge judge --backend fake", FAKE_FOR_SYNOPSIS),),
    ),
    "distill eval mt-bench --models smollm2-135m-instruct,gemma3-270m --questions smoke -o runs/mt-bench": How(
        "both embedded llama.cpp models for real, SmolLM2 also judging",
        lambda ctx, r: (check_rows(ctx, "runs/mt-bench", "train", exactly=4), check_results(ctx, "runs/mt-bench")),
        subs=(Sub("--questions smoke", "--questions smoke -n 2 --max-new-tokens 32 --judge-max-new-tokens 64",
                  "two questions and short answers show the command works on the real models"),),
    ),
    "distill filter dedup runs/ultrachat -o runs/ultrachat-dedup [--column messages] [--threshold 0.7] [--num-perm 128] [--ngram 5]": How(
        "synopsis: flags checked against --help, then run with every option (no model)",
        lambda ctx, r: check_rows(ctx, "runs/ultrachat-dedup", "train_sft"),
        synopsis=True,
    ),
    "distill filter decontaminate runs/ultrachat --against mt_bench.jsonl --against alpaca_eval.jsonl -o runs/clean": How(
        "as written (no model); mt_bench.jsonl and alpaca_eval.jsonl written by the test, small",
        lambda ctx, r: check_rows(ctx, "runs/clean", "train_sft"),
    ),
    "distill filter run runs/ultrachat --config filters.yaml -o runs/ultrachat-clean": How(
        "as written (no model); filters.yaml is the README's own YAML block, blocklist.txt written by the test",
        lambda ctx, r: check_rows(ctx, "runs/ultrachat-clean", "train_sft"),
    ),
    "distill train sft --config zephyr-7b-beta/sft_handbook datasets='[{path: runs/ultrachat-clean}]' --num-gpus 8": How(
        "dry run of the shipped recipe (checks the recipe through TRL's config, the local dataset and its columns, "
        "the 8-GPU batch arithmetic)",
        lambda ctx, r: check_train_dry_run(ctx, r, dataset="runs/ultrachat-clean", processes=8),
        subs=(Sub("--num-gpus 8", "--num-gpus 8 --dry-run", DRY),),
    ),
    "distill train dpo --config zephyr-7b-beta/dpo_handbook model.name_or_path=runs/zephyr-7b-sft-handbook "
    "datasets='[{path: runs/feedback}]' --num-gpus 8 --accelerate-config deepspeed_zero3": How(
        "dry run; without deepspeed installed it refuses with the README's one line (`needs pip install deepspeed`)",
        lambda ctx, r: check_dpo(ctx, r),
        subs=(Sub("--accelerate-config deepspeed_zero3", "--accelerate-config deepspeed_zero3 --dry-run", DRY),),
        expect_error="error: --accelerate-config deepspeed_zero3 needs the deepspeed package: pip install deepspeed",
    ),
    "distill train sft --config my-recipe.yaml training.learning_rate=1e-5 --dry-run": How(
        "as written; my-recipe.yaml (which the README leaves to the reader) written by the test",
        lambda ctx, r: check_train_dry_run(ctx, r, dataset="runs/clean", processes=1, learning_rate="1.0e-05"),
    ),
    "distill zephyr --backend openai --model gpt-4o --pool gpt-4o-mini,llama-3-8b@http://gpu1:8000/v1,"
    "mistral-7b@http://gpu2:8000/v1,qwen-7b@http://gpu3:8000/v1 --judge gpt-4o --dialogues 20000 --num-prompts 10000 "
    "--base-model mistralai/Mistral-7B-v0.1 --preset handbook --num-gpus 8 -o runs/zephyr": How(
        "twice: --dry-run (the whole plan, the 8-GPU training included), then the data steps for real against "
        "loopback servers (OPENAI_BASE_URL for --model/--judge/gpt-4o-mini, one per gpuN), --stop-after data",
        lambda ctx, r: check_zephyr(ctx, r),
        subs=(gpu(1), gpu(2), gpu(3), Sub("--dialogues 20000", "--dialogues 4", SMALL)),
        variants=((Sub("-o runs/zephyr", "-o runs/zephyr --dry-run", "first the dry run, as a user would"),),
                  (Sub("-o runs/zephyr", "-o runs/zephyr --stop-after data",
                       "the generation steps run for real; dSFT/dDPO of a 7B model on 8 GPUs cannot "
                       "(the dry run checked them)"),)),
        openai_env=True,
    ),
    "distill zephyr --profile cpu -o runs/zephyr-cpu": How(
        "the whole profile takes a quarter of an hour on two cores: here its dry run (every step checked, both "
        "embedded models loaded); tests/test_zephyr_cpu.py runs it reduced end to end, benchmarks/zephyr_cpu.py whole",
        lambda ctx, r: (r.out.count("/6 ") >= 6 and not ctx.path("runs/zephyr-cpu").exists()) or pytest.fail(r.out),
        subs=(Sub("-o runs/zephyr-cpu", "-o runs/zephyr-cpu --dry-run", "the dry run of the profile"),),
    ),
    "distill generate completions --input FILE_OR_DATASET [--column prompt] [-n 100] [--samples 4] [--temperature 0.7] "
    "[--top-p 1.0] [--max-new-tokens 512] [--system TEXT] -o RUN_DIR": How(
        "synopsis: flags checked against --help, then run with every option and the placeholders filled",
        lambda ctx, r: check_rows(ctx, "runs/synopsis-completions", "train", exactly=4 * prompt_count()),
        subs=(Sub("FILE_OR_DATASET", "examples/prompts.jsonl", "placeholder"),
              Sub("--system TEXT", "--system 'Answer briefly.'", "placeholder"),
              Sub("-o RUN_DIR", "--backend fake -o runs/synopsis-completions", FAKE_FOR_SYNOPSIS)),
        synopsis=True,
    ),
    "distill push runs/ultrachat --repo-id my-org/my-dataset [--private] [--revision BRANCH]": How(
        "synopsis: flags checked against --help, then run with both options against the Hub stand-in (HF_TOKEN set)",
        lambda ctx, r: check_push(ctx, r),
        subs=(Sub("BRANCH", "draft", "placeholder"),),
        synopsis=True, hub=True,
    ),
    "distill stats runs/ultrachat": How(
        "as written", lambda ctx, r: check_stats_table(r),
    ),
    "distill stats runs/ultrachat --json": How(
        "as written", lambda ctx, r: check_stats_json(ctx, r),
    ),
    "distill view runs/ultrachat": How(
        "as written (no model, no browser: the page's report is read back)",
        lambda ctx, r: check_view(ctx, "runs/ultrachat/view.html", ["ultrachat"], ("runs/ultrachat", "*_sft")),
    ),
    "distill view runs/feedback -o feedback.html": How(
        "as written", lambda ctx, r: check_view(ctx, "feedback.html", ["feedback"],
                                  ("runs/feedback", "*_prefs")),
    ),
    "distill view runs/zephyr": How(
        "as written, on what the zephyr command above made (its data steps)",
        lambda ctx, r: check_view(ctx, "runs/zephyr/view.html", ["ultrachat", "ultrachat-clean", "feedback"]),
    ),
    "distill generate task TextGeneration --input examples/prompts.jsonl --column-map prompt=instruction -o runs/textgen": How(
        "embedded llama.cpp model (SmolLM2-135M-Instruct), for real, on two prompts",
        lambda ctx, r: check_rows(ctx, "runs/textgen", "train", exactly=2),
        subs=(Sub("-o runs/textgen", "-n 2 --max-new-tokens 32 -o runs/textgen", SMALL),),
    ),
    "distill generate task EvolInstruct --input examples/prompts.jsonl --column-map prompt=instruction "
    "--arg num_evolutions=2 -o runs/evol": How(
        "embedded llama.cpp model (SmolLM2-135M-Instruct), for real, on two prompts",
        lambda ctx, r: check_rows(ctx, "runs/evol", "train", exactly=2),
        subs=(Sub("-o runs/evol", "-n 2 --max-new-tokens 32 -o runs/evol", SMALL),),
    ),
    "distill generate ultrachat -n 100000 --backend vllm --model HuggingFaceH4/zephyr-7b-beta --shard 0/4 -o runs/uc-0": How(
        "vllm backend with a stand-in engine (`import vllm` gives it; it answers in the shape each prompt asks for), "
        "four times, as the comment above it says: shards 0/4 to 3/4; own folder, so that `merge -o runs/ultrachat` is new",
        lambda ctx, r: check_rows(ctx, f"runs/uc-{ctx.variant}", "train_sft"),
        subs=(Sub("-n 100000", "-n 8", SMALL),),
        variants=tuple(((Sub("--shard 0/4 -o runs/uc-0", f"--shard {k}/4 -o runs/uc-{k}",
                             "the comment: '--shard 1/4 -o runs/uc-1 on the second, ...'"),) if k else ())
                       for k in range(4)),
        vllm=True, place="shards",
    ),
    "distill merge runs/uc-0 runs/uc-1 runs/uc-2 runs/uc-3 -o runs/ultrachat": How(
        "as written, on the four shards the command above made",
        lambda ctx, r: check_merge(ctx),
        place="shards",
    ),
}

# Every command of the README that is not `distill ...`, and how it is accounted for.
INSTALL = "install: the test runs inside what it installs (.ci/run makes that environment from scratch)"
OTHER_COMMANDS: dict[str, str] = {
    "python3 -m venv .venv": INSTALL,
    ". .venv/bin/activate": INSTALL,
    "CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON\" pip install '.[local]'": INSTALL,
    "CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON\" pip install torch==2.13.0 -e '.[local,dev,train,eval,distilabel]'": INSTALL,
    "HF_HUB_OFFLINE=1 python -m pytest": "ci: the second quickstart command, whole, is what .ci/run runs (checked)",
    "pip install .": INSTALL,
    "pip install '.[local]'": INSTALL,
    "pip install '.[vllm]'": INSTALL,
    "pip install '.[train]'": INSTALL,
    "pip install '.[eval]'": INSTALL,
    "pip install '.[dev]'": INSTALL,
    "pip install '.[distilabel]'": INSTALL,
    "export OPENAI_API_KEY=...": f"env: run in order, with ... = {KEY}",
    "export OPENAI_API_KEY=EMPTY": "env: run in order, as written",
    "export HF_TOKEN=...": f"env: run in order, with ... = {HF_TOKEN}",
    "python benchmarks/client_throughput.py": "benchmark: the file exists and `--help` exits 0",
    "python benchmarks/dedup.py": "benchmark: the file exists and `--help` exits 0",
    "python benchmarks/rouge_novelty.py": "benchmark: the file exists and `--help` exits 0",
    "python benchmarks/zephyr_cpu.py": "benchmark: the file exists and `--help` exits 0",
    "python benchmarks/train_gpu.py": "benchmark: the file exists and `--help` exits 0 (it lists its smoke mode, --cpu-smoke)",
    "bash benchmarks/gpu_check.sh": "benchmark: the file exists, parses (bash -n) and has the SMOKE=1 mode it documents",
}


def apply_subs(command: str, subs: tuple[Sub, ...]) -> str:
    for sub in subs:
        assert sub.old in command, f"stale substitution {sub.old!r} -> {sub.new!r}: not in {command!r}"
        command = command.replace(sub.old, sub.new)
    return command


def test_the_table_holds_exactly_the_readme_commands():
    commands = readme_commands()
    distill = [c for c in commands if c.startswith("distill ")]
    others = [c for c in commands if not c.startswith("distill ")]
    missing = [c for c in distill if c not in COMMANDS]
    assert not missing, "README commands with no way to run them in tests/test_readme.py COMMANDS:\n" + "\n".join(missing)
    stale = [c for c in COMMANDS if c not in distill]
    assert not stale, "COMMANDS entries the README no longer has:\n" + "\n".join(stale)
    unlisted = [c for c in others if c not in OTHER_COMMANDS]
    assert not unlisted, "README commands not accounted for in OTHER_COMMANDS:\n" + "\n".join(unlisted)
    gone = [c for c in OTHER_COMMANDS if c not in others]
    assert not gone, "OTHER_COMMANDS entries the README no longer has:\n" + "\n".join(gone)


def test_every_substitution_replaces_text_the_readme_command_holds():
    for command, how in COMMANDS.items():
        if how.openai_env:  # OPENAI_BASE_URL stands in for OpenAI; as written, the command must choose OpenAI itself
            assert "--backend openai" in command, f"without --backend openai this runs on llama.cpp: {command}"
        for variant in how.variants:
            apply_subs(command, how.subs + variant)  # asserts each `old` is there
        for sub in how.subs + sum(how.variants, ()):
            assert sub.why, (command, sub)


OPTIONAL = re.compile(r"\[(-[^\[\]]*)\]")  # [--flag VALUE]: an optional part of a synopsis


def unbracket(command: str) -> str:
    """A synopsis with every optional part taken."""
    return OPTIONAL.sub(r"\1", command)


PLACEHOLDER = re.compile(r"\[-|\bRUN_DIR\b|\bFILE_OR_DATASET\b|\bBRANCH\b|\bTEXT\b|(?<![\w-])M\d?(?![\w-])|\w+\|\w+")


def test_synopses_are_marked_and_filled():
    """A command with placeholders is a synopsis, and its substitutions leave none."""
    for command, how in COMMANDS.items():
        assert bool(PLACEHOLDER.search(command)) == how.synopsis, command
        for variant in how.variants:
            filled = unbracket(apply_subs(command, how.subs + variant))
            assert not PLACEHOLDER.search(filled), (command, filled)


# -- checking synopses against --help --------------------------------------------------------------


def subcommand(argv: list[str]) -> list[str]:
    path = []
    for arg in argv[1:]:
        if arg.startswith("-") or "/" in arg or "." in arg:
            break
        path.append(arg)
    return path


@pytest.mark.parametrize("command", [c for c, h in COMMANDS.items() if h.synopsis])
def test_a_synopsis_shows_only_flags_and_choices_the_command_has(cli, command):
    argv = shlex.split(unbracket(command))
    path = subcommand(argv)
    help_text = cli(*path, "--help")
    assert help_text.code == 0, help_text.err
    flags = [a for a in argv if re.fullmatch(r"--?[a-z][\w-]*", a)]
    assert flags
    for flag in flags:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text.out), f"{' '.join(path)} has no {flag}"
    for i, arg in enumerate(argv):
        if "|" in arg:  # choices: every one shown is one the option takes
            shown = set(arg.split("|"))
            offered = re.search(rf"{re.escape(argv[i - 1])} \[([^\]]+)\]", help_text.out)
            assert offered and shown <= set(offered.group(1).split("|")), (argv[i - 1], shown)


# -- the commands that are not distill's ------------------------------------------------------------


def test_the_test_command_is_what_ci_runs():
    """The README's second quickstart command, as it is written, is a line of .ci/run."""
    blocks = [b.strip() for b in bash_blocks(README.read_text(encoding="utf-8"))]
    tests = [b for b in blocks if "python -m pytest" in b]
    assert len(tests) == 1 and "\n" not in tests[0], tests
    assert tests[0] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_install_lines_name_extras_that_exist():
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for command, how in OTHER_COMMANDS.items():
        if how == INSTALL and "pip install" in command:
            named = re.search(r"'\.\[([\w,]+)\]'", command)
            assert named is None or set(named.group(1).split(",")) <= extras, command


@pytest.mark.parametrize("command", [c for c, h in OTHER_COMMANDS.items() if h.startswith("benchmark")])
def test_benchmarks_exist_and_answer_help(command):
    tool, script = command.split()
    path = ROOT / script
    assert path.is_file(), script
    if tool == "python":
        done = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120,
                              cwd=ROOT, check=False)
        assert done.returncode == 0 and "usage:" in done.stdout, done.stderr
    else:
        assert subprocess.run(["bash", "-n", str(path)], capture_output=True, timeout=30, check=False).returncode == 0
        source = path.read_text()
        assert f"SMOKE=1 {command}" in source and '"${SMOKE:-}"' in source


# -- what stands in for OpenAI, the GPU servers, vLLM and the Hub ------------------------------------


def shaped_request(model: str, messages=None, prompt=None, params: dict | None = None, schema=None, prefix=None):
    from distill.request import Request, SamplingParams

    params = params or {}
    names = ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty")
    sampling = SamplingParams(**{k: (tuple(v) if k == "stop" else v) for k, v in params.items() if k in names and v is not None})
    if messages is not None:
        return Request.chat(model, messages, sampling, answer_prefix=prefix, json_schema=schema)
    return Request.text(model, prompt, sampling)


def loopback_reply(body: dict) -> str:
    """The loopback server's reply: in the shape the request asks for (the fake backend's)."""
    from distill.backends.fake_replies import shaped_reply

    fmt = body.get("response_format") or {}
    schema = fmt.get("json_schema", {}).get("schema") if isinstance(fmt, dict) else None
    return shaped_reply(shaped_request(body["model"], body.get("messages"), body.get("prompt"), body, schema))


class ShapedEngine:
    """vLLM's AsyncLLMEngine as VLLMBackend uses it, answering in the shape each prompt asks for.
    Its tokenizer renders a chat as JSON (then the answer prefix after a NUL) and encodes characters
    as token ids, so the engine reads back what was asked."""

    def __init__(self, model: str):
        self.model = model
        self.requests = 0

    def get_tokenizer(self):
        return self

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return json.dumps(messages) + "\0"

    def encode(self, text, add_special_tokens=True):
        return [ord(c) for c in text]

    async def generate(self, prompt, params, request_id):
        from distill.backends.fake_replies import shaped_reply

        self.requests += 1
        structured = params.pop("structured_outputs", None)
        if isinstance(prompt, dict):
            chat, _, prefix = "".join(map(chr, prompt["prompt_token_ids"])).partition("\0")
            messages = json.loads(chat)
            request = shaped_request(self.model, messages, None, params, structured and structured["json"], prefix or None)
            text = shaped_reply(request)
            text = text[len(prefix):] if prefix and text.startswith(prefix) else text
            prompt_len = sum(len(m["content"]) for m in messages) + len(prefix)  # a token a character, as encoded
        else:
            text, prompt_len = shaped_reply(shaped_request(self.model, None, prompt, params)), len(prompt.split())
        words, finish = text.split(" "), "stop"
        if len(words) > params["max_tokens"]:
            text, finish = " ".join(words[: params["max_tokens"]]), "length"
        used = min(len(words), params["max_tokens"])
        completion = types.SimpleNamespace(text=text, finish_reason=finish, token_ids=list(range(used)))
        yield types.SimpleNamespace(outputs=[completion], prompt_token_ids=list(range(prompt_len)), finished=True)

    async def abort(self, request_id):
        pass

    def shutdown(self):
        pass


def standin_vllm(engines: list) -> types.ModuleType:
    """A module `vllm` with what VLLMBackend imports from it."""
    module = types.ModuleType("vllm")

    class AsyncEngineArgs:
        def __init__(self, model, tensor_parallel_size=1, **kwargs):
            self.model = model

    class AsyncLLMEngine:
        @staticmethod
        def from_engine_args(args):
            engines.append(ShapedEngine(args.model))
            return engines[-1]

    sampling_params = types.ModuleType("vllm.sampling_params")
    sampling_params.StructuredOutputsParams = lambda json: {"json": json}
    module.AsyncEngineArgs, module.AsyncLLMEngine = AsyncEngineArgs, AsyncLLMEngine
    module.SamplingParams = lambda **kwargs: dict(kwargs)
    module.sampling_params = sampling_params
    return module


# -- the checks ------------------------------------------------------------------------------------


@dataclass
class Ctx:
    root: Path  # the scratch folder of place "main"
    servers: dict[str, LoopbackServer]
    hub: StandInHub
    engines: list = field(default_factory=list)
    place: Path | None = None
    variant: int = 0
    before: dict = field(default_factory=dict)  # server -> (answers, keys seen) before the command ran

    def mark(self) -> None:
        self.before = {name: (s.stats.answered_total, len(s.stats.keys_seen)) for name, s in self.servers.items()}

    def asked(self, name: str) -> tuple[int, set[str]]:
        """What server `name` answered while the command ran, and the keys it was sent."""
        stats, (answers, keys) = self.servers[name].stats, self.before[name]
        return stats.answered_total - answers, set(stats.keys_seen[keys:])

    def path(self, rel: str) -> Path:
        return (self.place or self.root) / rel


def prompt_count() -> int:
    return len((ROOT / "examples" / "prompts.jsonl").read_text().splitlines())


def split_rows(run: Path, split: str | None = None) -> int:
    import pyarrow.parquet as pq

    base = run / "data" if (run / "data").is_dir() else run  # a companion config has its own folder
    shards = sorted(base.glob(f"{split or '*'}-*.parquet"))
    assert shards, f"no {split or ''} shards in {run}"
    return sum(pq.read_metadata(s).num_rows for s in shards)


def check_rows(ctx: Ctx, rel: str, split: str | None = None, exactly: int | None = None) -> None:
    rows = split_rows(ctx.path(rel), split)
    assert rows > 0 and (exactly is None or rows == exactly), (rel, split, rows, exactly)


def check_results(ctx: Ctx, rel: str) -> None:
    """An evaluation wrote its report and a chart into results/."""
    results = ctx.path(rel) / "results"
    assert (results / "results.md").is_file(), rel
    assert any(path.read_bytes().startswith(b"\x89PNG") for path in results.glob("*.png")), rel


def check_server(ctx: Ctx, name: str, key: str | None = None) -> None:
    """The server was asked, with `key` (default: the run's key, OPENAI_API_KEY as the exports left it)."""
    key = os.environ["OPENAI_API_KEY"] if key is None else key
    answers, keys = ctx.asked(name)
    assert answers > 0, f"the {name} server was asked nothing"
    assert keys == {f"Bearer {key}"}, (name, keys)


def check_quickstart(ctx: Ctx) -> None:
    check_rows(ctx, "runs/ultrachat", "train_sft")
    stats = json.loads(ctx.path("runs/ultrachat/stats.json").read_text())
    assert stats["models"] == ["smollm2-135m-instruct"], stats["models"]
    card = ctx.path("runs/ultrachat/README.md").read_text()
    assert card.startswith("---") and "train_sft" in card
    import datasets  # the README: `datasets.load_dataset("runs/ultrachat")` loads it as it is

    loaded = datasets.load_dataset("runs/ultrachat")
    assert {"prompt", "prompt_id", "messages"} <= set(loaded["train_sft"].column_names)


def check_batches(ctx: Ctx) -> None:
    assert ctx.servers["openai"].stats.batches_created > 0
    assert ctx.path("runs/ultrachat/batches.jsonl").is_file()


def check_train_dry_run(ctx: Ctx, result, dataset: str, processes: int, learning_rate: str | None = None) -> None:
    import yaml

    out = result.out
    if processes > 1:
        assert f"--num_processes {processes}" in out, out
    resolved = yaml.safe_load(out[out.index("stage:"):])
    assert [d["path"] for d in resolved["datasets"]] == [dataset]
    # The dataset is local, so the dry run checked it (it names what it could not check offline).
    unchecked = [line for line in result.err.splitlines() if line.startswith("not checked")]
    assert not any(dataset in line for line in unchecked), unchecked
    if learning_rate:
        assert f"learning_rate: {learning_rate}" in out
    assert not ctx.path(resolved["output_dir"]).exists()  # a dry run writes nothing


def check_dpo(ctx: Ctx, result) -> None:
    if result.code == 0:  # deepspeed is installed here: the dry run went through
        assert "--num_processes 8" in result.out and "deepspeed_zero3" in result.out, result.out
    assert not ctx.path("runs/zephyr-7b-dpo-handbook").exists()


def check_zephyr(ctx: Ctx, result) -> None:
    if ctx.variant == 0:  # the dry run
        assert "--num_processes 8" in result.out and not ctx.path("runs/zephyr/ultrachat").exists(), result.out
        return
    check_rows(ctx, "runs/zephyr/ultrachat", "train_sft")
    check_rows(ctx, "runs/zephyr/ultrachat-clean", "train_sft")
    check_rows(ctx, "runs/zephyr/feedback", "train_prefs")
    assert not ctx.path("runs/zephyr/sft").exists()
    check_server(ctx, "openai")
    for n in (1, 2, 3):  # a MODEL@URL is sent no key: the run's key belongs to the run's endpoints
        check_server(ctx, f"gpu{n}", key="no-key")


def check_push(ctx: Ctx, result) -> None:
    assert "my-org/my-dataset" in result.out, result.out
    calls = ctx.hub.calls
    assert calls[0][:2] == ("create_repo", "my-org/my-dataset") and calls[0][2]["private"] is True
    assert ("create_branch", "my-org/my-dataset") in [c[:2] for c in calls]
    assert calls[-1][2]["revision"] == "draft"
    assert "README.md" in ctx.hub.uploaded and "data/train_sft-00000-of-00001.parquet" in ctx.hub.uploaded
    assert 'load_dataset("my-org/my-dataset")' in ctx.hub.uploaded["README.md"].decode()
    for path in ctx.path("runs/ultrachat").rglob("*"):
        if path.is_file():
            assert HF_TOKEN.encode() not in path.read_bytes(), path


def check_view(ctx: Ctx, page: str, tabs: list[str], rows_of: tuple[str, str] | None = None) -> None:
    """The page holds a tab per run, and (for one run) a sample per row of the splits it shows (a preference
    run's `*_sft` splits repeat its `*_prefs` rows, and are shown once)."""
    html = ctx.path(page).read_text(encoding="utf-8")
    report = json.loads(re.search(r'<script type="application/json" id="distill-report">(.*?)</script>', html, re.DOTALL)[1])
    assert [run["name"] for run in report["runs"]] == tabs, report["runs"]
    if rows_of:
        import pyarrow.parquet as pq

        run, splits = rows_of
        rows = sum(pq.read_metadata(shard).num_rows for shard in (ctx.path(run) / "data").glob(f"{splits}-*.parquet"))
        assert report["runs"][0]["samples"]["count"] == rows > 0


def check_stats_table(result) -> None:
    assert "train_sft" in result.out and "messages per dialogue" in result.out, result.out


def check_stats_json(ctx: Ctx, result) -> None:
    stats = json.loads(result.out)
    assert stats["splits"]["train_sft"]["rows"] == split_rows(ctx.path("runs/ultrachat"), "train_sft") > 0


def check_merge(ctx: Ctx) -> None:
    merged = split_rows(ctx.path("runs/ultrachat"), "train_sft")
    assert merged == sum(split_rows(ctx.path(f"runs/uc-{k}"), "train_sft") for k in range(4)) > 0
    assert len(ctx.engines) == 4 and all(e.requests for e in ctx.engines)


# -- the files the README's commands read --------------------------------------------------------------


def write_inputs(main: Path, readme: str) -> None:
    shutil.copytree(ROOT / "examples", main / "examples")
    plans = [b for b in yaml_blocks(readme) if re.search(r"^filters:", b, re.MULTILINE)]
    assert len(plans) == 1, "the README's filters.yaml block"
    (main / "filters.yaml").write_text(plans[0])
    (main / "blocklist.txt").write_text("lorem ipsum\nforbidden phrase\n")
    write_jsonl(main / "mt_bench.jsonl", [
        {"question_id": 81, "category": "writing", "turns": [
            "Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural experiences.",
            "Rewrite your previous response. Start every sentence with the letter A."]},
        {"question_id": 111, "category": "math",
         "turns": ["The vertices of a triangle are at points (0, 0), (-1, 1), and (3, 3). What is its area?"]},
    ])
    write_jsonl(main / "alpaca_eval.jsonl", [
        {"instruction": "What are the names of some famous actors that started their careers on Broadway?"},
        {"instruction": "How did US states get their names?"},
    ])
    (main / "topics.txt").write_text("Gardening\nRailways\nAstronomy\n")
    write_jsonl(main / "corpus.jsonl", [
        {"text": "The harbour town grew around its fish market, and its lighthouse still guides the ferries home at night."},
        {"text": "Bees keep a hive warm in winter by shivering their flight muscles while clustering around the queen."},
    ])
    seeds = [  # (instruction, input, output, is_classification)
        ("Is there anything I can eat for a breakfast that doesn't include eggs, yet includes protein?", "",
         "Yes, a bowl of oatmeal with nuts and Greek yogurt.", False),
        ("Classify the sentiment of the sentence into positive or negative.", "I loved every minute of the concert.",
         "positive", True),
        ("Give an antonym of the given word and use it in a sentence.", "generous",
         "Stingy: the stingy landlord never fixed the heating.", False),
        ("Suggest a name for a small bakery that sells sourdough bread.", "", "The Patient Loaf", False),
        ("Convert the temperature from Celsius to Fahrenheit.", "25 degrees Celsius", "77 degrees Fahrenheit", False),
        ("Tell whether the number is prime or composite.", "91", "composite", True),
        ("Write a polite reply declining an invitation to a weekend hiking trip.", "",
         "Thank you for thinking of me; I have plans that weekend, but I hope you have a wonderful hike.", False),
        ("Summarise the paragraph in one sentence.", "The canal was dug in 1820 to carry coal from the hills to the port.",
         "A canal built in 1820 carried coal from the hills to the port.", False),
    ]
    write_jsonl(main / "seed_tasks.jsonl", [  # the shape of Self-Instruct's seed_tasks.jsonl
        {"id": f"seed_task_{i}", "name": f"task_{i}", "instruction": instruction, "is_classification": is_classification,
         "instances": [{"input": given, "output": output}]}
        for i, (instruction, given, output, is_classification) in enumerate(seeds)
    ])
    (main / "roles.txt").write_text("1. Accountant\n2. Gardener\n3. Programmer\n")
    (main / "users.txt").write_text("1. Student\n2. Teacher\n3. Shopkeeper\n")
    (main / "my-recipe.yaml").write_text(
        "stage: sft\nmodel:\n  name_or_path: mistralai/Mistral-7B-v0.1\ndatasets:\n  - path: runs/clean\n"
        "output_dir: runs/my-sft\ntraining:\n  num_train_epochs: 1\n  max_length: 1024\n")


# -- running them all, in README order ----------------------------------------------------------------


def run_export(command: str, monkeypatch) -> None:
    name, _, value = command.removeprefix("export ").partition("=")
    monkeypatch.setenv(name, {"OPENAI_API_KEY": KEY, "HF_TOKEN": HF_TOKEN}[name] if value == "..." else value)


def test_every_readme_command_runs_in_order(cli, tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp", reason="the quickstart runs on the embedded model (the 'local' extra)")
    pytest.importorskip("trl", reason="the train commands' dry runs need the 'train' extra")
    import huggingface_hub

    readme = README.read_text(encoding="utf-8")
    places = {name: tmp_path / name for name in ("main", "batch", "shards")}
    for place in places.values():
        place.mkdir()
    write_inputs(places["main"], readme)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    deepspeed = importlib.util.find_spec("deepspeed") is not None

    with LoopbackServer(reply=loopback_reply) as openai, LoopbackServer(reply=loopback_reply) as gpu1, \
            LoopbackServer(reply=loopback_reply) as gpu2, LoopbackServer(reply=loopback_reply) as gpu3:
        servers = {"openai": openai, "gpu1": gpu1, "gpu2": gpu2, "gpu3": gpu3}
        ctx = Ctx(root=places["main"], servers=servers, hub=StandInHub())
        ran = set()
        for command in readme_commands(readme):
            if command.startswith("export "):
                run_export(command, monkeypatch)
                continue
            if not command.startswith("distill "):
                continue  # accounted for by the tests above
            how = COMMANDS[command]
            ctx.place = places[how.place]
            monkeypatch.chdir(ctx.place)
            for ctx.variant, variant in enumerate(how.variants):
                text = unbracket(apply_subs(command, how.subs + variant))
                for name, server in servers.items():
                    text = text.replace(f"<{name}>", server.url)
                ctx.mark()
                with monkeypatch.context() as scope:
                    if how.openai_env:
                        scope.setenv("OPENAI_BASE_URL", openai.url)
                    if how.vllm:
                        scope.setitem(sys.modules, "vllm", standin_vllm(ctx.engines))
                    if how.hub:
                        scope.setattr(huggingface_hub, "HfApi", lambda token=None: ctx.hub)
                    result = cli(*shlex.split(text)[1:])
                expect = how.expect_error if not deepspeed else None
                if expect:
                    assert result.code != 0 and result.err.strip() == expect, (text, result.err)
                else:
                    assert result.code == 0, f"{text}\n{result.err}"
                    assert "Traceback" not in result.err, result.err
                how.check(ctx, result)
            ran.add(command)
        assert ran == set(COMMANDS)

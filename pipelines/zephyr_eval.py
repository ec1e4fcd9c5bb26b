"""The closing steps of `distill zephyr`: the base, dSFT and dDPO models asked the same questions
after training, on the `transformers` backend, and judged.

- before/after (`--compare-prompts`): `distill eval pairwise`, dSFT and dDPO against the base;
- eval (`--eval`): `distill eval mt-bench` of the three, the paper's ablation (Zephyr's table 2
  compares dSFT, dDPO and both on MT-Bench and AlpacaEval); the win rate against the base is also
  read from the grades, as FastChat does with single-answer grades (a difference within 0.1 is a tie).

The base model is asked through the dSFT model's chat template (Zephyr's: a base model has none), so
the three models see the same tokens and differ in weights only. OUT/results.md gathers the table
and every question's answers side by side.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from distill.errors import ConfigError
from distill.inputs import load_rows
from distill.run_dir import write_atomic

COMPARE_PROMPTS = "zephyr/compare_prompts.jsonl"  # in distill.prompts: held-out prompts for the before/after
BASE_CHAT = "base-chat"  # OUT/base-chat: the base model's weights beside the dSFT tokenizer
RESULTS = "results.md"  # OUT/results.md
TIE_DELTA = 0.1  # FastChat: single-answer grades this close are a tie
LABELS = ("base", "dSFT", "dDPO")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "tokenizer.model")


def compare_prompts(value: str) -> str:
    from importlib import resources

    return str(resources.files("distill.prompts").joinpath(COMPARE_PROMPTS)) if value == "builtin" else value


def trained_models(config: Any, training: list) -> list:
    """The base (as BASE_CHAT, made when the step starts), dSFT and dDPO models as transformers specs."""
    from distill.backends.router import ModelSpec

    sft, dpo = (str(step.recipe.output_dir) for step in training)
    return [ModelSpec(str(Path(config.output) / BASE_CHAT), "transformers"), ModelSpec(sft, "transformers"),
            ModelSpec(dpo, "transformers")]


def compare_config(config: Any, engine: dict[str, Any], training: list):
    """The before/after step's `eval pairwise` settings: dSFT and dDPO against the base."""
    from distill.config import validate_config
    from distill.pipelines.pairwise import PairwiseConfig

    base, sft, dpo = trained_models(config, training)
    return validate_config(PairwiseConfig, {
        **engine, "output": Path(config.output) / "compare", "input": compare_prompts(config.compare_prompts),
        "models": [sft, dpo], "baseline": base, "judge": config.judge, **config.pairwise,
    })


def eval_config(config: Any, engine: dict[str, Any], training: list):
    """The eval step's `eval mt-bench` settings: base, dSFT and dDPO graded on the questions."""
    from distill.config import validate_config
    from distill.pipelines.mt_bench import MTBenchConfig

    return validate_config(MTBenchConfig, {
        **engine, "output": Path(config.output) / "eval", "input": config.eval,
        "models": trained_models(config, training), "judge": config.judge, **config.mt_bench,
    })


def local_model(name: str) -> str:
    """A model to load from local files: an embedded name or GGUF as its de-quantized folder (made by
    dSFT), a folder as it is, a Hub id as its snapshot in the Hub cache (downloaded by dSFT)."""
    from distill.train import gguf

    path = gguf.gguf_file(name)
    if path is not None:
        return str(gguf.dequantized_folder(path))
    if Path(name).expanduser().is_dir():
        return name
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(name, local_files_only=True)
    except (LocalEntryNotFoundError, ValueError):
        raise ConfigError(f"the steps after training load {name} from local files, and it is not in the Hub cache") from None


def with_tokenizer(weights: Path, tokenizer: Path, into: Path) -> Path:
    """A model folder of `weights`' model (its files linked, not copied) with `tokenizer`'s tokenizer
    and chat template."""
    into.mkdir(parents=True, exist_ok=True)
    for source, names in ((weights, None), (tokenizer, TOKENIZER_FILES)):
        for path in source.iterdir():
            if path.is_file() and ((path.name in names) if names else path.name not in TOKENIZER_FILES):
                target = into / path.name
                target.unlink(missing_ok=True)
                if names:
                    shutil.copyfile(path, target)
                else:
                    target.symlink_to(path.resolve())
    return into


def make_base_chat(config: Any, models: list) -> None:
    """OUT/base-chat, from the base model and the dSFT output (models: base, dSFT, dDPO specs)."""
    with_tokenizer(Path(local_model(config.base_model)), Path(models[1].model), Path(models[0].model))


def labels(models: list) -> dict[str, str]:
    return dict(zip((m.model for m in models), LABELS))


def before_after(compare, config: Any) -> dict[str, Any]:
    """The before/after step: returns the win-rate table, with the models named base/dSFT/dDPO."""
    from distill.pipelines import pairwise

    models = [compare.baseline, *compare.models]
    make_base_chat(config, models)
    pairwise.run(compare)
    names = labels(models)
    rows = [{**row, "model": names.get(row["model"], row["model"])}
            for row in load_rows(str(compare.output), "train")]
    return {"table": pairwise.win_rates(rows, compare.bootstrap, compare.seed), "rows": rows}


def evaluate(ev, config: Any) -> dict[str, Any]:
    """The eval step: MT-Bench scores of base, dSFT and dDPO, and their win rates against the base
    read from the grades."""
    from distill.pipelines import mt_bench

    make_base_chat(config, ev.models)
    mt_bench.run(ev)
    names = labels(ev.models)
    rows = [{**row, "model": names.get(row["model"], row["model"])}
            for row in load_rows(str(ev.output), "train")]
    return {"table": mt_bench.results(rows), "wins": grade_win_rates(rows), "rows": rows,
            "results": Path(ev.output) / "results" / "results.md"}


def grade_win_rates(rows: list[dict[str, Any]], baseline: str = "base") -> dict[str, dict[str, Any]]:
    """Per model: each graded turn set against the base's grade of the same turn of the same question
    (FastChat's single-grade comparison); ties count half, unreadable grades are left out."""
    base = {(r["question_id"], turn): r[f"score_turn_{turn}"] for r in rows if r["model"] == baseline for turn in (1, 2)}
    wins: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["model"] == baseline:
            continue
        counts = wins.setdefault(row["model"], {"win": 0, "tie": 0, "loss": 0})
        for turn in (1, 2):
            mine, theirs = row[f"score_turn_{turn}"], base.get((row["question_id"], turn))
            if mine is None or theirs is None:
                continue
            counts["win" if mine - theirs > TIE_DELTA else "loss" if theirs - mine > TIE_DELTA else "tie"] += 1
    for counts in wins.values():
        judged = counts["win"] + counts["tie"] + counts["loss"]
        counts["win_rate"] = (counts["win"] + counts["tie"] / 2) / judged if judged else None
    return wins


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def ablation_lines(evaluated: dict[str, Any] | None, compared: dict[str, Any] | None) -> list[str]:
    """The paper's ablation table for this run: per model, the MT-Bench scores and the win rates
    against the base (from the grades, and from the pairwise before/after)."""
    columns = ["model"]
    if evaluated:
        columns += ["MT-Bench turn 1", "turn 2", "overall", "wins vs base (grades)"]
    if compared:
        columns += ["win rate vs base (pairwise)"]
    mt = {row["model"]: row for row in evaluated["table"]} if evaluated else {}
    pair = {row["model"]: row for row in compared["table"]} if compared else {}
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for label in LABELS:
        cells = [label]
        if evaluated:
            row = mt.get(label, {})
            won = evaluated["wins"].get(label)
            cells += [_score(row.get("turn_1")), _score(row.get("turn_2")), _score(row.get("overall")),
                      _rate(won["win_rate"]) if won else "(baseline)"]
        if compared:
            cells.append(_rate(pair[label]["win_rate"]) if label in pair else "(baseline)")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_results(config: Any, evaluated: dict[str, Any] | None, compared: dict[str, Any] | None) -> Path:
    """OUT/results.md: the ablation table, then every question's answers side by side."""
    judge = config.judge.model if config.judge else config.model
    lines = ["# Base, dSFT and dDPO", "",
             f"Base model {config.base_model}, asked through the dSFT model's chat template ({BASE_CHAT}/); "
             f"judge: {judge}.", "", *ablation_lines(evaluated, compared), ""]
    if evaluated:
        lines += ["MT-Bench scores are the judge's 1-10 grades (math, reasoning and coding against a reference); "
                  f"the full report with categories and a radar chart is {evaluated['results']}.", ""]
        for qid in dict.fromkeys(r["question_id"] for r in evaluated["rows"]):
            asked = [r for r in evaluated["rows"] if r["question_id"] == qid]
            lines += ["---", "", f"**Question {qid} ({asked[0]['category']})**", ""]
            for turn, text in enumerate(asked[0]["turns"]):
                lines += [f"*Turn {turn + 1}:* {text}", ""]
                for row in sorted(asked, key=lambda r: LABELS.index(r["model"]) if r["model"] in LABELS else 9):
                    lines.append(f"**{row['model']}** (grade {_score(row[f'score_turn_{turn + 1}'])}): {row['answers'][turn]}\n")
    if compared:
        lines += ["---", "", "## Before/after prompts (pairwise)", ""]
        for prompt in dict.fromkeys(r["prompt"] for r in compared["rows"]):
            mine = [r for r in compared["rows"] if r["prompt"] == prompt]
            lines += [f"**Prompt:** {prompt}", "", f"**base:** {mine[0]['baseline_answer']}\n"]
            lines += [f"**{row['model']}** ({row['outcome']}): {row['answer']}\n" for row in mine]
    path = Path(config.output) / RESULTS
    write_atomic(path, "\n".join(lines) + "\n")
    return path

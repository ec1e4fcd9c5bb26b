"""`distill zephyr`: the Zephyr-7B recipe (Tunstall et al. 2023) in one command.

    1. dSFT data     UltraChat dialogues from the teacher                      OUT/ultrachat
    2. cleaning      near-duplicates, refusals, degenerate turns               OUT/ultrachat-clean
    3. AI feedback   UltraFeedback: a pool of models answers the prompts, a    OUT/feedback
                     judge rates the answers, best vs another becomes a pair
    4. dSFT          the base model on the clean dialogues                     OUT/sft
    5. dDPO          the dSFT model on the preference pairs                    OUT/dpo
    6. before/after  base, dSFT and dDPO answer held-out prompts; a judge      OUT/compare
                     compares dSFT and dDPO with the base (`eval pairwise`);
                     only with --compare-prompts
    7. eval          base, dSFT and dDPO graded MT-Bench's way (`eval          OUT/eval
                     mt-bench`); only with --eval (the cpu profile: the smoke set)
    OUT/results.md gathers the closing steps' table and answers (pipelines/zephyr_eval.py).

Each step writes what its own command would write, where that command would write it,
so any step can be looked at, pushed or re-run alone. Everything is checked before the
first request. Running the command again resumes: generation answers what it already
has from its cache, and a training stage that finished (train_metrics.json) is skipped.

`--profile cpu` sets every default for a laptop CPU with no network: the embedded instruct
model as teacher and judge, the pool {gemma3-270m, smollm2-135m-instruct}, the base Gemma 3
270M (de-quantized from its GGUF) as the model to train, the scaled-down recipes
`zephyr-7b-beta/{sft,dpo}_cpu` and small sizes throughout (`CPU_PROFILE`). Whatever the
user sets wins over the profile.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field, field_validator, model_validator

from distill.backends.router import ModelSpecValue, OptionalModelSpec, comma_separated
from distill.config import EngineConfig, cli, validate_config
from distill.errors import ConfigError
from distill.pipelines import zephyr_eval
from distill.run_dir import remove_created

# The cleaning step when no --filters plan is given: the near-duplicate removal and
# quality filters of `distill filter`, with their defaults.
DEFAULT_FILTERS = {"column": "messages", "filters": ["dedup", "refusal", "degenerate", "repetition"]}
STAGES = ("data", "sft", "dpo")

# The cpu profile's defaults. Sizes are picked so that the whole recipe ends in about a quarter of an
# hour on two cores (the stage times are printed by benchmarks/zephyr_cpu.py).
CPU_PROFILE: dict[str, Any] = {
    "backend": "llamacpp",
    "model": "smollm2-135m-instruct",
    "dialogues": 16,
    "ultrachat": {"world_rounds": "1-2", "creation_rounds": "1-2", "subtopics": "3-5", "questions_per_subtopic": 5,
                  "related_questions": 2, "instructions_per_kind": 5, "max_new_tokens": 320,
                  "user_max_new_tokens": 96, "list_max_new_tokens": 256},
    "num_prompts": 8,
    "pool": ["gemma3-270m", "smollm2-135m-instruct"],
    "ultrafeedback": {"max_new_tokens": 160, "judge_max_new_tokens": 256, "parse_retries": 1},
    "base_model": "gemma3-270m",
    "preset": "cpu",
    "eval": "smoke",
    "mt_bench": {"limit": 6, "max_new_tokens": 96, "judge_max_new_tokens": 128, "structured": True},
}


class ZephyrConfig(EngineConfig):
    profile: Literal["gpu", "cpu"] = Field("gpu", description="gpu: the paper's scale, for GPUs and served "
                                           "teachers; cpu: the whole recipe offline on a laptop CPU with the "
                                           "embedded models, in small sizes (every one an override).")
    dialogues: int = Field(1000, ge=1, description="UltraChat dialogues to generate for dSFT.")
    ultrachat: dict[str, Any] = Field(default_factory=dict, description="More options of `distill generate ultrachat`, "
                                      "by their names (a --config mapping).", json_schema_extra=cli(yaml_only=True))
    filters: Path | None = Field(None, description="A `distill filter run` plan for the dialogues.",
                                 json_schema_extra=cli(show="dedup, refusal, degenerate, repetition"))
    prompts: str | None = Field(None, description="Prompts for UltraFeedback: a file, dataset or Hub id.",
                                json_schema_extra=cli(show="the clean dialogues' opening requests"))
    num_prompts: int | None = Field(None, ge=1, description="Rate at most this many prompts.")
    pool: list[ModelSpecValue] = Field(min_length=2, description="Models that answer the prompts (at least 2): "
                                       "comma-separated specs [BACKEND:]MODEL[@URL][#KEY_ENV].",
                                       json_schema_extra=cli(comma=True))
    judge: OptionalModelSpec = Field(None, description="The model that rates the answers.",
                                     json_schema_extra=cli(show="--model"))
    ultrafeedback: dict[str, Any] = Field(default_factory=dict, description="More options of `distill rate "
                                          "ultrafeedback`, by their names (a --config mapping).",
                                          json_schema_extra=cli(yaml_only=True))
    base_model: str = Field("mistralai/Mistral-7B-v0.1", description="The model to train.")
    preset: Literal["paper", "handbook", "qlora", "cpu"] = Field(
        "handbook", description="The zephyr-7b-beta recipes to train with: paper (the paper's section 4), handbook "
        "(the alignment-handbook's later full recipe), qlora (the handbook's one-GPU QLoRA recipe), cpu (LoRA, "
        "scaled down for a laptop CPU).")
    sft: list[str] = Field(default_factory=list, description="A dSFT recipe override KEY=VALUE, e.g. "
                           "training.learning_rate=1e-5; repeatable.")
    dpo: list[str] = Field(default_factory=list, description="A dDPO recipe override KEY=VALUE; repeatable.")
    num_gpus: int = Field(1, ge=1, description="GPUs to train on.")
    accelerate_config: str | None = Field(None, description="multi_gpu, deepspeed_zero3 or fsdp, or your own accelerate "
                                          "config file.")
    stop_after: Literal["data", "sft", "dpo"] = Field("dpo", description="Stop after the data, or after dSFT.")
    compare_prompts: str | None = Field(None, description="Held-out prompts (a file or dataset, column prompt) that "
                                        "the base, dSFT and dDPO models answer after training, judged pairwise; "
                                        "`builtin` for distill's own set.", json_schema_extra=cli(show="no comparison; "
                                        "builtin with --profile cpu"))
    pairwise: dict[str, Any] = Field(default_factory=dict, description="More options of `distill eval pairwise`, by "
                                    "their names (a --config mapping).", json_schema_extra=cli(yaml_only=True))
    eval: str | None = Field(None, description="Questions on which the base, dSFT and dDPO models are graded after "
                             "training, MT-Bench's way: an MT-Bench question file, a Hub id such as "
                             "HuggingFaceH4/mt_bench_prompts, or `smoke` for distill's small set.",
                             json_schema_extra=cli(show="no eval step; smoke with --profile cpu"))
    mt_bench: dict[str, Any] = Field(default_factory=dict, description="More options of `distill eval mt-bench`, by "
                                     "their names (a --config mapping).", json_schema_extra=cli(yaml_only=True))
    push_to_hub: str | None = Field(None, description="ORG/NAME: push the datasets as NAME-ultrachat and NAME-feedback, "
                                    "the models as NAME-sft and NAME-dpo.")
    private: bool = Field(False, description="Make the pushed repositories private.")

    @model_validator(mode="before")
    @classmethod
    def _profile(cls, data: Any) -> Any:
        """The cpu profile's defaults under what was set (the step mappings merged key by key)."""
        if not isinstance(data, dict) or data.get("profile") != "cpu":
            return data
        profile = dict(CPU_PROFILE)
        if data.get("base_url") or data.get("backend"):  # a teacher named elsewhere: the profile does not place it
            profile.pop("backend"), profile.pop("model")
        merged = {**profile, **data}
        for step in ("ultrachat", "ultrafeedback", "pairwise", "mt_bench"):
            if isinstance(data.get(step), dict) and step in CPU_PROFILE:
                merged[step] = {**CPU_PROFILE[step], **data[step]}
        return merged

    def repo(self, step: str) -> str:
        return f"{self.push_to_hub}-{step}"

    @field_validator("shard", "export_only")
    @classmethod
    def _whole_recipe(cls, value: Any, info) -> Any:
        if value:
            raise ValueError(f"is for the steps' own commands, not for the whole recipe ({info.field_name})")
        return value

    @field_validator("pool", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return comma_separated(value)


@dataclass
class TrainingStep:
    stage: str
    recipe: Any  # distill.train.recipe.Recipe
    command: list[str]
    resolved: Path
    note: str | None


@dataclass
class RecipeSteps:
    ultrachat: Any  # UltraChatConfig
    filters: Any  # FilterFile
    clean: Path
    ultrafeedback: Any  # UltraFeedbackConfig
    training: list[TrainingStep]
    compare: Any = None  # PairwiseConfig: its models are the training outputs, loaded when the step starts
    evaluate: Any = None  # MTBenchConfig, the same models

    @property
    def count(self) -> int:  # the recipe's steps, also those --stop-after leaves out
        return 5 + (self.compare is not None) + (self.evaluate is not None)


def _engine(config: ZephyrConfig) -> dict[str, Any]:
    """The backend, client and run settings every generation step shares."""
    return config.model_dump(include=set(EngineConfig.model_fields) - {"output"})


def _recipe_overrides(path: Path | str, split: str, eval_split: str | None, model: str, output: Path) -> list[str]:
    datasets = json.dumps([{"path": str(path), "split": split}])  # JSON is YAML, and quotes any path
    evals = json.dumps([{"path": str(path), "split": eval_split}] if eval_split else [])
    return [f"model.name_or_path={json.dumps(model)}", f"datasets={datasets}", f"eval_datasets={evals}",
            f"output_dir={json.dumps(str(output))}"]


def plan(config: ZephyrConfig) -> RecipeSteps:
    """Every step's settings, checked; nothing is written or asked yet."""
    from distill.filters.pipeline import FilterFile, read_plan
    from distill.pipelines.ultrachat import UltraChatConfig
    from distill.pipelines.ultrafeedback import UltraFeedbackConfig

    root = Path(config.output)
    engine = _engine(config)
    if config.push_to_hub:
        from distill import hub

        hub.check_repo_id(config.push_to_hub, "--push-to-hub")
        for step in ("ultrachat", "feedback", "sft", "dpo"):  # and each repository named after it
            hub.check_repo_id(config.repo(step), "--push-to-hub")
        hub.hub_api()  # the token, before anything is asked or written (a dry run checks it too)
    for name, extra in (("ultrachat", config.ultrachat), ("ultrafeedback", config.ultrafeedback),
                        ("pairwise", config.pairwise), ("mt_bench", config.mt_bench)):
        shared = sorted(set(extra) & (set(engine) | {"output"}))
        if shared:
            raise ConfigError(f"{name}: {shared[0]!r} is set for every step at the top of the config, not under {name}")
    ultrachat = validate_config(UltraChatConfig, {**engine, "output": root / "ultrachat", "num_dialogues": config.dialogues,
                                                  **config.ultrachat})
    filters = read_plan(config.filters) if config.filters else validate_config(FilterFile, DEFAULT_FILTERS)
    clean = root / "ultrachat-clean"
    prompts = {"input": config.prompts} if config.prompts else {"input": str(clean), "split": "train_sft", "column": "prompt"}
    ultrafeedback = validate_config(UltraFeedbackConfig, {
        **engine, "output": root / "feedback", **prompts, "limit": config.num_prompts, "models": config.pool,
        "judge": config.judge, "completions_per_prompt": min(4, len(config.pool)), **config.ultrafeedback,
    })
    training = []
    if config.stop_after != "data":
        tested = bool(config.test_size)  # then the data has test splits to evaluate on
        sources = {
            "sft": (clean, "train_sft", "test_sft" if tested else None, config.base_model, config.sft),
            "dpo": (root / "feedback", "train_prefs", "test_prefs" if tested else None, str(root / "sft"), config.dpo),
        }
        for stage in STAGES[1:STAGES.index(config.stop_after) + 1]:
            training.append(_training_step(config, stage, *sources[stage], root / stage))
        from distill.train.launch import check_installed

        check_installed(config.accelerate_config)
    after = config.stop_after == "dpo"
    compare = zephyr_eval.compare_config(config, engine, training) if config.compare_prompts and after else None
    evaluate = zephyr_eval.eval_config(config, engine, training) if config.eval and after else None
    if compare is not None or evaluate is not None:
        from distill.eval_stats import require_eval_extra

        require_eval_extra("distill zephyr --compare-prompts/--eval")
    steps = RecipeSteps(ultrachat, filters, clean, ultrafeedback, training, compare, evaluate)
    _check_generation(steps)
    return steps


def _check_generation(steps: RecipeSteps) -> None:
    """The generation steps' backends and models, resolved as their runs resolve them (a GGUF
    found and loaded, a key looked up, prices for a budget) and closed again; their folders."""
    from distill.backends import check_models_have_a_place
    from distill.generation import check
    from distill.pipelines import ultrachat, ultrafeedback

    uc = steps.ultrachat
    check_models_have_a_place(uc, {"ultrachat.assistant_model": uc.assistant_model, "ultrachat.user_model": uc.user_model})
    check(uc, ultrachat.models_of(uc))
    uf = ultrafeedback.resolved(steps.ultrafeedback)
    check(uf, ultrafeedback.models_of(uf))
    if uf.input != str(steps.clean):  # given prompts exist now: read and check them as step 3 will
        ultrafeedback.load_prompts(uf)


def _training_step(config: ZephyrConfig, stage: str, data: Path, split: str, eval_split: str | None, model: str,
                   overrides: list[str], output: Path) -> TrainingStep:
    """A stage's resolved recipe and command, checked as far as it can be before its data exists:
    the recipe's values (through the TRL config the run builds) and output_dir. The data, the
    tokenizer and this machine's GPUs are checked when the stage starts (`run_stage`)."""
    from distill.train.launch import launch_command
    from distill.train.recipe import find_recipe, load_recipe, resolve_batch
    from distill.train.stages import check_output_dir, trl_args

    recipe = load_recipe(find_recipe(f"zephyr-7b-beta/{stage}_{config.preset}"), stage,
                         [*_recipe_overrides(data, split, eval_split, model, output), *overrides])
    note = resolve_batch(recipe, config.num_gpus)
    resolved = recipe.output_dir / "recipe.yaml"
    command = launch_command(stage, resolved, config.num_gpus, config.accelerate_config)
    trl_args(recipe, this_machine=False)
    check_output_dir(recipe.output_dir)
    return TrainingStep(stage, recipe, command, resolved, note)


def describe(steps: RecipeSteps, config: ZephyrConfig) -> list[str]:
    """What `run` would do, step by step, for --dry-run."""
    import shlex

    uc, uf = steps.ultrachat, steps.ultrafeedback
    sectors = ",".join(f"{name}={weight:g}" for name, weight in uc.sectors.items())
    lines = [
        f"1/{steps.count} UltraChat: {uc.num_dialogues} dialogues by {uc.assistant_model or config.model or 'the backend model'} "
        f"({sectors}) -> {uc.output}",
        f"2/{steps.count} cleaning: {', '.join(name for name, _ in steps.filters.filters)} -> {steps.clean}",
        f"3/{steps.count} UltraFeedback: prompts from {uf.input}" + (f" (at most {uf.limit})" if uf.limit else "")
        + f", {uf.completions_per_prompt} of {len(uf.models)} pool models each, judge {uf.judge or config.model or 'the backend model'}"
        f" -> {uf.output}",
    ]
    for number, step in enumerate(steps.training, start=4):
        recipe = step.recipe
        template = ", Zephyr's chat template" if recipe.chat_template == "zephyr" else ""
        lines.append(f"{number}/{steps.count} {step.stage}: {recipe.model.name_or_path}, {recipe.peft.method if recipe.peft.method != 'none' else 'full'}"
                     f"{template} -> {recipe.output_dir}" + (f"; {step.note}" if step.note else ""))
        lines.append("    " + shlex.join(step.command))
    number = 6
    if steps.compare is not None:
        cmp = steps.compare
        lines.append(f"{number}/{steps.count} before/after: {cmp.limit or 'all'} prompts of {cmp.input} answered by "
                     f"{config.base_model}, dSFT and dDPO (transformers backend), dSFT and dDPO judged against the base "
                     f"by {cmp.judge.model if cmp.judge else config.model or 'the backend model'} -> {cmp.output}")
        number += 1
    if steps.evaluate is not None:
        ev = steps.evaluate
        lines.append(f"{number}/{steps.count} eval: {ev.limit or 'all'} questions of {ev.input} answered in two turns by "
                     f"{config.base_model}, dSFT and dDPO (transformers backend), graded 1-10 by "
                     f"{ev.judge.model if ev.judge else config.model or 'the backend model'} -> {ev.output}")
    if config.push_to_hub:
        lines.append(f"push: {', '.join(config.repo(s) for s in ['ultrachat', 'feedback', *(t.stage for t in steps.training)])}")
    return lines


def trained(step: TrainingStep) -> bool:
    return (Path(step.recipe.output_dir) / "train_metrics.json").is_file()


def run(config: ZephyrConfig, say: Callable[[str], None]) -> dict[str, Any]:
    """Run every step in turn; returns what each made and how long it took, for the closing summary."""
    from distill.filters.pipeline import filter_dataset
    from distill.pipelines import ultrachat, ultrafeedback
    from distill.train.launch import check_installed, run_stage

    steps = plan(config)
    check_installed(config.accelerate_config if steps.training else None)
    publish = _publisher(config, say)
    if config.fresh:  # the generation steps start over by themselves, and cleaning rewrites its output whole
        for check_only in (True, False):  # nothing is deleted unless every training output may be
            for step in steps.training:
                remove_created(step.recipe.output_dir, f"the {step.stage} output", check_only)
    summary: dict[str, Any] = {"seconds": {}, "artefacts": {}}

    def timed(name: str, path: Path, work: Callable[[], Any]) -> Any:
        started = time.monotonic()
        result = work()
        summary["seconds"][name] = time.monotonic() - started
        summary["artefacts"][name] = path
        return result

    say(f"1/{steps.count} UltraChat dialogues -> {steps.ultrachat.output}")
    summary["dialogues"] = timed("ultrachat", steps.ultrachat.output, lambda: ultrachat.run(steps.ultrachat)).done
    say(f"2/{steps.count} cleaning -> {steps.clean}")
    removed = timed("cleaning", steps.clean, lambda: filter_dataset(str(steps.ultrachat.output), steps.filters, steps.clean))
    summary["removed"] = {entry["name"]: entry["removed"] for entry in removed}
    summary["dialogues_kept"] = split_rows(steps.clean).get("train_sft", 0)
    publish("ultrachat", steps.clean)
    say(f"3/{steps.count} UltraFeedback preferences -> {steps.ultrafeedback.output}")
    uf = steps.ultrafeedback
    summary["prompts_rated"] = timed("feedback", uf.output, lambda: ultrafeedback.run(uf)).done
    summary["pairs"] = split_rows(uf.output).get("train_prefs", 0)
    publish("feedback", uf.output)
    for number, step in enumerate(steps.training, start=4):
        label = {"sft": "dSFT", "dpo": "dDPO"}[step.stage]
        if trained(step):
            say(f"{number}/{steps.count} {label}: done before, kept in {step.recipe.output_dir}")
            summary["artefacts"][step.stage] = step.recipe.output_dir
        else:
            say(f"{number}/{steps.count} {label} -> {step.recipe.output_dir}" + (f"; {step.note}" if step.note else ""))
            timed(step.stage, step.recipe.output_dir, functools.partial(
                run_stage, step.stage, step.recipe, step.command, step.resolved, config.accelerate_config))
        summary[step.stage] = training_report(step.recipe.output_dir)
        publish(step.stage, step.recipe.output_dir)
    number = 6
    if steps.compare is not None:
        say(f"{number}/{steps.count} before/after -> {steps.compare.output}")
        summary["compare"] = timed("compare", steps.compare.output,
                                   lambda: zephyr_eval.before_after(steps.compare, config))
        number += 1
    if steps.evaluate is not None:
        say(f"{number}/{steps.count} eval -> {steps.evaluate.output}")
        summary["eval"] = timed("eval", steps.evaluate.output, lambda: zephyr_eval.evaluate(steps.evaluate, config))
    if steps.compare is not None or steps.evaluate is not None:
        summary["results"] = zephyr_eval.write_results(config, summary.get("eval"), summary.get("compare"))
        summary["artefacts"]["results"] = summary["results"]
    return summary


def split_rows(path: Path) -> dict[str, int]:
    """Rows per split of the dataset a step wrote (read from its files: datasets' cache of a local
    folder can hand back an earlier run's rows)."""
    from distill.inputs import load_splits

    return {name: len(rows) for name, rows in load_splits(str(path)).items()}


def training_report(output_dir: Path) -> dict[str, Any]:
    """What a finished stage logged: its optimizer steps, train loss and, for DPO, the last logged
    reward accuracy (the share of pairs whose chosen answer the model now rewards more)."""
    folder = Path(output_dir)
    metrics = json.loads((folder / "train_metrics.json").read_text())
    state = folder / "trainer_state.json"
    history = json.loads(state.read_text()).get("log_history", []) if state.is_file() else []
    accuracies = [entry["rewards/accuracies"] for entry in history if "rewards/accuracies" in entry]
    steps = max((entry.get("step", 0) for entry in history), default=None)
    return {"steps": steps, "train_loss": metrics.get("train_loss"),
            "reward_accuracy": accuracies[-1] if accuracies else None}


def _publisher(config: ZephyrConfig, say: Callable[[str], None]) -> Callable[[str, Path], None]:
    """What uploads each step's output with --push-to-hub (again on a resumed run: uploads are
    idempotent, and one that failed is retried); the token is checked before any step."""
    if not config.push_to_hub:
        return lambda step, path: None
    from distill import hub

    hub.hub_api()

    def publish(step: str, path: Path) -> None:
        repo = config.repo(step)
        if step in ("sft", "dpo"):
            hub.push_model(path, repo, private=config.private)
        else:
            hub.push_run(path, repo, private=config.private)
        say(f"    pushed to {repo}")

    return publish

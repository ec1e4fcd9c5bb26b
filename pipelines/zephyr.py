"""`distill zephyr`: the Zephyr-7B recipe (Tunstall et al. 2023) in one command.

    1. dSFT data     UltraChat dialogues from the teacher                      OUT/ultrachat
    2. cleaning      near-duplicates, refusals, degenerate turns               OUT/ultrachat-clean
    3. AI feedback   UltraFeedback: a pool of models answers the prompts, a    OUT/feedback
                     judge rates the answers, best vs another becomes a pair
    4. dSFT          the base model on the clean dialogues                     OUT/sft
    5. dDPO          the dSFT model on the preference pairs                    OUT/dpo

Each step writes what its own command would write, where that command would write it,
so any step can be looked at, pushed or re-run alone. Everything is checked before the
first request. Running the command again resumes: generation answers what it already
has from its cache, and a training stage that finished (train_metrics.json) is skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field, field_validator

from distill.backends.router import ModelSpecValue, OptionalModelSpec, comma_separated
from distill.config import EngineConfig, cli, validate_config
from distill.errors import ConfigError
from distill.run_dir import remove_created

# The cleaning step when no --filters plan is given: the near-duplicate removal and
# quality filters of `distill filter`, with their defaults.
DEFAULT_FILTERS = {"column": "messages", "filters": ["dedup", "refusal", "degenerate", "repetition"]}
STAGES = ("data", "sft", "dpo")


class ZephyrConfig(EngineConfig):
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
    preset: Literal["paper", "handbook", "qlora"] = Field("handbook", description="The zephyr-7b-beta recipes to train "
                                                          "with: paper (the paper's section 4), handbook (the "
                                                          "alignment-handbook's later full recipe), qlora (the "
                                                          "handbook's one-GPU QLoRA recipe).")
    sft: list[str] = Field(default_factory=list, description="A dSFT recipe override KEY=VALUE, e.g. "
                           "training.learning_rate=1e-5; repeatable.")
    dpo: list[str] = Field(default_factory=list, description="A dDPO recipe override KEY=VALUE; repeatable.")
    num_gpus: int = Field(1, ge=1, description="GPUs to train on.")
    accelerate_config: str | None = Field(None, description="multi_gpu, deepspeed_zero3 or fsdp, or your own accelerate "
                                          "config file.")
    stop_after: Literal["data", "sft", "dpo"] = Field("dpo", description="Stop after the data, or after dSFT.")
    push_to_hub: str | None = Field(None, description="ORG/NAME: push the datasets as NAME-ultrachat and NAME-feedback, "
                                    "the models as NAME-sft and NAME-dpo.")
    private: bool = Field(False, description="Make the pushed repositories private.")

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
    for name, extra in (("ultrachat", config.ultrachat), ("ultrafeedback", config.ultrafeedback)):
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
    steps = RecipeSteps(ultrachat, filters, clean, ultrafeedback, training)
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
        f"1/5 UltraChat: {uc.num_dialogues} dialogues by {uc.assistant_model or config.model or 'the backend model'} "
        f"({sectors}) -> {uc.output}",
        f"2/5 cleaning: {', '.join(name for name, _ in steps.filters.filters)} -> {steps.clean}",
        f"3/5 UltraFeedback: prompts from {uf.input}" + (f" (at most {uf.limit})" if uf.limit else "")
        + f", {uf.completions_per_prompt} of {len(uf.models)} pool models each, judge {uf.judge or config.model or 'the backend model'}"
        f" -> {uf.output}",
    ]
    for number, step in enumerate(steps.training, start=4):
        recipe = step.recipe
        template = ", Zephyr's chat template" if recipe.chat_template == "zephyr" else ""
        lines.append(f"{number}/5 {step.stage}: {recipe.model.name_or_path}, {recipe.peft.method if recipe.peft.method != 'none' else 'full'}"
                     f"{template} -> {recipe.output_dir}" + (f"; {step.note}" if step.note else ""))
        lines.append("    " + shlex.join(step.command))
    if config.push_to_hub:
        lines.append(f"push: {', '.join(config.repo(s) for s in ['ultrachat', 'feedback', *(t.stage for t in steps.training)])}")
    return lines


def trained(step: TrainingStep) -> bool:
    return (Path(step.recipe.output_dir) / "train_metrics.json").is_file()


def run(config: ZephyrConfig, say: Callable[[str], None]) -> dict[str, Any]:
    """Run every step in turn; returns what each made, for the closing summary."""
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
    summary: dict[str, Any] = {}
    say(f"1/5 UltraChat dialogues -> {steps.ultrachat.output}")
    summary["dialogues"] = ultrachat.run(steps.ultrachat).done
    say(f"2/5 cleaning -> {steps.clean}")
    removed = filter_dataset(str(steps.ultrachat.output), steps.filters, steps.clean)
    summary["removed"] = {entry["name"]: entry["removed"] for entry in removed}
    publish("ultrachat", steps.clean)
    say(f"3/5 UltraFeedback preferences -> {steps.ultrafeedback.output}")
    summary["prompts_rated"] = ultrafeedback.run(steps.ultrafeedback).done
    publish("feedback", steps.ultrafeedback.output)
    for number, step in enumerate(steps.training, start=4):
        label = {"sft": "dSFT", "dpo": "dDPO"}[step.stage]
        if trained(step):
            say(f"{number}/5 {label}: done before, kept in {step.recipe.output_dir}")
        else:
            say(f"{number}/5 {label} -> {step.recipe.output_dir}" + (f"; {step.note}" if step.note else ""))
            metrics = run_stage(step.stage, step.recipe, step.command, step.resolved, config.accelerate_config)
            summary[f"{step.stage}_train_loss"] = metrics.get("train_loss")
        publish(step.stage, step.recipe.output_dir)
    return summary


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

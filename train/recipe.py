"""Training recipes: a YAML file, `key=value` overrides, validated before anything heavy starts.

Every key is checked: an unknown one is an error that names it (the alignment-handbook
scripts silently drop keys TRL 1.x renamed, such as `max_seq_length`, and then train with
the defaults). `training:` holds TRL's own SFTConfig/DPOConfig arguments, checked against
the dataclass of the installed TRL.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from distill.config import load_yaml, read_yaml_config, validate_config
from distill.errors import ConfigError

Stage = Literal["sft", "dpo"]
# Keys TRL 1.x / transformers 5 renamed or dropped; saying so beats "unknown key".
RENAMED = {
    "max_seq_length": "max_length",
    "torch_dtype": "model.dtype",
    "warmup_ratio": "warmup_steps (a float below 1 is a ratio)",
    "gradient_checkpointing": "activation_checkpointing",
    "max_prompt_length": "max_prompt_length at the top of the recipe (TRL 1.x dropped it; distill applies it)",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(Strict):
    path: str  # a distill run, a saved dataset, a file or a Hub id
    split: str | None = None  # default: train_sft (sft) or train_prefs (dpo), else train
    subset: str | None = None
    revision: str | None = None
    fraction: float = Field(1.0, gt=0, le=1)  # a seeded share of the split


class TrainingModel(Strict):
    name_or_path: str
    revision: str | None = None
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    attn_implementation: Literal["auto", "sdpa", "flash_attention_2", "eager"] = "auto"  # auto: FA2 if installed, else SDPA
    trust_remote_code: bool = False


class PeftSpec(Strict):
    method: Literal["none", "lora", "qlora"] = "none"
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"


class Recipe(Strict):
    stage: Stage
    model: TrainingModel
    datasets: list[DatasetSpec] = Field(min_length=1)
    eval_datasets: list[DatasetSpec] = Field(default_factory=list)
    chat_template: Literal["auto", "zephyr"] = "auto"  # auto: the tokenizer's, else Zephyr's
    # SFT: loss on the assistant's tokens only. Off: the loss is on the whole dialogue, as the
    # Zephyr recipes trained (TRL's default too).
    assistant_only_loss: bool = False
    # An empty system turn before every conversation that has none, when the chat template has
    # system turns: the handbook's auto_insert_empty_system_msg.
    empty_system_turn: bool = False
    # DPO: when prompt + the longer answer pass training.max_length, keep the prompt's last
    # max_prompt_length tokens, then cut the answers to max_length - max_prompt_length (TRL 0.x).
    max_prompt_length: int | None = Field(None, ge=1)
    peft: PeftSpec = Field(default_factory=PeftSpec)
    ref_model: str | None = None  # DPO: an explicit reference model (default: the starting model)
    global_batch_size: int | None = Field(None, ge=1)  # kept when GPUs or the per-device batch change
    output_dir: Path
    seed: int = 42
    push_to_hub: bool = False
    hub_model_id: str | None = None
    training: dict[str, Any] = Field(default_factory=dict)  # TRL SFTConfig / DPOConfig arguments

    def trl_config_class(self):
        if self.stage == "sft":
            from trl import SFTConfig

            return SFTConfig
        from trl import DPOConfig

        return DPOConfig


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`a.b=value` overrides (values read as YAML: 2e-5, true, [x, y])."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"an override is KEY=VALUE, not {item!r}")
        try:
            value = load_yaml(raw)
        except yaml.YAMLError:
            value = raw
        node = values
        *parents, last = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {part} is not a section")
        node[last] = value
    return values


def check_training_keys(recipe: Recipe) -> None:
    """Every `training:` key must be an argument of the installed TRL's config class."""
    known = {f.name for f in dataclasses.fields(recipe.trl_config_class())}
    managed = {"output_dir", "seed", "push_to_hub", "hub_model_id", "assistant_only_loss"}
    for key in recipe.training:
        if key in RENAMED:
            raise ConfigError(f"training key {key!r} is gone in TRL 1.x / transformers 5: use {RENAMED[key]}")
        if key in managed:
            raise ConfigError(f"training key {key!r} is set at the top of the recipe, not under training")
        if key not in known:
            raise ConfigError(f"unknown training key {key!r} for TRL's {recipe.trl_config_class().__name__}")


# Values TRL's config classes take without a word, which the run then refuses at its first
# step (torch's optimizers: a negative learning rate, weight decay or epsilon, betas outside
# [0, 1)) or trains wrongly on (no epochs, empty batches, a negative DPO beta).
BOUNDS: dict[str, tuple[Any, str]] = {
    "learning_rate": (lambda v: v >= 0, ">= 0"),
    "num_train_epochs": (lambda v: v > 0, "> 0"),
    "per_device_train_batch_size": (lambda v: v >= 1, ">= 1"),
    "per_device_eval_batch_size": (lambda v: v >= 1, ">= 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1, ">= 1"),
    "max_length": (lambda v: v is None or v >= 1, ">= 1 (or null)"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "adam_epsilon": (lambda v: v >= 0, ">= 0"),
    "adam_beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "adam_beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "max_grad_norm": (lambda v: v >= 0, ">= 0"),
    "beta": (lambda v: v > 0, "> 0"),
}


_NAMES = {float: "a number", int: "a whole number", bool: "true or false", str: "a string", type(None): "null",
          dict: "a mapping", list: "a list"}


def _type_name(hint: Any) -> str:
    """A declared type in words: `int | None` is "a whole number or null"."""
    if hint in _NAMES:
        return _NAMES[hint]
    parts = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
    if parts:
        return " or ".join(dict.fromkeys(_type_name(part) for part in parts))
    origin = typing.get_origin(hint)
    if origin in _NAMES:
        return _NAMES[origin]
    return re.sub(r"\b(?:[a-z_]\w*\.)+", "", getattr(hint, "__name__", None) or str(hint))


@functools.cache
def _hints(config_class) -> dict[str, Any]:
    return typing.get_type_hints(config_class)


@functools.cache
def _adapter(config_class, key: str):
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(_hints(config_class)[key])
    except Exception:  # a type pydantic cannot check: TRL's own __post_init__ still does
        return None


def training_values(recipe: Recipe) -> dict[str, Any]:
    """The recipe's `training:` values, each checked against the type the installed TRL's config
    class declares and against BOUNDS; a YAML string that reads as the declared type ("2e-5" for
    a float) becomes that type. A bad value is a ConfigError naming its key."""
    check_training_keys(recipe)
    config_class = recipe.trl_config_class()
    values = {}
    for key, value in recipe.training.items():
        hint = _hints(config_class).get(key, Any)
        adapter = _adapter(config_class, key)
        typed = value
        if adapter is not None:
            accepts_bool = hint is bool or bool in typing.get_args(hint) or hint is Any
            try:
                if isinstance(value, bool) and not accepts_bool:
                    raise ValueError("a boolean")
                typed = adapter.validate_python(value)
            except ValueError:
                raise ConfigError(f"training.{key} must be {_type_name(hint)} (for TRL's {config_class.__name__}), "
                                  f"not {value!r}") from None
        if key in BOUNDS and typed is not None:
            holds, wanted = BOUNDS[key]
            try:
                ok = holds(typed)
            except TypeError:  # a type BOUNDS does not compare (a string where a number may also go)
                ok = True
            if not ok:
                raise ConfigError(f"training.{key} must be {wanted}, not {value!r}")
        # What YAML left a string ("2e-5"), or a whole float where an int goes, takes the declared type.
        converted = isinstance(value, str) and not isinstance(typed, str) or isinstance(value, float) and type(typed) is int
        values[key] = typed if converted else value
    return values


def require_training_stack() -> None:
    """The train extra, before anything reads a recipe: a clear line instead of an ImportError."""
    import importlib.util

    missing = [name for name in ("torch", "transformers", "trl") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"training needs {', '.join(missing)}: pip install 'distill[train]' "
                          "(with torch==2.13.0 first on a CPU-only machine, or your CUDA build of torch)")


def load_recipe(path: Path | None, stage: Stage, overrides: list[str]) -> Recipe:
    require_training_stack()
    values = read_yaml_config(path) if path else {}
    declared = values.pop("stage", stage)
    if declared != stage:
        raise ConfigError(f"{path} is a {declared} recipe, not {stage}")
    values = apply_overrides(values, overrides)
    for key in ("max_seq_length", "torch_dtype"):
        if key in values or key in (values.get("model") or {}):
            raise ConfigError(f"recipe key {key!r} is gone in TRL 1.x: use {RENAMED[key]!r}")
    recipe = validate_config(Recipe, {**values, "stage": stage})
    training_values(recipe)
    check_prompt_length(recipe)
    if recipe.push_to_hub:
        from distill.hub import check_repo_id

        if not recipe.hub_model_id:
            raise ConfigError("--push-to-hub needs --hub-model-id org/name (or hub_model_id in the recipe)")
        check_repo_id(recipe.hub_model_id, "--hub-model-id")
    if recipe.peft.method == "qlora":
        _need_gpu_for_qlora()
    return recipe


def check_prompt_length(recipe: Recipe) -> None:
    """max_prompt_length is DPO's, and leaves room for the answers within max_length."""
    if recipe.max_prompt_length is None:
        return
    if recipe.stage != "dpo":
        raise ConfigError("max_prompt_length is for dpo recipes (sft has only max_length)")
    max_length = training_values(recipe).get("max_length", _trl_default(recipe, "max_length"))
    if max_length is None or recipe.max_prompt_length >= max_length:
        raise ConfigError(f"max_prompt_length {recipe.max_prompt_length} leaves no room for the answers within "
                          f"training.max_length {max_length}: make it smaller than max_length")


def _trl_default(recipe: Recipe, key: str) -> Any:
    return {f.name: f.default for f in dataclasses.fields(recipe.trl_config_class())}[key]


def _need_gpu_for_qlora() -> None:
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise ConfigError("QLoRA needs a CUDA GPU (bitsandbytes 4-bit); use peft.method: lora on the CPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("QLoRA needs the bitsandbytes package: pip install bitsandbytes")


def dump_recipe(recipe: Recipe, path: Path) -> None:
    from distill.run_dir import write_atomic

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(path), yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))


def shipped_recipes() -> list[str]:
    from importlib import resources

    root = resources.files("distill.train").joinpath("recipes")
    return sorted(f"{model.name}/{file.name.removesuffix('.yaml')}" for model in root.iterdir() if model.is_dir()
                  for file in model.iterdir() if file.name.endswith(".yaml"))


def find_recipe(name: str) -> Path:
    """A recipe file, or the name of a shipped one (zephyr-7b-beta/sft_paper)."""
    if Path(name).is_file():
        return Path(name)
    if name.removesuffix(".yaml") in shipped_recipes():
        from importlib import resources

        return Path(str(resources.files("distill.train").joinpath("recipes", name.removesuffix(".yaml") + ".yaml")))
    raise ConfigError(f"no recipe {name!r}: not a file, nor a shipped recipe ({', '.join(shipped_recipes())})")


def gradient_accumulation(global_batch_size: int, per_device_batch_size: int, num_processes: int) -> int:
    """Accumulation steps that keep the global batch: global = per device x processes x accumulation."""
    for name, value in (("global batch size", global_batch_size), ("per-device batch size", per_device_batch_size),
                        ("number of processes", num_processes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number >= 1, not {value!r}")
    per_step = per_device_batch_size * num_processes
    steps, left = divmod(global_batch_size, per_step)
    if left or steps < 1:
        raise ConfigError(
            f"global batch size {global_batch_size} is not a multiple of {per_device_batch_size} per device x "
            f"{num_processes} process{'es' if num_processes > 1 else ''} = {per_step}: change global_batch_size, "
            "per_device_train_batch_size or the number of GPUs"
        )
    return steps


def resolve_batch(recipe: Recipe, processes: int) -> str | None:
    """Keep the recipe's global batch size: set gradient accumulation for this many processes."""
    if recipe.global_batch_size is None:
        return None
    defaults = {f.name: f.default for f in dataclasses.fields(recipe.trl_config_class())}
    per_device = recipe.training.get("per_device_train_batch_size", defaults["per_device_train_batch_size"])
    steps = gradient_accumulation(recipe.global_batch_size, per_device, processes)
    before = recipe.training.get("gradient_accumulation_steps")
    recipe.training["gradient_accumulation_steps"] = steps
    changed = f" (the recipe said {before})" if before not in (None, steps) else ""
    return (f"global batch size {recipe.global_batch_size} = {per_device} per device x {processes} "
            f"process{'es' if processes > 1 else ''} x {steps} gradient accumulation steps{changed}")

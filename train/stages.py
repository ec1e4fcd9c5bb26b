"""The dSFT and dDPO stages on TRL's SFTTrainer and DPOTrainer.

    preflight: TRL config, output_dir, Hub token, tokenizer + chat template, data (checked)
    -> model (+ LoRA/QLoRA) -> train (resuming the last complete checkpoint) -> model,
    tokenizer and model card in output_dir

`preflight` is everything a run checks before its first step; `distill train --dry-run`
runs it too (offline), and a real run runs it before writing anything.

A starting model that is an embedded model's name or a GGUF file is de-quantized once into a
cached safetensors folder (`gguf.py`), which is what loads.

A starting model that is itself a LoRA adapter (the output of a LoRA/QLoRA dSFT, say) is
merged into its base first, so that training and DPO's implicit reference model start
from the dSFT model, not from the bare base.

DPO's `max_prompt_length` (gone from TRL 1.x) is applied here, after TRL tokenized the pairs:
see `PromptLengthDPOTrainer`.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.errors import ConfigError, InputError
from distill.train import data, gguf, template
from distill.train.recipe import PeftSpec, Recipe, TrainingModel

EVAL_SPLITS = {"sft": ("test_sft", "test"), "dpo": ("test_prefs", "test")}


def attention(spec: TrainingModel) -> str:
    """FlashAttention-2 when it is installed and a GPU is there, else PyTorch's SDPA."""
    if spec.attn_implementation != "auto":
        return spec.attn_implementation
    import torch

    return "flash_attention_2" if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") else "sdpa"


def weights(spec: TrainingModel) -> str:
    """What the model loads from: its Hub id or folder, or the de-quantized folder of a GGUF (made now if need be)."""
    path = gguf.gguf_file(spec.name_or_path)
    return str(gguf.dequantized_folder(path)) if path else spec.name_or_path


def adapter_base(spec: TrainingModel) -> str | None:
    """The base model of `spec` when it names a LoRA adapter rather than a whole model, else None."""
    if gguf.gguf_file(spec.name_or_path):
        return None
    from transformers.utils import find_adapter_config_file

    found = find_adapter_config_file(spec.name_or_path, revision=spec.revision)
    return json.loads(Path(found).read_text())["base_model_name_or_path"] if found else None


def load_model(spec: TrainingModel, peft: PeftSpec):
    import torch
    from transformers import AutoModelForCausalLM

    dtypes = {"auto": "auto", "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    kwargs: dict[str, Any] = dict(revision=spec.revision, dtype=dtypes[spec.dtype], attn_implementation=attention(spec),
                                  trust_remote_code=spec.trust_remote_code)
    if peft.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            # As the handbook's get_quantization_config: NF4, bf16 compute, no nested quantization.
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=False, bnb_4bit_compute_dtype=torch.bfloat16
        )
    base = adapter_base(spec)
    if base is None:
        return AutoModelForCausalLM.from_pretrained(weights(spec), **kwargs)
    from peft import PeftModel

    kwargs["revision"] = None  # the revision named is the adapter's
    model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    return PeftModel.from_pretrained(model, spec.name_or_path, revision=spec.revision).merge_and_unload()


def save_merged(recipe: Recipe) -> None:
    """Replace the LoRA adapter in output_dir by the whole model, merged in the recipe's dtype.

    For a run that started from an adapter: the new adapter was trained on top of the merged
    start, so on its own (applied to the bare base) it would be the wrong model.
    """
    from peft import PeftModel

    output_dir = Path(recipe.output_dir)
    start = load_model(recipe.model, recipe.peft.model_copy(update={"method": "none"}))  # unquantized
    PeftModel.from_pretrained(start, str(output_dir)).merge_and_unload().save_pretrained(str(output_dir))
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        (output_dir / name).unlink(missing_ok=True)


def lora_config(peft: PeftSpec):
    if peft.method == "none":
        return None
    from peft import LoraConfig

    return LoraConfig(r=peft.r, lora_alpha=peft.alpha, lora_dropout=peft.dropout, target_modules=peft.target_modules,
                      task_type="CAUSAL_LM")


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest complete checkpoint-N in output_dir (one with its trainer state saved)."""
    if not Path(output_dir).is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir))


def trl_args(recipe: Recipe, this_machine: bool = True):
    """The SFTConfig / DPOConfig the run trains with, built from the resolved recipe: the one place
    it is built, for the run and for every check before it. What TRL refuses is a ConfigError naming
    the key.

    this_machine=False checks the values alone (a dry run, the launcher of accelerate's workers, a
    plan made before its stage runs): no device is set up, and `bf16`/`tf32` are not held against
    this machine's GPUs; the process that trains checks them.
    """
    import warnings

    from distill.train.recipe import training_values

    config_class = recipe.trl_config_class()
    values = training_values(recipe)
    fixed = dict(output_dir=str(recipe.output_dir), seed=recipe.seed)
    if recipe.stage == "sft":
        fixed["assistant_only_loss"] = recipe.assistant_only_loss
    if not this_machine:
        values.pop("tf32", None)
        fixed["use_cpu"] = True

    def build(training: dict[str, Any]):
        return config_class(**fixed, **{k: v for k, v in training.items() if k not in fixed})

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            args = build(values)
        except (ValueError, TypeError, OSError) as err:
            raise _refused(config_class, values, build, err) from None
    for warning in said if this_machine else ():  # once the config stands (an error stays the one line on
        # stderr), and only from the run: a check repeats nothing of TRL's deprecation talk
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return args


def _refused(config_class, values: dict[str, Any], build, err: Exception) -> ConfigError:
    """The key whose value TRL refused: the one whose absence makes the config stand."""
    reason = " ".join(str(err).split())[:400]
    for key in values:
        try:
            build({k: v for k, v in values.items() if k != key})
        except (ValueError, TypeError, OSError):
            continue
        return ConfigError(f"training.{key} = {values[key]!r}: TRL's {config_class.__name__} refuses it: {reason}")
    return ConfigError(f"TRL's {config_class.__name__} refuses the recipe's training settings: {reason}")


def check_output_dir(output_dir: Path) -> None:
    """output_dir must be a directory, or a path where one can be made (no file on the way)."""
    path = Path(output_dir)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                where = "" if part == path else f": {part} is a file"
                raise ConfigError(f"output_dir {path} is not a directory{where or ' (it is a file)'}")
            return


@dataclass
class Preflight:
    """What the checks before a run found, kept for the run that follows in the same process."""

    args: Any  # the TRL config (values only, unless `ready`)
    ready: bool = False  # made in and for the process that trains: `train` goes on from it
    notes: list[str] = field(default_factory=list)  # lines for the user (stderr)
    template: str | None = None  # template.OWN / REPLACED / ADDED; None: not known (a dry run without the tokenizer)
    tokenizer: Any = None
    train_data: Any = None
    eval_data: Any = None


def _tokenizer(recipe: Recipe, offline: bool):
    from transformers import AutoTokenizer

    spec = recipe.model
    source = spec.name_or_path
    path = gguf.gguf_file(source)
    if path is not None:  # a dry run converts nothing: the tokenizer is checked once the GGUF is de-quantized
        if offline and not gguf.cached_folder(path).is_dir():
            return None
        source = str(gguf.dequantized_folder(path))
    try:
        return AutoTokenizer.from_pretrained(source, revision=spec.revision, trust_remote_code=spec.trust_remote_code,
                                             local_files_only=offline)
    except (OSError, ValueError) as err:
        if offline:
            return None
        raise InputError(f"cannot load the tokenizer of {spec.name_or_path}: {' '.join(str(err).split())[:300]}") from None


def preflight(recipe: Recipe, dry_run: bool = False, in_process: bool = True) -> Preflight:
    """Everything a run checks before its first step, short of loading the model, in the order
    the run meets them: the TRL config, output_dir, the Hub token (pushing), the tokenizer and its
    chat template, the data (its columns, before any model loads).

    A dry run stays offline: Hub datasets, and a model neither in a local folder nor in the Hub
    cache, are named in `notes` as not checked. A real run loads them, so that it refuses before
    writing anything; in the process that trains (in_process) the config is built for this
    machine and what was loaded is kept for `train`.
    """
    ready = in_process and not dry_run
    checked = Preflight(trl_args(recipe, this_machine=ready), ready=ready)
    check_output_dir(recipe.output_dir)
    if recipe.push_to_hub:  # no token: say so now, not after the training
        from distill import hub

        hub.hub_api()
    unchecked, hub_datasets = [], []
    start = gguf.gguf_file(recipe.model.name_or_path)
    if start is not None:
        name, folder = f"{recipe.model.name_or_path} ({gguf.quantization(start)} GGUF)", gguf.cached_folder(start)
        checked.notes.append(f"starts from {name}, de-quantized before into {folder}" if folder.is_dir() else
                             f"de-quantizes {name} once into {folder}; later runs reuse it")
    tokenizer = _tokenizer(recipe, offline=dry_run)
    if tokenizer is None:
        why = "read from the GGUF when it is de-quantized" if start else "no local folder, not in the Hub cache"
        unchecked.append(f"the tokenizer of {recipe.model.name_or_path} ({why})")
        if recipe.chat_template == "zephyr":
            checked.notes.append(f"chat template: {template.ZEPHYR}, replacing the tokenizer's own if it has one; "
                                 "set chat_template: auto to keep it")
    else:
        checked.template = template.prepare(tokenizer, recipe.chat_template, recipe.stage == "sft" and recipe.assistant_only_loss)
        if checked.template in template.NOTICE:
            checked.notes.append(template.NOTICE[checked.template])
        checked.tokenizer = tokenizer
    # The handbook's rule: an empty system turn only where the template has system turns.
    system = recipe.empty_system_turn and (tokenizer is None or template.has_system_turn(tokenizer.chat_template))
    evals = EVAL_SPLITS[recipe.stage]
    if dry_run:
        for kind, specs, splits in (("train", recipe.datasets, None), ("eval", recipe.eval_datasets, evals)):
            for spec in specs:
                if data.on_hub(spec):
                    hub_datasets.append(f"{spec.path} ({kind})")
                else:
                    data.load_training_rows(spec, recipe.stage, recipe.seed, splits, system)
    else:
        checked.train_data = data.mix(recipe.datasets, recipe.stage, recipe.seed, empty_system=system)
        checked.eval_data = (data.mix(recipe.eval_datasets, recipe.stage, recipe.seed, evals, system)
                             if recipe.eval_datasets else None)
    if hub_datasets:
        unchecked.append(f"the Hub dataset{'s' * (len(hub_datasets) > 1)} (no such local path) {', '.join(hub_datasets)}")
    if unchecked:
        checked.notes.append(f"not checked by a dry run, which stays offline: {'; '.join(unchecked)}; "
                             "the run checks them before loading the model")
    return checked


def train(recipe: Recipe, checked: Preflight | None = None) -> dict[str, Any]:
    """Train a resolved recipe in this process; `checked`: its preflight, made in this process."""
    if checked is None or not checked.ready:
        checked = preflight(recipe)  # the data is checked before the (large) model is loaded
    tokenizer, args, train_data, eval_data = checked.tokenizer, checked.args, checked.train_data, checked.eval_data
    model = load_model(recipe.model, recipe.peft)
    common = dict(model=model, args=args, train_dataset=train_data, eval_dataset=eval_data, processing_class=tokenizer,
                  peft_config=lora_config(recipe.peft))
    if recipe.stage == "sft":
        from trl import SFTTrainer

        trainer = SFTTrainer(**common)
    else:
        ref = load_model(recipe.model.model_copy(update={"name_or_path": recipe.ref_model}), recipe.peft) if recipe.ref_model else None
        trainer = dpo_trainer_class()(ref_model=ref, max_prompt_length=recipe.max_prompt_length, **common)
    result = trainer.train(resume_from_checkpoint=last_checkpoint(recipe.output_dir))
    metrics = dict(result.metrics)
    if eval_data is not None:
        metrics.update(trainer.evaluate())
    trainer.save_model(str(recipe.output_dir))
    trainer.save_state()  # trainer_state.json: the log history (losses, DPO's reward accuracies) beside the model
    if trainer.is_world_process_zero():
        merged = recipe.peft.method != "none" and adapter_base(recipe.model) is not None
        if merged:
            save_merged(recipe)
        tokenizer.save_pretrained(str(recipe.output_dir))
        write_model_card(recipe, metrics, len(train_data), merged, checked.template)
        (Path(recipe.output_dir) / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        if recipe.push_to_hub:  # distill's upload, not TRL's: that one would replace the model card with its own
            from distill.hub import push_model

            push_model(recipe.output_dir, recipe.hub_model_id)
    return metrics


def truncate_pair(prompt: list[int], chosen: list[int], rejected: list[int], max_length: int,
                  max_prompt_length: int) -> tuple[list[int], list[int], list[int]]:
    """TRL 0.x's DPO truncation, which the Zephyr recipes trained with (max_prompt_length 512 within
    max_length 1024): when the prompt and the longer answer pass max_length, keep the prompt's last
    max_prompt_length tokens (its truncation_mode "keep_end"); if that is still too long, cut both
    answers to max_length - max_prompt_length."""
    longer = max(len(chosen), len(rejected))
    if len(prompt) + longer > max_length:
        prompt = prompt[-max_prompt_length:]
        if len(prompt) + longer > max_length:
            chosen, rejected = chosen[:max_length - max_prompt_length], rejected[:max_length - max_prompt_length]
    return prompt, chosen, rejected


def dpo_trainer_class():
    """TRL's DPOTrainer, with the recipe's max_prompt_length applied to the tokenized pairs."""
    from trl import DPOTrainer

    class PromptLengthDPOTrainer(DPOTrainer):
        def __init__(self, *args, max_prompt_length: int | None = None, **kwargs):
            self._max_prompt_length = max_prompt_length  # read by _prepare_dataset, which __init__ calls
            super().__init__(*args, **kwargs)

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if self._max_prompt_length is None or args.max_length is None:
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            max_length = args.max_length
            # TRL would drop every pair whose prompt alone fills max_length; the rule here keeps
            # them (with the prompt's end), so TRL's own length rules wait until it has run.
            args.max_length = None
            try:
                dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            finally:
                args.max_length = max_length

            def cut(row):
                prompt, chosen, rejected = truncate_pair(row["prompt_ids"], row["chosen_ids"], row["rejected_ids"],
                                                         max_length, self._max_prompt_length)
                return {"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected}

            return dataset.map(cut, desc=f"Truncating {dataset_name} prompts to max_prompt_length")

    return PromptLengthDPOTrainer


def write_model_card(recipe: Recipe, metrics: dict[str, Any], rows: int, merged: bool = False,
                     chat_template: str | None = None) -> None:
    from importlib import resources

    import jinja2

    from distill.card import cell, public_input, public_value

    text = resources.files("distill.train").joinpath("model_card.md.j2").read_text(encoding="utf-8")
    start = gguf.gguf_file(recipe.model.name_or_path)
    card = jinja2.Template(text, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True).render(
        recipe=recipe,
        stage={"sft": "supervised fine-tuning (dSFT)", "dpo": "direct preference optimisation (dDPO)"}[recipe.stage],
        rows=rows,
        merged=merged,
        chat_template=cell(template.CARD.get(chat_template, recipe.chat_template)),
        replaced=chat_template == template.REPLACED,
        hyperparameters={k: cell(v) for k, v in recipe.training.items()},
        metrics={k: cell(v) for k, v in metrics.items()},
        datasets=[cell(public_value(d.model_dump(exclude_defaults=True))) for d in recipe.datasets],
        base_model=public_input(str(recipe.model.name_or_path)),  # a Hub id, or a local folder's name only
        dequantized=gguf.quantization(start) if start else None,  # the GGUF's quantization, when it started from one
    )
    (Path(recipe.output_dir) / "README.md").write_text(card, encoding="utf-8")

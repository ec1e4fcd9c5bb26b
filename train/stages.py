"""The dSFT and dDPO stages on TRL's SFTTrainer and DPOTrainer.

    tokenizer + chat template -> data (checked) -> model (+ LoRA/QLoRA) -> train (resuming
    the last complete checkpoint) -> model, tokenizer and model card in output_dir

A starting model that is itself a LoRA adapter (the output of a LoRA/QLoRA dSFT, say) is
merged into its base first, so that training and DPO's implicit reference model start
from the dSFT model, not from the bare base.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from distill.train import data, template
from distill.train.recipe import ModelSpec, PeftSpec, Recipe

EVAL_SPLITS = {"sft": ("test_sft", "test"), "dpo": ("test_prefs", "test")}


def attention(spec: ModelSpec) -> str:
    """FlashAttention-2 when it is installed and a GPU is there, else PyTorch's SDPA."""
    if spec.attn_implementation != "auto":
        return spec.attn_implementation
    import torch

    return "flash_attention_2" if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") else "sdpa"


def adapter_base(spec: ModelSpec) -> str | None:
    """The base model of `spec` when it names a LoRA adapter rather than a whole model, else None."""
    from transformers.utils import find_adapter_config_file

    found = find_adapter_config_file(spec.name_or_path, revision=spec.revision)
    return json.loads(Path(found).read_text())["base_model_name_or_path"] if found else None


def load_model(spec: ModelSpec, peft: PeftSpec):
    import torch
    from transformers import AutoModelForCausalLM

    dtypes = {"auto": "auto", "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    kwargs: dict[str, Any] = dict(revision=spec.revision, dtype=dtypes[spec.dtype], attn_implementation=attention(spec),
                                  trust_remote_code=spec.trust_remote_code)
    if peft.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16
        )
    base = adapter_base(spec)
    if base is None:
        return AutoModelForCausalLM.from_pretrained(spec.name_or_path, **kwargs)
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


def train(recipe: Recipe) -> dict[str, Any]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(recipe.model.name_or_path, revision=recipe.model.revision,
                                              trust_remote_code=recipe.model.trust_remote_code)
    template.prepare(tokenizer, recipe.chat_template, recipe.stage == "sft" and recipe.assistant_only_loss)
    # The data is checked before the (large) model is loaded.
    train_data = data.mix(recipe.datasets, recipe.stage, recipe.seed)
    eval_data = data.mix(recipe.eval_datasets, recipe.stage, recipe.seed, EVAL_SPLITS[recipe.stage]) if recipe.eval_datasets else None
    model = load_model(recipe.model, recipe.peft)
    extra = {"assistant_only_loss": recipe.assistant_only_loss} if recipe.stage == "sft" else {}
    args = recipe.trl_config_class()(
        output_dir=str(recipe.output_dir), seed=recipe.seed, **extra, **recipe.training,
    )
    common = dict(model=model, args=args, train_dataset=train_data, eval_dataset=eval_data, processing_class=tokenizer,
                  peft_config=lora_config(recipe.peft))
    if recipe.stage == "sft":
        from trl import SFTTrainer

        trainer = SFTTrainer(**common)
    else:
        from trl import DPOTrainer

        ref = load_model(recipe.model.model_copy(update={"name_or_path": recipe.ref_model}), recipe.peft) if recipe.ref_model else None
        trainer = DPOTrainer(ref_model=ref, **common)
    result = trainer.train(resume_from_checkpoint=last_checkpoint(recipe.output_dir))
    metrics = dict(result.metrics)
    if eval_data is not None:
        metrics.update(trainer.evaluate())
    trainer.save_model(str(recipe.output_dir))
    if trainer.is_world_process_zero():
        merged = recipe.peft.method != "none" and adapter_base(recipe.model) is not None
        if merged:
            save_merged(recipe)
        tokenizer.save_pretrained(str(recipe.output_dir))
        write_model_card(recipe, metrics, len(train_data), merged)
        (Path(recipe.output_dir) / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        if recipe.push_to_hub:  # distill's upload, not TRL's: that one would replace the model card with its own
            from distill.hub import push_model

            push_model(recipe.output_dir, recipe.hub_model_id)
    return metrics


def write_model_card(recipe: Recipe, metrics: dict[str, Any], rows: int, merged: bool = False) -> None:
    from importlib import resources

    import jinja2

    from distill.card import cell

    text = resources.files("distill.train").joinpath("model_card.md.j2").read_text(encoding="utf-8")
    card = jinja2.Template(text, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True).render(
        recipe=recipe,
        stage={"sft": "supervised fine-tuning (dSFT)", "dpo": "direct preference optimisation (dDPO)"}[recipe.stage],
        rows=rows,
        merged=merged,
        hyperparameters={k: cell(v) for k, v in recipe.training.items()},
        metrics={k: cell(v) for k, v in metrics.items()},
        datasets=[cell(d.model_dump(exclude_defaults=True)) for d in recipe.datasets],
    )
    (Path(recipe.output_dir) / "README.md").write_text(card, encoding="utf-8")

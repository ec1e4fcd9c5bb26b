"""distill train sft|dpo on tiny models built here, on datasets in distill's formats (CPU, offline)."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import StandInHub, assert_one_line_error, write_jsonl

pytest.importorskip("trl")

from tiny_models import build_tiny_model  # noqa: E402

from distill.train.recipe import shipped_recipes  # noqa: E402

SHIPPED_RECIPES = shipped_recipes()


def dialogues(n=12):
    return [{"prompt": f"question {i} about rivers", "prompt_id": str(i), "sector": "world",
             "messages": [{"role": "user", "content": f"question {i} about rivers"},
                          {"role": "assistant", "content": f"rivers flow to the sea, answer {i}"},
                          {"role": "user", "content": "and then?"},
                          {"role": "assistant", "content": "they evaporate and fall as rain"}]} for i in range(n)]


def pairs(n=12):
    user = lambda i: {"role": "user", "content": f"question {i} about mills"}
    return [{"prompt": f"question {i} about mills", "prompt_id": str(i), "score_chosen": 8.0, "score_rejected": 2.0,
             "chosen": [user(i), {"role": "assistant", "content": "a mill grinds grain with water power"}],
             "rejected": [user(i), {"role": "assistant", "content": "no idea"}],
             "messages": [user(i), {"role": "assistant", "content": "a mill grinds grain with water power"}]} for i in range(n)]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """A base model without a chat template, as Mistral-7B-v0.1."""
    corpus = [m["content"] for row in dialogues() + pairs() for m in row["messages"]] * 3
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base", corpus, chat_template=None)


def recipe(tmp_path, stage, model, data, **extra):
    training = {"max_steps": 3, "per_device_train_batch_size": 2, "max_length": 96, "use_cpu": True, "bf16": False,
                "report_to": [], "save_strategy": "steps", "save_steps": 2, "logging_steps": 1, **extra.pop("training", {})}
    path = tmp_path / f"{stage}.yaml"
    path.write_text(yaml.safe_dump({"model": {"name_or_path": str(model)}, "datasets": [{"path": str(data)}],
                                    "output_dir": str(tmp_path / f"out-{stage}"), "training": training, **extra}))
    return path


def test_sft_trains_masks_user_tokens_saves_and_generates(cli, tmp_path, base_model):
    data = write_jsonl(tmp_path / "sft.jsonl", dialogues())
    result = cli("train", "sft", "--config", recipe(tmp_path, "sft", base_model, data))
    assert result.code == 0, result.err
    out = tmp_path / "out-sft"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    assert "<|assistant|>" in tokenizer.chat_template and "generation" in tokenizer.chat_template  # Zephyr's, given
    model = AutoModelForCausalLM.from_pretrained(out)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "question 1 about rivers"}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    generated = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]
    card = (out / "README.md").read_text()
    assert f"base_model: {Path(base_model).name}" in card and str(base_model) not in card and "train_loss" in card and "| max_length | 96 |" in card
    assert json.loads((out / "train_metrics.json").read_text())["train_loss"] > 0
    assert "chat template: Zephyr's (<|system|>/<|user|>/<|assistant|>), as the tokenizer has none" in result.err
    assert "the starting tokenizer had none" in card


def test_assistant_only_loss_masks_the_user(tmp_path, base_model):
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from distill.train import data, template
    from distill.train.recipe import DatasetSpec

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    template.prepare(tokenizer, "auto", assistant_only_loss=True)
    rows = data.mix([DatasetSpec(path=str(write_jsonl(tmp_path / "d.jsonl", dialogues(2))))], "sft", seed=0)
    trainer = SFTTrainer(model=str(base_model), processing_class=tokenizer, train_dataset=rows,
                         args=SFTConfig(output_dir=str(tmp_path / "o"), assistant_only_loss=True, use_cpu=True, bf16=False,
                                        report_to=[], per_device_train_batch_size=1, max_length=96))
    batch = next(iter(trainer.get_train_dataloader()))
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    learned = tokenizer.decode(ids[labels != -100])
    assert "rivers flow to the sea" in learned and "they evaporate" in learned
    assert "question" not in learned and "and then" not in learned  # the user's turns are masked


def test_dpo_on_preference_pairs_and_resume(cli, tmp_path, base_model):
    data = write_jsonl(tmp_path / "prefs.jsonl", pairs())
    config = recipe(tmp_path, "dpo", base_model, data, chat_template="zephyr", training={"beta": 0.1})
    assert cli("train", "dpo", "--config", config).code == 0
    out = tmp_path / "out-dpo"
    assert (out / "checkpoint-2").is_dir() and (out / "model.safetensors").exists()
    # Two more steps resume from the last complete checkpoint, with its history.
    result = cli("train", "dpo", "--config", config, "training.max_steps=4")
    assert result.code == 0, result.err
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and [e["step"] for e in state["log_history"] if "loss" in e][:2] == [1, 2]


def test_mixer_fractions_and_column_checks_before_any_model(cli, tmp_path, base_model, monkeypatch):
    from distill.train import data
    from distill.train.recipe import DatasetSpec

    first = write_jsonl(tmp_path / "a.jsonl", dialogues(10))
    second = write_jsonl(tmp_path / "b.jsonl", dialogues(20))
    mixed = data.mix([DatasetSpec(path=str(first), fraction=0.5), DatasetSpec(path=str(second))], "sft", seed=3)
    assert mixed.num_rows == 25 and mixed.column_names == ["messages"]
    assert mixed.to_list() == data.mix([DatasetSpec(path=str(first), fraction=0.5), DatasetSpec(path=str(second))], "sft", seed=3).to_list()

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load before the data is checked")

    monkeypatch.setattr("distill.train.stages.load_model", no_model)
    result = cli("train", "dpo", "--config", recipe(tmp_path, "dpo", base_model, first))
    assert_one_line_error(result, "dpo needs column 'chosen'")


@pytest.mark.parametrize("override, needle", [
    ("training.max_seq_length=2048", "use max_length"),
    ("training.learning_rat=1e-5", "unknown training key 'learning_rat'"),
    ("modle.name_or_path=x", "unknown config key 'modle'"),
    ("peft.method=qlora", "QLoRA needs a CUDA GPU"),
    ("global_batch_size=7", "7"),
    ("training.output_dir=elsewhere", "top of the recipe"),
], ids=["renamed-key", "unknown-training-key", "unknown-key", "qlora-on-cpu", "indivisible-batch", "managed-key"])
def test_recipe_errors_are_one_line(cli, tmp_path, base_model, override, needle):
    data = write_jsonl(tmp_path / "sft.jsonl", dialogues())
    assert_one_line_error(cli("train", "sft", "--config", recipe(tmp_path, "sft", base_model, data), override), needle)


def test_dry_run_keeps_the_global_batch(cli, tmp_path):
    result = cli("train", "sft", "--config", "zephyr-7b-beta/sft_paper", "--num-gpus", "8", "--dry-run",
                 "output_dir=" + str(tmp_path / "o"))
    assert result.code == 0, result.err
    assert "global batch size 512 = 16 per device x 8 processes x 4 gradient accumulation steps" in result.err
    command, _, resolved = result.out.partition("\n")
    assert "accelerate.commands.launch" in command and "--num_processes 8" in command and "distill.train.worker sft" in command
    assert yaml.safe_load(resolved)["training"]["gradient_accumulation_steps"] == 4
    assert not (tmp_path / "o").exists()  # a dry run starts nothing and writes nothing
    one = cli("train", "dpo", "--config", "zephyr-7b-beta/dpo_handbook", "--dry-run", "per_device_train_batch_size=1")
    assert_one_line_error(one, "unknown config key 'per_device_train_batch_size'")  # not a recipe key at the top: named
    assert one.code == 2
    single = cli("train", "dpo", "--config", "zephyr-7b-beta/dpo_handbook", "--dry-run")
    assert "x 16 gradient accumulation steps" in single.err and "accelerate" not in single.out.split("\n")[0]


def test_shipped_recipes_are_valid():
    from distill.train.recipe import find_recipe, load_recipe, shipped_recipes

    assert shipped_recipes() == SHIPPED_RECIPES  # each is checked below, by name
    assert {"zephyr-7b-beta/sft_paper", "zephyr-7b-beta/dpo_paper", "zephyr-7b-beta/dpo_handbook",
            "zephyr-7b-beta/sft_qlora", "zephyr-7b-beta/dpo_qlora"} <= set(SHIPPED_RECIPES)
    assert load_recipe(find_recipe("zephyr-7b-beta/dpo_paper"), "dpo", []).training["beta"] == 0.1
    assert load_recipe(find_recipe("zephyr-7b-beta/dpo_handbook"), "dpo", []).training["beta"] == 0.01


def a_cuda_gpu_with_bitsandbytes(monkeypatch):
    """What load_recipe asks of the machine before it takes a QLoRA recipe, faked: the recipe's
    values are then checked as on such a machine (nothing is loaded, no GPU is used)."""
    import importlib.machinery
    import importlib.util

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: importlib.machinery.ModuleSpec(name, None) if name == "bitsandbytes" else real(name, *a))


@pytest.mark.parametrize("name", SHIPPED_RECIPES)
def test_each_shipped_recipe_loads_and_passes_the_dry_run_checks(cli, tmp_path, monkeypatch, name):
    from distill.train import stages
    from distill.train.recipe import find_recipe, load_recipe

    written = yaml.safe_load(find_recipe(name).read_text())
    stage = written["stage"]
    assert name.split("/")[1].startswith(stage + "_")
    if written.get("peft", {}).get("method") == "qlora":  # refused without a CUDA GPU (test_recipe_errors_are_one_line)
        a_cuda_gpu_with_bitsandbytes(monkeypatch)
    loaded = load_recipe(find_recipe(name), stage, [])
    assert loaded.stage == stage and loaded.training == written["training"]
    assert {key: getattr(loaded.peft, key) for key in written.get("peft", {})} == written.get("peft", {})
    stages.trl_args(loaded, this_machine=False)  # TRL's config class takes every value
    result = cli("train", stage, "--config", name, "--dry-run", f"output_dir={tmp_path / 'out'}")
    assert result.code == 0, result.err
    command, _, resolved = result.out.partition("\n")
    assert f"distill.train.worker {stage}" in command and "accelerate" not in command  # one GPU: no launcher
    resolved = yaml.safe_load(resolved)
    assert resolved["stage"] == stage and resolved["peft"] == loaded.peft.model_dump(mode="json")
    assert {k: v for k, v in resolved["training"].items() if k != "gradient_accumulation_steps"} == \
        {k: v for k, v in written["training"].items() if k != "gradient_accumulation_steps"}
    batch, steps = written["global_batch_size"], resolved["training"]["gradient_accumulation_steps"]
    per_device = written["training"]["per_device_train_batch_size"]
    assert per_device * steps == batch  # the global batch kept on one GPU
    assert f"global batch size {batch} = {per_device} per device x 1 process x {steps} gradient accumulation steps" in result.err
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_push_flags_land_in_the_recipe(cli, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")  # a dry run checks the token too
    result = cli("train", "sft", "--config", "zephyr-7b-beta/sft_handbook", "--dry-run", "--push-to-hub", "--hub-model-id", "me/zephyr-test")
    resolved = yaml.safe_load(result.out.partition("\n")[2])
    assert resolved["push_to_hub"] is True and resolved["hub_model_id"] == "me/zephyr-test"
    assert_one_line_error(cli("train", "sft", "--config", "zephyr-7b-beta/sft_handbook", "--dry-run", "--push-to-hub"),
                          "--hub-model-id")
    assert_one_line_error(cli("train", "sft", "--config", "zephyr-7b-beta/sft_handbook", "--dry-run", "--push-to-hub",
                              "--hub-model-id", "no-org"), "org/name")


LORA = {"method": "lora", "r": 4, "alpha": 8, "dropout": 0.0}


def merged(model_dir, *adapters):
    """`model_dir` with each LoRA adapter merged in turn, as a plain transformers model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    for adapter in adapters:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model


def test_lora_dpo_on_a_lora_sft_model_starts_from_the_sft_model(cli, tmp_path, base_model):
    sft = recipe(tmp_path, "sft", base_model, write_jsonl(tmp_path / "sft.jsonl", dialogues()), peft=LORA,
                 training={"learning_rate": 0.05})
    assert cli("train", "sft", "--config", sft).code == 0
    sft_out = tmp_path / "out-sft"
    assert (sft_out / "adapter_config.json").exists()  # a LoRA dSFT output is an adapter on the base
    dpo = recipe(tmp_path, "dpo", sft_out, write_jsonl(tmp_path / "prefs.jsonl", pairs()), peft=LORA,
                 training={"beta": 0.1, "learning_rate": 0.05})
    result = cli("train", "dpo", "--config", dpo)
    assert result.code == 0, result.err
    out = tmp_path / "out-dpo"
    # The reference model is the dSFT model: at the first step, before any update, the policy equals it.
    first = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"][0]
    assert first["step"] == 1 and first["rewards/chosen"] == 0 and first["rewards/rejected"] == 0
    # The output is the whole model: base + dSFT adapter + dDPO adapter, merged (an adapter alone
    # would apply to the bare base and lose the dSFT).
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    assert "| method | lora, merged into the whole model" in (out / "README.md").read_text()
    assert "| method | lora |" in (sft_out / "README.md").read_text()
    from transformers import AutoModelForCausalLM

    got = AutoModelForCausalLM.from_pretrained(out).state_dict()
    want = merged(base_model, sft_out, out / "checkpoint-3").state_dict()
    without_sft = merged(base_model, out / "checkpoint-3").state_dict()
    assert got.keys() == want.keys()
    assert all(got[k].allclose(want[k], atol=1e-6) for k in want)
    assert not all(got[k].allclose(without_sft[k], atol=1e-6) for k in want)


def test_push_uploads_the_model_with_distills_card(cli, tmp_path, base_model, monkeypatch):
    hub = StandInHub()
    monkeypatch.setattr("distill.hub.hub_api", lambda: hub)
    config = recipe(tmp_path, "sft", base_model, write_jsonl(tmp_path / "sft.jsonl", dialogues()))
    result = cli("train", "sft", "--config", config, "--push-to-hub", "--hub-model-id", "me/tiny-sft")
    assert result.code == 0, result.err
    assert hub.calls[0] == ("create_repo", "me/tiny-sft", {"repo_type": "model", "private": False, "exist_ok": True})
    assert {"README.md", "model.safetensors", "tokenizer.json", "train_metrics.json"} <= set(hub.uploaded)
    assert not any(name.startswith("checkpoint-") or name == "training_args.bin" for name in hub.uploaded)
    assert b"with [distill]" in hub.uploaded["README.md"]  # our card, not TRL's


def test_push_without_a_token_stops_before_training(cli, tmp_path, base_model, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    config = recipe(tmp_path, "sft", base_model, write_jsonl(tmp_path / "sft.jsonl", dialogues()))
    assert_one_line_error(cli("train", "sft", "--config", config, "--push-to-hub", "--hub-model-id", "me/x"), "HF_TOKEN")
    assert not (tmp_path / "out-sft").exists()


def test_accelerate_config_names_and_files(cli, tmp_path):
    own = tmp_path / "mine.yaml"
    own.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\n")
    result = cli("train", "sft", "--config", "zephyr-7b-beta/sft_handbook", "--num-gpus", "2", "--accelerate-config", own, "--dry-run")
    assert result.code == 0 and f"--config_file {own}" in result.out
    assert_one_line_error(cli("train", "sft", "--config", "zephyr-7b-beta/sft_handbook", "--num-gpus", "2",
                              "--accelerate-config", "megatron", "--dry-run"), "megatron")


def test_qlora_on_a_gpu_without_bitsandbytes_is_one_line(cli, tmp_path, base_model, monkeypatch):
    import importlib.util

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    data = write_jsonl(tmp_path / "sft.jsonl", dialogues())
    result = cli("train", "sft", "--config", recipe(tmp_path, "sft", base_model, data), "peft.method=qlora", "--dry-run")
    assert_one_line_error(result, "pip install bitsandbytes")


def test_without_the_train_extra_is_one_line(cli, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a))
    assert_one_line_error(cli("train", "sft", "--config", "zephyr-7b-beta/sft_paper", "--dry-run"), "pip install 'distill[train]'")


# --- a dry run checks what the run checks before its first step (issue 11, item 19) ----------


def no_token(monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)


BAD = {  # recipe overrides or flags, and what the one line says; {missing}, {wrong}, {file}: paths made by the test
    "negative-learning-rate": (["training.learning_rate=-1"], "training.learning_rate must be >= 0, not -1"),
    "epochs-not-a-number": (["training.num_train_epochs=banana"], "training.num_train_epochs must be a number"),
    "refused-by-trl": (["training.lr_scheduler_type=sideways"], "training.lr_scheduler_type = 'sideways': TRL's"),
    "missing-dataset": (["datasets=[{{path: {missing}}}]"], "{missing} does not exist"),
    "wrong-columns": (["datasets=[{{path: {wrong}}}]"], "{stage} needs column '{column}'"),
    "output-dir-is-a-file": (["output_dir={file}"], "output_dir {file} is not a directory"),
    "push-without-a-token": (["--push-to-hub", "--hub-model-id", "me/tiny"], "no Hugging Face token"),
}


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize("stage", ["sft", "dpo"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_values_are_refused_alike_by_dry_run_and_run_before_anything_is_written(cli, tmp_path, base_model, monkeypatch,
                                                                                   case, stage, dry_run):
    data = write_jsonl(tmp_path / "data.jsonl", dialogues() if stage == "sft" else pairs())
    other = [{k: v for k, v in row.items() if k != "messages"} for row in pairs()] if stage == "sft" else dialogues()
    taken = tmp_path / "taken"
    taken.write_text("not a directory")
    names = {"missing": tmp_path / "missing.jsonl", "wrong": write_jsonl(tmp_path / "other.jsonl", other), "file": taken,
             "stage": stage, "column": "messages" if stage == "sft" else "chosen"}
    args, needle = BAD[case]
    no_token(monkeypatch)
    monkeypatch.setattr("distill.train.stages.load_model", lambda *a, **k: pytest.fail("a model loaded before the checks"))
    config = recipe(tmp_path, stage, base_model, data, **({"training": {"beta": 0.1}} if stage == "dpo" else {}))
    result = cli("train", stage, "--config", config, *[a.format(**names) for a in args], *(["--dry-run"] if dry_run else []))
    assert_one_line_error(result, needle.format(**names))
    assert not (tmp_path / f"out-{stage}").exists()
    assert taken.read_text() == "not a directory"


def test_a_dry_run_names_what_it_cannot_check_offline(cli, tmp_path, base_model):
    data = write_jsonl(tmp_path / "sft.jsonl", dialogues())
    config = recipe(tmp_path, "sft", base_model, data)
    result = cli("train", "sft", "--config", config, "--dry-run", "eval_datasets=[{path: HuggingFaceH4/ultrachat_200k}]")
    assert result.code == 0, result.err
    assert "not checked by a dry run, which stays offline: the Hub dataset (no such local path) " \
           "HuggingFaceH4/ultrachat_200k (eval)" in result.err
    assert str(data) not in result.err  # the local one was checked
    shipped = cli("train", "sft", "--config", "zephyr-7b-beta/sft_handbook", "--dry-run", f"output_dir={tmp_path / 'o'}")
    assert shipped.code == 0, shipped.err
    assert "the tokenizer of mistralai/Mistral-7B-v0.1" in shipped.err and "HuggingFaceH4/ultrachat_200k (train)" in shipped.err
    assert not (tmp_path / "o").exists() and not (tmp_path / "out-sft").exists()


def test_trl_config_is_built_by_one_function_for_the_checks_and_the_run(tmp_path, base_model, monkeypatch):
    from distill.errors import ConfigError
    from distill.train import stages
    from distill.train.recipe import load_recipe

    data = write_jsonl(tmp_path / "sft.jsonl", dialogues())
    good = load_recipe(recipe(tmp_path, "sft", base_model, data), "sft", ["training.learning_rate='2e-5'"])
    args = stages.trl_args(good)
    assert args.learning_rate == 2e-5 and args.assistant_only_loss is False and args.output_dir == str(tmp_path / "out-sft")
    built = []
    real = stages.trl_args
    monkeypatch.setattr(stages, "trl_args", lambda recipe, this_machine=True: built.append(this_machine) or real(recipe, this_machine))
    stages.preflight(good, dry_run=True)
    stages.preflight(good)
    assert built == [False, True]  # a dry run checks the values alone; the run builds the config it trains with
    on_gpu = load_recipe(recipe(tmp_path, "sft", base_model, data), "sft", ["training.use_cpu=false", "training.bf16=true"])
    import torch

    if not torch.cuda.is_available():
        real(on_gpu, this_machine=False)  # the values stand; this machine's lack of a GPU is the run's to say
        with pytest.raises(ConfigError, match="bf16"):
            real(on_gpu)


# --- the chat template (issue 11, items 17 and 25) -----------------------------------------

NO_MARKERS = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
              "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")
# A template of its own (ChatML-like), marked with Jinja's whitespace control.
OWN = ("{%- for message in messages -%}{{ '<|im_start|>' + message['role'] + '\\n' }}"
       "{%- if message['role'] == 'assistant' -%}{%- generation -%}{{ message['content'] + '<|im_end|>' }}{%- endgeneration -%}"
       "{%- else -%}{{ message['content'] + '<|im_end|>' }}{%- endif -%}{{ '\\n' }}{%- endfor -%}"
       "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}")


def with_template(base_model, folder, chat_template):
    """A copy of the tiny base model whose tokenizer has `chat_template`."""
    import shutil

    from transformers import AutoTokenizer

    shutil.copytree(base_model, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("marker", ["{% generation %}", "{%- generation %}", "{% generation -%}", "{%- generation -%}",
                                    "{%-generation-%}", "{%+ generation %}"])
def test_generation_markers_are_the_tag_itself(marker):
    from distill.train import template

    assert template.has_markers(f"{{% for m in messages %}}{marker}{{{{ m['content'] }}}}{{% endgeneration %}}{{% endfor %}}")
    assert template.has_markers({"default": marker, "tool_use": ""})
    assert not template.has_markers(NO_MARKERS) and "generation" in NO_MARKERS  # add_generation_prompt is not a marker
    assert not template.has_markers("{{ generation }}") and not template.has_markers(None)


def test_assistant_only_loss_refuses_a_template_without_markers(cli, tmp_path, base_model):
    from transformers import AutoTokenizer

    from distill.errors import ConfigError
    from distill.train import template

    model = with_template(base_model, tmp_path / "unmarked", NO_MARKERS)
    tokenizer = AutoTokenizer.from_pretrained(model)
    with pytest.raises(ConfigError, match="needs a chat template with {% generation %} markers"):
        template.prepare(tokenizer, "auto", assistant_only_loss=True)
    assert template.prepare(tokenizer, "auto", assistant_only_loss=False) == template.OWN  # a loss on everything: asked for
    assert template.prepare(AutoTokenizer.from_pretrained(model), "zephyr", True) == template.REPLACED
    marked = AutoTokenizer.from_pretrained(with_template(base_model, tmp_path / "marked", OWN))
    assert template.prepare(marked, "auto", True) == template.OWN and marked.chat_template == OWN  # the good path
    from trl.chat_template_utils import llama3_chat_template

    marked.chat_template = llama3_chat_template  # no markers, but TRL swaps in a marked copy of it
    assert template.prepare(marked, "auto", True) == template.OWN

    data = write_jsonl(tmp_path / "sft.jsonl", dialogues())
    config = recipe(tmp_path, "sft", model, data, assistant_only_loss=True)
    for dry_run in (["--dry-run"], []):
        assert_one_line_error(cli("train", "sft", "--config", config, *dry_run), "assistant_only_loss needs a chat template",
                              "set chat_template: zephyr, or assistant_only_loss: false")
        assert not (tmp_path / "out-sft").exists()


def test_replacing_the_tokenizers_template_is_said_and_carded(cli, tmp_path, base_model):
    model = with_template(base_model, tmp_path / "own", OWN)
    data = write_jsonl(tmp_path / "sft.jsonl", dialogues())
    notice = ("chat template: Zephyr's (<|system|>/<|user|>/<|assistant|>), replacing the tokenizer's own; "
              "set chat_template: auto to keep it")
    kept = cli("train", "sft", "--config", recipe(tmp_path, "sft", model, data), "--dry-run")
    assert kept.code == 0, kept.err
    assert "chat template" not in kept.err  # auto keeps it, and says nothing
    config = recipe(tmp_path, "sft", model, data, chat_template="zephyr")
    dry = cli("train", "sft", "--config", config, "--dry-run")
    assert dry.code == 0 and notice in dry.err.splitlines()
    result = cli("train", "sft", "--config", config)
    assert result.code == 0, result.err
    assert notice in result.err.splitlines()
    out = tmp_path / "out-sft"
    card = (out / "README.md").read_text()
    assert "which replaced the starting tokenizer's own (the recipe's `chat_template: zephyr`)" in card
    assert r"| chat template | Zephyr's (<\|system\|>/<\|user\|>/<\|assistant\|>), replacing the tokenizer's own" in card
    from transformers import AutoTokenizer

    from distill.train.template import ZEPHYR_TEMPLATE

    assert AutoTokenizer.from_pretrained(out).chat_template == ZEPHYR_TEMPLATE  # the template it was trained with


def test_shipped_sft_recipes_say_they_replace_the_template(cli, tmp_path):
    from distill.train.recipe import find_recipe, load_recipe

    for name in ("sft_paper", "sft_handbook"):
        assert load_recipe(find_recipe(f"zephyr-7b-beta/{name}"), "sft", []).chat_template == "zephyr"
        result = cli("train", "sft", "--config", f"zephyr-7b-beta/{name}", "--dry-run", f"output_dir={tmp_path / name}")
        assert result.code == 0, result.err
        assert "chat template: Zephyr's (<|system|>/<|user|>/<|assistant|>), replacing the tokenizer's own if it has one; " \
               "set chat_template: auto to keep it" in result.err


# --- the Zephyr recipes' data rules (issue 13, items 1 and 5) -------------------------------------

def prepared(tmp_path, base_model, stage, rows, **extra):
    """The trainer the run would build from a recipe (TRL's own data preparation done), without training."""
    from distill.train import stages
    from distill.train.recipe import load_recipe

    tmp_path.mkdir(parents=True, exist_ok=True)
    data = write_jsonl(tmp_path / f"{stage}-data.jsonl", rows)
    loaded = load_recipe(recipe(tmp_path, stage, base_model, data, **extra), stage, [])
    checked = stages.preflight(loaded)
    common = {"model": str(base_model), "args": checked.args, "train_dataset": checked.train_data,
              "processing_class": checked.tokenizer}
    if stage == "sft":
        from trl import SFTTrainer

        return SFTTrainer(**common), checked.tokenizer
    return stages.dpo_trainer_class()(max_prompt_length=loaded.max_prompt_length, **common), checked.tokenizer


def test_sft_loss_is_on_the_whole_dialogue_by_default(tmp_path, base_model):
    trainer, tokenizer = prepared(tmp_path, base_model, "sft", dialogues(2), chat_template="zephyr")
    row = trainer.train_dataset[0]
    learned = tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != -100])
    assert "<|user|>" in learned and "question" in learned and "and then" in learned  # the user's turns too
    assert "they evaporate" in learned


def test_sft_text_is_bos_an_empty_system_turn_and_zephyrs_turns(tmp_path, base_model):
    trainer, tokenizer = prepared(tmp_path, base_model, "sft", dialogues(1), chat_template="zephyr", empty_system_turn=True)
    text = tokenizer.decode(trainer.train_dataset[0]["input_ids"])
    assert text.startswith("<s><|system|>\n</s>\n<|user|>\nquestion 0 about rivers</s>\n<|assistant|>\nrivers flow")
    assert text.count("<s>") == 1
    # The handbook's rule: no system turn is added for a template that has none.
    model = with_template(base_model, tmp_path / "no-system", NO_MARKERS)
    trainer, tokenizer = prepared(tmp_path / "b", model, "sft", dialogues(1), empty_system_turn=True)
    assert tokenizer.decode(trainer.train_dataset[0]["input_ids"]).startswith("<|user|>\nquestion 0")


def test_wrapped_packing_keeps_every_token_of_long_dialogues(tmp_path, base_model):
    rows = dialogues(6)
    for i, row in enumerate(rows):
        row["messages"][1]["content"] = " ".join(["rivers flow to the sea"] * (4 + 6 * i))  # some longer than 64 tokens
    whole, _ = prepared(tmp_path / "a", base_model, "sft", rows, chat_template="zephyr", training={"max_length": None})
    tokens = sum(len(ids) for ids in whole.train_dataset["input_ids"])
    assert max(len(ids) for ids in whole.train_dataset["input_ids"]) > 64
    wrapped, _ = prepared(tmp_path / "b", base_model, "sft", rows, chat_template="zephyr",
                          training={"max_length": 64, "packing": True, "packing_strategy": "wrapped"})
    assert sum(len(ids) for ids in wrapped.train_dataset["input_ids"]) == tokens  # nothing cut away
    assert max(len(ids) for ids in wrapped.train_dataset["input_ids"]) == 64
    bfd, _ = prepared(tmp_path / "c", base_model, "sft", rows, chat_template="zephyr",
                      training={"max_length": 64, "packing": True})  # TRL's default strategy truncates
    assert sum(len(ids) for ids in bfd.train_dataset["input_ids"]) < tokens


def test_truncate_pair_is_trl_0x_rule():
    from distill.train.stages import truncate_pair

    assert truncate_pair([1, 2, 3], [4], [5, 6], 10, 4) == ([1, 2, 3], [4], [5, 6])  # fits: untouched
    assert truncate_pair(list(range(8)), [8, 9], [10], 6, 4) == ([4, 5, 6, 7], [8, 9], [10])  # the prompt's end kept
    assert truncate_pair([1, 2], list(range(10)), [0], 6, 4) == ([1, 2], [0, 1], [0])  # then the answers cut to 6 - 4
    assert truncate_pair(list(range(9)), list(range(9)), [1], 8, 3) == ([6, 7, 8], [0, 1, 2, 3, 4], [1])


def test_dpo_max_prompt_length_keeps_the_prompts_end_instead_of_dropping_the_pair(tmp_path, base_model):
    rows = pairs(4)
    long_prompt = " ".join(f"mill {i}" for i in range(60))
    for row in rows[:2]:
        for column in ("chosen", "rejected"):
            row[column][0]["content"] = long_prompt
    trainer, tokenizer = prepared(tmp_path, base_model, "dpo", rows, chat_template="zephyr", max_prompt_length=16,
                                  training={"beta": 0.1, "max_length": 48})
    kept = trainer.train_dataset
    assert kept.num_rows == 4  # TRL alone drops a pair whose prompt fills max_length
    assert all(len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"])) <= 48 for row in kept)
    full = tokenizer.apply_chat_template([{"role": "user", "content": long_prompt}], add_generation_prompt=True,
                                         return_dict=True)["input_ids"]
    assert len(full) > 48
    assert sorted(row["prompt_ids"] == full[-16:] for row in kept) == [False, False, True, True]  # its end, 16 tokens


@pytest.mark.parametrize("stage, override, needle", [
    ("sft", "max_prompt_length=64", "max_prompt_length is for dpo recipes"),
    ("dpo", "max_prompt_length=96", "max_prompt_length 96 leaves no room for the answers within training.max_length 96"),
    ("dpo", "training.max_prompt_length=64", "max_prompt_length at the top of the recipe"),
])
def test_max_prompt_length_errors_are_one_line(cli, tmp_path, base_model, stage, override, needle):
    data = write_jsonl(tmp_path / "d.jsonl", dialogues() if stage == "sft" else pairs())
    config = recipe(tmp_path, stage, base_model, data, **({"training": {"beta": 0.1}} if stage == "dpo" else {}))
    assert_one_line_error(cli("train", stage, "--config", config, override, "--dry-run"), needle)


def test_qlora_quantizes_as_the_handbook(monkeypatch):
    import torch
    import transformers

    from distill.train import stages
    from distill.train.recipe import PeftSpec, TrainingModel

    seen = {}
    monkeypatch.setattr(transformers, "BitsAndBytesConfig", lambda **kwargs: seen.setdefault("quantization", kwargs))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda name, **kwargs: seen.setdefault("load", kwargs))
    monkeypatch.setattr(stages, "adapter_base", lambda spec: None)
    stages.load_model(TrainingModel(name_or_path="base", dtype="bfloat16", attn_implementation="sdpa"), PeftSpec(method="qlora"))
    # The handbook's get_quantization_config with its defaults: NF4, no nested quantization, compute in the model's dtype.
    assert seen["quantization"] == {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": False,
                                    "bnb_4bit_compute_dtype": torch.bfloat16}
    assert seen["load"]["quantization_config"] is seen["quantization"]

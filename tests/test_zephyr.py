"""`distill zephyr`: the whole recipe on the fake backend and a tiny model (CPU, offline)."""

import hashlib
import json
import random
import re

import datasets
import pytest
import yaml
from conftest import StandInHub, assert_one_line_error
from test_ultrachat import scripted as ultrachat_teacher
from test_ultrafeedback import judge_json, quality

POOL = "m1,m2,m3,m4"
CPU = ["training.use_cpu=true", "training.bf16=false", "model.dtype=float32", "global_batch_size=2",
       "training.per_device_train_batch_size=2", "training.max_steps=2", "training.max_length=128",
       "training.save_strategy=no", "training.logging_steps=1"]


def teacher(request):
    """Dialogues as in test_ultrachat, pool answers with their quality, a judge that rates it."""
    messages = list(request.messages)
    last = messages[-1]["content"]
    if last.startswith("Request:"):  # the before/after judge: the first answer, in either order (all ties)
        return '{"better": "A"}'
    if "[Assistant's answer]" in last or "[Conversation with the assistant]" in last:  # the eval step's judge
        return "Plain but correct. Rating: [[6]]"
    if last.startswith("You are judging"):
        return judge_json(last, lambda text, position: quality(text))
    if re.fullmatch(r"m\d", request.model):
        return f"An answer to '{last[:40]}' by {request.model}, quality={request.model[1:]}."
    reply = ultrachat_teacher(messages)
    if reply.startswith(("Answer ", "interesting!")):  # turns of the dialogue: varied, or the filters drop them
        rng = random.Random(hashlib.sha256(json.dumps(messages).encode()).digest())
        reply = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))).capitalize() + "?" * (reply[0] == "i")
    return reply


WORDS = "river mill grain stone water wheel valley bridge harvest miller flour rain north season market".split()


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    pytest.importorskip("trl")
    from tiny_models import build_tiny_model

    corpus = ["rivers flow to the sea and then evaporate", "a mill grinds grain", "An answer by m1, quality=1."] * 20
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base", corpus, chat_template=None)


def zephyr(cli, monkeypatch, out, *args):
    monkeypatch.setattr("distill.backends.fake.echo_reply", teacher)
    return cli("zephyr", "--backend", "fake", "--pool", POOL, "--dialogues", "8", "-o", out, "-q", *args)


def cpu_training(base_model):
    return ["--base-model", base_model, *[f for o in CPU for f in ("--sft", o)], *[f for o in CPU for f in ("--dpo", o)],
            "--dpo", "training.beta=0.1", "--dpo", "max_prompt_length=64"]


def test_the_whole_recipe_then_a_resume_that_trains_nothing_again(cli, tmp_path, monkeypatch, base_model):
    out = tmp_path / "zephyr"
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text('{"prompt": "Where do rivers flow?"}\n{"prompt": "What does a mill grind?"}\n')
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"question_id": 1, "category": "writing", "turns": ["Write a line.", "Shorter."]})
                         + "\n" + json.dumps({"question_id": 2, "category": "math", "turns": ["1+1?", "2+2?"],
                                              "reference": ["2", "4"]}) + "\n")
    small = tmp_path / "small.yaml"  # short answers: the tiny model reads at most 512 tokens
    small.write_text(yaml.safe_dump({"mt_bench": {"max_new_tokens": 16}, "pairwise": {"max_new_tokens": 16}}))
    compare = ["--compare-prompts", held_out, "--eval", questions, "--config", small]
    result = zephyr(cli, monkeypatch, out, *cpu_training(base_model), *compare)
    assert result.code == 0, result.err
    steps = [line for line in result.err.splitlines() if re.match(r"\d/7 ", line)]
    assert [line[:4] for line in steps] == ["1/7 ", "2/7 ", "3/7 ", "4/7 ", "5/7 ", "6/7 ", "7/7 "]
    assert "8 dialogues" in result.out and re.search(r"dDPO 2 steps, train loss \d", result.out)
    # The closing lines name every step's folder, then the ablation table: MT-Bench grades (every one a 6,
    # so every turn ties with the base's) and the pairwise win rates (a judge that always says A: all ties).
    for step in ("ultrachat", "cleaning", "feedback", "sft", "dpo", "compare", "eval", "results"):
        assert re.search(rf"^  {step} +\S", result.out, re.M), step
    assert "| base | 6.00 | 6.00 | 6.00 | (baseline) | (baseline) |" in result.out
    assert "| dSFT | 6.00 | 6.00 | 6.00 | 50.0% | 50.0% |" in result.out
    assert "| dDPO | 6.00 | 6.00 | 6.00 | 50.0% | 50.0% |" in result.out
    side_by_side = (out / "results.md").read_text()
    assert side_by_side.count("**Prompt:**") == 2 and side_by_side.count("**dDPO** (tie)") == 2
    assert side_by_side.count("**base:**") == 2 and side_by_side.count("**Question ") == 2
    assert side_by_side.count("**dSFT** (grade 6.00)") == 4  # two questions, two turns
    # The base model was asked through the dSFT tokenizer: its weights linked, the template copied.
    assert (out / "base-chat" / "tokenizer_config.json").is_file()
    # Each step wrote what its own command writes.
    dialogues = datasets.load_dataset(str(out / "ultrachat"), split="train_sft")
    clean = datasets.load_dataset(str(out / "ultrachat-clean"), split="train_sft")
    assert 0 < clean.num_rows <= dialogues.num_rows
    prefs = datasets.load_dataset(str(out / "feedback"), split="train_prefs").to_list()
    assert prefs and {p["prompt"] for p in prefs} <= set(clean["prompt"])  # rated the dialogues' openings
    assert all(p["score_chosen"] > p["score_rejected"] for p in prefs)
    sft = yaml.safe_load((out / "sft" / "recipe.yaml").read_text())
    dpo = yaml.safe_load((out / "dpo" / "recipe.yaml").read_text())
    assert sft["model"]["name_or_path"] == str(base_model)
    assert [(d["path"], d["split"]) for d in sft["datasets"]] == [(str(out / "ultrachat-clean"), "train_sft")]
    assert dpo["model"]["name_or_path"] == str(out / "sft") and dpo["datasets"][0]["path"] == str(out / "feedback")
    assert dpo["training"]["beta"] == 0.1 and dpo["eval_datasets"] == []  # not the Hub's test_prefs
    assert (out / "dpo" / "model.safetensors").exists() and (out / "dpo" / "README.md").exists()
    # Again: the data comes from the caches, and no stage trains a second time.
    before = (out / "dpo" / "train_metrics.json").read_text()
    again = zephyr(cli, monkeypatch, out, *cpu_training(base_model), *compare)
    assert again.code == 0, again.err
    assert "4/7 dSFT: done before" in again.err and "5/7 dDPO: done before" in again.err
    assert (out / "dpo" / "train_metrics.json").read_text() == before
    for step in ("ultrachat", "feedback", "compare", "eval"):  # nothing asked twice
        assert json.loads((out / step / "stats.json").read_text())["last_session"]["requests"] == 0
    # The recipe's page: its results, then one tab per step in the order they ran, the training curves among them.
    assert cli("view", out).code == 0 and (out / "view.html").is_file()
    from distill.view.collect import collect

    report = collect(str(out))
    assert [r["name"] for r in report["runs"]] == ["summary", "ultrachat", "ultrachat-clean", "feedback", "sft", "dpo",
                                                   "compare", "eval"]
    dpo = next(r for r in report["runs"] if r["name"] == "dpo")
    assert {"loss", "rewards-accuracies"} <= {c["id"].split("-", 1)[1] for c in dpo["charts"]}


def test_stop_after_data_needs_no_training_stack(cli, tmp_path, monkeypatch):
    out = tmp_path / "z"
    result = zephyr(cli, monkeypatch, out, "--stop-after", "data", "--num-prompts", "3")
    assert result.code == 0, result.err
    assert datasets.load_dataset(str(out / "feedback"), split="train_prefs").num_rows <= 3
    assert not (out / "sft").exists() and "4/5" not in result.err


def test_step_options_from_the_config_file(cli, tmp_path, monkeypatch):
    config = tmp_path / "zephyr.yaml"
    config.write_text(yaml.safe_dump({"stop_after": "data", "ultrachat": {"sectors": "creation=1", "creation_rounds": "1"},
                                      "ultrafeedback": {"completions_per_prompt": 2}}))
    out = tmp_path / "z"
    result = zephyr(cli, monkeypatch, out, "--config", config)
    assert result.code == 0, result.err
    rows = datasets.load_dataset(str(out / "ultrachat"), split="train_sft").to_list()
    assert {r["sector"] for r in rows} == {"creation"} and all(r["num_turns"] == 1 for r in rows)
    completions = datasets.load_dataset(str(out / "feedback"), "completions", split="train").to_list()
    assert completions and {len([c for c in completions if c["prompt"] == p]) for p in {c["prompt"] for c in completions}} == {2}


@pytest.mark.parametrize("args, yaml_config, needle", [
    (["--pool", "m1"], None, "--pool"),
    (["--preset", "qlora"], None, "QLoRA needs a CUDA GPU"),
    (["--sft", "training.learning_rat=1"], None, "learning_rat"),
    ([], {"ultrachat": {"sectorz": "world=1"}}, "sectorz"),
    ([], {"ultrachat": {"concurrency": 3}}, "at the top of the config"),
    (["--num-gpus", "2", "--accelerate-config", "megatron"], None, "megatron"),
    (["--sft", "training.learning_rate=-1"], None, "training.learning_rate must be >= 0, not -1"),
    (["--dpo", "training.num_train_epochs=banana"], None, "training.num_train_epochs must be a number"),
    (["--dpo", "training.lr_scheduler_type=sideways"], None, "training.lr_scheduler_type = 'sideways'"),
], ids=["one-model-pool", "qlora-on-cpu", "bad-recipe-key", "bad-step-key", "engine-key-in-step", "bad-accelerate-config",
        "negative-learning-rate", "epochs-not-a-number", "refused-by-trl"])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_bad_settings_stop_before_anything_is_written(cli, tmp_path, monkeypatch, args, yaml_config, needle, dry_run):
    extra = []
    if yaml_config:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(yaml_config))
        extra = ["--config", path]
    out = tmp_path / "z"
    monkeypatch.setattr("distill.backends.fake.echo_reply", teacher)
    pool = [] if "--pool" in args else ["--pool", POOL]
    result = cli("zephyr", "--backend", "fake", *pool, "--dialogues", "4", "-o", out, "-q", *args, *extra, *dry_run)
    assert_one_line_error(result, needle)
    assert not out.exists()


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_a_training_output_that_is_a_file_stops_before_anything(cli, tmp_path, monkeypatch, dry_run):
    out = tmp_path / "z"
    out.mkdir()
    (out / "dpo").write_text("mine")
    assert_one_line_error(zephyr(cli, monkeypatch, out, *dry_run), f"output_dir {out / 'dpo'} is not a directory")
    assert sorted(p.name for p in out.iterdir()) == ["dpo"] and (out / "dpo").read_text() == "mine"


def test_push_to_hub_publishes_each_step(cli, tmp_path, monkeypatch, base_model):
    hub = StandInHub()
    monkeypatch.setattr("distill.hub.hub_api", lambda: hub)
    out = tmp_path / "z"
    result = zephyr(cli, monkeypatch, out, *cpu_training(base_model), "--stop-after", "sft", "--push-to-hub", "me/zeph",
                    "--private")
    assert result.code == 0, result.err
    created = [(call[1], call[2]["repo_type"], call[2]["private"]) for call in hub.calls if call[0] == "create_repo"]
    assert created == [("me/zeph-ultrachat", "dataset", True), ("me/zeph-feedback", "dataset", True),
                       ("me/zeph-sft", "model", True)]
    assert "data/train_prefs-00000-of-00001.parquet" in hub.uploaded and "model.safetensors" in hub.uploaded


def test_push_to_hub_without_a_token_stops_before_anything(cli, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    out = tmp_path / "z"
    assert_one_line_error(zephyr(cli, monkeypatch, out, "--stop-after", "data", "--push-to-hub", "me/zeph"), "HF_TOKEN")
    assert not out.exists()
    assert_one_line_error(zephyr(cli, monkeypatch, out, "--push-to-hub", "me/zeph", "--dry-run"), "no Hugging Face token")
    assert not out.exists()
    assert_one_line_error(zephyr(cli, monkeypatch, out, "--stop-after", "data", "--push-to-hub", "zeph"), "org/name")


def test_dry_run_checks_and_prints_every_step(cli, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")  # the token is checked by a dry run too
    out = tmp_path / "z"
    result = cli("zephyr", "--backend", "fake", "--pool", POOL, "--dialogues", "40", "--num-gpus", "8", "--dry-run",
                 "--push-to-hub", "me/zeph", "-o", out)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("1/5 UltraChat: 40 dialogues") and "dedup, refusal, degenerate, repetition" in lines[1]
    assert "4 of 4 pool models" in lines[2] and "mistralai/Mistral-7B-v0.1, full, Zephyr's chat template" in lines[3]
    assert "accelerate.commands.launch" in lines[4] and "--num_processes 8" in lines[4]
    assert lines[-1] == "push: me/zeph-ultrachat, me/zeph-feedback, me/zeph-sft, me/zeph-dpo"
    assert not out.exists()  # nothing written, nothing asked


def test_fresh_never_deletes_a_training_output_distill_did_not_create(cli, tmp_path, monkeypatch, base_model):
    mine = tmp_path / "my-models"
    mine.mkdir()
    (mine / "weights.bin").write_bytes(b"months of training")
    out = tmp_path / "zephyr"
    result = zephyr(cli, monkeypatch, out, *cpu_training(base_model), "--stop-after", "sft", "--sft", f"output_dir={mine}",
                    "--fresh")
    assert_one_line_error(result, "--fresh would delete", str(mine))
    assert (mine / "weights.bin").read_bytes() == b"months of training"
    # A training output distill made is its own: --fresh trains it again from scratch.
    assert zephyr(cli, monkeypatch, out, *cpu_training(base_model), "--stop-after", "sft").code == 0
    (out / "sft" / "train_metrics.json").write_text("{}")  # as if it had finished, by another recipe
    again = zephyr(cli, monkeypatch, out, *cpu_training(base_model), "--stop-after", "sft", "--fresh")
    assert again.code == 0, again.err
    assert "train_loss" in json.loads((out / "sft" / "train_metrics.json").read_text())


def test_a_dry_run_resolves_backends_and_models_as_the_run_does(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    # No --backend and no endpoint: the embedded llama.cpp backend, which has no model gpt-4o.
    result = cli("zephyr", "--model", "gpt-4o", "--pool", "a,b", "--stop-after", "data", "--dry-run", "-o", tmp_path / "z")
    assert_one_line_error(result, "gpt-4o")
    # On the openai backend, the key is looked up by the dry run too.
    result = cli("zephyr", "--backend", "openai", "--model", "gpt-4o", "--pool", "a,b", "--stop-after", "data",
                 "--dry-run", "-o", tmp_path / "z")
    assert_one_line_error(result, "OPENAI_API_KEY")
    # A budget needs prices for every model the steps ask, dry run or not.
    result = cli("zephyr", "--backend", "openai", "--model", "gpt-4o", "--pool", "a,b", "--stop-after", "data",
                 "--max-cost-usd", "5", "--dry-run", "-o", tmp_path / "z", env={"OPENAI_API_KEY": "k"})
    assert_one_line_error(result, "--max-cost-usd needs a price for")
    assert not (tmp_path / "z").exists()


def test_a_dry_run_refuses_an_output_that_is_a_file(cli, tmp_path):
    (tmp_path / "z").write_text("not a folder")
    result = cli("zephyr", "--backend", "fake", "--pool", "a,b", "--stop-after", "data", "--dry-run", "-o", tmp_path / "z")
    assert_one_line_error(result, "is a file")


def test_the_cpu_profile_sets_defaults_and_whatever_is_given_wins(tmp_path):
    from distill.pipelines.zephyr import CPU_PROFILE, ZephyrConfig

    profile = ZephyrConfig.model_validate({"profile": "cpu", "output": tmp_path})
    assert (profile.backend, profile.model, profile.base_model, profile.preset) == \
        ("llamacpp", "smollm2-135m-instruct", "gemma3-270m", "cpu")
    assert [s.model for s in profile.pool] == ["gemma3-270m", "smollm2-135m-instruct"]
    assert profile.eval == "smoke" and profile.compare_prompts is None and profile.ultrachat == CPU_PROFILE["ultrachat"]
    given = ZephyrConfig.model_validate({"profile": "cpu", "output": tmp_path, "dialogues": 3, "base_model": "x",
                                         "ultrachat": {"max_new_tokens": 99}, "mt_bench": {"limit": 1},
                                         "pairwise": {"limit": 2}})
    assert (given.dialogues, given.base_model) == (3, "x")
    assert given.ultrachat == {**CPU_PROFILE["ultrachat"], "max_new_tokens": 99}  # merged key by key
    assert given.mt_bench == {**CPU_PROFILE["mt_bench"], "limit": 1} and given.pairwise == {"limit": 2}
    # A teacher on a server: the profile does not put it on the embedded backend.
    served = ZephyrConfig.model_validate({"profile": "cpu", "output": tmp_path, "base_url": ["http://h:8000/v1"]})
    assert served.backend is None and served.model is None
    # Without the profile nothing changes.
    plain = ZephyrConfig.model_validate({"output": tmp_path, "pool": ["a", "b"]})
    assert (plain.base_model, plain.preset, plain.compare_prompts, plain.eval, plain.dialogues) == \
        ("mistralai/Mistral-7B-v0.1", "handbook", None, None, 1000)


def test_the_cpu_profile_dry_run_names_six_steps_and_the_cpu_recipes(cli, tmp_path):
    pytest.importorskip("llama_cpp")
    from distill import embedded

    if not all(embedded.MODELS[m].installed() for m in (embedded.BASE, embedded.INSTRUCT)):
        pytest.skip("the profile needs both embedded models")
    result = cli("zephyr", "--profile", "cpu", "-o", tmp_path / "z", "--dry-run")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert [line[:4] for line in lines if re.match(r"\d/6 ", line)] == ["1/6 ", "2/6 ", "3/6 ", "4/6 ", "5/6 ", "6/6 "]
    assert "16 dialogues by smollm2-135m-instruct" in result.out and "2 of 2 pool models" in result.out
    assert re.search(r"4/6 sft: gemma3-270m, lora, Zephyr's chat template", result.out)
    assert "6/6 eval: 6 questions of smoke answered in two turns by gemma3-270m, dSFT and dDPO" in result.out
    assert not (tmp_path / "z").exists()

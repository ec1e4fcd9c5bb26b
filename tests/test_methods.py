"""The registry of generation methods: each pipeline declares itself once, and the CLI, merge,
the schema checks and the docs come from the declarations."""

import re
import shutil
import uuid
from pathlib import Path

import pytest

import distill
from distill import methods as registry
from distill.methods import GenerationMethod, methods

DOCS = Path(distill.__file__).parent.parent / "docs" / "architecture.md"
SHIPPED = {"generate alpaca", "generate camel", "generate completions", "generate self-instruct", "generate ultrachat",
           "generate task", "rate ultrafeedback", "eval pairwise", "eval mt-bench"}


def test_every_shipped_method_is_declared_once_with_its_prompts():
    from importlib import resources

    found = methods()
    assert set(found) == SHIPPED
    for command, declared in found.items():
        assert isinstance(declared, GenerationMethod) and declared.command == command
        if declared.prompts:
            assert resources.files("distill.prompts").joinpath(declared.prompts).is_dir(), command
    assert not found["generate self-instruct"].shards and found["generate ultrachat"].shards


def test_the_cli_lists_the_registry(cli):
    for group in ("generate", "rate", "eval"):
        listed = cli(group, "--help").out
        for declared in methods().values():
            if declared.group == group:
                assert re.search(rf"^\s+{declared.name}\s", listed, re.M), (group, declared.name)


def test_the_docs_name_every_method():
    text = (DOCS.parent.parent / "README.md").read_text()
    for command in methods():
        assert f"distill {command}" in text, command


@pytest.mark.parametrize("command", sorted(SHIPPED))
def test_each_method_writes_its_declared_schema(cli, tmp_path, command):
    import datasets

    declared = methods()[command]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(f'{{"prompt": "Question {i}: why is the sky blue?"}}\n' for i in range(4)))
    args = {"generate completions": ["--input", prompts],
            "rate ultrafeedback": ["--input", prompts, "--models", "a,b", "--completions-per-prompt", "2", "--judge", "j"],
            "generate camel": ["-n", "3", "--num-roles", "2", "--tasks-per-pair", "2"],
            "eval pairwise": ["--input", prompts, "--models", "a", "--baseline", "b"],
            "eval mt-bench": ["--questions", "smoke", "-n", "2", "--models", "a"],
            "generate task": ["TextGeneration", "--input", prompts, "--column-map", "prompt=instruction"]}.get(command, ["-n", "3"])
    out = tmp_path / "run"
    result = cli(*command.split(), *args, "--backend", "fake", "-o", out, "-q")
    assert result.code == 0, result.err
    assert declared.made in result.out
    written = datasets.load_dataset(str(out))
    schema = declared.output_schema() or {}  # generate task: the columns are the task's own
    for split in written.values():
        assert list(split.features)[: len(schema)] == list(schema), command
        assert all(split.features[name] == feature for name, feature in schema.items()), command


def _docs_example() -> tuple[str, str, str]:
    """The worked example of docs/architecture.md: its module, its prompt, its command name."""
    text = DOCS.read_text()
    module = re.search(r"Step 1, `pipelines/(\w+)\.py`:\n\n```python\n(.*?)```", text, re.S)
    prompt = re.search(r"Step 2, `prompts/(\w+)/([\w.]+)`:\n\n```jinja\n(.*?)```", text, re.S)
    assert module and prompt
    return module.group(2), prompt.group(3), prompt.group(2)


def test_a_method_is_added_in_exactly_two_places(cli, tmp_path):
    """The docs' worked example, added as one module and one prompt folder, is a full command."""
    import distill.pipelines
    import distill.prompts

    pipelines = Path(distill.pipelines.__file__).parent
    prompts = Path(distill.prompts.__file__).parent
    if not (pipelines / "ultrachat.py").is_file() or not (prompts / "ultrachat").is_dir():
        pytest.skip("needs the source checkout (an editable install)")
    code, template, template_name = _docs_example()
    name = f"plain_rewrite_{uuid.uuid4().hex[:8]}"
    command = name.replace("_", "-")
    module, folder = pipelines / f"{name}.py", prompts / name
    try:
        module.write_text(code.replace('"plain_rewrite"', f'"{name}"').replace("generate plain-rewrite", f"generate {command}"))
        folder.mkdir()
        (folder / template_name).write_text(template)
        registry.methods.cache_clear()
        assert command in cli("generate", "--help").out
        assert "Most tokens per rewrite. [default: 256]" in " ".join(cli("generate", command, "--help").out.split())
        notes = tmp_path / "notes.jsonl"
        notes.write_text("".join(f'{{"text": "The meeting moved from {d} to the next day."}}\n' for d in ("Monday", "Friday")))
        result = cli("generate", command, "--input", notes, "--backend", "fake", "-o", tmp_path / "plain", "-q")
        assert result.code == 0, result.err
        assert "2 texts rewritten; 2 rows written" in result.out
        # It shards and merges like every method, with nothing more declared.
        for k in range(2):
            shard = cli("generate", command, "--input", notes, "--backend", "fake", "--shard", f"{k}/2", "-o",
                        tmp_path / f"s{k}", "-q")
            assert shard.code == 0, shard.err
        assert cli("merge", tmp_path / "s0", tmp_path / "s1", "-o", tmp_path / "joined").code == 0
    finally:
        module.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        registry.methods.cache_clear()

"""Options declared once: every command's flags come from its config's fields (distill.cli_options)."""

import re

import pytest

from distill.cli_options import default_text
from distill.config import BACKENDS, EngineConfig, InputConfig
from distill.methods import methods


def configs():
    from distill.pipelines.zephyr import ZephyrConfig

    return {**{m.command: m.config for m in methods().values()}, "zephyr": ZephyrConfig}


@pytest.mark.parametrize("command", sorted(configs()))
def test_every_field_has_a_help_text(command):
    model = configs()[command]
    missing = [name for name, field in model.model_fields.items() if not (field.description or "").strip()]
    assert not missing, f"{command}: fields without a description: {missing}"


def _help(cli, command):
    result = cli(*command.split(), "--help")
    assert result.code == 0, result.err
    return " ".join(result.out.split())


@pytest.mark.parametrize("command", sorted(configs()))
def test_help_shows_each_flag_and_the_codes_default(cli, command):
    model = configs()[command]
    text = _help(cli, command)
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra or {}
        if extra.get("yaml_only"):
            assert f"--{name.replace('_', '-')}" not in text
            continue
        if extra.get("argument"):  # a positional argument: its usage name
            assert f"[OPTIONS] {extra['argument']}" in text, (command, name)
            continue
        assert f"--{name.replace('_', '-')}" in text, (command, name)
        default = field.get_default(call_default_factory=True)
        if "show" in extra:
            assert f"[default: {extra['show']}]" in text, (command, name)
        elif isinstance(default, (int, float, str)) and not isinstance(default, bool):
            # The value the code uses, written independently of the help's own formatting.
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert f"[default: {shown}]" in text, (command, name, shown)
            assert default_text(field) == shown


def test_a_flag_typed_overrides_the_config_file_and_nothing_else_does(cli, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("temperature: 0.3\nmax_new_tokens: 99\n")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    out = tmp_path / "run"
    result = cli("generate", "completions", "--input", prompts, "--backend", "fake", "--config", config,
                 "--max-new-tokens", "7", "-o", out, "-q")
    assert result.code == 0, result.err
    stored = (out / "config.yaml").read_text()
    assert "temperature: 0.3" in stored and "max_new_tokens: 7" in stored


def test_the_backend_list_is_written_once():
    from pathlib import Path

    import distill

    root = Path(distill.__file__).parent.parent
    sources = [p for folder in ("distill", "pipelines", "filters", "train") for p in (root / folder).rglob("*.py")]
    spelled = [p for p in sources if re.search(r"""["']llamacpp["'],\s*["']openai["']""", p.read_text())]
    assert [p.relative_to(root).as_posix() for p in spelled] == ["distill/config.py"]
    assert BACKENDS == ("llamacpp", "openai", "vllm", "transformers", "fake")
    assert EngineConfig.model_fields["backend"].annotation is not None and InputConfig.model_fields["input"].description

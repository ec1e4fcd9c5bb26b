"""Click options derived from a pydantic config's fields: each option is declared once.

A field gives its flag (`--max-new-tokens` for `max_new_tokens`, a short one from
`cli(short=...)`), its type (a Literal becomes a choice, a bool a flag, a list a repeatable
option), its help (the field's `description`) and the default --help states (the field's
default, or `cli(show=...)` when the value alone would not say it). Click itself gets no
default, so a value from `--config FILE` is overridden only by a flag the user typed, and
pydantic checks every value the same way wherever it came from.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import click
from click.core import ParameterSource
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from distill.config import read_yaml_config, validate_config
from distill.errors import ConfigError


def _extra(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _plain(annotation: Any) -> tuple[Any, bool]:
    """The type under `X | None`, and whether None is allowed."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), len(args) < len(typing.get_args(annotation))
    return annotation, False


def _click_type(annotation: Any) -> Any:
    if typing.get_origin(annotation) is Literal:
        return click.Choice([str(v) for v in typing.get_args(annotation)])
    if annotation is int:
        return click.INT
    if annotation is float:
        return click.FLOAT
    if annotation is Path:
        return click.Path(path_type=Path)
    return click.STRING  # strings, model specs, and values a validator reads from text (3-7, a=0.5,b=0.5)


def default_text(field: FieldInfo) -> str | None:
    """The default as --help states it, or None when there is none to state."""
    extra = _extra(field)
    if "show" in extra:
        return extra["show"]
    default = field.get_default(call_default_factory=True)
    if default is PydanticUndefined or default is None or default is False or default in ([], {}, ()):
        return None
    if default is True:
        return "on"
    if isinstance(default, (list, tuple)):
        return ",".join(map(str, default)) if len(default) <= 6 else None
    if isinstance(default, dict):
        return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in default.items())
    return f"{default:g}" if isinstance(default, float) else str(default)


def option_for(name: str, field: FieldInfo, toggle: bool = False) -> click.Parameter:
    """The option of one field; with `toggle`, a bool gets both forms (--x/--no-x, or the
    field's `cli(off=...)`), for a command that changes a stored value either way. A field
    declared `cli(argument=...)` is a positional argument (optional for click: a --config
    file may give it; pydantic says when it is missing)."""
    extra = _extra(field)
    annotation, _ = _plain(field.annotation)
    if extra.get("argument"):
        return click.Argument([name], required=False, metavar=extra["argument"], type=_click_type(annotation))
    flag = "--" + name.replace("_", "-")
    decls = [extra["short"], flag] if extra.get("short") else [flag]
    if extra.get("alias"):
        decls.append(extra["alias"])
    help_text = field.description or ""
    shown = default_text(field)
    if shown is not None:
        help_text += f"  [default: {shown}]"
    elif field.is_required():  # (not for click: a --config file may give it)
        help_text += "  [required]"
    origin = typing.get_origin(annotation)
    if annotation is bool:
        if field.default is True or toggle:  # the flag that turns it off too
            return click.Option([f"{flag}/--{extra.get('off', 'no-' + flag[2:])}"], default=None, help=help_text)
        return click.Option(decls, is_flag=True, default=None, help=help_text)
    if (origin is list and not extra.get("comma")) or (origin is dict and extra.get("repeat")):
        return click.Option(decls, multiple=True, help=help_text)
    return click.Option(decls, type=_click_type(annotation), help=help_text)


def _ordered(model: type[BaseModel]) -> list[str]:
    """The model's own fields first, then those of its bases, most specific first."""
    names: list[str] = []
    for klass in model.__mro__:
        if isinstance(klass, type) and issubclass(klass, BaseModel) and klass is not BaseModel:
            names += [n for n in getattr(klass, "__annotations__", {}) if n in model.model_fields and n not in names]
    return names + [n for n in model.model_fields if n not in names]


def config_options(model: type[BaseModel], include: Iterable[str] | None = None,
                   toggle: bool = False) -> list[click.Parameter]:
    """An option for each field of `model` a flag can give (`include` only those, in that order)."""
    names = list(include) if include is not None else _ordered(model)
    return [option_for(name, model.model_fields[name], toggle) for name in names
            if not _extra(model.model_fields[name]).get("yaml_only")]


CONFIG_FILE = click.Option(["--config"], type=click.Path(path_type=Path),
                           help="YAML file of options (keys as the flags' names); flags typed override it.")


def config_command(name: str, model: type[BaseModel], run: Callable[..., None], help: str,
                   extra: Iterable[click.Parameter] = ()) -> click.Command:
    """A command whose options are `model`'s fields plus --config; it calls `run(config)`,
    passing the `extra` parameters' values as keyword arguments."""
    extra = list(extra)
    extra_names = [p.name for p in extra]

    def callback(**params: Any) -> None:
        ctx = click.get_current_context()
        config = resolve_config(model, ctx, params.get("config"))
        run(config, **{k: params[k] for k in extra_names})

    params = [*config_options(model), CONFIG_FILE, *extra]
    return click.Command(name, params=params, callback=callback, help=help, short_help=help.split("\n")[0])


def resolve_config(model: type[BaseModel], ctx: click.Context, config_file: Path | None = None):
    """YAML values first, then every flag the user actually typed (defaults never override YAML)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(read_yaml_config(config_file))
        unknown = sorted(set(values) - set(model.model_fields))
        if unknown:
            raise ConfigError(f"config {config_file}: unknown key {unknown[0]!r} (known: {', '.join(sorted(model.model_fields))})")
    for name, value in ctx.params.items():
        if name == "config" or name not in model.model_fields:
            continue
        source = ctx.get_parameter_source(name)
        explicit = source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT)
        if explicit or name not in values:
            if value is None or value == ():
                continue
            values[name] = list(value) if isinstance(value, tuple) else value
    return validate_config(model, values)

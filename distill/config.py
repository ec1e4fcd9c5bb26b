"""Configs: pydantic models filled from an optional YAML file, then from command-line flags.

An unknown key is an error that names it, never silently dropped. Secrets are not config:
only the *name* of the environment variable holding an API key is stored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import click
import yaml
from click.core import ParameterSource
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from distill.errors import ConfigError

BATCH_IN_FLIGHT = 10_000  # requests gathered into batches at once when --batch-api is on
BackendName = Literal["llamacpp", "openai", "vllm", "fake"]


class EngineConfig(BaseModel):
    """What every generating command shares: the backend, the client's limits, the run."""

    model_config = ConfigDict(extra="forbid")

    # Keys that change how a run goes but not what it produces: they may differ on resume.
    RUNTIME_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"output", "fresh", "concurrency", "rpm", "tpm", "max_retries", "timeout", "max_cost_usd",
         "max_tokens", "prices", "quiet", "limit", "base_url", "api_key_env", "tensor_parallel_size",
         "n_threads", "n_ctx", "test_size", "format", "batch_api", "batch_window", "batch_poll", "export_only"}
    )

    output: Path
    fresh: bool = False
    backend: BackendName | None = None  # None: openai if an endpoint is configured, else llamacpp
    model: str | None = None
    base_url: list[str] = Field(default_factory=list)
    api_key_env: str = "OPENAI_API_KEY"
    tensor_parallel_size: int = Field(1, ge=1)
    n_ctx: int = Field(4096, ge=256)
    n_threads: int | None = Field(None, ge=1)
    concurrency: int = Field(64, ge=1)
    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    max_retries: int = Field(6, ge=0, le=100)
    timeout: float = Field(600.0, gt=0)
    max_cost_usd: float | None = Field(None, gt=0)
    max_tokens: int | None = Field(None, ge=1)
    prices: Path | None = None
    seed: int = 0
    quiet: bool = False
    # The export: a seeded test split (a fraction of the prompts, or a count), JSON Lines too.
    test_size: float | None = Field(None, gt=0, allow_inf_nan=False)
    format: Literal["parquet", "jsonl"] = "parquet"
    # The provider's Batch API (openai backend): cheaper, answered within a day.
    batch_api: bool = False
    batch_window: float = Field(10.0, gt=0)
    batch_poll: float = Field(30.0, gt=0)
    # Beyond one machine: this process does items K, K+N, K+2N, ... (`distill merge` joins the shards).
    shard: str | None = None
    export_only: bool = False  # write the dataset from the records; ask nothing

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is not None:
            found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
            if not found or int(found[2]) < 1 or int(found[1]) >= int(found[2]):
                raise ValueError(f"is K/N with 0 <= K < N, like 0/4, not {value!r}")
            value = f"{int(found[1])}/{int(found[2])}"
        return value

    def shard_of(self) -> tuple[int, int] | None:
        """(K, N) of --shard K/N, or None."""
        if self.shard is None:
            return None
        k, n = self.shard.split("/")
        return int(k), int(n)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) or value.lower().startswith(("sk_", "hf_")):
            raise ValueError("must be the name of an environment variable, not a key")
        return value

    def max_retry_after(self) -> float:
        """The longest Retry-After honoured: no wait longer than a request may take (--timeout), at most 10 minutes."""
        return min(self.timeout, 600.0)

    def requests_in_flight(self) -> int:
        """Requests the client lets out at once; with the Batch API, as many as a batch may hold."""
        return max(self.concurrency, BATCH_IN_FLIGHT) if self.batch_api else self.concurrency

    # Options naming a file the run's plan is drawn from (topics, seeds, role lists): its
    # content is part of the identity, so a resume after it changed is refused, not mixed.
    PLAN_FILES: ClassVar[tuple[str, ...]] = ()

    def identity(self) -> dict[str, Any]:
        """The part of the config that decides what the run produces."""
        values = self.model_dump(mode="json", exclude=set(self.RUNTIME_KEYS))
        digests = {name: content_digest(getattr(self, name)) for name in self.PLAN_FILES if getattr(self, name)}
        if digests:
            values[PLAN_DIGESTS] = digests
        return values


PLAN_DIGESTS = "plan_files_sha256"  # the key of the plan files' digests in a stored config


def content_digest(source: str) -> str | None:
    """The sha256 of a local file's bytes (of every file under a folder, with their names);
    None for a Hub id, whose --revision says which content it is."""
    import hashlib

    path = Path(source).expanduser()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode() if file != path else b"")
        try:
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            return None  # unreadable: the read that needs it says why
    return digest.hexdigest()


def stored_settings(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored config's options, to validate again (its command and digests are not options)."""
    return {k: v for k, v in stored.items() if k not in ("command", PLAN_DIGESTS)}


class InputConfig(BaseModel):
    """Where a command's rows come from, and which of them it takes."""

    model_config = ConfigDict(extra="forbid")

    input: str
    split: str | None = None
    subset: str | None = None
    revision: str | None = None
    column_map: dict[str, str] = Field(default_factory=dict)
    limit: int | None = Field(None, ge=1)
    shuffle: bool = False

    @field_validator("column_map", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            from distill.inputs import parse_column_map

            return parse_column_map(list(value))
        return value


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with YAML 1.2's booleans and numbers: `save_strategy: no` stays the string "no"
    (PyYAML's YAML 1.1 reads a boolean), and `1e-5` is a number (PyYAML reads a string)."""


_REPLACED = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:float", "tag:yaml.org,2002:int"}
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern, _first in (
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    ("float", r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
     "-+.0123456789"),
):
    _Yaml12Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(f"^(?:{_pattern})$"), list(_first))


def load_yaml(text: str) -> Any:
    """A user's YAML (config files, KEY=VALUE overrides), read as YAML 1.2. Nesting too deep
    for the parser (`[[[[...`) is a yaml.YAMLError like any other unreadable YAML."""
    try:
        return yaml.load(text, Loader=_Yaml12Loader)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def read_text_file(path: Path, what: str, error: type[Exception] = ConfigError) -> str:
    """A file the user named, as UTF-8 text (a leading byte-order mark dropped), or `error`
    with one line: it is missing, a directory, unreadable, or not text (with the line)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise error(f"cannot read {what} {path}: {err.strerror or err}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start + len(data) - len(err.object)  # utf-8-sig counts past the BOM it dropped
        line = data[:start].count(b"\n") + 1
        raise error(f"{what} {path} is not UTF-8 text (line {line})") from None


def read_yaml_config(path: Path, what: str = "config") -> dict[str, Any]:
    text = read_text_file(path, what)
    try:
        data = load_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML: {' '.join(str(err).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


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


def validate_config(model: type[BaseModel], values: dict[str, Any]):
    """The config, or a ConfigError naming the first bad key as its flag."""
    try:
        return model.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:  # a rule between options: its message names the flags itself
            raise ConfigError(message) from None
        key = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"unknown config key {key!r}") from None
        flag = "--" + key.replace("_", "-")
        if first["type"] == "missing":
            raise ConfigError(f"missing required option {flag}") from None
        raise ConfigError(f"invalid value for {flag}: {message}") from None

"""Configs: pydantic models filled from an optional YAML file, then from command-line flags
(distill.cli_options makes the flags from the fields).

An unknown key is an error that names it, never silently dropped. Secrets are not config:
only the *name* of the environment variable holding an API key is stored.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from distill.errors import ConfigError

BATCH_IN_FLIGHT = 10_000  # requests gathered into batches at once when --batch-api is on


def cli(short: str | None = None, *, show: str | None = None, repeat: bool = False, comma: bool = False,
        off: str | None = None, yaml_only: bool = False, alias: str | None = None, argument: str | None = None) -> dict:
    """How a config field appears on the command line (its `json_schema_extra`): a short flag
    (`-n`), how --help states its default when the value alone would not say it (`show`), a
    mapping taken as a repeatable flag (`repeat`), a list given as one comma-separated flag
    rather than a repeated one (`comma`), the name of a flag's off form where both are shown
    (`off`), no flag at all, for values only a --config YAML can give (`yaml_only`), or a second
    long flag for the same field, where a command names the thing it reads (`alias="--questions"`),
    or a positional argument instead of a flag, shown in usage as `argument` (`argument="NAME"`)."""
    extra: dict[str, Any] = {}
    if short:
        extra["short"] = short
    if show is not None:
        extra["show"] = show
    if repeat:
        extra["repeat"] = True
    if comma:
        extra["comma"] = True
    if off:
        extra["off"] = off
    if yaml_only:
        extra["yaml_only"] = True
    if alias:
        extra["alias"] = alias
    if argument:
        extra["argument"] = argument
    return extra
BackendName = Literal["llamacpp", "openai", "vllm", "transformers", "fake"]  # the one list of backends
BACKENDS: tuple[str, ...] = typing.get_args(BackendName)


class EngineConfig(BaseModel):
    """What every generating command shares: the backend, the client's limits, the run."""

    model_config = ConfigDict(extra="forbid")

    # Keys that change how a run goes but not what it produces: they may differ on resume.
    RUNTIME_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"output", "fresh", "concurrency", "rpm", "tpm", "max_retries", "timeout", "max_cost_usd",
         "max_tokens", "prices", "quiet", "limit", "base_url", "api_key_env", "tensor_parallel_size",
         "n_threads", "n_ctx", "test_size", "format", "batch_api", "batch_window", "batch_poll", "export_only"}
    )

    output: Path = Field(description="Run directory. The same command on it resumes.", json_schema_extra=cli("-o"))
    fresh: bool = Field(False, description="Delete this command's run files in --output and start over (only what "
                        "distill wrote there).")
    backend: BackendName | None = Field(
        None, description="llamacpp: embedded CPU model, for demos and tests; openai: any OpenAI-compatible server; "
        "vllm: in-process on GPUs; transformers: a local HF model folder in-process (CPU or GPU), batched; fake: no "
        "model, replies shaped as each prompt asks (offline dry runs).",
        json_schema_extra=cli(show="openai if an endpoint is set, else llamacpp"))
    model: str | None = Field(None, description="Model name; for llamacpp an embedded model's name (`distill models`) "
                              "or a .gguf path; for transformers a local model folder.",
                              json_schema_extra=cli(show="llamacpp: the method's embedded model, see `distill models`"))
    base_url: list[str] = Field(default_factory=list, description="OpenAI-compatible endpoint; repeat to spread requests "
                                "over several.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the key of the run's own "
                             "endpoints (a MODEL@URL gets only the key its #KEY_ENV names).")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs per model.")
    n_ctx: int = Field(4096, ge=256, description="llamacpp: context length.")
    n_threads: int | None = Field(None, ge=1, description="llamacpp, transformers: CPU threads.", json_schema_extra=cli(show="all"))
    concurrency: int = Field(64, ge=1, description="Requests in flight at once.")
    rpm: float | None = Field(None, gt=0, description="Requests-per-minute limit.")
    tpm: float | None = Field(None, gt=0, description="Tokens-per-minute limit.")
    max_retries: int = Field(6, ge=0, le=100, description="Retries on 429, 5xx, timeouts and dropped connections.")
    timeout: float = Field(600.0, gt=0, description="Seconds before a request times out; a server's Retry-After is "
                           "honoured up to this long, and at most 600 s.")
    max_cost_usd: float | None = Field(None, gt=0, description="Stop cleanly before the run spends more than this "
                                       "(every session counts).")
    max_tokens: int | None = Field(None, ge=1, description="Stop cleanly before the run uses more tokens than this "
                                   "(prompt + completion, every session counts).")
    prices: Path | None = Field(None, description="YAML price table that extends the built-in one.")
    seed: int = Field(0, description="Seed from which all randomness derives.")
    quiet: bool = Field(False, description="No progress bar.", json_schema_extra=cli("-q"))
    test_size: float | None = Field(None, gt=0, allow_inf_nan=False,
                                    description="Seeded test split: a fraction (<1) or a number of prompts.")
    format: Literal["parquet", "jsonl"] = Field("parquet", description="jsonl also writes JSON Lines beside the "
                                                "parquet shards.")
    batch_api: bool = Field(False, description="openai: send requests through the provider's Batch API (cheaper, "
                            "answered within a day); up to 10,000 requests are gathered at once.")
    batch_window: float = Field(10.0, gt=0, description="Seconds a batch gathers requests before it is sent.")
    batch_poll: float = Field(30.0, gt=0, description="Seconds between looks at a running batch.")
    shard: str | None = Field(None, description="K/N: do items K, K+N, K+2N, ... only (one of N machines); "
                              "`distill merge` joins the runs.")
    export_only: bool = Field(False, description="Write the dataset from the run's records; ask nothing.")

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

    input: str = Field(description="A .jsonl/.json/.parquet/.csv/.txt file, a saved dataset, a run directory or a Hub id.")
    split: str | None = Field(None, description="Split to read.", json_schema_extra=cli(show="train, train_sft or train_prefs"))
    subset: str | None = Field(None, description="Hub dataset config name, or a companion config of a run directory.")
    revision: str | None = Field(None, description="Hub dataset revision.")
    column_map: dict[str, str] = Field(default_factory=dict, description="Rename an input column, OLD=NEW; repeatable.",
                                       json_schema_extra=cli(repeat=True))
    limit: int | None = Field(None, ge=1, description="Take only the first N rows.", json_schema_extra=cli("-n"))
    shuffle: bool = Field(False, description="Shuffle the rows (seeded) before -n.")

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
        extra = getattr(model.model_fields.get(key), "json_schema_extra", None)
        argument = extra.get("argument") if isinstance(extra, dict) else None
        if argument:  # a positional argument is named as the usage line shows it
            flag = argument
        if first["type"] == "missing":
            raise ConfigError(f"missing required {'argument' if argument else 'option'} {flag}") from None
        raise ConfigError(f"invalid value for {flag}: {message}") from None

"""A distilabel task on distill's engine: `distill generate task NAME`.

The task keeps what it is good at, its prompts and its parsing and (for tasks such as
EvolInstruct, whose algorithm lives there) its own `process`; distilabel's Pipeline is never
used. Its LLM is a DistillLLM bound to this run's client, so every request is cached, retried
by error class, rate-limited and counted against the budget, and a killed run resumes from the
cache instead of turning failed batches into empty rows.

Rows go to the task in batches of --batch-size (distilabel's input_batch_size): a batch's
requests are in flight together, and batches run one after another in a worker thread, the
task's random draws (EvolInstruct's mutations, Magpie's system prompts) from numpy's and
Python's generators seeded from --seed and the batch, so a resumed or repeated run asks the
same requests. A generator task (no input rows) is one item: it runs whole, and a resumed
run replays the requests it had made from the cache.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import importlib
import logging
import typing
import warnings
from types import SimpleNamespace
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from distill.client import Client
from distill.config import EngineConfig, InputConfig, cli, load_yaml
from distill.errors import ConfigError, DistillError, InputError
from distill.export import Built, split_dataset
from distill.generation import execute
from distill.inputs import load_input
from distill.items import content_hash
from distill.methods import GenerationMethod
from distill.seeding import derive_seed

DEFAULT_BATCH = 50  # distilabel's input_batch_size


class TaskConfig(EngineConfig, InputConfig):
    task: str = Field(description="The distilabel task: a class of distilabel.steps.tasks by name (TextGeneration, "
                      "UltraFeedback, EvolInstruct, ...) or by import path (package.module.Class).",
                      json_schema_extra=cli(argument="NAME"))
    input: str | None = Field(None, description="Rows for the task: a .jsonl/.json/.parquet/.csv/.txt file, a saved "
                              "dataset, a run directory or a Hub id (not for a generator task).")
    arg: dict[str, Any] = Field(default_factory=dict, description="An argument of the task, KEY=VALUE (the value "
                                "read as YAML: num_generations=2, aspect=honesty); repeatable.",
                                json_schema_extra=cli(repeat=True))
    batch_size: int = Field(DEFAULT_BATCH, ge=1, description="Rows the task handles at once (distilabel's "
                            "input_batch_size); their requests are in flight together. With --batch-api, all rows.")
    max_new_tokens: int = Field(512, ge=1, description="Most tokens per generation.")
    temperature: float = Field(1.0, ge=0, le=2, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")

    @field_validator("arg", mode="before")
    @classmethod
    def _arguments(cls, value: Any) -> Any:
        """KEY=VALUE pairs; the values stay text until the task's fields say how to read them (`task_arguments`)."""
        if not isinstance(value, (list, tuple)):
            return value
        found: dict[str, Any] = {}
        for pair in value:
            key, sep, text = str(pair).partition("=")
            if not sep or not key.strip().isidentifier():
                raise ValueError(f"takes KEY=VALUE, not {pair!r}")
            found[key.strip()] = text
        return found


@functools.cache
def _distilabel() -> SimpleNamespace:
    """distilabel's task classes and distill's LLM for them, imported only when a task runs."""
    try:
        with warnings.catch_warnings():  # distilabel's own models trip pydantic's newer warnings
            warnings.simplefilter("ignore")
            from distilabel.steps import tasks
            from distilabel.steps.tasks.base import GeneratorTask, ImageTask, _Task

            from distill.integrations.distilabel import DistillLLM
    except ImportError as err:
        raise DistillError(f"distill generate task needs distilabel ({err}): pip install 'distill[distilabel]'") from None
    logging.getLogger("distilabel").setLevel(logging.ERROR)  # its per-batch chatter; failures come back as rows
    return SimpleNamespace(tasks=tasks, Task=_Task, GeneratorTask=GeneratorTask, ImageTask=ImageTask, LLM=DistillLLM)


def task_class(name: str):
    """The task class NAME names: a class of distilabel.steps.tasks, or an import path."""
    found_in = _distilabel()
    tasks, base = found_in.tasks, found_in.Task
    if "." in name:
        module, _, attr = name.rpartition(".")
        try:
            found = getattr(importlib.import_module(module), attr, None)
        except ImportError as err:
            raise ConfigError(f"cannot import {module} for task {name}: {err}") from None
    else:
        found = getattr(tasks, name, None)
    if not (isinstance(found, type) and issubclass(found, base)):
        known = sorted(n for n in dir(tasks) if isinstance(getattr(tasks, n), type) and issubclass(getattr(tasks, n), base))
        close = difflib.get_close_matches(name.rpartition(".")[2], known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else f" (distilabel's tasks: {', '.join(known)})"
        raise ConfigError(f"{name} is not a distilabel task{hint}")
    if issubclass(found, found_in.ImageTask):
        raise ConfigError(f"{name} is an image task: distill generate task runs text tasks")
    return found


def make_task(config: TaskConfig):
    """The task, its arguments checked and loaded, with an unbound DistillLLM."""
    klass = task_class(config.task)
    llm = _distilabel().LLM.for_run(seed=config.seed, generation_kwargs={
        "max_new_tokens": config.max_new_tokens, "temperature": config.temperature, "top_p": config.top_p})
    arguments = task_arguments(klass, config.arg)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            task = klass(llm=llm, **arguments)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "missing":
            raise ConfigError(f"{klass.__name__} needs --arg {where}=VALUE") from None
        raise ConfigError(f"--arg {where}: {first['msg']} ({klass.__name__})") from None
    except (TypeError, ValueError) as err:  # a task's own checks of its arguments
        raise ConfigError(f"{klass.__name__}: {' '.join(str(err).split())}") from None
    schema = task.get_structured_output() if task.use_default_structured_output else None
    if schema and not llm.structured_output:  # distill asks for it itself: no instructor or outlines needed
        llm.structured_output = {"format": "json", "schema": schema}
    try:
        task.load()
    except ImportError as err:
        raise DistillError(f"{klass.__name__} needs a package that is not installed: {err}") from None
    except Exception as err:  # noqa: BLE001 - the task's own checks of its arguments (DistilabelUserError, ...)
        raise ConfigError(f"{klass.__name__}: {' '.join(str(err).split())}") from None
    return task, llm


def task_arguments(klass: type, given: dict[str, Any]) -> dict[str, Any]:
    """The task's arguments: a text value of a text field as typed (a Jinja template, a system
    prompt), any other read as YAML (num_generations=2, columns=[a, b], group_generations=true)."""
    arguments: dict[str, Any] = {}
    for key, value in given.items():
        if key in ("llm", "name", "pipeline"):
            raise ConfigError(f"--arg {key} is distill's to set, not an argument of the task")
        field = klass.model_fields.get(key)
        kinds = set(typing.get_args(field.annotation)) - {type(None)} if field else set()
        text_field = field is not None and (field.annotation is str or kinds == {str})
        if isinstance(value, str) and not text_field:
            try:
                value = load_yaml(value) if value.strip() else ""
            except yaml.YAMLError as err:
                raise ConfigError(f"--arg {key}: not a YAML value ({' '.join(str(err).split())})") from None
        arguments[key] = value
    return arguments


def check_columns(task, rows: list[dict[str, Any]], source: str) -> None:
    missing = [c for c, required in task.get_inputs().items() if required and c not in rows[0]]
    if missing:
        raise InputError(f"input {source} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)} that "
                         f"{type(task).__name__} reads (columns: {', '.join(rows[0]) or 'none'}); rename one with "
                         "--column-map OLD=NEW")


def seed_globals(seed: int) -> None:
    """distilabel's tasks draw from the global generators: seed both for this batch."""
    import random

    import numpy

    random.seed(seed)
    numpy.random.seed(seed)


def plain(value: Any) -> Any:
    """A task's row as JSON can hold it (numpy scalars and arrays as Python values)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy
        return value.tolist()
    return value


def run(config: TaskConfig):
    task, llm = make_task(config)
    generator = isinstance(task, _distilabel().GeneratorTask)
    if generator:
        if config.input is not None:
            raise ConfigError(f"{type(task).__name__} is a generator task: it takes no --input")
        items: list[tuple[str, Any]] = [("0", {"task": config.task, "arg": config.arg})]
    else:
        if config.input is None:
            raise ConfigError(f"{type(task).__name__} reads rows: give them with --input")
        rows = load_input(config)
        check_columns(task, rows, config.input)
        # With the Batch API the rows are one batch: each round of the task's requests is one provider batch.
        size = len(rows) if config.batch_api else config.batch_size
        items = [(str(n), rows[start:start + size]) for n, start in enumerate(range(0, len(rows), size))]

    def process(item_id: str, item: Any) -> list[dict[str, Any]]:
        seed_globals(derive_seed(config.seed, "batch", item_id))
        if generator:
            return [row for batch, _ in task.process(offset=0) for row in batch]
        return [row for batch in task.process([dict(r) for r in item]) for row in batch]

    def make_work(client: Client):
        llm.bind(client, asyncio.get_running_loop())
        one_at_a_time = asyncio.Lock()  # the task's random draws come from global generators

        async def work(item_id: str, item: Any) -> dict[str, Any]:
            async with one_at_a_time:
                try:
                    return {"rows": plain(await asyncio.to_thread(process, item_id, item))}
                except asyncio.CancelledError:
                    llm.stop()
                    raise
                except DistillError:  # the client's: a rejection fails this batch, a budget stops the run, ...
                    raise
                except Exception as err:  # noqa: BLE001 - the task's own code failed: stop, in one line
                    raise DistillError(f"{type(task).__name__} failed on batch {item_id}: "
                                       f"{type(err).__name__}: {err}") from None

        return work

    outputs = [c for c in task.get_outputs() if c != "model_name"]
    inputs = list(task.get_inputs())

    def prompt_of(row: dict[str, Any]) -> str:
        """What --test-size splits by: the input a row answers (its generations stay on one side);
        a generator's rows each stand alone."""
        return content_hash({c: row.get(c) for c in inputs} if inputs else {c: row.get(c) for c in outputs})

    def build(records: list[dict[str, Any]]) -> Built:
        rows = [row for record in records for row in record["rows"]]
        unparsed = sum(1 for row in rows if outputs and all(_empty(row.get(c)) for c in outputs))
        notes = [(f"{unparsed} of {len(rows)} rows hold no output: the task could not parse the model's reply "
                  "(the raw reply is in distilabel_metadata).")] if unparsed else []
        return split_dataset(rows, None, config.test_size, config.seed, group=prompt_of,
                             notes={"unparsed": unparsed} if unparsed else {}, card_notes=[_task_note(config), *notes])

    try:
        return execute(METHOD, config, items, make_work, build)
    finally:
        task.unload()


def _empty(value: Any) -> bool:
    """An output the task's parser could not fill: None, or a list of Nones (UltraFeedback's ratings)."""
    return value is None or (isinstance(value, list) and all(v is None for v in value))


def _task_note(config: TaskConfig) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in config.arg.items())
    return f"Made by distilabel's `{config.task}` task{f' ({shown})' if shown else ''}, its requests sent by distill."


METHOD = GenerationMethod(
    command="generate task",
    config=TaskConfig,
    run=run,
    help="Run a distilabel task on distill's engine: cached, resumable, rate-limited, within budget.\n\n"
         "NAME is a task of distilabel.steps.tasks (TextGeneration, UltraFeedback, SelfInstruct, EvolInstruct, ...) "
         "or an import path (package.module.Class). Needs the `distilabel` extra.",
    title="distilabel task",
    description="Each row was made by a distilabel task (its prompts and parsing), its requests sent through distill's "
                "client.",
    made="batches run",
    next_step="look at them with `distill view {out}`",
)

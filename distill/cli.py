"""The `distill` command line: a lazy click group.

Each subcommand is named by its import path and imported only when it runs, so
`distill --help` stays fast and never imports torch or vllm. Errors a user can act on
come out as one line on stderr with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading

import click

from distill import __version__, secrets
from distill.errors import DistillError


class LazyGroup(click.Group):
    def __init__(self, *args, lazy_subcommands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_subcommands])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy_subcommands:
            module, attr = self.lazy_subcommands[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


class RootGroup(LazyGroup):
    """The top level: the commands named below, and a group per kind of generation method
    (`generate`, `rate`, ...) made from the methods' declarations (distill.methods)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from distill.methods import groups

        return sorted({*super().list_commands(ctx), *groups()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        found = super().get_command(ctx, name)
        if found is None:
            from distill.methods import groups

            if name in groups():
                return MethodGroup(name, help=GROUP_HELP.get(name))
        return found


GROUP_HELP = {"generate": "Generate data with a teacher model.", "rate": "Rank data with AI feedback."}


class MethodGroup(click.Group):
    """The methods of one group, each a command made from its declaration."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from distill.methods import groups

        return sorted(m.name for m in groups()[self.name])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from distill.methods import method

        declared = method(f"{self.name} {name}")
        return method_command(declared) if declared else None


def method_command(declared) -> click.Command:
    """A generation method's command: its config's fields as options, then the closing lines."""
    from distill.cli_options import config_command
    from distill.commands.report import report

    def run(config) -> None:
        report(declared.run(config), declared.made, declared.next_step.format(out=config.output))

    return config_command(declared.name, declared.config, run, declared.help)


@click.group(
    cls=RootGroup,
    lazy_subcommands={
        "binarize": "distill.commands.binarize:binarize",
        "filter": "distill.commands.filter:filter",
        "merge": "distill.commands.merge:merge",
        "models": "distill.commands.models:models",
        "push": "distill.commands.push:push",
        "stats": "distill.commands.stats:stats",
        "train": "distill.commands.train:train",
        "view": "distill.commands.view:view",
        "zephyr": "distill.commands.zephyr:zephyr",
    },
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="distill")
def cli() -> None:
    """distill: turn a strong teacher model into training data, and train a small chat model on it."""


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a command as Ctrl-C does: one line, exit 130


def main(argv: list[str] | None = None) -> None:
    secrets.register_env(*secrets.SECRET_ENV)  # never printed, whichever message would carry them
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # Not click's own main: on a Ctrl-C it prints an empty line before its Abort.
        with cli.make_context("distill", args) as ctx:
            cli.invoke(ctx)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.Abort:
        _error("aborted")
        sys.exit(130)
    except click.ClickException as err:
        _error(err.format_message())
        sys.exit(err.exit_code)
    except DistillError as err:
        _error(str(err))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        _error("interrupted")
        sys.exit(130)
    except Exception as err:  # a bug: say so in one line; DISTILL_DEBUG=1 shows the traceback
        if os.environ.get("DISTILL_DEBUG"):
            raise
        if isinstance(err, OSError) and err.errno is not None:  # the user's disk, permissions or network: not a bug
            _error(f"{str(err.filename) + ': ' if err.filename else ''}{err.strerror or err}")
            sys.exit(1)
        _error(f"internal error: {type(err).__name__}: {err} (set DISTILL_DEBUG=1 for a traceback, and please report it)")
        sys.exit(1)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _error(message: str) -> None:
    """The one line a failed command prints: whitespace folded, secrets redacted."""
    click.echo(f"error: {secrets.redact(' '.join(str(message).split()))}", err=True)

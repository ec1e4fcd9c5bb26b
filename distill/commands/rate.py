import click

from distill.cli import LazyGroup


@click.group(cls=LazyGroup, lazy_subcommands={"ultrafeedback": "distill.commands.ultrafeedback:ultrafeedback"})
def rate() -> None:
    """Rank data with AI feedback."""

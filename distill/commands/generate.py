import click

from distill.cli import LazyGroup


@click.group(cls=LazyGroup, lazy_subcommands={
    "camel": "distill.commands.camel:camel",
    "completions": "distill.commands.completions:completions",
    "self-instruct": "distill.commands.self_instruct:self_instruct",
    "ultrachat": "distill.commands.ultrachat:ultrachat",
})
def generate() -> None:
    """Generate data with a teacher model."""

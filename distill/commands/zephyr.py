"""`distill zephyr`: the options are ZephyrConfig's fields (distill.cli_options), plus --dry-run."""

import click

from distill.cli_options import config_command

HELP = """The Zephyr-7B recipe in one command: UltraChat dialogues, cleaning, UltraFeedback preferences,
then dSFT and dDPO of the base model.

--model is the teacher (the dialogues' assistant and user, and the judge unless --judge); each
step writes its own directory under -o (ultrachat, ultrachat-clean, feedback, sft, dpo). The same
command again resumes where it stopped. Options of the steps beyond these go in --config (keys
`ultrachat:` and `ultrafeedback:`)."""


def run(config, dry_run: bool) -> None:
    from distill.pipelines import zephyr as recipe

    if dry_run:
        for line in recipe.describe(recipe.plan(config), config):
            click.echo(line)
        return
    summary = recipe.run(config, lambda line: click.echo(line, err=True))
    parts = [f"{summary['dialogues']} dialogues", f"{summary['prompts_rated']} prompts rated"]
    parts += [f"{stage} train loss {summary[key]:.4f}" for stage, key in (("dSFT", "sft_train_loss"), ("dDPO", "dpo_train_loss"))
              if summary.get(key) is not None]
    click.echo(f"done: {', '.join(parts)}; everything in {config.output}/")


def _zephyr() -> click.Command:
    from distill.pipelines.zephyr import ZephyrConfig

    dry_run = click.Option(["--dry-run"], is_flag=True, help="Check everything and print what each step would do; "
                           "start nothing.")
    return config_command("zephyr", ZephyrConfig, run, HELP, extra=[dry_run])


zephyr = _zephyr()

"""`distill zephyr`: the options are ZephyrConfig's fields (distill.cli_options), plus --dry-run."""

import click

from distill.cli_options import config_command

HELP = """The Zephyr-7B recipe in one command: UltraChat dialogues, cleaning, UltraFeedback preferences,
then dSFT and dDPO of the base model.

--model is the teacher (the dialogues' assistant and user, and the judge unless --judge); each
step writes its own directory under -o (ultrachat, ultrachat-clean, feedback, sft, dpo; compare with
--compare-prompts and eval with --eval, which judge the base, dSFT and dDPO models, summed up in
results.md). The same command again resumes where it stopped. --profile cpu runs the whole recipe
offline on a laptop CPU with the embedded models. Options of the steps beyond these go in --config
(keys `ultrachat:`, `ultrafeedback:`, `pairwise:` and `mt_bench:`)."""


def run(config, dry_run: bool) -> None:
    from distill.pipelines import zephyr as recipe

    if dry_run:
        for line in recipe.describe(recipe.plan(config), config):
            click.echo(line)
        return
    summary = recipe.run(config, lambda line: click.echo(line, err=True))
    parts = [f"{summary['dialogues']} dialogues ({summary['dialogues_kept']} kept for dSFT)",
             f"{summary['prompts_rated']} prompts rated ({summary['pairs']} pairs)"]
    for stage, label in (("sft", "dSFT"), ("dpo", "dDPO")):
        report = summary.get(stage)
        if report:
            said = [f"{report['steps']} steps" if report["steps"] is not None else None,
                    f"train loss {report['train_loss']:.4f}" if report["train_loss"] is not None else None,
                    f"reward accuracy {report['reward_accuracy']:.2f}" if report["reward_accuracy"] is not None else None]
            parts.append(f"{label} {', '.join(p for p in said if p)}")
    click.echo(f"done: {'; '.join(parts)}")
    for step, path in summary["artefacts"].items():
        took = summary["seconds"].get(step)
        click.echo(f"  {step:<10} {path}" + (f"  ({took:.0f} s)" if took is not None else ""))
    if "results" in summary:
        from distill.pipelines.zephyr_eval import ablation_lines

        click.echo("")
        for line in ablation_lines(summary.get("eval"), summary.get("compare")):
            click.echo(line)
        click.echo(f"the answers side by side: {summary['results']}")

def _zephyr() -> click.Command:
    from distill.pipelines.zephyr import ZephyrConfig

    dry_run = click.Option(["--dry-run"], is_flag=True, help="Check everything and print what each step would do; "
                           "start nothing.")
    return config_command("zephyr", ZephyrConfig, run, HELP, extra=[dry_run])


zephyr = _zephyr()

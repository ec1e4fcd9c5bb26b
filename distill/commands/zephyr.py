import click

from distill.commands.options import engine_options


@click.command()
@click.option("--dialogues", type=int, help="UltraChat dialogues to generate for dSFT.  [default: 1000]")
@click.option("--filters", type=click.Path(), help="A `distill filter run` plan for the dialogues.  [default: dedup, refusal, degenerate, repetition]")
@click.option("--prompts", help="Prompts for UltraFeedback: a file, dataset or Hub id.  [default: the clean dialogues' opening requests]")
@click.option("--num-prompts", type=int, help="Rate at most this many prompts.")
@click.option("--pool", help="Models that answer the prompts, comma-separated specs [BACKEND:]MODEL[@BASE_URL] (at least 2).")
@click.option("--judge", help="The model that rates the answers.  [default: --model]")
@click.option("--base-model", help="The model to train.  [default: mistralai/Mistral-7B-v0.1]")
@click.option("--preset", type=click.Choice(["paper", "handbook", "qlora"]), help="The zephyr-7b-beta recipes to train with.  [default: handbook]")
@click.option("--sft", multiple=True, help="A dSFT recipe override KEY=VALUE, e.g. training.learning_rate=1e-5; repeatable.")
@click.option("--dpo", multiple=True, help="A dDPO recipe override KEY=VALUE; repeatable.")
@click.option("--num-gpus", type=int, help="GPUs to train on.  [default: 1]")
@click.option("--accelerate-config", help="multi_gpu, deepspeed_zero3 or fsdp, or your own accelerate config file.")
@click.option("--push-to-hub", help="ORG/NAME: push the datasets as NAME-ultrachat and NAME-feedback, the models as NAME-sft and NAME-dpo.")
@click.option("--private", is_flag=True, default=None, help="Make the pushed repositories private.")
@click.option("--dry-run", is_flag=True, help="Check everything and print what each step would do; start nothing.")
@click.option("--stop-after", type=click.Choice(["data", "sft", "dpo"]), help="Stop after the data, or after dSFT.  [default: dpo]")
@engine_options
@click.pass_context
def zephyr(ctx: click.Context, dry_run: bool, **_) -> None:
    """The Zephyr-7B recipe in one command: UltraChat dialogues, cleaning, UltraFeedback
    preferences, then dSFT and dDPO of the base model.

    --model is the teacher (the dialogues' assistant and user, and the judge unless
    --judge); each step writes its own directory under -o (ultrachat, ultrachat-clean,
    feedback, sft, dpo). The same command again resumes where it stopped. Options of the
    steps beyond these go in --config (keys `ultrachat:` and `ultrafeedback:`).
    """
    from distill.config import resolve_config
    from distill.pipelines import zephyr as recipe

    config = resolve_config(recipe.ZephyrConfig, ctx, ctx.params.get("config"))
    if dry_run:
        for line in recipe.describe(recipe.plan(config), config):
            click.echo(line)
        return
    summary = recipe.run(config, lambda line: click.echo(line, err=True))
    parts = [f"{summary['dialogues']} dialogues", f"{summary['prompts_rated']} prompts rated"]
    parts += [f"{stage} train loss {summary[key]:.4f}" for stage, key in (("dSFT", "sft_train_loss"), ("dDPO", "dpo_train_loss"))
              if summary.get(key) is not None]
    click.echo(f"done: {', '.join(parts)}; everything in {config.output}/")

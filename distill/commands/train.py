import click

from distill.cli import LazyGroup


@click.group(cls=LazyGroup, lazy_subcommands={"sft": "distill.commands.train:sft", "dpo": "distill.commands.train:dpo"})
def train() -> None:
    """dSFT and dDPO stages on TRL (needs the `train` extra).

    Recipes ship in distill/train/recipes (e.g. --config zephyr-7b-beta/sft_paper); any
    recipe key can be overridden as KEY=VALUE, e.g. training.learning_rate=1e-5.
    """


def _stage(stage: str):
    @click.command(name=stage, help=f"{'Supervised fine-tuning (dSFT) on messages' if stage == 'sft' else 'DPO (dDPO) on chosen/rejected pairs'}, "
                                    "on one device, or on several through accelerate.")
    @click.option("--config", "config_file", required=True, help="Recipe: a YAML file or a shipped name like zephyr-7b-beta/sft_paper.")
    @click.argument("overrides", nargs=-1)
    @click.option("--num-gpus", type=int, default=1, show_default=True, help="GPUs per machine.")
    @click.option("--accelerate-config", help="multi_gpu, deepspeed_zero3 or fsdp (shipped), or your own accelerate "
                                               "config file.  [default: multi_gpu when there are several processes]")
    @click.option("--num-machines", type=int, default=1, show_default=True)
    @click.option("--machine-rank", type=int, default=0, show_default=True)
    @click.option("--main-process-ip")
    @click.option("--main-process-port", type=int)
    @click.option("--push-to-hub", is_flag=True, help="Push the trained model to the Hub (token from HF_TOKEN or hf auth login).")
    @click.option("--hub-model-id", help="The model repository, org/name.")
    @click.option("--dry-run", is_flag=True, help="Check what the run checks before its first step (offline, no model "
                                                 "loaded), print the command and the resolved recipe; start nothing.")
    def command(config_file, overrides, num_gpus, accelerate_config, num_machines, machine_rank, main_process_ip,
                main_process_port, push_to_hub, hub_model_id, dry_run):
        from distill.train.launch import check_installed, in_process, launch_command
        from distill.train.recipe import find_recipe, load_recipe, resolve_batch
        from distill.train.stages import preflight

        flags = [*(["push_to_hub=true"] if push_to_hub else []), *([f"hub_model_id={hub_model_id}"] if hub_model_id else [])]
        recipe = load_recipe(find_recipe(config_file), stage, [*overrides, *flags])
        note = resolve_batch(recipe, num_gpus * num_machines)
        resolved = recipe.output_dir / "recipe.yaml"
        cmd = launch_command(stage, resolved, num_gpus, accelerate_config, num_machines, machine_rank,
                             main_process_ip, main_process_port)
        check_installed(accelerate_config)
        # What the run checks before its first step, a dry run checks too (offline; no model loads).
        checked = preflight(recipe, dry_run=dry_run, in_process=in_process(cmd))
        for line in [*([note] if note else []), *checked.notes]:  # after every check: an error stays the one line on stderr
            click.echo(line, err=True)
        if dry_run:
            import shlex

            import yaml

            click.echo(shlex.join(cmd))
            click.echo(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False), nl=False)
            return
        from distill.train.launch import run_stage

        metrics = run_stage(stage, recipe, cmd, resolved, accelerate_config, checked=checked)
        loss = f" (train loss {metrics['train_loss']:.4f})" if "train_loss" in metrics else ""
        click.echo(f"done: {stage} model in {recipe.output_dir}{loss}")

    return command


sft = _stage("sft")
dpo = _stage("dpo")

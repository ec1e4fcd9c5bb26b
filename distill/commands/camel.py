import click

from distill.commands.options import engine_options, run_pipeline


@click.command()
@click.option("-n", "--num-dialogues", type=int, help="Dialogues to make.  [default: 100]")
@click.option("--assistant-roles", help="Roles for the AI assistant: a file or dataset (column role or text).  [default: written by the teacher]")
@click.option("--user-roles", help="Roles for the AI user: a file or dataset (column role or text).  [default: written by the teacher]")
@click.option("--num-roles", type=int, help="Roles the teacher writes per side when no file gives them.  [default: 50]")
@click.option("--tasks-per-pair", type=int, help="Tasks the teacher lists per (assistant role, user role) pair.  [default: 10]")
@click.option("--word-limit", type=int, help="Most words of a specified task.  [default: 50]")
@click.option("--max-turns", type=int, help="Most exchanges (instruction + solution) per dialogue.  [default: 10]")
@click.option("--min-turns", type=int, help="Drop dialogues with fewer exchanges than this.  [default: 1]")
@click.option("--keep-scaffolding", is_flag=True, default=False, help="Keep 'Instruction:', 'Input:', 'Solution:' and 'Next request.' in the turns.")
@click.option("--assistant-model", help="Model that plays the AI assistant, [BACKEND:]MODEL[@BASE_URL].  [default: --model]")
@click.option("--user-model", help="Model that plays the AI user.  [default: the assistant model]")
@click.option("--task-model", help="Model that writes roles and tasks and specifies tasks.  [default: the assistant model]")
@click.option("--temperature", type=float, help="AI assistant sampling temperature.  [default: 0.7]")
@click.option("--user-temperature", type=float, help="AI user sampling temperature.  [default: 0.7]")
@click.option("--task-temperature", type=float, help="Temperature for role lists, task lists and the task specifier.  [default: 1.0]")
@click.option("--top-p", type=float, help="[default: 1.0]")
@click.option("--max-new-tokens", type=int, help="Most tokens per solution; a longer one stops the dialogue.  [default: 512]")
@click.option("--user-max-new-tokens", type=int, help="Most tokens per instruction; a longer one stops the dialogue.  [default: 256]")
@click.option("--task-max-new-tokens", type=int, help="Most tokens per role list, task list or specified task.  [default: 512]")
@engine_options
@click.pass_context
def camel(ctx: click.Context, **_) -> None:
    """CAMEL role-play dialogues (Li et al. 2023), AI Society setting, for supervised fine-tuning.

    The teacher lists assistant roles, user roles and, per pair of roles, tasks; a task
    is made specific, then an AI user instructs an AI assistant step by step under
    inception prompts until the task is done. Writes train_sft/test_sft splits with the
    columns of HuggingFaceH4/ultrachat_200k plus roles and tasks.
    """
    run_pipeline(ctx, "camel", "CamelConfig", "dialogues made",
                 "look at them with `distill stats {out}`; clean them with `distill filter dedup {out} -o {out}-clean`; "
                 "train on them with `distill train sft`")

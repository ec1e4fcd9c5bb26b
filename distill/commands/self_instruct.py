import click

from distill.commands.options import engine_options, run_pipeline


@click.command(name="self-instruct")
@click.option("-n", "--num-instructions", type=int, help="New instructions to bootstrap.  [default: 100]")
@click.option("--seeds", help="Seed tasks: a file or dataset with an instruction column (Self-Instruct's seed_tasks.jsonl "
                              "shape works as is).  [default: 25 built in]")
@click.option("--include-seeds", is_flag=True, default=None, help="Put the seed tasks' own instances in the dataset too.")
@click.option("--human-per-prompt", type=int, help="Seed tasks shown in each bootstrap prompt.  [default: 6]")
@click.option("--machine-per-prompt", type=int, help="Model-written tasks shown in each bootstrap prompt.  [default: 2]")
@click.option("--list-length", type=int, help="Length of the task list the model is asked to complete.  [default: 16]")
@click.option("--batch-size", type=int, help="Bootstrap prompts per round.  [default: 8]")
@click.option("--patience", type=int, help="Stop bootstrapping after this many rounds in a row without a new instruction.  [default: 10]")
@click.option("--rouge-threshold", type=float, help="Keep a new instruction only if its ROUGE-L with every kept one is below this.  [default: 0.7]")
@click.option("--min-words", type=int, help="Shortest instruction kept, in words.  [default: 4]")
@click.option("--max-words", type=int, help="Longest instruction kept, in words.  [default: 150]")
@click.option("--unsuited-keywords", multiple=True, help="Drop instructions with this word; repeatable, replaces the built-in list (image, graph, file, ...).")
@click.option("--max-instances", type=int, help="Most instances kept per instruction.  [default: 5]")
@click.option("--prompt-style", type=click.Choice(["auto", "chat", "completion"]),
              help="completion: plain prompts a base model continues (as the paper did with GPT-3); chat: one user "
                   "message.  [default: auto: completion on llamacpp, else chat]")
@click.option("--temperature", type=float, help="Bootstrap sampling temperature.  [default: 0.7]")
@click.option("--top-p", type=float, help="Bootstrap nucleus sampling.  [default: 0.5]")
@click.option("--presence-penalty", type=float, help="Bootstrap presence penalty, as the paper.  [default: 2.0]")
@click.option("--max-new-tokens", type=int, help="Most tokens per bootstrap reply.  [default: 1024]")
@click.option("--instance-temperature", type=float, help="[default: 0.0]")
@click.option("--instance-presence-penalty", type=float, help="[default: 1.5]")
@click.option("--instance-max-new-tokens", type=int, help="Most tokens per reply with instances.  [default: 350]")
@engine_options
@click.pass_context
def self_instruct(ctx: click.Context, **_) -> None:
    """Self-Instruct (Wang et al. 2023): bootstrap instructions and their instances from seed tasks.

    Writes a train split with instruction, input, output, is_classification and messages
    (one row per instance). With no backend and no endpoint it runs the embedded llama.cpp
    model with completion-style prompts, as the paper did with a base model.
    """
    run_pipeline(ctx, "self_instruct", "SelfInstructConfig", "instructions made",
                 "look at them with `distill stats {out}`; train on them with `distill train sft`")

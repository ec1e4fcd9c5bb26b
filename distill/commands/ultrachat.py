import click

from distill.commands.options import engine_options, run_pipeline


@click.command()
@click.option("-n", "--num-dialogues", type=int, help="Dialogues to make.  [default: 100]")
@click.option("--sectors", help="Mix of sectors, e.g. world=0.5,creation=0.3,materials=0.2.  [default: that mix; world=0.625,creation=0.375 without --materials]")
@click.option("--topics", help="Meta-topics for the world sector: a file or dataset (column topic or text).  [default: 30 built in]")
@click.option("--materials", help="Corpus for the materials sector: a file, saved dataset or Hub id.")
@click.option("--materials-column", help="Column of the corpus holding the text.  [default: text]")
@click.option("--world-rounds", help="Rounds (user turn + answer) of a world dialogue, LOW-HIGH.  [default: 3-7]")
@click.option("--creation-rounds", help="Rounds of a creation dialogue.  [default: 2-4]")
@click.option("--materials-rounds", help="Rounds of a materials dialogue.  [default: 2-4]")
@click.option("--subtopics", type=int, help="Subtopics asked per meta-topic.  [default: 10]")
@click.option("--detail-share", type=float, help="Share of creation requests rewritten in more detail.  [default: 0.3]")
@click.option("--assistant-model", help="Model that answers.  [default: --model]")
@click.option("--user-model", help="Model that plays the user.  [default: the assistant model]")
@click.option("--system", help="System prompt for the assistant.")
@click.option("--temperature", type=float, help="Assistant and list sampling temperature.  [default: 0.7]")
@click.option("--top-p", type=float, help="[default: 1.0]")
@click.option("--max-new-tokens", type=int, help="Most tokens per assistant answer; a longer one stops the dialogue.  [default: 512]")
@click.option("--user-temperature", type=float, help="[default: 1.0]")
@click.option("--user-max-new-tokens", type=int, help="Most tokens per simulated user turn.  [default: 256]")
@click.option("--list-max-new-tokens", type=int, help="Most tokens per generated list of subtopics, questions or requests.  [default: 512]")
@click.option("--min-turns", type=int, help="Drop dialogues with fewer rounds than this.  [default: 1]")
@click.option("--disclaimer-patterns", multiple=True, help="Regex: an assistant turn matching it drops the dialogue; repeatable, replaces the built-in list.")
@click.option("--user-as-assistant-patterns", multiple=True, help="Regex: a user turn matching it is the user model answering as the assistant; repeatable, replaces the built-in list.")
@engine_options
@click.pass_context
def ultrachat(ctx: click.Context, **_) -> None:
    """UltraChat-style multi-turn dialogues (Ding et al. 2023) for supervised fine-tuning.

    Opening requests from three sectors (questions about the world, creation and
    generation, assistance on existing materials), then a dialogue between an assistant
    model and a user-simulator model. Writes train_sft/test_sft splits with the columns of
    HuggingFaceH4/ultrachat_200k. With no backend and no endpoint it runs the embedded
    llama.cpp model (a small base model: for demos and tests, not production data).
    """
    run_pipeline(ctx, "ultrachat", "UltraChatConfig", "dialogues made",
                 "look at them with `distill stats {out}`; clean them with `distill filter dedup {out} -o {out}-clean`; "
                 "train on them with `distill train sft`")

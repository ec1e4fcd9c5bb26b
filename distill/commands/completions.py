import click

from distill.commands.options import engine_options, input_options, run_pipeline


@click.command()
@input_options
@click.option("--column", help="Column holding the prompt (a string) or chat (a list of messages).  [default: prompt, messages, instruction, text, question]")
@click.option("--mode", type=click.Choice(["chat", "text"]), help="chat: chat requests; text: plain completions for base models.  [default: chat]")
@click.option("--system", help="System prompt for every chat.")
@click.option("--samples", type=int, help="Responses per prompt.  [default: 1]")
@click.option("--temperature", type=float, help="[default: 0.7]")
@click.option("--top-p", type=float, help="[default: 1.0]")
@click.option("--max-new-tokens", type=int, help="Most tokens per response.  [default: 512]")
@click.option("--stop", multiple=True, help="Stop sequence; repeatable.")
@engine_options
@click.pass_context
def completions(ctx: click.Context, **_) -> None:
    """Answer every prompt (or chat) of an input column with the chosen backend and model.

    Writes a dataset of prompt, response, finish reason and token usage to RUN_DIR/data/.
    With no backend and no endpoint configured it runs the embedded llama.cpp model
    (Gemma 3 270M, a small base model: for demos and tests, not production data).
    """
    run_pipeline(ctx, "completions", "CompletionsConfig", "completions made", "look at them with `distill stats {out}`")

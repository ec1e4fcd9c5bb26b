import click

from distill.commands.options import engine_options, input_options, run_pipeline


@click.command()
@input_options
@click.option("--column", help="Column of the prompts (a string, or a chat whose first user turn is taken).  [default: prompt, instruction, messages, question, text]")
@click.option("--models", help="The pool, comma-separated model specs [BACKEND:]MODEL[@BASE_URL]; e.g. gpt-4o-mini,mistral@http://gpu1:8000/v1.")
@click.option("--completions-per-prompt", type=int, help="Distinct models sampled from the pool per prompt.  [default: 4]")
@click.option("--principles", help="Weights of the system-prompt principles, e.g. helpfulness=0.6,honesty=0.2,truthfulness=0.1,verbalized_calibration=0.1 (the default).")
@click.option("--source-column", help="Column naming each prompt's source, for principles_by_source in --config.")
@click.option("--temperature", type=float, help="Sampling of the completions.  [default: 1.0]")
@click.option("--top-p", type=float, help="[default: 1.0]")
@click.option("--max-new-tokens", type=int, help="Most tokens per completion.  [default: 1024]")
@click.option("--judge", help="The judge model.  [default: --model on the run's backend]")
@click.option("--judge-backend", type=click.Choice(["llamacpp", "openai", "vllm", "fake"]), help="The judge's backend, when not the pool's.")
@click.option("--judge-base-url", multiple=True, help="The judge's endpoint, when not the pool's; repeatable.")
@click.option("--judge-api-key-env", help="Environment variable of the judge endpoint's key.")
@click.option("--judge-temperature", type=float, help="[default: 0.0; retries of unparsable replies use at least 0.7]")
@click.option("--judge-max-new-tokens", type=int, help="[default: 1024]")
@click.option("--structured/--no-structured", default=None, help="Ask for JSON-schema output where the backend supports it.  [default: on]")
@click.option("--parse-retries", type=int, help="New judge samples when a reply cannot be parsed; then its ratings are kept as null.  [default: 2]")
@click.option("--critique", is_flag=True, default=None, help="Also an overall score 1-10 with feedback per completion.")
@click.option("--debias", type=click.Choice(["none", "swap"]), help="swap: rate again in reverse order and average (position bias).  [default: none]")
@click.option("--score", help="What chosen/rejected rank by: mean (of the aspects), overall (needs --critique) or one aspect.  [default: mean]")
@click.option("--rejected", type=click.Choice(["random", "lowest"]), help="Rejected: a seeded random other completion, or the lowest.  [default: random]")
@click.option("--keep-ties", is_flag=True, default=None, help="Keep pairs whose chosen and rejected scores tie.")
@engine_options
@click.pass_context
def ultrafeedback(ctx: click.Context, **_) -> None:
    """UltraFeedback (Cui et al. 2023): completions from a model pool, judge ratings on four
    aspects, and binarized chosen/rejected pairs for DPO, as in ultrafeedback_binarized.

    Writes train_prefs/test_prefs and train_sft/test_sft splits, and a `completions` config
    with every completion, model, principle, order and rating.
    """
    run_pipeline(ctx, "ultrafeedback", "UltraFeedbackConfig", "prompts rated",
                 "look at the pairs with `distill stats {out}`; train on them with `distill train dpo`; "
                 "binarize again with `distill binarize {out}`")

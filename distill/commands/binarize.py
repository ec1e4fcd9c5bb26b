"""`distill binarize`: its options are the binarization fields of `distill rate ultrafeedback`."""

import click

from distill.cli_options import config_options

BINARIZATION = ("score", "rejected", "keep_ties", "test_size", "format")


def _binarize() -> click.Command:
    from distill.pipelines.ultrafeedback import UltraFeedbackConfig

    def callback(run_dir: str, **changes) -> None:
        from distill.pipelines.ultrafeedback import rebinarize

        built = rebinarize(run_dir, **changes)
        pairs = sum(len(rows) for split, rows in built.configs[0].splits.items() if split.endswith("_prefs"))
        click.echo(f"done: {pairs} preference pairs in {run_dir}/data/")

    params = [click.Argument(["run_dir"], type=click.Path(file_okay=False)),
              *config_options(UltraFeedbackConfig, include=BINARIZATION, toggle=True)]
    return click.Command("binarize", params=params, callback=callback, help=(
        "Binarize the ratings of a `distill rate ultrafeedback` run again with other options, without calling any "
        "model: --score mean (the Zephyr paper's rule) or overall (the critique's score, the rule of the script that "
        "built ultrafeedback_binarized; needs a run made with --critique). Options not given keep the run's values "
        "(the defaults shown are those of a new run); the dataset card says which rule made the pairs."))


binarize = _binarize()

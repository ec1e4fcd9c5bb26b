"""The process a training stage runs in: `python -m distill.train.worker {sft|dpo} RECIPE.yaml`.

`distill train` runs it in-process on one device, or under `accelerate launch` (one per GPU).
"""

import sys
from pathlib import Path

from distill.errors import DistillError
from distill.train.recipe import load_recipe
from distill.train.stages import train


def main() -> None:
    stage, path = sys.argv[1], Path(sys.argv[2])
    try:
        train(load_recipe(path, stage, []))
    except DistillError as err:  # one line, as the CLI says it; the launcher reports the exit
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()

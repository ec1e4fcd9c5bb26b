"""How a training stage is started: the global batch arithmetic and the `accelerate launch` command.

One GPU on one machine runs the worker as a plain Python process. Anything more runs it
under `accelerate launch` (one worker per GPU) with a config shipped in
`train/accelerate/` (or the user's own accelerate config file):

    python -m accelerate.commands.launch --config_file multi_gpu.yaml --num_processes 8 \
        --num_machines 1 --machine_rank 0 -m distill.train.worker sft RESOLVED.yaml

`--num_processes` is the total over all machines (accelerate splits it per node), and
the shipped configs leave it unset so that a config used without it fails loudly.
Nothing here imports torch or accelerate: building and printing a command stays cheap.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib import resources
from pathlib import Path
from typing import Callable

from distill.errors import ConfigError, DistillError

WORKER = "distill.train.worker"
ACCELERATE_CONFIGS = ("multi_gpu", "deepspeed_zero3", "fsdp")
# What each shipped config needs installed besides accelerate and torch.
_NEEDS = {"deepspeed_zero3": "deepspeed"}


def _is_file_name(name: str) -> bool:
    return name.endswith((".yaml", ".yml", ".json")) or "/" in name or "\\" in name


def accelerate_config_path(name: str) -> Path:
    """The shipped accelerate config `name`, or the path of the user's own accelerate config file."""
    if _is_file_name(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"accelerate config file {name} does not exist")
        return path
    if name not in ACCELERATE_CONFIGS:
        raise ConfigError(f"unknown accelerate config {name!r}: use one of {', '.join(ACCELERATE_CONFIGS)} or a config file")
    shipped = resources.files("distill.train").joinpath("accelerate", f"{name}.yaml")
    if not shipped.is_file():  # a packaging bug, not a user error, but say it plainly
        raise ConfigError(f"the shipped accelerate config {name}.yaml is missing from this install of distill")
    return Path(str(shipped))


def check_installed(accelerate_config: str | None) -> None:
    """Before launching for real: accelerate (and DeepSpeed for ZeRO-3) must be importable."""
    if accelerate_config is None:
        return
    needed = ["accelerate"] + ([_NEEDS[accelerate_config]] if accelerate_config in _NEEDS else [])
    for module in needed:
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"--accelerate-config {accelerate_config} needs the {module} package: pip install {module}")


def launch_command(
    stage: str,
    resolved_config: Path,
    num_gpus: int,
    accelerate_config: str | None,
    num_machines: int = 1,
    machine_rank: int = 0,
    main_process_ip: str | None = None,
    main_process_port: int | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The command that runs `stage` on `num_gpus` GPUs per machine; see the module docstring."""
    for name, value, low in (("--num-gpus", num_gpus, 1), ("--num-machines", num_machines, 1), ("--machine-rank", machine_rank, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be a whole number >= {low}, not {value!r}")
    if machine_rank >= num_machines:
        raise ConfigError(f"--machine-rank {machine_rank} is out of range for {num_machines} machine(s): use 0 to {num_machines - 1}")
    if main_process_port is not None and not (isinstance(main_process_port, int) and 0 <= main_process_port <= 65535):
        raise ConfigError(f"--main-process-port must be a port number 0-65535, not {main_process_port!r}")
    if num_machines > 1 and not main_process_ip:
        raise ConfigError(f"training on {num_machines} machines needs --main-process-ip (the address of machine rank 0)")

    worker = ["-m", WORKER, stage, str(resolved_config)]
    processes = num_gpus * num_machines
    if processes == 1 and accelerate_config is None:
        return [python, *worker]  # one GPU: no launcher in between
    name = accelerate_config or "multi_gpu"
    if name == "multi_gpu" and processes < 2:
        raise ConfigError("--accelerate-config multi_gpu needs at least 2 GPUs in all; leave it out to train on one GPU")
    command = [
        python, "-m", "accelerate.commands.launch",
        "--config_file", str(accelerate_config_path(name)),
        "--num_processes", str(processes),
        "--num_machines", str(num_machines),
        "--machine_rank", str(machine_rank),
    ]
    if main_process_ip:
        command += ["--main_process_ip", main_process_ip]
    if main_process_port is not None:
        command += ["--main_process_port", str(main_process_port)]
    return command + worker


class TrainingFailed(DistillError):
    """A launched training run exited with an error (its own output said why)."""


def in_process(command: list[str]) -> bool:
    """Whether `command` runs the stage in this process (one device) rather than under accelerate."""
    return "accelerate.commands.launch" not in command


def run_stage(stage: str, recipe, command: list[str], resolved_config: Path, accelerate_config: str | None,
              checked=None, say: Callable[[str], None] | None = None) -> dict:
    """Start a resolved recipe: in this process on one device, else `command` (accelerate launch).

    Returns the final metrics. Everything that can refuse comes before anything is written:
    `checked` is the stage's preflight when the caller made it already, else it is made here
    and its notes (the chat template, ...) go to `say` (default: stderr).
    """
    from distill.run_dir import claim
    from distill.train.recipe import dump_recipe
    from distill.train.stages import preflight

    check_installed(accelerate_config)
    here = in_process(command)
    if checked is None:
        checked = preflight(recipe, in_process=here)
        for line in checked.notes:
            (say or (lambda text: print(text, file=sys.stderr, flush=True)))(line)
    claim(recipe.output_dir)  # marked as distill's when it makes it: only then may zephyr --fresh delete it
    dump_recipe(recipe, resolved_config)
    if here:
        from distill.train.stages import train

        return train(recipe, checked)
    import json
    import subprocess

    code = subprocess.call(command)
    if code:
        error = TrainingFailed(f"the {stage} run failed (exit {code}); the last complete checkpoint in {recipe.output_dir} resumes it")
        error.exit_code = code
        raise error
    metrics = Path(recipe.output_dir) / "train_metrics.json"
    return json.loads(metrics.read_text()) if metrics.is_file() else {}

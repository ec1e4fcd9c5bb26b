"""Launching training: the global batch arithmetic and the `accelerate launch` command per config."""

import sys
from pathlib import Path

import pytest

from distill.errors import ConfigError
from distill.train.launch import ACCELERATE_CONFIGS, accelerate_config_path, check_installed, launch_command
from distill.train.recipe import gradient_accumulation

RESOLVED = Path("/runs/sft/resolved.yaml")


# --- gradient accumulation keeps the global batch ------------------------------------------


@pytest.mark.parametrize(
    "global_batch, per_device, processes, steps",
    [(128, 8, 8, 2), (128, 8, 16, 1), (128, 16, 1, 8), (32, 4, 1, 8), (32, 4, 8, 1), (512, 4, 16, 8), (1, 1, 1, 1)],
)
def test_accumulation_keeps_the_global_batch(global_batch, per_device, processes, steps):
    assert gradient_accumulation(global_batch, per_device, processes) == steps
    assert per_device * processes * steps == global_batch


@pytest.mark.parametrize("global_batch, per_device, processes", [(128, 6, 8, ), (128, 8, 3), (100, 8, 1), (64, 8, 16)])
def test_a_global_batch_that_does_not_divide_is_refused_naming_the_numbers(global_batch, per_device, processes):
    with pytest.raises(ConfigError) as error:
        gradient_accumulation(global_batch, per_device, processes)
    message = str(error.value)
    assert f"global batch size {global_batch}" in message and f"= {per_device * processes}" in message
    assert f"{per_device} per device" in message and f"{processes} process" in message


@pytest.mark.parametrize("args", [(0, 8, 1), (128, 0, 8), (128, 8, 0), (-128, 8, 1), (128, 2.5, 1), (128, True, 1)])
def test_accumulation_needs_whole_numbers_of_at_least_one(args):
    with pytest.raises(ConfigError, match=">= 1"):
        gradient_accumulation(*args)


# --- the command ----------------------------------------------------------------------------


def test_one_gpu_runs_the_worker_directly():
    assert launch_command("sft", RESOLVED, 1, None, python="py") == ["py", "-m", "distill.train.worker", "sft", str(RESOLVED)]
    assert launch_command("dpo", RESOLVED, 1, None)[0] == sys.executable


def test_several_gpus_default_to_the_multi_gpu_config():
    command = launch_command("dpo", RESOLVED, 8, None, python="py")
    assert command == [
        "py", "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config_path("multi_gpu")),
        "--num_processes", "8", "--num_machines", "1", "--machine_rank", "0",
        "-m", "distill.train.worker", "dpo", str(RESOLVED),
    ]


@pytest.mark.parametrize("name", ACCELERATE_CONFIGS)
def test_each_shipped_config_is_launched_with_its_file(name):
    command = launch_command("sft", RESOLVED, 4, name, python="py")
    assert command[:3] == ["py", "-m", "accelerate.commands.launch"]
    assert command[command.index("--config_file") + 1] == str(accelerate_config_path(name))
    assert command[command.index("--num_processes") + 1] == "4"
    assert command[-4:] == ["-m", "distill.train.worker", "sft", str(RESOLVED)]
    assert "--main_process_ip" not in command and "--main_process_port" not in command


@pytest.mark.parametrize("name", ["deepspeed_zero3", "fsdp"])
def test_sharded_configs_also_launch_on_one_gpu(name):
    command = launch_command("sft", RESOLVED, 1, name, python="py")
    assert command[command.index("--num_processes") + 1] == "1"


def test_multi_node_counts_processes_over_all_machines_and_passes_the_rendezvous():
    command = launch_command("sft", RESOLVED, 8, "deepspeed_zero3", num_machines=4, machine_rank=2,
                             main_process_ip="10.0.0.1", main_process_port=29501, python="py")
    flags = dict(zip(command[3:-4:2], command[4:-4:2]))
    assert flags == {
        "--config_file": str(accelerate_config_path("deepspeed_zero3")), "--num_processes": "32", "--num_machines": "4",
        "--machine_rank": "2", "--main_process_ip": "10.0.0.1", "--main_process_port": "29501",
    }


def test_one_gpu_on_each_of_two_machines_still_needs_accelerate():
    command = launch_command("sft", RESOLVED, 1, None, num_machines=2, main_process_ip="node0", python="py")
    assert "accelerate.commands.launch" in command
    assert command[command.index("--config_file") + 1] == str(accelerate_config_path("multi_gpu"))
    assert command[command.index("--num_processes") + 1] == "2"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_gpus=0), "--num-gpus must be a whole number >= 1"),
        (dict(num_gpus=-2), "--num-gpus"),
        (dict(num_gpus=2.0), "--num-gpus"),
        (dict(num_machines=0), "--num-machines"),
        (dict(machine_rank=-1), "--machine-rank must be"),
        (dict(num_machines=2, machine_rank=2, main_process_ip="h"), "--machine-rank 2 is out of range for 2 machine"),
        (dict(num_machines=2), "needs --main-process-ip"),
        (dict(main_process_port=70000), "--main-process-port"),
        (dict(accelerate_config="zero3"), "unknown accelerate config 'zero3': use one of multi_gpu, deepspeed_zero3, fsdp"),
        (dict(num_gpus=1, accelerate_config="multi_gpu"), "multi_gpu needs at least 2 GPUs"),
        (dict(accelerate_config="missing/accelerate.yaml"), "accelerate config file missing/accelerate.yaml does not exist"),
    ],
)
def test_bad_launch_values_are_config_errors(kwargs, message):
    args = dict(stage="sft", resolved_config=RESOLVED, num_gpus=2, accelerate_config=None) | kwargs
    with pytest.raises(ConfigError) as error:
        launch_command(**args)
    assert message in str(error.value)


def test_a_users_own_accelerate_config_file_is_used_as_it_is(tmp_path):
    own = tmp_path / "zero2.yaml"
    own.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\ndeepspeed_config:\n  zero_stage: 2\n")
    command = launch_command("sft", RESOLVED, 2, str(own), python="py")
    assert command[command.index("--config_file") + 1] == str(own)


def test_unknown_config_names_are_listed():
    with pytest.raises(ConfigError, match="multi_gpu, deepspeed_zero3, fsdp"):
        accelerate_config_path("ddp")


def test_a_missing_backend_is_named_before_launching(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(ConfigError, match="deepspeed_zero3 needs the deepspeed package: pip install deepspeed"):
        check_installed("deepspeed_zero3")
    check_installed(None)
    check_installed("fsdp")


# --- the shipped configs are accelerate configs, and accelerate reads the command as meant ----


@pytest.mark.parametrize(
    "name, distributed_type", [("multi_gpu", "MULTI_GPU"), ("deepspeed_zero3", "DEEPSPEED"), ("fsdp", "FSDP")]
)
def test_each_shipped_yaml_parses_as_an_accelerate_config(name, distributed_type):
    config_args = pytest.importorskip("accelerate.commands.config.config_args")
    config = config_args.load_config_from_file(str(accelerate_config_path(name)))  # unknown keys would raise
    assert isinstance(config, config_args.ClusterConfig)
    assert config.distributed_type.value == distributed_type
    assert config.mixed_precision == "bf16"
    assert config.num_processes == -1  # left to the command: a bare `accelerate launch` with it fails loudly
    if name == "deepspeed_zero3":
        assert config.deepspeed_config["zero_stage"] == 3
        assert config.deepspeed_config["offload_param_device"] == config.deepspeed_config["offload_optimizer_device"] == "none"
        assert config.deepspeed_config["deepspeed_multinode_launcher"] == "standard"
    if name == "fsdp":
        assert config.fsdp_config["fsdp_reshard_after_forward"] == "FULL_SHARD"
        assert config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"


@pytest.mark.parametrize("name", ACCELERATE_CONFIGS)
def test_accelerate_parses_and_validates_the_built_command(name):
    launch = pytest.importorskip("accelerate.commands.launch")
    command = launch_command("dpo", RESOLVED, 4, name, num_machines=2, machine_rank=1,
                             main_process_ip="10.0.0.1", main_process_port=29501, python="py")
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    args = launch.launch_command_parser().parse_args(command[3:])
    launch._validate_launch_command(args)  # merges the config file under the flags, as `accelerate launch` does
    assert (args.num_processes, args.num_machines, args.machine_rank) == (8, 2, 1)
    assert (args.main_process_ip, args.main_process_port) == ("10.0.0.1", 29501)
    assert args.module and args.training_script == "distill.train.worker"
    assert args.training_script_args == ["dpo", str(RESOLVED)]
    assert (args.multi_gpu, args.use_deepspeed, args.use_fsdp) == (name == "multi_gpu", name == "deepspeed_zero3", name == "fsdp")
    assert args.mixed_precision == "bf16"


def test_a_worker_says_a_refused_recipe_in_one_line(tmp_path, monkeypatch, capsys):
    """Under accelerate the worker is its own process: its refusal is one line too, and its exit code."""
    pytest.importorskip("trl")
    import yaml

    from distill.train import worker

    resolved = tmp_path / "recipe.yaml"
    resolved.write_text(yaml.safe_dump({"stage": "sft", "model": {"name_or_path": str(tmp_path / "m")},
                                        "datasets": [{"path": str(tmp_path / "d.jsonl")}], "output_dir": str(tmp_path / "o"),
                                        "training": {"learning_rate": -1}}))
    monkeypatch.setattr(sys, "argv", ["worker", "sft", str(resolved)])
    with pytest.raises(SystemExit) as done:
        worker.main()
    assert done.value.code == 2
    assert capsys.readouterr().err == "error: training.learning_rate must be >= 0, not -1\n"
    assert not (tmp_path / "o").exists()

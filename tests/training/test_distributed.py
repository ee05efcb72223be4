"""DDP under torchrun (2 CPU processes, gloo) through the train stage, against 1 process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from pipelines.train import TrainingFailedError, train_stage
from segrefiner.checkpoint import read_checkpoint
from segrefiner.training import load_train_config, train
from segrefiner.training.distributed import torchrun_command
from tests.training.conftest import tiny_overrides


def _losses(run_dir) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_two_processes_follow_the_one_process_loss_curve(lvis_root, tmp_path) -> None:
    # Global batch 2: one process with 2 samples vs two processes with 1 sample each. The
    # samples, their noise and the averaged gradients are the same, up to float rounding.
    extra = {"schedule.max_iters": 3, "checkpoint.interval": 3, "runtime.backend": "gloo"}
    single = train(load_train_config(None, tiny_overrides(lvis_root, tmp_path / "one", **extra)))

    config = load_train_config(None, tiny_overrides(lvis_root, tmp_path / "two", **extra))
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    record = train_stage(path, nproc=2, timeout=300)

    assert record["nproc"] == 2 and record["finished"] and record["step"] == 3
    assert record["checkpoint"] == str(tmp_path / "two" / "model.pt")
    assert set(record["metrics"]) >= {"loss", "loss_mask", "loss_texture", "iou", "lr"}
    result = json.loads((tmp_path / "two" / "result.json").read_text())
    assert result["world_size"] == 2
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 3
    np.testing.assert_allclose(two, one, rtol=1e-4)
    # Adam divides by the gradient's running RMS, so parameters whose gradient is ~0 can take
    # steps of up to lr from rounding differences alone: compare with that in mind.
    a = read_checkpoint(single.model)["state_dict"]
    b = read_checkpoint(record["checkpoint"])["state_dict"]
    diffs = torch.cat([(a[k] - b[k]).abs().flatten() for k in a if a[k].is_floating_point()])
    assert diffs.max() < 3 * 4e-4 and diffs.mean() < 1e-6


def test_a_failed_run_raises_with_the_log_tail(lvis_root, tmp_path, monkeypatch) -> None:
    import sys

    import pipelines.train as stage

    config = load_train_config(None, tiny_overrides(lvis_root, tmp_path / "run"))
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    failing = [sys.executable, "-c", "import sys; print('worker died'); sys.exit(3)"]
    monkeypatch.setattr(stage, "torchrun_command", lambda *args, **kwargs: failing)
    with pytest.raises(TrainingFailedError, match="exited with status 3") as info:
        train_stage(path, nproc=1, timeout=60)
    assert "worker died" in str(info.value)
    assert "worker died" in (tmp_path / "run" / "train.log").read_text()


def test_process_entry_point_reports_bad_data(tmp_path, capsys) -> None:
    from pipelines.train import main

    config = load_train_config(None, tiny_overrides(tmp_path / "no-data", tmp_path / "run"))
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    assert main(["--config", str(path)]) == 2
    assert "JSON file not found" in capsys.readouterr().err


def test_stage_checks_the_config_before_launching(tmp_path) -> None:
    from segrefiner.errors import InputError

    path = tmp_path / "train.yaml"
    path.write_text("optim:\n  lr_typo: 1\n")
    with pytest.raises(InputError, match="unknown keys"):
        train_stage(path, nproc=1)
    path.write_text("data:\n  batch_size: 3\n")
    with pytest.raises(InputError, match="does not split over 2 processes"):
        train_stage(path, nproc=2)


def test_torchrun_commands() -> None:
    one = torchrun_command(4, "segrefiner", ["train", "--config", "c.yaml"], python="py")
    assert one == [
        "py", "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
        "--nproc-per-node=4", "-m", "segrefiner", "train", "--config", "c.yaml",
    ]  # fmt: skip
    many = torchrun_command(
        8, "pipelines.train", [], nnodes=2, rdzv_endpoint="node0:29400", rdzv_id="lr", python="py"
    )
    assert "--nnodes=2" in many and "--rdzv-endpoint=node0:29400" in many
    assert "--rdzv-id=lr" in many and "--standalone" not in many

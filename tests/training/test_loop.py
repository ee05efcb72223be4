"""The training loop on CPU with the tiny network: callbacks, checkpoints, exact resume."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from segrefiner.checkpoint import load_checkpoint, read_checkpoint
from segrefiner.refiner import Refiner
from segrefiner.training import HistoryCallback, load_train_config, train
from segrefiner.training.state import LATEST, training_checkpoints
from tests.training.conftest import tiny_overrides


def _state(path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def _assert_same_tensors(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same_tensors(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same_tensors(x, y)
    else:
        assert a == b


def test_callback_receives_the_logged_values(lvis_root, tmp_path) -> None:
    history = HistoryCallback()
    config = load_train_config(None, tiny_overrides(lvis_root, tmp_path / "run"))
    result = train(config, callbacks=[history])
    assert result.finished and result.step == 4
    assert history.started["start_step"] == 0 and history.started["dataset_size"] == 6
    assert history.started["config"]["model.preset"] == "tiny"
    assert [step for step, _ in history.history] == [1, 2, 3, 4]
    for _, metrics in history.history:
        for key in ("loss", "loss_mask", "loss_texture", "iou", "lr", "iters_per_s"):
            assert key in metrics
        assert metrics["samples_per_s"] > 0 and metrics["crops_per_s"] == metrics["samples_per_s"]
        assert metrics["loss"] == pytest.approx(metrics["loss_mask"] + metrics["loss_texture"])
        assert 0.0 <= metrics["iou"] <= 1.0 and metrics["skipped"] == 0
        assert "grad_norm" not in metrics  # only logged when clipping is on
    # milestone at iteration 2: iterations 0, 1 at 4e-4, then 2e-4
    assert [m["lr"] for _, m in history.history] == pytest.approx([4e-4, 4e-4, 2e-4, 2e-4])
    assert [step for step, _ in history.checkpoints] == [2, 4]
    assert history.result["model"] == result.model
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]


def test_checkpoints_are_self_describing_and_pruned(lvis_root, tmp_path) -> None:
    run = tmp_path / "run"
    overrides = tiny_overrides(
        lvis_root,
        run,
        **{"checkpoint.interval": 1, "checkpoint.keep": 2, "checkpoint.export_official": "true"},
    )
    config = load_train_config(None, overrides)
    result = train(config)
    assert [step for step, _ in training_checkpoints(run)] == [3, 4]
    latest = read_checkpoint(run / LATEST)  # torch.load(weights_only=True) inside
    assert latest["train_state"]["step"] == 4 and latest["train_state"]["data_position"] == 8
    assert "state" in latest["optimizer"] and latest["weight_average"] is None
    assert latest["meta"]["inference"]["model_size"] == 32
    refiner = Refiner.from_checkpoint(result.model)
    assert refiner.config.model_size == 32
    model, meta = load_checkpoint(result.official)
    assert meta["format"] == "official" and meta["preset"] == "tiny"
    _assert_same_tensors(model.state_dict(), _state(result.model))


@pytest.mark.parametrize("extra", [[], ["optim.grad_clip=0.5", "optim.ema_decay=0.9"]])
def test_resume_is_bit_identical(lvis_root, tmp_path, extra) -> None:
    straight = load_train_config(None, tiny_overrides(lvis_root, tmp_path / "a") + extra)
    full = train(straight)

    # Same run in two parts (as after a kill at iteration 2), the second with a data-loader
    # worker process: data and noise depend on sample positions only.
    split = tiny_overrides(lvis_root, tmp_path / "b") + extra
    first = train(load_train_config(None, split), until=2)
    assert not first.finished and first.model is None and first.step == 2
    second = train(load_train_config(None, [*split, "data.num_workers=1"]))
    assert second.finished and second.step == 4

    _assert_same_tensors(_state(full.model), _state(second.model))
    a, b = read_checkpoint(full.latest), read_checkpoint(second.latest)
    _assert_same_tensors(a["optimizer"], b["optimizer"])
    _assert_same_tensors(a["weight_average"], b["weight_average"])
    assert full.metrics["loss"] == second.metrics["loss"]
    records_a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    records_b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    losses = [[json.loads(line)["loss"] for line in r] for r in (records_a, records_b)]
    assert losses[0] == losses[1] and len(losses[0]) == 4


def test_resume_of_a_finished_run_does_nothing(lvis_root, tmp_path) -> None:
    overrides = tiny_overrides(lvis_root, tmp_path / "run")
    first = train(load_train_config(None, overrides))
    before = _state(first.model)
    again = train(load_train_config(None, overrides))
    assert again.finished and again.step == 4
    _assert_same_tensors(before, _state(again.model))


def test_a_different_model_does_not_resume_silently(lvis_root, tmp_path) -> None:
    from segrefiner.errors import CheckpointError

    overrides = tiny_overrides(lvis_root, tmp_path / "run")
    train(load_train_config(None, overrides), until=2)
    with pytest.raises(CheckpointError, match="do not fit"):
        train(load_train_config(None, [*overrides, "model.preset=small"]))


def test_initial_weights_come_from_model_init(lvis_root, tmp_path) -> None:
    from segrefiner.errors import InputError

    first = train(load_train_config(None, tiny_overrides(lvis_root, tmp_path / "a")))
    init = _state(first.model)
    # With a vanishing learning rate the weights stay where they started: at the init file's.
    extra = {"model.init": first.model, "optim.lr": 1e-12, "schedule.max_iters": 1}
    second = train(load_train_config(None, tiny_overrides(lvis_root, tmp_path / "b", **extra)))
    for name, value in _state(second.model).items():
        assert torch.allclose(value, init[name], atol=1e-6), name
    fresh = train(
        load_train_config(
            None,
            tiny_overrides(
                lvis_root, tmp_path / "c", **{"optim.lr": 1e-12, "schedule.max_iters": 1}
            ),
        )
    )
    assert any(not torch.allclose(v, init[k], atol=1e-3) for k, v in _state(fresh.model).items())
    bad = tiny_overrides(lvis_root, tmp_path / "d", **{"model.init": first.model})
    with pytest.raises(InputError, match="is not a 'small' network"):
        train(load_train_config(None, [*bad, "model.preset=small"]))


def test_a_non_finite_loss_stops_training_and_saves_nothing_from_it(
    lvis_root, tmp_path, monkeypatch
) -> None:
    from segrefiner.errors import TrainingError
    from segrefiner.training import loop

    real_loss = loop.segrefiner_loss
    calls = {"n": 0}

    def poisoned(logits, fine, mask_weight, texture_weight):
        parts = real_loss(logits, fine, mask_weight, texture_weight)
        calls["n"] += 1
        if calls["n"] == 3:  # the third iteration: two good checkpoints' worth of steps
            return dataclasses.replace(parts, total=parts.total * float("nan"))
        return parts

    monkeypatch.setattr(loop, "segrefiner_loss", poisoned)
    run = tmp_path / "run"
    config = load_train_config(None, tiny_overrides(lvis_root, run, **{"checkpoint.interval": 1}))
    with pytest.raises(TrainingError, match=r"iteration 3: non-finite loss .* last good"):
        train(config)
    assert not (run / "model.pt").exists()
    # the last checkpoint is the one before the bad step, and it loads
    assert [step for step, _ in training_checkpoints(run)] == [1, 2]
    model, _ = load_checkpoint(run / LATEST)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_non_finite_weights_are_never_written_or_loaded(tmp_path) -> None:
    from segrefiner.checkpoint import save_checkpoint
    from segrefiner.errors import CheckpointError
    from segrefiner.model import build_unet

    model = build_unet("tiny")
    path = tmp_path / "m.pt"
    save_checkpoint(path, model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(CheckpointError, match=r"not written.*non-finite weights"):
        save_checkpoint(tmp_path / "nan.pt", model)
    assert not (tmp_path / "nan.pt").exists()
    # a file made elsewhere with a NaN in it is refused on load, naming the tensor
    obj = read_checkpoint(path)
    key = next(iter(obj["state_dict"]))
    obj["state_dict"][key] = torch.full_like(obj["state_dict"][key], float("inf"))
    torch.save(obj, tmp_path / "inf.pt")
    with pytest.raises(CheckpointError, match=rf"non-finite weights .*{key}"):
        load_checkpoint(tmp_path / "inf.pt")


def test_training_into_a_busy_checkpoint_dir_is_refused(lvis_root, tmp_path) -> None:
    from segrefiner.locking import FolderBusyError, folder_lock

    run = tmp_path / "run"
    config = load_train_config(None, tiny_overrides(lvis_root, run))
    with folder_lock(run, "another training"):
        with pytest.raises(FolderBusyError, match="training into it refused"):
            train(config)
    assert not (run / "config.yaml").exists() and not (run / "metrics.jsonl").exists()

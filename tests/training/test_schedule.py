"""Learning-rate schedule at the boundary iterations, and the shipped recipes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from segrefiner.errors import InputError
from segrefiner.training.config import ScheduleConfig, load_train_config
from segrefiner.training.optim import lr_at

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "segrefiner_lr.yaml",
            {0: 4e-4, 79_999: 4e-4, 80_000: 2e-4, 99_999: 2e-4, 100_000: 1e-4, 119_999: 1e-4},
        ),
        (
            "segrefiner_hr.yaml",
            {0: 4e-4, 19_999: 4e-4, 20_000: 2e-4, 34_999: 2e-4, 35_000: 1e-4, 39_999: 1e-4},
        ),
    ],
)
def test_official_step_schedule(config: str, expected: dict[int, float]) -> None:
    cfg = load_train_config(CONFIGS / config)
    for iteration, lr in expected.items():
        assert lr_at(iteration, cfg.optim.lr, cfg.schedule) == pytest.approx(lr, rel=1e-12)


def test_official_recipes_carry_the_spec_values() -> None:
    lr = load_train_config(CONFIGS / "segrefiner_lr.yaml")
    hr = load_train_config(CONFIGS / "segrefiner_hr.yaml")
    for cfg in (lr, hr):
        assert cfg.model.preset == "official" and cfg.data.crop_size == 256
        assert cfg.optim.lr == 4e-4 and cfg.optim.betas == (0.9, 0.999)
        assert cfg.optim.eps == 1e-8 and cfg.optim.weight_decay == 0.0
        assert cfg.optim.grad_clip is None and cfg.optim.ema_decay is None
        assert cfg.loss.mask_weight == 1.0 and cfg.loss.texture_weight == 5.0
        assert cfg.checkpoint.interval == 5000 and cfg.checkpoint.keep == 20
        assert cfg.log.interval == 50 and cfg.runtime.seed == 0 and cfg.data.batch_size == 8
    assert (lr.schedule.max_iters, lr.schedule.milestones) == (120_000, (80_000, 100_000))
    assert (hr.schedule.max_iters, hr.schedule.milestones) == (40_000, (20_000, 35_000))
    assert lr.data.task == "lr" and lr.data.lr.pad == 40 and lr.data.lr.min_area == 512
    assert hr.data.task == "hr" and hr.data.hr.expand_prob == 0.5 and hr.data.hr.patch_size == 256


@pytest.mark.parametrize("name", ["demo_lr.yaml", "demo_hr.yaml"])
def test_demo_recipes_load(name: str) -> None:
    cfg = load_train_config(CONFIGS / name)
    assert cfg.model.preset in ("tiny", "small")
    assert cfg.inference.model_size == cfg.data.crop_size


def test_warmup_and_gamma() -> None:
    schedule = ScheduleConfig(max_iters=100, milestones=(50,), gamma=0.1, warmup_iters=4)
    assert [lr_at(i, 1.0, schedule) for i in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1, 1])
    assert lr_at(50, 1.0, schedule) == pytest.approx(0.1)


def test_config_errors_name_the_key() -> None:
    with pytest.raises(InputError, match=r"optim.*unknown keys"):
        load_train_config(None, ["optim.learning_rate=1"])
    with pytest.raises(InputError, match=r"data\.crop_size"):
        load_train_config(None, ["data.crop_size=100"])
    with pytest.raises(InputError, match="milestones"):
        load_train_config(None, ["schedule.milestones=[3, 2]"])
    with pytest.raises(InputError, match="coarse_store"):
        load_train_config(None, ["data.task=hr", "data.hr.coarse=store"])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optim.lr=.nan", "optim.lr"),
        ("optim.lr=0", "optim.lr"),
        ("optim.betas=[2, 3]", "optim.betas"),
        ("optim.betas=[0.9, .nan]", "optim.betas"),
        ("optim.eps=-1", "optim.eps"),
        ("optim.weight_decay=-0.1", "optim.weight_decay"),
        ("optim.grad_clip=0", "optim.grad_clip"),
        ("optim.grad_clip=.inf", "optim.grad_clip"),
        ("optim.ema_decay=.nan", "optim.ema_decay"),
        ("schedule.gamma=0", "schedule.gamma"),
        ("schedule.gamma=1.5", "schedule.gamma"),
        ("loss.texture_weight=.nan", "loss.texture_weight"),
        ("loss.mask_weight=-1", "loss.mask_weight"),
        ("data.flip_prob=.nan", "data.flip_prob"),
    ],
)
def test_config_numbers_must_be_finite_and_in_range(override: str, key: str) -> None:
    with pytest.raises(InputError, match=r"^config: " + re.escape(key) + ": .*must be"):
        load_train_config(None, [override])


def test_both_loss_weights_zero_is_refused() -> None:
    with pytest.raises(InputError, match="nothing to train"):
        load_train_config(None, ["loss.mask_weight=0", "loss.texture_weight=0"])

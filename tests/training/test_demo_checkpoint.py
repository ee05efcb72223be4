"""The shipped demo checkpoint, and training it when it is missing."""

from __future__ import annotations

import shutil

import pytest

from segrefiner.checkpoint import read_checkpoint
from segrefiner.refiner import Refiner
from segrefiner.training.demo import DEMO_CHECKPOINT, ensure_demo_checkpoint, evaluate_lr_demo
from tests.conftest import blob_mask
from tests.training.conftest import tiny_overrides


@pytest.mark.skipif(not DEMO_CHECKPOINT.is_file(), reason="checkpoints/demo_lr_tiny.pt not shipped")
def test_shipped_demo_checkpoint_loads_and_refines(photo, demo_ci) -> None:
    assert DEMO_CHECKPOINT.stat().st_size <= 25 * 2**20
    obj = read_checkpoint(DEMO_CHECKPOINT)
    assert obj["preset"] == "tiny" and "optimizer" not in obj  # inference weights only
    refiner = Refiner.from_checkpoint(DEMO_CHECKPOINT, seed=0)
    assert refiner.config.model_size == obj["meta"]["inference"]["model_size"] == 128
    coarse = blob_mask(photo.shape[:2], (190, 200), 70)
    refined = refiner.refine_instances(photo, coarse[None])
    assert refined.shape == (1, *photo.shape[:2]) and refined.dtype == bool
    # It refines: on the demo val split (segmentor masks vs the ground truth; the small
    # instances pass through), the refined masks are better than the coarse ones, by a margin
    # that a pass-through (or a mask-wiping) model cannot reach. Measured: IoU 0.771 -> 0.822,
    # boundary IoU 0.731 -> 0.804, boundary accuracy 0.638 -> 0.715.
    scores = evaluate_lr_demo(DEMO_CHECKPOINT, demo_ci, with_ap=False)
    assert scores["matched"] >= 10
    for metric in ("iou", "boundary_iou", "boundary_accuracy"):
        assert scores[f"refined_{metric}"] >= scores[f"coarse_{metric}"] + 0.03, metric
    assert ensure_demo_checkpoint(DEMO_CHECKPOINT) == DEMO_CHECKPOINT  # present: no training


def test_missing_demo_checkpoint_is_trained(lvis_root, tmp_path) -> None:
    root = tmp_path / "demo"
    shutil.copytree(lvis_root, root)
    (root / "DEMO.json").write_text("{}")  # marks the folder as demo data: nothing generated
    target = tmp_path / "checkpoints" / "demo.pt"
    overrides = tiny_overrides(root, tmp_path / "run", **{"schedule.max_iters": 2})
    path = ensure_demo_checkpoint(
        target, data_root=root, run_dir=tmp_path / "run", overrides=overrides
    )
    assert path == target and target.is_file()
    assert Refiner.from_checkpoint(target).config.model_size == 32

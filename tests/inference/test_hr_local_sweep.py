"""benchmarks/hr_local_sweep.py taps the HR path's final probability; it must stay the one the
refiner thresholds, and the tap must come off again."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from segrefiner.inference import semantic
from segrefiner.inference.config import InferenceConfig
from segrefiner.refiner import Refiner

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "hr_local_sweep.py"


def _sweep_module():
    spec = importlib.util.spec_from_file_location("hr_local_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tapped_probability_is_what_the_refiner_thresholds() -> None:
    sweep = _sweep_module()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 80, 3), dtype=np.uint8)
    coarse = np.zeros((96, 80), dtype=bool)
    coarse[20:70, 15:60] = True
    config = InferenceConfig(model_size=32, patch_size=32, local_mask="coarse")
    refiner = Refiner.from_checkpoint("tiny", seed=0, config=config)
    original = semantic.PatchAccumulator.result
    tap = sweep.ProbabilityTap()
    try:
        refined = refiner.refine(image, coarse)
        prob = tap.take()
    finally:
        tap.close()
    assert semantic.PatchAccumulator.result is original
    assert prob is not None and prob.shape == coarse.shape
    assert ((prob > 0) & (prob < 1)).any()  # patches ran: not just the coarse mask back
    np.testing.assert_array_equal(prob >= 0.5, refined)
    out = sweep.variants(coarse, refined, prob)
    np.testing.assert_array_equal(out["t0.5"], refined)
    np.testing.assert_array_equal(out["t0.3"], prob >= 0.3)
    # farther than r from the coarse boundary the banded mask is the coarse one
    far = sweep._distance_to_boundary(coarse) > 4
    np.testing.assert_array_equal(out["band4"][far], coarse[far])
    np.testing.assert_array_equal(out["band4"][~far], refined[~far])
    # the split of the change: additions only, removals only
    np.testing.assert_array_equal(out["add"], coarse | refined)
    np.testing.assert_array_equal(out["remove"], coarse & refined)

"""The refinement score (features, calibration, Spearman) and the guard's rule, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segrefiner import Refiner
from segrefiner.errors import InputError
from segrefiner.inference import InferenceConfig
from segrefiner.inference.score import (
    FEATURES,
    ScoreCalibration,
    calibration_from_meta,
    default_calibration,
    fit_calibration,
    guard_keeps_coarse,
    score_features,
    score_histogram,
    spearman,
)
from segrefiner.model import DenoiseUNet, get_preset
from tests.conftest import blob_mask
from tests.inference.test_instance import FAST

# A calibration whose score falls with every changed pixel: items differ in score.
CHANGE_COSTS = ScoreCalibration(0.0, {"added": -0.01, "removed": -0.01, "confidence": 0.001})


def _refiner(config: InferenceConfig = FAST, seed: int = 0) -> Refiner:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = DenoiseUNet(get_preset("tiny"))
    calibrations = {"instance": CHANGE_COSTS, "semantic": CHANGE_COSTS}
    return Refiner(model, seed=seed, config=config, calibrations=calibrations)


def test_features_by_hand() -> None:
    # one 2 x 4 item: coarse covers 4 pixels; the refinement adds 1 and removes 1
    coarse = torch.tensor([[[1, 1, 1, 1], [0, 0, 0, 0]]], dtype=torch.float32)
    prob = torch.tensor([[[0.9, 0.9, 0.9, 0.3], [0.8, 0.1, 0.0, 0.5]]])
    fine = torch.tensor([[[1.0, 1.0, 1.0, 0.5], [0.7, 1.0, 1.0, 1.0]]])
    # changed: (0, 3) removed (p 0.3), (1, 0) added (p 0.8), and (1, 3) added (p 0.5 >= 0.5)
    got = dict(zip(FEATURES, score_features(coarse, prob, fine)[0].tolist(), strict=True))
    conf = np.abs(2 * prob.numpy() - 1)[0]
    assert got["added"] == pytest.approx(2 / 4)
    assert got["removed"] == pytest.approx(1 / 4)
    assert got["confidence_changed"] == pytest.approx((conf[0, 3] + conf[1, 0] + conf[1, 3]) / 3)
    assert got["committed_changed"] == pytest.approx((0.5 + 0.7 + 1.0) / 3)
    assert got["confidence"] == pytest.approx(conf.mean())
    assert got["committed"] == pytest.approx(fine.numpy().mean())
    # 0.05 < p < 0.95: every pixel but 0.0 -> 7 of 8, over the coarse area 4
    assert got["uncertain"] == pytest.approx(7 / 4)


def test_features_of_an_unchanged_item() -> None:
    coarse = torch.zeros(1, 1, 4, 4)
    coarse[0, 0, 1:3, 1:3] = 1
    prob = coarse * 0.98 + 0.01
    got = dict(zip(FEATURES, score_features(coarse, prob, torch.ones_like(prob))[0].tolist()))
    assert got["added"] == got["removed"] == 0.0
    assert got["confidence_changed"] == got["committed_changed"] == 1.0  # nothing changed


def test_guard_rule() -> None:
    scores = np.array([-0.02, 0.0, 0.01, np.nan])
    assert guard_keeps_coarse(scores, None).tolist() == [False] * 4
    assert guard_keeps_coarse(scores, 0.0).tolist() == [True, False, False, False]  # strictly below
    assert guard_keeps_coarse(scores, 0.015).tolist() == [True, True, True, False]  # NaN never


def test_fit_recovers_a_linear_law_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((400, len(FEATURES)))
    w = np.linspace(-0.05, 0.05, len(FEATURES))
    y = 0.01 + x @ w
    cal = fit_calibration(x, y, ridge=0.0, fitted_on={"rows": 400})
    assert cal.intercept == pytest.approx(0.01, abs=1e-9)
    assert [cal.weights[f] for f in FEATURES] == pytest.approx(list(w), abs=1e-9)
    assert np.allclose(cal.score(x), y)
    back = ScoreCalibration.from_dict(cal.as_dict())
    assert back == cal
    with pytest.raises(InputError, match="too few"):
        fit_calibration(x[:5], y[:5])
    with pytest.raises(InputError, match="not a segrefiner-score-calibration"):
        ScoreCalibration.from_dict({"intercept": 0, "weights": {}})
    with pytest.raises(InputError, match="unknown features"):
        ScoreCalibration(0.0, {"area": 1.0})
    with pytest.raises(InputError, match="finite"):
        ScoreCalibration(float("nan"), {})


def test_spearman_with_ties_matches_pearson_of_average_ranks() -> None:
    x = [1.0, 2.0, 2.0, 3.0, 5.0]
    y = [0.1, 0.3, 0.2, 0.4, 0.35]
    # average ranks: x -> 0, 1.5, 1.5, 3, 4; y -> 0, 2, 1, 4, 3
    rx, ry = np.array([0, 1.5, 1.5, 3, 4]), np.array([0, 2, 1, 4, 3])
    assert spearman(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None and spearman([1, 2], [1, 2]) is None


def test_histogram_summary() -> None:
    h = score_histogram([-0.2, -0.005, 0.0, 0.004, 0.5, None, float("nan")])
    assert h["count"] == 5 and h["below_zero"] == pytest.approx(2 / 5)
    assert sum(h["counts"]) == 5 and h["counts"][0] == 1 and h["counts"][-1] == 1
    assert h["counts"][h["edges"].index(-1.0)] == 1  # -0.5 points lies in [-1, 0)
    assert score_histogram([None])["count"] == 0


def test_default_and_checkpoint_calibrations() -> None:
    assert calibration_from_meta({}, "instance") == default_calibration("instance")
    own = fit_calibration(np.eye(len(FEATURES)).repeat(3, 0), np.arange(3 * len(FEATURES)) / 100)
    meta = {"score_calibration": {"instance": own.as_dict()}}
    assert calibration_from_meta(meta, "instance") == own
    assert calibration_from_meta(meta, "semantic") == default_calibration("semantic")


def test_instance_guard_keeps_exactly_the_low_scored_masks(photo) -> None:
    masks = np.stack(
        [blob_mask(photo.shape[:2], c, r, seed=s) for s, (c, r) in enumerate(
            [((120, 130), 60), ((250, 200), 70), ((300, 80), 40), ((90, 300), 50)])]
    )  # fmt: skip
    free = _refiner().refine_instances_detailed(photo, masks)
    assert not free.guarded.any() and np.isfinite(free.scores).all()
    assert free.features.shape == (4, len(FEATURES))
    threshold = float(np.sort(free.scores)[2])  # the two lowest fall below it
    held = _refiner(FAST.replace(guard=threshold)).refine_instances_detailed(photo, masks)
    assert held.guarded.tolist() == (free.scores < threshold).tolist() and held.guarded.sum() == 2
    assert np.array_equal(held.scores, free.scores)  # the guard does not change the scores
    for i in range(4):
        want = masks[i] if held.guarded[i] else free.masks[i]
        assert np.array_equal(held.masks[i], want), i
    # the network changed the masks it was allowed to: the guard's choice is visible
    assert any((free.masks[i] != masks[i]).any() for i in np.flatnonzero(held.guarded))


def test_unrefined_instances_have_no_score(photo) -> None:
    masks = np.zeros((2, *photo.shape[:2]), bool)
    masks[0] = blob_mask(photo.shape[:2], (150, 150), 60)
    masks[1, 10:20, 10:20] = True  # 100 pixels < area_thr: passed through
    out, scores = _refiner(FAST.replace(guard=1.0)).refine_instances(
        photo, masks, return_scores=True
    )
    assert np.isfinite(scores[0]) and np.isnan(scores[1])
    assert np.array_equal(out[1], masks[1])
    assert np.array_equal(out[0], masks[0])  # guard 1.0 (a whole IoU gained) holds back all


def test_semantic_guard_and_score(photo) -> None:
    coarse = blob_mask(photo.shape[:2], (200, 190), 100)
    cfg = FAST.replace(model_size=32, patch_size=64)
    free_mask, score = _refiner(cfg).refine(photo, coarse, return_score=True)
    assert np.isfinite(score) and (free_mask != coarse).any()
    below = _refiner(cfg.replace(guard=score + 1e-6)).refine_detailed(photo, coarse)
    above = _refiner(cfg.replace(guard=score - 1e-6)).refine_detailed(photo, coarse)
    assert below.guarded and np.array_equal(below.mask, coarse) and below.score == score
    assert not above.guarded and np.array_equal(above.mask, free_mask)


def test_guard_setting_is_checked() -> None:
    with pytest.raises(InputError, match="guard"):
        InferenceConfig(guard=5.0)
    with pytest.raises(InputError, match="guard"):
        InferenceConfig(guard=True)
    assert InferenceConfig(guard=-0.01).guard == -0.01

"""A refinement score for every mask: how much the refinement is expected to change its IoU.

The sampling loop already knows how sure the network is: the last step's foreground
probability ``p`` and the accumulated fine probability (how likely each pixel is to have been
committed to the prediction rather than left to the coarse mask). Seven features summarise
them over the instance's region (the crop on the instance path; the coarse mask's padded box
at full resolution on the semantic path), areas relative to the coarse mask's:

- ``added`` / ``removed``: pixels the refinement turned on / off;
- ``confidence_changed`` / ``committed_changed``: mean ``|2p - 1|`` / mean accumulated fine
  probability over the changed pixels (1 when nothing changed);
- ``confidence`` / ``committed``: the same means over the whole region;
- ``uncertain``: pixels with ``0.05 < p < 0.95``.

A :class:`ScoreCalibration` (a linear model fitted on a real-photo training split, see
:func:`fit_calibration`) turns them into ``score``: the predicted IoU change, as a fraction
(``-0.01``: one IoU point lost). The guard (``InferenceConfig.guard``) keeps the coarse mask of
every item whose score is below its threshold.

Masks do not depend on what else shares a batch; a score may, in its last digits (the network's
float rounding varies with the batch size), which matters only for a score within ~1e-9 of the
guard's threshold.

A checkpoint may carry its own calibration (``meta["score_calibration"]``, written by
``segrefiner eval calibrate``); otherwise :data:`DEFAULT_CALIBRATION` is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from segrefiner.errors import InputError

FEATURES = (
    "added",
    "removed",
    "confidence_changed",
    "committed_changed",
    "confidence",
    "committed",
    "uncertain",
)
CALIBRATION_FORMAT = "segrefiner-score-calibration"


def score_features(
    coarse: torch.Tensor, prob: torch.Tensor, fine_prob: torch.Tensor
) -> torch.Tensor:
    """The features of :data:`FEATURES` for each item of a batch.

    ``coarse``: (K, ...) binary (bool or {0, 1}); ``prob``: (K, ...) final foreground
    probability; ``fine_prob``: (K, ...) accumulated fine probability; all of one shape.
    Returns float64 (K, len(FEATURES)).
    """
    k = coarse.shape[0]
    c = coarse.reshape(k, -1) >= 0.5
    p = prob.reshape(k, -1).double()
    f = fine_prob.reshape(k, -1).double()
    r = p >= 0.5
    changed = c != r
    area = c.sum(1).clamp(min=1).double()
    n_changed = changed.sum(1).double()
    conf = (2.0 * p - 1.0).abs()

    def mean_over_changed(values: torch.Tensor) -> torch.Tensor:
        total = (values * changed).sum(1)
        return torch.where(n_changed > 0, total / n_changed.clamp(min=1), torch.ones_like(total))

    columns = [
        (r & ~c).sum(1).double() / area,
        (c & ~r).sum(1).double() / area,
        mean_over_changed(conf),
        mean_over_changed(f),
        conf.mean(1),
        f.mean(1),
        ((p > 0.05) & (p < 0.95)).sum(1).double() / area,
    ]
    return torch.stack(columns, 1).cpu()


@dataclass(frozen=True)
class ScoreCalibration:
    """``score = intercept + sum(weights[name] * feature[name])``: the predicted IoU change.

    ``fitted_on`` says where the weights come from (checkpoint hash, annotations, seeds,
    number of rows); ``quality`` holds the fit's Spearman correlations on its own rows.
    """

    intercept: float
    weights: dict[str, float]
    mode: str = "instance"
    fitted_on: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(FEATURES))
        if unknown:
            raise InputError(f"score calibration: unknown features {unknown}; known: {FEATURES}")
        values = [self.intercept, *self.weights.values()]
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            raise InputError("score calibration: weights must be finite numbers")

    def score(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """(K, len(FEATURES)) features -> float64 (K,) predicted IoU change."""
        x = np.asarray(features, dtype=np.float64).reshape(-1, len(FEATURES))
        w = np.array([self.weights.get(name, 0.0) for name in FEATURES])
        return self.intercept + x @ w

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": CALIBRATION_FORMAT,
            "version": 1,
            "mode": self.mode,
            "intercept": self.intercept,
            "weights": dict(self.weights),
            "fitted_on": dict(self.fitted_on),
            "quality": dict(self.quality),
        }

    @classmethod
    def from_dict(cls, values: Any, where: str = "score calibration") -> ScoreCalibration:
        if not isinstance(values, dict) or values.get("format") != CALIBRATION_FORMAT:
            raise InputError(f"{where}: not a {CALIBRATION_FORMAT} mapping")
        try:
            weights = {str(k): float(v) for k, v in dict(values["weights"]).items()}
            return cls(
                intercept=float(values["intercept"]),
                weights=weights,
                mode=str(values.get("mode", "instance")),
                fitted_on=dict(values.get("fitted_on") or {}),
                quality=dict(values.get("quality") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: malformed ({exc})") from exc


def fit_calibration(
    features: np.ndarray,
    iou_change: np.ndarray,
    mode: str = "instance",
    ridge: float = 1e-3,
    fitted_on: dict[str, Any] | None = None,
) -> ScoreCalibration:
    """Least squares (with a small ridge on the weights, not the intercept) of the IoU change
    on the features. ``features``: (N, len(FEATURES)); ``iou_change``: (N,) refined minus
    coarse IoU, fractions."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(iou_change, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(FEATURES) or len(x) != len(y):
        raise ValueError(f"features {x.shape} and IoU changes {y.shape} do not match")
    if len(x) < 2 * len(FEATURES):
        raise InputError(f"{len(x)} rows are too few to fit a score calibration")
    design = np.hstack([np.ones((len(x), 1)), x])
    penalty = ridge * len(x) * np.eye(design.shape[1])
    penalty[0, 0] = 0.0
    coef = np.linalg.solve(design.T @ design + penalty, design.T @ y)
    return ScoreCalibration(
        intercept=float(coef[0]),
        weights={name: float(w) for name, w in zip(FEATURES, coef[1:], strict=True)},
        mode=mode,
        fitted_on=dict(fitted_on or {}),
    )


def guard_keeps_coarse(scores: np.ndarray, guard: float | None) -> np.ndarray:
    """The guard's rule: bool (K,), True where the coarse mask is kept (score < guard).
    ``guard=None`` (off) keeps none; a NaN score (no refinement ran) is never guarded."""
    scores = np.asarray(scores, dtype=np.float64)
    if guard is None:
        return np.zeros(scores.shape, dtype=bool)
    return np.nan_to_num(scores, nan=np.inf) < guard


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); ``None`` when undefined."""
    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(a) < 3 or len(a) != len(b):
        return None
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    # average the ranks of ties
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end - 1) / 2.0
            start = end
    return ranks


# The calibration used when a checkpoint carries none (official checkpoints, presets): fitted
# on the real-photo training split (`segrefiner data real`) with the coarse masks of seeds 0
# and 1, pooling this project's two LR models (the shipped real-photo model and the demo model,
# one of which mostly helps and one of which mostly harms), by
# `python benchmarks/score_calibration.py --default`. A checkpoint calibrated for itself
# (`segrefiner eval calibrate`) predicts better.
_DEFAULT_CALIBRATIONS: dict[str, dict[str, Any]] = {
    "instance": {
        "format": CALIBRATION_FORMAT,
        "mode": "instance",
        "intercept": -0.10674849376565358,
        "weights": {
            "added": -0.04872140516216104,
            "removed": -0.41469129307523295,
            "confidence_changed": -0.02512021064414719,
            "committed_changed": 0.01323184896326934,
            "confidence": 0.055981794464695506,
            "committed": 0.062155266994913715,
            "uncertain": -0.006971042232619307,
        },
        "fitted_on": {
            "checkpoints": ["segrefiner_lr_real.pt", "demo_lr_tiny.pt"],
            "annotations": "data/real/annotations/real_train.json",
            "seeds": [0, 1, 2],
            "rows": 1734,
        },
        # in-sample Spearman: all +0.267; maskrcnn +0.307, lowres +0.491, official -0.014
    },
}


def default_calibration(mode: str = "instance") -> ScoreCalibration:
    """The built-in calibration of ``mode`` ("instance" or "semantic"; the semantic path uses
    the instance fit, its features being taken over the same padded box)."""
    values = _DEFAULT_CALIBRATIONS.get(mode) or _DEFAULT_CALIBRATIONS["instance"]
    return ScoreCalibration.from_dict(values, f"default {mode} calibration")


def calibration_from_meta(meta: dict[str, Any] | None, mode: str) -> ScoreCalibration:
    """A checkpoint's own calibration of ``mode`` (``meta["score_calibration"][mode]``), else
    :func:`default_calibration`."""
    saved = (meta or {}).get("score_calibration") or {}
    if mode in saved:
        return ScoreCalibration.from_dict(saved[mode], f"checkpoint score calibration ({mode})")
    return default_calibration(mode)


# Histogram bin edges of the scores, in IoU points (-10 .. +10 by 1, open-ended at both ends).
HISTOGRAM_EDGES = tuple(float(v) for v in range(-10, 11))


def score_histogram(scores: Sequence[float | None]) -> dict[str, Any]:
    """A summary of a run's refinement scores (``None`` / NaN, items not refined, left out):
    ``count``, ``mean``, ``p10`` / ``p50`` / ``p90`` and ``below_zero`` (the fraction predicted to
    lose IoU), as fractions, and ``edges`` (IoU points, with ``-inf`` / ``inf`` at the ends) /
    ``counts`` of the histogram."""
    values = np.array([s for s in scores if s is not None and math.isfinite(s)], np.float64)
    edges = [-math.inf, *HISTOGRAM_EDGES, math.inf]
    if values.size == 0:
        return {"count": 0, "edges": edges, "counts": [0] * (len(edges) - 1)}
    counts, _ = np.histogram(values * 100.0, bins=np.array(edges))
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "p10": float(p10),
        "p50": float(p50),
        "p90": float(p90),
        "below_zero": float(np.mean(values < 0)),
        "edges": edges,
        "counts": [int(c) for c in counts],
    }

"""The score's report pieces: gallery order, histogram picture, MLflow metrics."""

from __future__ import annotations

import pytest

from pipelines.reports import draw_score_histogram, gallery_order, score_metrics
from segrefiner.inference.score import score_histogram

ROWS = [
    {"id": "a", "changed": 0.5, "refine_score": 0.01},
    {"id": "b", "changed": 0.1, "refine_score": -0.03},
    {"id": "c", "changed": 0.9, "refine_score": None},
    {"id": "d", "changed": 0.2, "refine_score": -0.03},
]


def test_gallery_order() -> None:
    by_change = [r["id"] for r in gallery_order(ROWS, "changed", lambda r: r["changed"])]
    assert by_change == ["c", "a", "d", "b"]
    # lowest score first; ties by most changed; unscored rows last
    by_score = [r["id"] for r in gallery_order(ROWS, "score", lambda r: r["changed"])]
    assert by_score == ["d", "b", "a", "c"]
    with pytest.raises(ValueError, match="gallery sort"):
        gallery_order(ROWS, "area", lambda r: 0)


def test_histogram_picture_and_metrics(tmp_path) -> None:
    hist = score_histogram([r["refine_score"] for r in ROWS])
    metrics = score_metrics(hist)
    assert metrics["score/count"] == 3 and metrics["score/below_zero"] == pytest.approx(2 / 3)
    assert metrics["score/mean"] == pytest.approx((0.01 - 0.06) / 3)
    path = draw_score_histogram(hist, tmp_path / "scores.png", guard=0.0)
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    assert draw_score_histogram(score_histogram([]), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists() and score_metrics(None) == {}

"""The report pieces: gallery order and pixels, histogram picture, MLflow metrics."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipelines.reports import (
    COARSE_COLOR,
    GT_COLOR,
    REFINED_COLOR,
    GalleryItem,
    draw_gallery,
    draw_score_histogram,
    gallery_canvas,
    gallery_order,
    score_metrics,
)
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


def test_gallery_pixels_and_captions(tmp_path) -> None:
    # A 100 x 50 grey image (fitted to 256 x 128) with a square mask; a 25 x 50 one (fitted to
    # 128 x 256) without ground truth and with a long title.
    image = np.full((100, 50, 3), 100, np.uint8)
    mask = np.zeros((100, 50), bool)
    mask[40:60, 15:35] = True
    items = [
        GalleryItem("first", image, mask, mask, mask),
        GalleryItem("x" * 50, image[:25], mask[:25], mask[:25], None),
    ]
    canvas, captions = gallery_canvas(items)
    gap, caption, panel = 8, 30, 256
    assert canvas.shape == (
        gap + (caption + 256 + gap) + (caption + 128 + gap),
        gap + 3 * (panel + gap),
        3,
    )
    top, left = gap + caption, gap + (panel - 128) // 2
    for col, color in enumerate((COARSE_COLOR, REFINED_COLOR, GT_COLOR)):
        x = left + col * (panel + gap)
        assert (canvas[top + 5, x + 5] == 75).all()  # the image, darkened to 3/4
        centre = canvas[top + 128, x + 64].astype(int)  # inside the mask: tinted by its colour
        assert np.abs(centre - (75 * 0.45 + np.array(color) * 0.55)).max() <= 1
        assert (canvas[top + 5, x - 2] == 255).all()  # white between panels
    second = top + 256 + gap + caption
    assert (canvas[second + 5, left + 2 * (panel + gap) + 5] == 255).all()  # no ground truth
    assert captions[0] == (gap, top - 4, "first\ncoarse")
    assert captions[3][2] == "..." + "x" * 41 + "\ncoarse"
    assert captions[5] == (gap + 2 * (panel + gap), second - 4, "ground truth: none")
    path = draw_gallery(items, tmp_path / "gallery.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    drawn = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert drawn.shape == canvas.shape  # drawn pixel for pixel: the panels are the canvas's
    assert np.array_equal(drawn[top : top + 256], canvas[top : top + 256])
    assert draw_gallery([], tmp_path / "none.png") is None

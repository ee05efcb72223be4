"""What a run shows besides its numbers: the coarse-vs-refined table, per-item rows, a gallery
of the most changed items and a before/after plot (matplotlib, Agg backend, PNG files).

The scores come from :mod:`segrefiner.metrics`; this module only arranges and draws them.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segrefiner.io import atomic_path, write_json

__all__ = [
    "GalleryItem",
    "MetricRow",
    "draw_before_after",
    "draw_gallery",
    "draw_report",
    "draw_score_histogram",
    "format_table",
    "gallery_order",
    "markdown_table",
    "metric_rows",
    "metrics_for_tracking",
    "score_metrics",
    "write_csv",
    "write_report",
]

COARSE_COLOR = (230, 60, 40)  # RGB
REFINED_COLOR = (40, 200, 70)
GT_COLOR = (40, 120, 240)
_PANEL = 256  # gallery panel side in pixels


@dataclass(frozen=True)
class MetricRow:
    """One line of the coarse-vs-refined table. ``key`` names the MLflow metric (``lvis_mask_AP``,
    ``DIS-VD_iou``); values are fractions in [0, 1] or ``None`` (undefined)."""

    key: str
    label: str
    coarse: float | None
    refined: float | None

    @property
    def delta(self) -> float | None:
        if self.coarse is None or self.refined is None:
            return None
        return self.refined - self.coarse

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "metric": self.label,
            "coarse": self.coarse,
            "refined": self.refined,
            "delta": self.delta,
        }


def metric_rows(table: Sequence[Mapping[str, Any]]) -> list[MetricRow]:
    """The table of a finalize summary (:meth:`MetricRow.as_dict` rows) as :class:`MetricRow`."""
    return [MetricRow(r["key"], r["metric"], r["coarse"], r["refined"]) for r in table]


def metrics_for_tracking(rows: Iterable[MetricRow]) -> dict[str, float | None]:
    """``coarse/<key>``, ``refined/<key>``, ``delta/<key>`` for every row."""
    out: dict[str, float | None] = {}
    for row in rows:
        out[f"coarse/{row.key}"] = row.coarse
        out[f"refined/{row.key}"] = row.refined
        out[f"delta/{row.key}"] = row.delta
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}"


def format_table(rows: Sequence[MetricRow], title: str = "") -> str:
    """A fixed-width text table (values x100, one decimal, as the paper prints them)."""
    width = max([len(r.label) for r in rows] + [6])
    lines = [title] if title else []
    lines.append(f"{'metric':<{width}}  {'coarse':>7}  {'refined':>7}  {'delta':>7}")
    lines.append("-" * (width + 27))
    for r in rows:
        lines.append(
            f"{r.label:<{width}}  {_pct(r.coarse):>7}  {_pct(r.refined):>7}  {_signed(r.delta):>7}"
        )
    return "\n".join(lines)


def markdown_table(rows: Sequence[MetricRow]) -> str:
    """The same table in Markdown (Prefect artifacts, the MLflow run description)."""
    lines = ["| metric | coarse | refined | delta |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.label} | {_pct(r.coarse)} | {_pct(r.refined)} | {_signed(r.delta)} |")
    return "\n".join(lines)


def write_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Rows of dicts as CSV (columns of the first row; ``None`` as empty), atomically."""
    columns = list(rows[0].keys()) if rows else ["name"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return Path(path)


# --------------------------------------------------------------------------- gallery


@dataclass
class GalleryItem:
    """One gallery line: an image crop and its masks (same ``H x W``), with a caption."""

    title: str
    image: np.ndarray  # H x W x 3 uint8 RGB
    coarse: np.ndarray  # H x W bool
    refined: np.ndarray
    gt: np.ndarray | None = None

    @classmethod
    def cropped(
        cls,
        title: str,
        image: np.ndarray,
        coarse: np.ndarray,
        refined: np.ndarray,
        gt: np.ndarray | None,
        margin: float = 0.15,
    ) -> GalleryItem:
        """The item of a whole image and its masks, cut to :func:`crop_box` of the masks."""
        y0, y1, x0, x1 = crop_box([coarse, refined, gt], coarse.shape, margin)
        return cls(
            title=title,
            image=image[y0:y1, x0:x1],
            coarse=coarse[y0:y1, x0:x1],
            refined=refined[y0:y1, x0:x1],
            gt=None if gt is None else gt[y0:y1, x0:x1],
        )


def write_report(
    out_dir: str | os.PathLike,
    table: Sequence[MetricRow],
    extra: dict[str, Any],
) -> dict[str, Path]:
    """``metrics.json`` (table + ``extra``) and ``metrics.md`` in ``out_dir``."""
    out = Path(out_dir)
    write_json(out / "metrics.json", {"table": [r.as_dict() for r in table], **extra}, indent=2)
    with atomic_path(out / "metrics.md") as tmp:
        tmp.write_text(markdown_table(table) + "\n", encoding="utf-8")
    with atomic_path(out / "metrics.txt") as tmp:
        tmp.write_text(format_table(table) + "\n", encoding="utf-8")
    return {"json": out / "metrics.json", "markdown": out / "metrics.md"}


def crop_box(masks: Sequence[np.ndarray], shape: tuple[int, int], margin: float = 0.15) -> tuple:
    """``(y0, y1, x0, x1)`` around the union of ``masks`` with a relative margin (whole image
    when they are empty)."""
    union = np.zeros(shape, bool)
    for mask in masks:
        if mask is not None:
            union |= mask
    ys, xs = np.nonzero(union)
    if len(ys) == 0:
        return 0, shape[0], 0, shape[1]
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    pad_y, pad_x = int(h * margin) + 4, int(w * margin) + 4
    return (
        max(0, ys.min() - pad_y),
        min(shape[0], ys.max() + 1 + pad_y),
        max(0, xs.min() - pad_x),
        min(shape[1], xs.max() + 1 + pad_x),
    )


def fit(array: np.ndarray, side: int = _PANEL, nearest: bool = False) -> np.ndarray:
    """Resize so that the long side is ``side`` (masks: nearest neighbour)."""
    h, w = array.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if nearest:
        return cv2.resize(array.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA)


def _overlay(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    out = image.astype(np.float32) * 0.75
    out[mask] = out[mask] * 0.45 + np.array(color, np.float32) * 0.55
    contour = mask ^ cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    out[contour] = color
    return out.clip(0, 255).astype(np.uint8)


def gallery_order(rows: Sequence[dict[str, Any]], sort: str, changed: Any) -> list[dict[str, Any]]:
    """The gallery's rows in order: ``sort="changed"``, most changed first (``changed(row)``);
    ``"score"``, lowest ``refine_score`` first (rows without one last, most changed first)."""
    if sort == "changed":
        return sorted(rows, key=lambda r: -changed(r))
    if sort == "score":
        return sorted(
            rows,
            key=lambda r: (r.get("refine_score") is None, r.get("refine_score") or 0.0,
                           -changed(r)),
        )  # fmt: skip
    raise ValueError(f"gallery sort: expected 'changed' or 'score', got {sort!r}")


_GAP = 8  # pixels between gallery panels
_CAPTION = 30  # pixels above each panel for its caption (two lines at 8 pt)
_DPI = 80


def gallery_canvas(items: Sequence[GalleryItem]) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """The gallery's pixels and captions: one line per item, coarse / refined / ground truth
    overlays with the item's long side fitted to ``_PANEL`` pixels, on white. Returns
    ``(canvas, captions)``: ``canvas`` (H, W, 3) uint8 RGB; ``captions`` ``(x, y, text)``,
    ``y`` the caption's baseline row (pixels from the top)."""
    images = [fit(item.image) for item in items]
    height = _GAP + sum(_CAPTION + image.shape[0] + _GAP for image in images)
    canvas = np.full((height, _GAP + 3 * (_PANEL + _GAP), 3), 255, np.uint8)
    captions: list[tuple[int, int, str]] = []
    top = _GAP + _CAPTION
    for item, image in zip(items, images, strict=True):
        h, w = image.shape[:2]
        panels = [("coarse", item.coarse, COARSE_COLOR), ("refined", item.refined, REFINED_COLOR)]
        panels.append(("ground truth", item.gt, GT_COLOR))
        for col, (name, mask, color) in enumerate(panels):
            left = _GAP + col * (_PANEL + _GAP)
            if mask is None:
                name = f"{name}: none"
            else:
                x = left + (_PANEL - w) // 2
                canvas[top : top + h, x : x + w] = _overlay(image, fit(mask, nearest=True), color)
            if col == 0:
                title = item.title if len(item.title) <= 44 else "..." + item.title[-41:]
                name = f"{title}\n{name}"
            captions.append((left, top - 4, name))
        top += h + _GAP + _CAPTION
    return canvas, captions


def draw_gallery(items: Sequence[GalleryItem], path: str | os.PathLike) -> Path | None:
    """One line per item: coarse / refined / ground truth overlays (:func:`gallery_canvas`),
    captions in matplotlib's font. ``None`` if no items."""
    if not items:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    canvas, captions = gallery_canvas(items)
    height, width = canvas.shape[:2]
    # The canvas is drawn pixel for pixel (no axes to lay out, no resampling).
    fig = plt.figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    fig.figimage(canvas, 0, 0, origin="upper")
    for x, y, text in captions:
        fig.text(x / width, 1 - y / height, text, fontsize=8, ha="left", va="baseline")
    return _save_png(fig, path, layout=False)


# --------------------------------------------------------------------------- plot


def _save_png(fig: Any, path: str | os.PathLike, layout: bool = True) -> Path:
    """Lay out ``fig`` (``layout``: matplotlib's tight layout), write it as a PNG atomically
    (folders made as needed) and close it."""
    import matplotlib.pyplot as plt

    if layout:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    plt.close(fig)
    return path


def draw_before_after(
    rows: Sequence[MetricRow],
    pairs: Sequence[tuple[float, float]],
    path: str | os.PathLike,
    *,
    pair_label: str = "IoU",
) -> Path:
    """Left: coarse vs refined bars per metric. Right: per-item coarse vs refined ``pairs``
    (points above the diagonal improved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    defined = [r for r in rows if r.coarse is not None and r.refined is not None]
    # The headline numbers (AP, boundary AP, IoU, mBA) when there are many.
    main = [r for r in defined if r.key.endswith(("_AP", "iou", "mba"))]
    shown = (main if len(defined) > 16 and main else defined)[:16]
    fig, (bars, scatter) = plt.subplots(1, 2, figsize=(12, max(3.5, 0.35 * len(shown) + 1.5)))
    y = np.arange(len(shown))
    bars.barh(y - 0.2, [100 * r.coarse for r in shown], 0.4, label="coarse", color="#e63c28")
    bars.barh(y + 0.2, [100 * r.refined for r in shown], 0.4, label="refined", color="#28c846")
    bars.set_yticks(y, [r.label for r in shown], fontsize=8)
    bars.invert_yaxis()
    bars.set_xlabel("value x 100")
    bars.legend(loc="lower right", fontsize=8)
    bars.set_title("coarse vs refined")
    if pairs:
        values = np.array(pairs, dtype=float)
        improved = values[:, 1] >= values[:, 0]
        scatter.scatter(values[improved, 0], values[improved, 1], s=12, c="#28c846", label="better")
        scatter.scatter(
            values[~improved, 0], values[~improved, 1], s=12, c="#e63c28", label="worse"
        )
        low = float(np.nanmin(values)) if values.size else 0.0
        scatter.plot([low, 1], [low, 1], "k--", linewidth=0.8)
        scatter.legend(loc="lower right", fontsize=8)
    scatter.set_xlabel(f"coarse {pair_label}")
    scatter.set_ylabel(f"refined {pair_label}")
    scatter.set_title(f"per item ({len(pairs)})")
    return _save_png(fig, path)


def draw_report(
    table: Sequence[MetricRow],
    pairs: Sequence[tuple[float, float]],
    pair_label: str,
    items: Iterable[GalleryItem],
    out_dir: str | os.PathLike,
) -> dict[str, str | None]:
    """``<out_dir>/before_after.png`` (:func:`draw_before_after` of ``table`` and ``pairs``),
    then ``<out_dir>/gallery.png`` of ``items`` (taken after the plot is written). The PNG
    paths (``gallery`` ``None``: no items)."""
    out = Path(out_dir)
    plot = draw_before_after(table, pairs, out / "before_after.png", pair_label=pair_label)
    gallery = draw_gallery(list(items), out / "gallery.png")
    return {"plot": str(plot), "gallery": str(gallery) if gallery else None}


# --------------------------------------------------------------------------- refinement scores


def score_metrics(histogram: dict[str, Any] | None) -> dict[str, float]:
    """MLflow metrics of a stage's score summary (:func:`segrefiner.inference.score.
    score_histogram`): ``score/count``, ``score/mean``, ``score/p10``, ``score/p50``,
    ``score/p90``, ``score/below_zero``."""
    if not histogram:
        return {}
    keys = ("count", "mean", "p10", "p50", "p90", "below_zero")
    return {f"score/{k}": float(histogram[k]) for k in keys if histogram.get(k) is not None}


def draw_score_histogram(
    histogram: dict[str, Any], path: str | os.PathLike, guard: float | None = None
) -> Path | None:
    """Bars of the refinement scores (predicted IoU change, points) with the guard's threshold
    as a line; ``None`` (nothing drawn) when no item was scored."""
    if not histogram or not histogram.get("count"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges, counts = histogram["edges"], histogram["counts"]
    labels = []
    for lo, hi in itertools.pairwise(edges):
        if lo == float("-inf"):
            labels.append(f"<{hi:g}")
        elif hi == float("inf"):
            labels.append(f">={lo:g}")
        else:
            labels.append(f"{lo:g}")
    fig, ax = plt.subplots(figsize=(9, 3.2))
    x = np.arange(len(counts))
    colors = ["#e63c28" if hi <= 0 else "#28c846" for hi in edges[1:]]
    ax.bar(x, counts, color=colors)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_xlabel("refinement score: predicted IoU change (points)")
    ax.set_ylabel("items")
    title = f"{histogram['count']} scored items, {100 * histogram['below_zero']:.1f}% below 0"
    if guard is not None:
        # bar i (1..20) spans [i - 11, i - 10) points and is drawn over [i - 0.5, i + 0.5)
        position = float(np.clip(guard * 100 + 10.5, -0.5, len(counts) - 0.5))
        ax.axvline(position, color="k", linestyle="--", linewidth=1)
        title += f"; guard at {guard * 100:+.2g}"
    ax.set_title(title, fontsize=9)
    return _save_png(fig, path)

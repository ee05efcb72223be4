"""IoU and mBA of mask folders: BIG, DIS-5K (per split) and ThinObject-5K, as the official
``eval_miou.py`` / ``eval_miou_dis.py`` scripts compute them.

Masks are read as grayscale and binarised at ``>= 128``. IoU is pooled over the set
(``Σ|P∩G| / Σ|P∪G|``) and mBA is the mean per-image boundary accuracy (images whose ground
truth is constant have no band and are left out of mBA, and counted). With a coarse folder the
report compares coarse ("old") and refined ("new") masks on the same images.

File naming: ``plain``: ground truth, prediction and coarse mask share the file name (DIS,
ThinObject). ``big``: ground truths are ``<stem>_gt.png``, predictions ``<stem>_refine.png``
and coarse masks ``<stem>_seg.png`` (BIG).

Missing files: with ``strict=True`` (default) a ground truth without a prediction (or without
a coarse mask, when a coarse folder is given) is an :class:`InputError` listing them; with
``strict=False`` such images are left out of every number and listed in the report. A
prediction whose size differs from its ground truth is always an error.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from segrefiner.errors import InputError
from segrefiner.io import atomic_path, read_mask, write_json
from segrefiner.metrics._parallel import TaskRunner, chunked
from segrefiner.metrics.masks import overlap_counts
from segrefiner.metrics.mba import band_counts, summarize_accuracies

Naming = Literal["plain", "big"]
DIS_SPLITS = ("DIS-VD", "DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4")
_BIG_SUFFIXES = {"gt": "_gt.png", "pred": "_refine.png", "coarse": "_seg.png"}
_SHOWN = 5


@dataclass(frozen=True)
class MaskScores:
    """One mask against its ground truth: pixel counts, IoU and BA (``None`` if undefined)."""

    intersection: int
    union: int
    iou: float | None
    boundary_accuracy: float | None


@dataclass(frozen=True)
class ImageRow:
    """Scores of one image: the refined prediction and, if given, the coarse mask."""

    name: str
    height: int
    width: int
    refined: MaskScores
    coarse: MaskScores | None = None


@dataclass(frozen=True)
class SetScores:
    """Totals over a set: pooled IoU and mBA in [0, 1] (``None`` when undefined)."""

    iou: float | None
    mba: float | None
    num_images: int
    empty_band: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _delta(new: float | None, old: float | None) -> float | None:
    return None if new is None or old is None else new - old


@dataclass
class FolderReport:
    """Per-image rows and totals of one folder evaluation.

    ``missing_predictions`` / ``missing_coarse``: ground-truth names without that file (only
    non-empty with ``strict=False``; those images are in no number). ``extra_predictions``:
    prediction files with no ground truth (ignored).
    """

    rows: list[ImageRow]
    refined: SetScores
    coarse: SetScores | None
    num_ground_truths: int
    missing_predictions: list[str] = field(default_factory=list)
    missing_coarse: list[str] = field(default_factory=list)
    extra_predictions: list[str] = field(default_factory=list)
    # "<name>: <reason>" of images left out because a file was unreadable or of another size
    # (only with strict=False; strict stops at the first)
    unreadable: list[str] = field(default_factory=list)

    @property
    def delta_iou(self) -> float | None:
        return _delta(self.refined.iou, self.coarse.iou if self.coarse else None)

    @property
    def delta_mba(self) -> float | None:
        return _delta(self.refined.mba, self.coarse.mba if self.coarse else None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "refined": self.refined.as_dict(),
            "coarse": self.coarse.as_dict() if self.coarse else None,
            "delta": {"iou": self.delta_iou, "mba": self.delta_mba},
            "num_ground_truths": self.num_ground_truths,
            "missing_predictions": list(self.missing_predictions),
            "missing_coarse": list(self.missing_coarse),
            "extra_predictions": list(self.extra_predictions),
            "unreadable": list(self.unreadable),
            "images": [_row_dict(row) for row in self.rows],
        }

    def write_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`as_dict` to ``path`` atomically."""
        write_json(path, self.as_dict(), indent=2)

    def write_csv(self, path: str | os.PathLike) -> None:
        """One line per image (name, size, IoU, BA, coarse IoU/BA, deltas, pixel counts)."""
        rows = [_row_dict(row) for row in self.rows]
        columns = list(_row_dict(self.rows[0]).keys()) if rows else ["name"]
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def _row_dict(row: ImageRow) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": row.name,
        "height": row.height,
        "width": row.width,
        "iou": row.refined.iou,
        "ba": row.refined.boundary_accuracy,
    }
    if row.coarse is not None:
        out |= {
            "coarse_iou": row.coarse.iou,
            "coarse_ba": row.coarse.boundary_accuracy,
            "delta_iou": _delta(row.refined.iou, row.coarse.iou),
            "delta_ba": _delta(row.refined.boundary_accuracy, row.coarse.boundary_accuracy),
        }
    out |= {"intersection": row.refined.intersection, "union": row.refined.union}
    if row.coarse is not None:
        out |= {"coarse_intersection": row.coarse.intersection, "coarse_union": row.coarse.union}
    return out


# --- pairing files ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    name: str
    gt: Path
    pred: Path
    coarse: Path | None


def _stems(names: Sequence[str], naming: Naming) -> list[tuple[str, str]]:
    """``(display name, stem)`` for each ground-truth file name."""
    if naming == "big":
        return [(n, n[: -len(_BIG_SUFFIXES["gt"])]) for n in names]
    return [(n, n) for n in names]


def _file_for(stem: str, role: str, naming: Naming) -> str:
    return stem + _BIG_SUFFIXES[role] if naming == "big" else stem


def _ground_truth_names(gt_dir: Path, naming: Naming, names: Sequence[str] | None) -> list[str]:
    if not gt_dir.is_dir():
        raise InputError(f"{gt_dir}: ground-truth folder not found")
    if names is not None:
        missing = [n for n in names if not (gt_dir / n).is_file()]
        if missing:
            raise InputError(
                f"{gt_dir}: {len(missing)} listed ground truths not found (e.g. {', '.join(missing[:_SHOWN])})"
            )
        return list(names)
    pattern = "*" + _BIG_SUFFIXES["gt"] if naming == "big" else "*.png"
    found = sorted(p.name for p in gt_dir.glob(pattern) if p.is_file())
    if not found:
        raise InputError(f"{gt_dir}: no ground-truth masks ({pattern})")
    return found


def _pair_files(
    gt_dir: Path,
    pred_dir: Path,
    coarse_dir: Path | None,
    naming: Naming,
    names: Sequence[str] | None,
    strict: bool,
) -> tuple[list[_Item], list[str], list[str], list[str]]:
    if naming not in ("plain", "big"):
        raise InputError(f"naming must be 'plain' or 'big', got {naming!r}")
    gt_names = _ground_truth_names(gt_dir, naming, names)
    for folder, what in ((pred_dir, "prediction"), (coarse_dir, "coarse-mask")):
        if folder is not None and not folder.is_dir():
            raise InputError(f"{folder}: {what} folder not found")
    items, missing_pred, missing_coarse = [], [], []
    for name, stem in _stems(gt_names, naming):
        pred = pred_dir / _file_for(stem, "pred", naming)
        coarse = coarse_dir / _file_for(stem, "coarse", naming) if coarse_dir else None
        ok = True
        if not pred.is_file():
            missing_pred.append(name)
            ok = False
        if coarse is not None and not coarse.is_file():
            missing_coarse.append(name)
            ok = False
        if ok:
            items.append(_Item(name, gt_dir / name, pred, coarse))
    for missing, folder, what in (
        (missing_pred, pred_dir, "prediction"),
        (missing_coarse, coarse_dir, "coarse mask"),
    ):
        if missing and strict:
            raise InputError(
                f"{folder}: no {what} for {len(missing)} of {len(gt_names)} ground truths "
                f"(e.g. {', '.join(missing[:_SHOWN])}); pass strict=False (--lenient) to "
                "evaluate the others"
            )
    wanted = {_file_for(stem, "pred", naming) for _, stem in _stems(gt_names, naming)}
    suffix = _BIG_SUFFIXES["pred"] if naming == "big" else ".png"
    extra = sorted(p.name for p in pred_dir.glob("*" + suffix) if p.name not in wanted)
    return items, missing_pred, missing_coarse, extra


# --- scoring ---------------------------------------------------------------------------------


def _read_like(path: Path, gt_path: Path, shape: tuple[int, int]) -> Any:
    mask = read_mask(path)
    if mask.shape != shape:
        raise InputError(
            f"{path}: size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from the ground truth "
            f"{gt_path} ({shape[1]}x{shape[0]})"
        )
    return mask


def _score_items(items: list[_Item], strict: bool = True) -> tuple[list[ImageRow], list[str]]:
    """Rows of the items; with ``strict=False`` an item with an unreadable or wrong-size file
    is left out and listed (``"<name>: <reason>"``) instead of stopping the evaluation."""
    rows, unreadable = [], []
    for item in items:
        try:
            gt = read_mask(item.gt)
            pred = _read_like(item.pred, item.gt, gt.shape)
            coarse = _read_like(item.coarse, item.gt, gt.shape) if item.coarse else None
        except InputError as exc:
            if strict:
                raise
            unreadable.append(f"{item.name}: {exc}")
            continue
        masks = [pred] if coarse is None else [pred, coarse]
        bands = band_counts(gt, masks, item.name)
        scores = []
        for k, mask in enumerate(masks):
            counts = overlap_counts(mask, gt, item.name)
            scores.append(
                MaskScores(counts.intersection, counts.union, counts.iou, bands.accuracy(k))
            )
        rows.append(
            ImageRow(
                item.name,
                int(gt.shape[0]),
                int(gt.shape[1]),
                scores[0],
                scores[1] if coarse is not None else None,
            )
        )
    return rows, unreadable


def _set_scores(scores: list[MaskScores]) -> SetScores:
    inter = sum(s.intersection for s in scores)
    union = sum(s.union for s in scores)
    summary = summarize_accuracies(s.boundary_accuracy for s in scores)
    return SetScores(
        iou=inter / union if union else None,
        mba=summary.mba,
        num_images=len(scores),
        empty_band=len(summary.empty_band),
    )


def evaluate_mask_folders(
    gt_dir: str | os.PathLike,
    pred_dir: str | os.PathLike,
    coarse_dir: str | os.PathLike | None = None,
    naming: Naming = "plain",
    *,
    names: Sequence[str] | None = None,
    strict: bool = True,
    workers: int = 1,
    client: Any = None,
) -> FolderReport:
    """Score a folder of predicted masks (and optionally coarse masks) against ground truths.

    ``names``: ground-truth file names to use (default: every ``*.png``, or ``*_gt.png`` for
    ``naming="big"``). ``workers`` local processes or a Dask ``client`` share the images.
    Returns per-image rows (in ground-truth name order) and totals; see the module docstring.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    coarse_path = Path(coarse_dir) if coarse_dir is not None else None
    items, missing_pred, missing_coarse, extra = _pair_files(
        gt_dir, pred_dir, coarse_path, naming, names, strict
    )
    with TaskRunner(workers, client) as runner:
        chunks = chunked(items, 4 * runner.slots if runner.parallel else 1)
        parts = list(runner.map(functools.partial(_score_items, strict=strict), chunks))
    rows = [row for part_rows, _ in parts for row in part_rows]
    unreadable = [line for _, part_bad in parts for line in part_bad]
    num_gt = len(items) + len(set(missing_pred) | set(missing_coarse))
    return FolderReport(
        rows=rows,
        refined=_set_scores([r.refined for r in rows]),
        coarse=_set_scores([r.coarse for r in rows if r.coarse is not None])
        if coarse_path
        else None,
        num_ground_truths=num_gt,
        missing_predictions=missing_pred,
        missing_coarse=missing_coarse,
        extra_predictions=extra,
        unreadable=unreadable,
    )


def read_name_list(path: str | os.PathLike) -> list[str]:
    """Mask file names listed one per line (blank lines skipped; ``.png`` added if absent)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: list file not found")
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        name = line.strip()
        if name:
            names.append(name if Path(name).suffix else name + ".png")
    if not names:
        raise InputError(f"{path}: the list is empty")
    return names


def evaluate_thin_object(
    thin_root: str | os.PathLike,
    pred_dir: str | os.PathLike,
    coarse_dir: str | os.PathLike | None = None,
    list_file: str = "list/test.txt",
    **options: Any,
) -> FolderReport:
    """ThinObject-5K test set: GT ``<thin_root>/masks/<name>``, names from ``<thin_root>/<list_file>``."""
    root = Path(thin_root)
    return evaluate_mask_folders(
        root / "masks",
        pred_dir,
        coarse_dir,
        "plain",
        names=read_name_list(root / list_file),
        **options,
    )


def evaluate_dis(
    dis_root: str | os.PathLike,
    pred_root: str | os.PathLike,
    coarse_root: str | os.PathLike | None = None,
    splits: Sequence[str] | None = None,
    **options: Any,
) -> dict[str, FolderReport]:
    """DIS-5K, one report per split: GT ``<dis_root>/<split>/gt``, predictions
    ``<pred_root>/<split>``, coarse masks ``<coarse_root>/<split>`` (same file names).

    ``splits=None``: every split of :data:`DIS_SPLITS` whose ground-truth folder exists (an
    error when none does); named splits must all exist."""
    dis, pred = Path(dis_root), Path(pred_root)
    coarse = Path(coarse_root) if coarse_root is not None else None
    if splits is None:
        splits = [split for split in DIS_SPLITS if (dis / split / "gt").is_dir()]
        if not splits:
            raise InputError(
                f"{dis}: no DIS split with ground truths (looked for "
                f"{', '.join(f'{s}/gt' for s in DIS_SPLITS)})"
            )
    return {
        split: evaluate_mask_folders(
            dis / split / "gt", pred / split, coarse / split if coarse else None, "plain", **options
        )
        for split in splits
    }

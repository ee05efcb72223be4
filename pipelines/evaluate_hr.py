"""BIG and DIS-5K mask folders, coarse vs refined: what to score (:class:`HREvaluation`), the
table and per-image rows of each scored folder (pooled IoU and mBA, per DIS set) and the
report's pictures. Plain functions of paths; the evaluate-hr stage
(:mod:`pipelines.evaluate_stage`) calls them.

The scores come from :func:`segrefiner.metrics.evaluate_mask_folders`; the table and pictures
from :mod:`pipelines.reports`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.reports import GalleryItem, MetricRow, draw_report, gallery_order
from segrefiner.data.folders import SampleRecord
from segrefiner.errors import InputError
from segrefiner.io import read_image, read_json, read_mask
from segrefiner.metrics import FolderReport, evaluate_mask_folders

__all__ = [
    "FolderSet",
    "HREvaluation",
    "default_evaluation",
    "draw_hr_report",
    "evaluation_for",
    "evaluation_from_folders",
    "folder_results",
    "manifest_scores",
    "score_folder",
]


@dataclass(frozen=True)
class FolderSet:
    """One evaluated folder: a BIG test folder or one DIS set."""

    name: str  # metric prefix: "" for BIG, the set for DIS
    gt_dir: str
    coarse_dir: str
    pred_subdir: str  # under the refined masks folder
    names: tuple[str, ...]  # ground-truth file names
    images: dict[str, str] = field(default_factory=dict)  # gt file name -> image path


@dataclass(frozen=True)
class HREvaluation:
    """What to score the refined masks against: the sets, with ``naming`` as in
    :func:`segrefiner.metrics.evaluate_mask_folders`."""

    naming: str
    sets: tuple[FolderSet, ...]


def evaluation_for(kind: str, records: list[SampleRecord], gt_root: str | Path) -> HREvaluation:
    """BIG: ground truths ``<gt_root>/<name>_gt.png``; DIS: ``<gt_root>/<set>/gt/<name>.png``
    (``gt_root`` = the ``dis`` folder). Coarse masks: the records' own files."""
    if not records:
        raise InputError("nothing to evaluate: no samples")
    groups: dict[str, list[SampleRecord]] = {}
    for r in records:
        groups.setdefault(r.split if kind == "dis" else "", []).append(r)
    sets = []
    for split, members in sorted(groups.items()):
        coarse_dirs = {str(Path(r.coarse).parent) for r in members if r.coarse is not None}
        if len(coarse_dirs) != 1:
            raise InputError(f"{kind} {split or 'test'}: coarse masks must share one folder")
        if kind == "big":
            names = tuple(f"{r.name}_gt.png" for r in members)
            gt_dir, sub = str(gt_root), ""
        else:
            names = tuple(f"{r.name}.png" for r in members)
            gt_dir, sub = str(Path(gt_root) / split / "gt"), split
        images = {n: str(r.image) for n, r in zip(names, members)}
        sets.append(FolderSet(split, gt_dir, coarse_dirs.pop(), sub, names, images))
    return HREvaluation("big" if kind == "big" else "plain", tuple(sets))


def default_evaluation(params: Any, data_root: str, records: list[SampleRecord]) -> HREvaluation:
    """The evaluation of a refine-big / refine-dis run (``params.dataset_kind``): BIG against
    ``<data_root>/<params.gt_folder>``, DIS against ``<data_root>/dis``."""
    if params.dataset_kind == "big":
        return evaluation_for("big", records, Path(data_root) / params.gt_folder)
    return evaluation_for("dis", records, Path(data_root) / "dis")


def evaluation_from_folders(
    dataset: str,
    ground_truth: str | Path,
    coarse: str | Path,
    refined: str | Path,
    sets: list[str] | None = None,
) -> HREvaluation:
    """An evaluation of existing folders. BIG: ``ground_truth`` holds ``<name>_gt.png`` (and
    the images ``<name>_im.jpg``), ``coarse`` the ``<name>_seg.png``. DIS: ``ground_truth`` is
    the ``dis`` folder (``<set>/gt``, ``<set>/im``), ``coarse`` and ``refined`` hold ``<set>/``;
    ``sets`` default to those present in ``refined``."""
    gt_root = Path(ground_truth)
    if dataset == "big":
        names = tuple(sorted(p.name for p in gt_root.glob("*_gt.png")))
        if not names:
            raise InputError(f"{gt_root}: no BIG ground truths (*_gt.png)")
        images = {n: str(gt_root / n.replace("_gt.png", "_im.jpg")) for n in names}
        return HREvaluation("big", (FolderSet("", str(gt_root), str(coarse), "", names, images),))
    chosen = sets or sorted(
        p.name for p in Path(refined).iterdir() if p.is_dir() and (gt_root / p.name / "gt").is_dir()
    )
    if not chosen:
        raise InputError(f"{refined}: no DIS set folders with ground truth under {gt_root}")
    folders = []
    for split in chosen:
        gt_dir = gt_root / split / "gt"
        names = tuple(sorted(p.name for p in gt_dir.glob("*.png")))
        images = {n: str(gt_root / split / "im" / n.replace(".png", ".jpg")) for n in names}
        folders.append(
            FolderSet(split, str(gt_dir), str(Path(coarse) / split), split, names, images)
        )
    return HREvaluation("plain", tuple(folders))


# --------------------------------------------------------------------------- scoring


def score_folder(folder: FolderSet, naming: str, pred_root: str | os.PathLike) -> FolderReport:
    """Pooled IoU and mBA of one folder, coarse and refined (refined masks under
    ``<pred_root>/<folder.pred_subdir>``); missing files are listed, not fatal."""
    return evaluate_mask_folders(
        folder.gt_dir,
        Path(pred_root) / folder.pred_subdir,
        folder.coarse_dir,
        naming,  # type: ignore[arg-type]
        names=list(folder.names),
        strict=False,
    )


def _pred_name(evaluation: HREvaluation, name: str) -> tuple[str, str, str]:
    """(stem, refined file name, coarse file name) of a ground-truth file name."""
    if evaluation.naming == "big":
        stem = name.removesuffix("_gt.png")
        return stem, f"{stem}_refine.png", f"{stem}_seg.png"
    return name, name, name


def manifest_scores(work_dir: str | os.PathLike | None) -> dict[Path, Any]:
    """Resolved refined mask path -> its ``refine_score`` (``None``: not scored), from the HR
    stage's ``<work_dir>/manifest.json``; empty without ``work_dir`` or manifest."""
    scores: dict[Path, Any] = {}
    manifest = Path(work_dir) / "manifest.json" if work_dir is not None else None
    if manifest is not None and manifest.is_file():
        for sample in read_json(manifest)["samples"]:
            scores[Path(sample["output"]).resolve()] = sample.get("refine_score")
    return scores


def folder_results(
    evaluation: HREvaluation,
    folder: FolderSet,
    report: FolderReport,
    pred_root: str | os.PathLike,
    scores: dict[Path, Any],
) -> tuple[list[MetricRow], list[dict[str, Any]]]:
    """One scored folder's table rows (``[<set>_]iou``, ``[<set>_]mba``, and
    ``[<set>_]missing`` when files were missing) and per-image rows (``set``, the image's
    scores, ``image`` path, ``refine_score`` looked up in ``scores``, see
    :func:`manifest_scores`)."""
    prefix = f"{folder.name}_" if folder.name else ""
    label = f"{folder.name} " if folder.name else ""
    coarse = report.coarse
    table = [
        MetricRow(
            f"{prefix}iou", f"{label}IoU", coarse.iou if coarse else None, report.refined.iou
        ),
        MetricRow(
            f"{prefix}mba", f"{label}mBA", coarse.mba if coarse else None, report.refined.mba
        ),
    ]
    rows: list[dict[str, Any]] = []
    for row in report.as_dict()["images"]:
        pred = Path(pred_root) / folder.pred_subdir / _pred_name(evaluation, row["name"])[1]
        rows.append(
            {
                "set": folder.name or "test",
                **row,
                "image": folder.images.get(row["name"]),
                "refine_score": scores.get(pred.resolve()),
            }
        )
    if report.missing_predictions + report.missing_coarse:
        table.append(MetricRow(f"{prefix}missing", f"{label}missing files", None, None))
    return table, rows


# --------------------------------------------------------------------------- report


def draw_hr_report(
    rows: list[dict[str, Any]],
    table: list[MetricRow],
    evaluation: HREvaluation,
    pred_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    gallery_size: int,
    gallery_sort: str = "changed",
) -> dict[str, str | None]:
    """``<out_dir>/before_after.png`` (``table`` and per-image IoU) and
    ``<out_dir>/gallery.png``: the ``gallery_size`` images of ``rows`` whose IoU changed most
    (or, ``gallery_sort="score"``, with the lowest refinement scores). The PNG paths
    (``gallery`` ``None``: no image to show)."""
    pairs = [(r["coarse_iou"], r["iou"]) for r in rows if r.get("coarse_iou") is not None]
    scored = [r for r in rows if r.get("delta_iou") is not None and r.get("image")]
    chosen = gallery_order(scored, gallery_sort, lambda r: abs(r["delta_iou"]))[:gallery_size]
    items = _gallery_items(chosen, evaluation, pred_root)
    return draw_report(table, pairs, "IoU", items, out_dir)


def _gallery_items(
    chosen: list[dict[str, Any]], evaluation: HREvaluation, pred_root: str | os.PathLike
) -> Iterator[GalleryItem]:
    """The gallery lines of the ``chosen`` rows."""
    by_set = {s.name or "test": s for s in evaluation.sets}
    for row in chosen:
        score = row.get("refine_score")
        score_text = "" if score is None else f", score {100 * score:+.1f}"
        folder = by_set[row["set"]]
        stem, pred_name, coarse_name = _pred_name(evaluation, row["name"])
        gt = read_mask(Path(folder.gt_dir) / row["name"])
        coarse = read_mask(Path(folder.coarse_dir) / coarse_name, shape=gt.shape)
        refined = read_mask(Path(pred_root) / folder.pred_subdir / pred_name, shape=gt.shape)
        title = f"{row['set']}/{Path(stem).stem}: IoU {100 * row['delta_iou']:+.1f}" + score_text
        image = read_image(row["image"])
        yield GalleryItem.cropped(title, image, coarse, refined, gt, margin=0.05)

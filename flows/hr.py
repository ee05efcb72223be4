"""BIG and DIS-5K: the HR refinement stage as Prefect tasks, folder evaluation (pooled IoU and
mBA, per DIS set) and the report.

Output folder of one run (``<output_dir>/<content key>/``, ``<output_dir>/latest`` links to
the most recent)::

    masks/                     refined masks, official names (BIG <name>_refine.png,
                               DIS <set>/<name>.png)
    work/                      the stage's work directory
    report/metrics.json, per_image.csv, gallery.png, before_after.png
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import task

from flows.caching import keyed, work_shard_done, work_store_exists
from flows.cluster import submit
from flows.reports import (
    GalleryItem,
    MetricRow,
    crop_box,
    draw_before_after,
    draw_gallery,
    gallery_order,
    write_csv,
)
from flows.tasks import shard_progress
from pipelines.refine import RefineConfig
from pipelines.refine_hr import (
    finalize_refine_hr,
    list_samples,
    prepare_refine_hr,
    run_refine_hr_shard,
)
from pipelines.sharding import Shard
from segrefiner.data.folders import SampleRecord
from segrefiner.errors import InputError
from segrefiner.io import read_image, read_json, read_mask
from segrefiner.metrics import FolderReport, evaluate_mask_folders

__all__ = [
    "HREvaluation",
    "default_evaluation",
    "evaluate_folder",
    "evaluate_outputs",
    "evaluation_for",
    "evaluation_from_folders",
    "finalize_hr",
    "list_records",
    "prepare_hr",
    "refine_hr_shard",
    "report_hr",
]


@task(name="list-samples")
def list_records(params: Any, data_root: str) -> list[SampleRecord]:
    """The dataset's samples: BIG ``params.folder``, DIS ``params.sets`` with coarse masks of
    ``params.segmentor``."""
    if params.dataset_kind == "big":
        return list_samples("big", data_root, folder=params.folder)
    sets = tuple(params.sets) if params.sets else None
    return list_samples("dis", data_root, sets=sets, segmentor=params.segmentor)


def _manifest_exists(parameters: dict[str, Any]) -> bool:
    return (Path(parameters["work_dir"]) / "manifest.json").is_file()


@task(
    name="prepare-refine-hr",
    cache_key_fn=keyed("out_dir", "work_dir", "num_shards", exists=work_store_exists),
)
def prepare_hr(
    records: list[SampleRecord],
    out_dir: str,
    work_dir: str,
    config: RefineConfig,
    num_shards: int,
    content_key: str,
) -> list[Shard]:
    """Plan the shards and create (or resume) the store."""
    return prepare_refine_hr(records, out_dir, work_dir, config, num_shards=num_shards)


@task(
    name="refine-hr-shard",
    retries=1,
    cache_key_fn=keyed("work_dir", "shard", exists=work_shard_done),
)
def refine_hr_shard(
    work_dir: str, config: RefineConfig, shard: Shard, content_key: str
) -> dict[str, Any]:
    """Refine one shard's images (a completed shard is skipped by the stage itself)."""
    with shard_progress("refine-hr", shard.index, len(shard)):
        return run_refine_hr_shard(work_dir, config, shard)


@task(name="finalize-refine-hr", cache_key_fn=keyed("work_dir", exists=_manifest_exists))
def finalize_hr(work_dir: str, content_key: str) -> dict[str, Any]:
    """Check that every shard finished; write the manifest."""
    return finalize_refine_hr(work_dir)


# --------------------------------------------------------------------------- evaluation


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
    if params.dataset_kind == "big":
        return evaluation_for("big", records, Path(data_root) / params.gt_folder)
    return evaluation_for("dis", records, Path(data_root) / "dis")


@task(name="evaluate-folder")
def evaluate_folder(folder: FolderSet, naming: str, pred_root: str) -> FolderReport:
    """Pooled IoU and mBA of one folder, coarse and refined; missing files are listed."""
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


def evaluate_outputs(
    evaluation: HREvaluation,
    pred_root: str,
    report_dir: str | Path,
    work_dir: str | Path | None = None,
) -> tuple[list[MetricRow], list[dict[str, Any]]]:
    """Score every set on the cluster; the table rows and the per-image rows (CSV written).
    With ``work_dir``, each row also gets its ``refine_score`` from the stage's manifest."""
    scores: dict[Path, Any] = {}
    manifest = Path(work_dir) / "manifest.json" if work_dir is not None else None
    if manifest is not None and manifest.is_file():
        for sample in read_json(manifest)["samples"]:
            scores[Path(sample["output"]).resolve()] = sample.get("refine_score")
    futures = [submit(evaluate_folder, s, evaluation.naming, pred_root) for s in evaluation.sets]
    table: list[MetricRow] = []
    rows: list[dict[str, Any]] = []
    for folder, future in zip(evaluation.sets, futures):
        report: FolderReport = future.result()
        prefix = f"{folder.name}_" if folder.name else ""
        label = f"{folder.name} " if folder.name else ""
        coarse = report.coarse
        table.append(
            MetricRow(
                f"{prefix}iou", f"{label}IoU", coarse.iou if coarse else None, report.refined.iou
            )
        )
        table.append(
            MetricRow(
                f"{prefix}mba", f"{label}mBA", coarse.mba if coarse else None, report.refined.mba
            )
        )
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
        missing = report.missing_predictions + report.missing_coarse
        if missing:
            table.append(MetricRow(f"{prefix}missing", f"{label}missing files", None, None))
    write_csv(rows, Path(report_dir) / "per_image.csv")
    return table, rows


@task(name="report-hr")
def report_hr(
    rows: list[dict[str, Any]],
    table: list[MetricRow],
    evaluation: HREvaluation,
    pred_root: str,
    out_dir: str,
    gallery_size: int,
    gallery_sort: str = "changed",
) -> dict[str, str | None]:
    """The gallery of the most changed images (or, ``gallery_sort="score"``, of the lowest
    refinement scores) and the before/after plot (PNG paths)."""
    out = Path(out_dir)
    pairs = [(r["coarse_iou"], r["iou"]) for r in rows if r.get("coarse_iou") is not None]
    plot = draw_before_after(table, pairs, out / "before_after.png", pair_label="IoU")
    scored = [r for r in rows if r.get("delta_iou") is not None and r.get("image")]
    chosen = gallery_order(scored, gallery_sort, lambda r: abs(r["delta_iou"]))[:gallery_size]
    by_set = {s.name or "test": s for s in evaluation.sets}
    items = []
    for row in chosen:
        score = row.get("refine_score")
        score_text = "" if score is None else f", score {100 * score:+.1f}"
        folder = by_set[row["set"]]
        stem, pred_name, coarse_name = _pred_name(evaluation, row["name"])
        gt = read_mask(Path(folder.gt_dir) / row["name"])
        coarse = read_mask(Path(folder.coarse_dir) / coarse_name, shape=gt.shape)
        refined = read_mask(Path(pred_root) / folder.pred_subdir / pred_name, shape=gt.shape)
        y0, y1, x0, x1 = crop_box([gt, coarse, refined], gt.shape, margin=0.05)
        items.append(
            GalleryItem(
                title=f"{row['set']}/{Path(stem).stem}: IoU {100 * row['delta_iou']:+.1f}"
                + score_text,
                image=read_image(row["image"])[y0:y1, x0:x1],
                coarse=coarse[y0:y1, x0:x1],
                refined=refined[y0:y1, x0:x1],
                gt=gt[y0:y1, x0:x1],
            )
        )
    gallery = draw_gallery(items, out / "gallery.png")
    return {"plot": str(plot), "gallery": str(gallery) if gallery else None}


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

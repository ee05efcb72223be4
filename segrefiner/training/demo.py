"""The demo model: a ``tiny`` LR-SegRefiner trained on the demo data set on a CPU.

:func:`ensure_demo_checkpoint` returns ``checkpoints/demo_lr_tiny.pt`` when it is there and
otherwise trains it (generating the demo data first if needed) with ``configs/demo_lr.yaml``.
:func:`evaluate_lr_demo` measures what the model does on the demo's held-out val split: the
segmentor's coarse instance masks (``results/segmentor_val.segm.json``) against the refined
ones, per matched instance (IoU, boundary IoU, boundary accuracy as in mBA) and as COCO mask AP
and boundary AP.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from segrefiner.data.coco import load_coco_instances, load_segmentor_results
from segrefiner.errors import CheckpointError, InputError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CHECKPOINT = REPO_ROOT / "checkpoints" / "demo_lr_tiny.pt"
DEMO_CONFIG = REPO_ROOT / "configs" / "demo_lr.yaml"
DEMO_SEED = 0
MATCH_IOU = 0.5  # a detection counts as a true positive of the GT it overlaps this much


def ensure_demo_checkpoint(
    path: str | os.PathLike = DEMO_CHECKPOINT,
    *,
    data_root: str | os.PathLike = "data/demo",
    run_dir: str | os.PathLike = "runs/demo_lr",
    config_path: str | os.PathLike = DEMO_CONFIG,
    overrides: list[str] | None = None,
) -> Path:
    """The demo checkpoint at ``path``; trained first when missing (minutes on a CPU).

    Training uses ``config_path`` with ``data.root`` and ``checkpoint.dir`` set from the
    arguments; the demo data set is generated (seed 0) when ``data_root`` has none.
    """
    from segrefiner.checkpoint import load_checkpoint

    path = Path(path)
    if path.is_file():
        try:
            load_checkpoint(path)
            return path
        except CheckpointError as exc:
            log.warning("%s is not usable (%s); training it again", path, exc)
    from segrefiner.data.demo import generate_demo
    from segrefiner.training.config import load_train_config
    from segrefiner.training.loop import train

    if not (Path(data_root) / "DEMO.json").is_file():
        generate_demo(data_root, seed=DEMO_SEED)
    config = load_train_config(
        config_path,
        [f"data.root={data_root}", f"checkpoint.dir={run_dir}", *(overrides or [])],
    )
    result = train(config)
    if not result.model:
        raise CheckpointError(f"{run_dir}: the demo training did not finish")
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.model, path)
    return path


def evaluate_lr_demo(
    checkpoint: str | os.PathLike,
    data_root: str | os.PathLike = "data/demo",
    *,
    seed: int = DEMO_SEED,
    device: str = "cpu",
    with_ap: bool = True,
    threads: int | None = 1,
) -> dict[str, Any]:
    """Coarse vs refined on the demo val split (COCO ``instances_val2017.json`` as ground truth).

    Each detection is matched to the ground-truth instance of its image and category that its
    coarse mask overlaps most; pairs with IoU >= 0.5 are scored (false positives have no
    ground truth to refine towards). Returns means over those pairs of ``iou``,
    ``boundary_iou`` and ``boundary_accuracy`` (the per-image term of mBA, on the full image)
    for ``coarse`` and ``refined``, their counts, and with ``with_ap`` the COCO ``segm`` and
    ``boundary`` AP of all detections before and after refinement. Values are fractions.
    ``threads``: torch CPU threads while refining (one is fastest on a busy shared machine).
    """
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _evaluate(checkpoint, Path(data_root), seed, device, with_ap)
    finally:
        torch.set_num_threads(previous)


def _evaluate(
    checkpoint: str | os.PathLike, root: Path, seed: int, device: str, with_ap: bool
) -> dict[str, Any]:
    from segrefiner import rle
    from segrefiner.metrics import boundary_accuracy, boundary_iou, instance_ap, iou
    from segrefiner.refiner import Refiner

    gt_path = root / "coco" / "annotations" / "instances_val2017.json"
    annotations = load_coco_instances(gt_path, root / "coco" / "val2017")
    results = load_segmentor_results(root / "results" / "segmentor_val.segm.json", annotations)
    refiner = Refiner.from_checkpoint(checkpoint, device=device, seed=seed)
    started = time.perf_counter()
    scores: dict[str, dict[str, list[float]]] = {
        k: {"iou": [], "boundary_iou": [], "boundary_accuracy": []} for k in ("coarse", "refined")
    }
    refined_results: list[dict[str, Any]] = []
    coarse_results: list[dict[str, Any]] = []
    for group in results:
        image_id = group.image.id
        image = results.read_image(image_id)
        coarse = np.stack([d.mask() for d in group.detections])
        refined = refiner.refine_instances(image, coarse, keys=[d.index for d in group.detections])
        gts = [
            (a.category_id, annotations.annotation_mask(a))
            for a in annotations.annotations_of(image_id)
            if not a.iscrowd
        ]
        for det, c_mask, r_mask in zip(group.detections, coarse, refined):
            base = {"image_id": image_id, "category_id": det.category_id, "score": det.score}
            coarse_results.append({**base, "segmentation": det.segmentation})
            encoded = rle.encode(r_mask)
            refined_results.append({**base, "segmentation": encoded})
            candidates = [(iou(c_mask, g) or 0.0, g) for cat, g in gts if cat == det.category_id]
            if not candidates:
                continue
            best, gt = max(candidates, key=lambda x: x[0])
            if best < MATCH_IOU:
                continue
            for name, mask in (("coarse", c_mask), ("refined", r_mask)):
                for metric, fn in (
                    ("iou", iou),
                    ("boundary_iou", boundary_iou),
                    ("boundary_accuracy", boundary_accuracy),
                ):
                    value = fn(mask, gt)
                    if value is not None:
                        scores[name][metric].append(value)
    out: dict[str, Any] = {
        "detections": len(coarse_results),
        "matched": len(scores["coarse"]["iou"]),
        "seconds": round(time.perf_counter() - started, 1),
    }
    for name, metrics in scores.items():
        for metric, values in metrics.items():
            out[f"{name}_{metric}"] = float(np.mean(values)) if values else None
    if with_ap:
        for name, dets in (("coarse", coarse_results), ("refined", refined_results)):
            for iou_type in ("segm", "boundary"):
                ap = instance_ap(str(gt_path), dets, iou_type)
                out[f"{name}_{iou_type}_ap"] = ap.get("AP")
    return out


HR_DEMO_SETS = ("DIS-VD", "DIS-TE1", "BIG")


def hr_demo_records(
    data_root: str | os.PathLike = "data/demo",
    sets: tuple[str, ...] = HR_DEMO_SETS,
    segmentor: str = "isnet",
) -> list[tuple[str, Any]]:
    """The demo's high-resolution samples as ``(set name, SampleRecord)``: the DIS splits of
    ``sets`` (each image's ``dis/coarse/<segmentor>/<split>`` mask), then ``BIG``
    (``big/test``, its ``*_seg.png`` masks) if named."""
    from segrefiner.data.folders import read_big, read_dis

    unknown = [s for s in sets if s != "BIG" and not s.startswith("DIS-")]
    if unknown:
        raise InputError(f"sets: unknown {unknown}; expected DIS splits (DIS-VD, ...) or BIG")
    dis_sets = [s for s in sets if s != "BIG"]
    records: list[tuple[str, Any]] = []
    if dis_sets:
        records += [
            (r.split, r)
            for r in read_dis(data_root, dis_sets, segmentor=segmentor, require_coarse=True)
        ]
    if "BIG" in sets:
        records += [("BIG", r) for r in read_big(data_root, "big/test", require_coarse=True)]
    return records


def evaluate_hr_demo(
    checkpoint: str | os.PathLike,
    data_root: str | os.PathLike = "data/demo",
    *,
    sets: tuple[str, ...] = HR_DEMO_SETS,
    segmentor: str = "isnet",
    seed: int = DEMO_SEED,
    device: str = "cpu",
    threads: int | None = 1,
) -> dict[str, Any]:
    """Coarse vs refined on the demo's high-resolution sets (semantic / HR path).

    ``sets``: DIS splits (each image's ``dis/coarse/<segmentor>/<split>`` mask) and/or ``BIG``
    (``big/test``, its ``*_seg.png`` masks). Each coarse mask is refined over the whole image
    (global steps + local patches). Returns, per set and over all (``"all"``), the pooled IoU
    and the mBA (as the official DIS / BIG scripts: fractions) of the coarse and of the refined
    masks, the image count, the longest image side and the seconds per image spent refining.
    """
    import torch

    from segrefiner.data.folders import load_sample
    from segrefiner.metrics import mean_boundary_accuracy, pooled_iou
    from segrefiner.refiner import Refiner

    records = hr_demo_records(data_root, sets, segmentor)
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        refiner = Refiner.from_checkpoint(checkpoint, device=device, seed=seed)
        items: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]] = {}
        for name, record in records:
            sample = load_sample(record)
            tic = time.perf_counter()
            refined = refiner.refine(sample.image, sample.coarse, key=record.sample_id)
            seconds = time.perf_counter() - tic
            items.setdefault(name, []).append((sample.gt, sample.coarse, refined, seconds))
        items["all"] = [item for name in sets for item in items.get(name, [])]
        out: dict[str, Any] = {}
        for name, rows in items.items():
            gts = [row[0] for row in rows]
            entry: dict[str, Any] = {
                "images": len(rows),
                "long_side": max((max(g.shape) for g in gts), default=0),
                "seconds_per_image": float(np.mean([r[3] for r in rows])) if rows else 0.0,
            }
            for label, index in (("coarse", 1), ("refined", 2)):
                masks = [row[index] for row in rows]
                entry[f"{label}_iou"] = pooled_iou(masks, gts) if rows else None
                entry[f"{label}_mba"] = mean_boundary_accuracy(masks, gts).mba if rows else None
            out[name] = entry
        return out
    finally:
        torch.set_num_threads(previous)

"""Refinement measured on an instance set: coarse vs refined, per coarse kind.

For every non-crowd instance of a COCO instances file (e.g. the real-photo evaluation split
built by ``segrefiner data real``), a coarse mask of each kind of
:mod:`segrefiner.data.coarse_kinds` is made from the human-made mask, deterministically from
``(seed, kind, image file, annotation id)``, and refined on the instance (LR) path. Reported
per kind (fractions in [0, 1]):

- mean IoU, mean boundary IoU and mean boundary accuracy (the per-image term of mBA) of the
  coarse and of the refined masks, over all instances, on the full image;
- ``harmed`` / ``helped``: the fraction of instances whose IoU dropped / rose by more than
  ``margin`` (0.02, i.e. 2 IoU points);
- mask AP and boundary AP (COCO protocol) of the coarse and of the refined masks, each mask
  a detection of its ground truth's category with score 1;
- the coarse IoU distribution (10/25/50/75/90th percentiles).

``mode="semantic"`` refines each instance's whole-image mask on the semantic / HR path
(global pass + local patches, :meth:`segrefiner.Refiner.refine`) instead of the instance path,
as a user refining one object mask of a high-resolution photo would; the summary then also
carries the pooled IoU of the DIS / BIG protocol (``pooled_iou``: all intersections over all
unions) next to the mean boundary accuracy (mBA).

``refiner=None`` measures the coarse masks alone (their distribution and AP).

Every refined instance also carries its refinement score (the predicted IoU change, see
:mod:`segrefiner.inference.score`) and the features it came from. Per kind the report gives
the Spearman correlation between score and true IoU change, and for each threshold of
``guards`` the metrics the guard would give (an instance scored below the threshold keeps its
coarse mask: the guard's rule, applied to the same run), next to the unguarded ones.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segrefiner import io, rle
from segrefiner.data.coarse_kinds import COARSE_KINDS, coarse_mask
from segrefiner.data.coco import InstanceSet, load_coco_instances
from segrefiner.errors import InputError
from segrefiner.inference.score import FEATURES, guard_keeps_coarse, spearman
from segrefiner.metrics import boundary_accuracy, boundary_iou, instance_ap, iou

log = logging.getLogger(__name__)

HARM_MARGIN = 0.02
PERCENTILES = (10, 25, 50, 75, 90)
METRICS = ("iou", "boundary_iou", "boundary_accuracy")
MODES = ("instance", "semantic")


def coarse_rng(seed: int, kind: str, file_name: str, annotation_id: int) -> np.random.Generator:
    """The generator of one instance's coarse mask of one kind: depends on nothing else."""
    parts = [seed, zlib.crc32(kind.encode()), zlib.crc32(file_name.encode()), annotation_id]
    return np.random.default_rng(np.random.SeedSequence(parts))


@dataclass(frozen=True)
class InstanceRow:
    """One instance under one coarse kind; metric values are fractions (``None``: undefined)."""

    kind: str
    image_id: int
    file_name: str
    annotation_id: int
    category: str
    area: int
    coarse: dict[str, float | None]
    refined: dict[str, float | None]
    score: float | None = None  # the refinement score; None: not refined (or no score)
    features: tuple[float, ...] | None = None  # the score's features (FEATURES order)

    def delta(self, metric: str = "iou") -> float:
        return (self.refined[metric] or 0.0) - (self.coarse[metric] or 0.0)

    def guarded(self, threshold: float) -> bool:
        """The guard's rule: the coarse mask is kept when the score is below the threshold."""
        return bool(guard_keeps_coarse(np.array([np.nan if self.score is None else self.score]),
                                       threshold)[0])  # fmt: skip


@dataclass
class KindSummary:
    kind: str
    instances: int
    coarse: dict[str, float | None]
    refined: dict[str, float | None]
    harmed: float | None = None  # fraction of instances with IoU down by more than the margin
    helped: float | None = None
    coarse_iou_percentiles: dict[str, float] = field(default_factory=dict)
    # Spearman correlation between the refinement score and the true IoU change
    score_spearman: float | None = None
    # per guard threshold (its repr as key): the refined metrics with the guard on, plus
    # "harmed", "helped", "kept_coarse" (fraction of instances the guard held back) and
    # "gain_kept" (guarded mean IoU gain over the unguarded one)
    guarded: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RefinementReport:
    source: str
    checkpoint: str | None
    seed: int
    kinds: dict[str, KindSummary]
    rows: list[InstanceRow]
    seconds: float
    mode: str = "instance"
    refine_seconds: float = 0.0  # time spent in the refiner alone

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "checkpoint": self.checkpoint,
            "seed": self.seed,
            "mode": self.mode,
            "seconds": round(self.seconds, 1),
            "refine_seconds": round(self.refine_seconds, 1),
            "kinds": {k: s.as_dict() for k, s in self.kinds.items()},
        }

    def table(self) -> str:
        """A plain-text table: one block per kind, coarse / refined / change in points."""
        lines = []
        for kind, s in self.kinds.items():
            pct = " ".join(f"p{p}={v * 100:.1f}" for p, v in s.coarse_iou_percentiles.items())
            lines.append(f"{kind}: {s.instances} instances; coarse IoU {pct}")
            names = [*METRICS, "pooled_iou", "segm_ap", "boundary_ap"]
            for name in names:
                if name not in s.coarse:
                    continue
                c, r = s.coarse.get(name), s.refined.get(name)
                if r is None:
                    lines.append(f"  {name:18s} {_pts(c):>6s}")
                else:
                    change = f"{(r - c) * 100:+.1f}" if c is not None else "n/a"
                    lines.append(f"  {name:18s} {_pts(c):>6s} -> {_pts(r):>6s}  ({change})")
            if s.harmed is not None:
                lines.append(
                    f"  harmed (IoU -{HARM_MARGIN * 100:.0f} pts) {s.harmed * 100:.1f}%   "
                    f"helped (+{HARM_MARGIN * 100:.0f} pts) {(s.helped or 0) * 100:.1f}%"
                )
            if s.score_spearman is not None:
                lines.append(f"  score vs IoU change: Spearman {s.score_spearman:+.3f}")
            if s.guarded:
                lines.append(
                    "  guard     kept coarse   iou  mBA term  mask AP  bnd AP  harmed  gain kept"
                )
                rows = [("off", {**s.refined, "harmed": s.harmed, "kept_coarse": 0.0,
                                 "gain_kept": 1.0})]  # fmt: skip
                rows += list(s.guarded.items())
                for name, g in rows:
                    kept = g.get("gain_kept")
                    lines.append(
                        f"  {name:>8s}  {_pts(g.get('kept_coarse')):>9s}%  "
                        f"{_pts(g.get('iou')):>6s}  {_pts(g.get('boundary_accuracy')):>8s}  "
                        f"{_pts(g.get('segm_ap')):>7s}  {_pts(g.get('boundary_ap')):>6s}  "
                        f"{_pts(g.get('harmed')):>5s}%  "
                        + ("n/a" if kept is None else f"{kept * 100:.0f}%")
                    )
        return "\n".join(lines)

    def write_csv(self, path: str | os.PathLike) -> None:
        """One line per (kind, instance): ids, area, coarse and refined metrics."""
        header = ["kind", "image_id", "file_name", "annotation_id", "category", "area"]
        header += [f"coarse_{m}" for m in METRICS] + [f"refined_{m}" for m in METRICS]
        header += ["refine_score", *(f"feature_{f}" for f in FEATURES)]
        with io.atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for r in self.rows:
                values = [r.kind, r.image_id, r.file_name, r.annotation_id, r.category, r.area]
                values += [_cell(r.coarse.get(m)) for m in METRICS]
                values += [_cell(r.refined.get(m)) for m in METRICS]
                values.append(_cell(r.score))
                values += [_cell(v) for v in (r.features or (None,) * len(FEATURES))]
                writer.writerow(values)


def _pts(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}"


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _scores(mask: np.ndarray, gt: np.ndarray) -> dict[str, float | None]:
    return {
        "iou": iou(mask, gt),
        "boundary_iou": boundary_iou(mask, gt),
        "boundary_accuracy": boundary_accuracy(mask, gt),
    }


def _refine(
    refiner: Any,
    mode: str,
    image: np.ndarray,
    coarses: np.ndarray,
    keys: list[tuple[str, int]],
    scores: np.ndarray,
    features: np.ndarray,
) -> np.ndarray:
    """Refine one image's coarse masks of one kind; fills ``scores`` / ``features`` in place
    when the refiner gives them. Returns (N, H, W) bool."""
    if mode == "instance":
        detailed = getattr(refiner, "refine_instances_detailed", None)
        if detailed is None:
            return refiner.refine_instances(image, coarses, keys=keys)
        out = detailed(image, coarses, keys=keys)
        scores[:] = out.scores
        features[:] = out.features
        return out.masks
    detailed = getattr(refiner, "refine_detailed", None)
    if detailed is None:
        return np.stack([refiner.refine(image, c, key=k) for c, k in zip(coarses, keys)])
    masks = []
    for i, (c, k) in enumerate(zip(coarses, keys)):
        result = detailed(image, c, key=k)
        scores[i] = result.score
        if result.features is not None:
            features[i] = result.features
        masks.append(result.mask)
    return np.stack(masks)


def _ap(annotations: str | os.PathLike, dets: list[dict[str, Any]]) -> dict[str, float | None]:
    out = {}
    for iou_type in ("segm", "boundary"):
        ap = instance_ap(str(annotations), dets, iou_type) if dets else {}
        out[f"{iou_type}_ap"] = ap.get("AP")
    return out


def _guarded_summary(
    rows: list[InstanceRow],
    detections: dict[str, list[dict[str, Any]]],
    threshold: float,
    annotations: str | os.PathLike | None,
) -> dict[str, float | None]:
    """The refined metrics of ``rows`` (one kind) had the guard at ``threshold`` run: a row
    whose score is below it counts with its coarse mask. ``annotations``: also the APs."""
    held = [r.guarded(threshold) for r in rows]
    chosen = [r.coarse if h else r.refined for r, h in zip(rows, held)]
    out: dict[str, float | None] = {m: _mean([c.get(m) for c in chosen]) for m in METRICS}
    deltas = np.array([0.0 if h else r.delta("iou") for r, h in zip(rows, held)])
    unguarded = float(np.mean([r.delta("iou") for r in rows])) if rows else 0.0
    out["harmed"] = float(np.mean(deltas < -HARM_MARGIN)) if rows else None
    out["helped"] = float(np.mean(deltas > HARM_MARGIN)) if rows else None
    out["kept_coarse"] = float(np.mean(held)) if rows else None
    out["gain_kept"] = float(np.mean(deltas)) / unguarded if unguarded > 0 else None
    if annotations is not None:
        dets = [
            c if h else r
            for c, r, h in zip(detections["coarse"], detections["refined"], held, strict=True)
        ]
        out.update(_ap(annotations, dets))
    return out


def _pool(acc: list[int], mask: np.ndarray, gt: np.ndarray) -> None:
    acc[0] += int(np.count_nonzero(mask & gt))
    acc[1] += int(np.count_nonzero(mask | gt))


def evaluate_refinement(
    annotations: str | os.PathLike,
    image_root: str | os.PathLike,
    refiner: Any | None,
    *,
    kinds: Sequence[str] = tuple(COARSE_KINDS),
    seed: int = 0,
    with_ap: bool = True,
    checkpoint: str | None = None,
    progress: Callable[[str], None] | None = None,
    mode: str = "instance",
    guards: Sequence[float] = (),
) -> RefinementReport:
    """Coarse vs refined on every instance of a COCO instances file (see the module docstring).

    ``refiner``: a :class:`segrefiner.Refiner`, or ``None`` for the coarse masks alone. In
    ``mode="instance"`` its ``refine_instances_detailed`` is used, one call per image and kind;
    in ``mode="semantic"`` its ``refine_detailed``, one call per instance and kind; keys
    ``(kind, annotation id)`` either way. A refiner with only ``refine_instances`` /
    ``refine`` (masks only) works too; its instances have no score.
    ``guards``: thresholds whose guarded metrics the report gives (see the module docstring).
    """
    unknown = [k for k in kinds if k not in COARSE_KINDS]
    if unknown:
        raise InputError(f"unknown coarse kind(s) {unknown}; known: {sorted(COARSE_KINDS)}")
    if mode not in MODES:
        raise InputError(f"mode: expected one of {list(MODES)}, got {mode!r}")
    started = time.perf_counter()
    refine_seconds = 0.0
    # per kind and mask set: [intersection, union] pixel sums for the pooled IoU
    pooled = {k: {"coarse": [0, 0], "refined": [0, 0]} for k in kinds}
    instances: InstanceSet = load_coco_instances(annotations, image_root)
    rows: list[InstanceRow] = []
    detections: dict[str, dict[str, list[dict[str, Any]]]] = {
        k: {"coarse": [], "refined": []} for k in kinds
    }
    for n, (image_id, info) in enumerate(instances.images.items(), 1):
        anns = [a for a in instances.annotations_of(image_id) if not a.iscrowd]
        if not anns:
            continue
        image = instances.read_image(image_id)
        gts = [instances.annotation_mask(a) for a in anns]
        for kind in kinds:
            coarses = np.stack(
                [
                    coarse_mask(kind, gt, coarse_rng(seed, kind, info.file_name, a.id))
                    for a, gt in zip(anns, gts)
                ]
            )
            scores = np.full(len(anns), np.nan)
            features = np.full((len(anns), len(FEATURES)), np.nan)
            if refiner is not None:
                tic = time.perf_counter()
                refined = _refine(refiner, mode, image, coarses, [(kind, a.id) for a in anns],
                                  scores, features)  # fmt: skip
                refine_seconds += time.perf_counter() - tic
            for i, (ann, gt) in enumerate(zip(anns, gts)):
                base = {"image_id": image_id, "category_id": ann.category_id, "score": 1.0}
                coarse_scores = _scores(coarses[i], gt)
                _pool(pooled[kind]["coarse"], coarses[i], gt)
                refined_scores: dict[str, float | None] = {}
                detections[kind]["coarse"].append({**base, "segmentation": rle.encode(coarses[i])})
                if refiner is not None:
                    refined_scores = _scores(refined[i], gt)
                    _pool(pooled[kind]["refined"], refined[i], gt)
                    detections[kind]["refined"].append(
                        {**base, "segmentation": rle.encode(refined[i])}
                    )
                rows.append(
                    InstanceRow(
                        kind=kind,
                        image_id=image_id,
                        file_name=info.file_name,
                        annotation_id=ann.id,
                        category=instances.categories[ann.category_id].name,
                        area=int(np.count_nonzero(gt)),
                        coarse=coarse_scores,
                        refined=refined_scores,
                        score=_finite(scores[i]),
                        features=None
                        if np.isnan(features[i]).any()
                        else tuple(float(v) for v in features[i]),
                    )
                )
        if progress is not None:
            progress(f"image {n}/{len(instances.images)} ({info.file_name})")
    summaries = {}
    for kind in kinds:
        kind_rows = [r for r in rows if r.kind == kind]
        summary = KindSummary(
            kind=kind,
            instances=len(kind_rows),
            coarse={m: _mean([r.coarse[m] for r in kind_rows]) for m in METRICS},
            refined={m: _mean([r.refined[m] for r in kind_rows]) for m in METRICS}
            if refiner is not None
            else {},
        )
        for name, target in (("coarse", summary.coarse), ("refined", summary.refined)):
            inter, union = pooled[kind][name]
            if name == "coarse" or refiner is not None:
                target["pooled_iou"] = inter / union if union else None
        ious = [r.coarse["iou"] or 0.0 for r in kind_rows]
        if ious:
            summary.coarse_iou_percentiles = {
                str(p): float(v) for p, v in zip(PERCENTILES, np.percentile(ious, PERCENTILES))
            }
        if refiner is not None and kind_rows:
            deltas = np.array([r.delta("iou") for r in kind_rows])
            summary.harmed = float(np.mean(deltas < -HARM_MARGIN))
            summary.helped = float(np.mean(deltas > HARM_MARGIN))
            scored = [r for r in kind_rows if r.score is not None]
            summary.score_spearman = spearman(
                [r.score for r in scored], [r.delta("iou") for r in scored]
            )
        if with_ap:
            for name, dets in detections[kind].items():
                if name == "refined" and refiner is None:
                    continue
                target = summary.coarse if name == "coarse" else summary.refined
                target.update(_ap(annotations, dets))
        if refiner is not None:
            for threshold in guards:
                summary.guarded[f"{threshold:g}"] = _guarded_summary(
                    kind_rows, detections[kind], threshold, annotations if with_ap else None
                )
        summaries[kind] = summary
    return RefinementReport(
        source=str(annotations),
        checkpoint=checkpoint,
        seed=seed,
        kinds=summaries,
        rows=rows,
        seconds=time.perf_counter() - started,
        mode=mode,
        refine_seconds=refine_seconds,
    )


REAL_EVAL = Path("annotations") / "real_eval.json"


def evaluate_real(
    checkpoint: str | os.PathLike | None,
    data_root: str | os.PathLike = "data/real",
    *,
    kinds: Sequence[str] = tuple(COARSE_KINDS),
    seed: int = 0,
    device: str = "cpu",
    threads: int | None = 1,
    with_ap: bool = True,
    annotations: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
    mode: str = "instance",
    guards: Sequence[float] = (),
) -> RefinementReport:
    """:func:`evaluate_refinement` on the real-photo evaluation split (``segrefiner data real``).

    ``checkpoint``: a checkpoint file (or preset name), or ``None`` for the coarse masks alone.
    ``threads``: torch CPU threads while refining (one is fastest on a busy shared machine).
    """
    import torch

    from segrefiner.refiner import Refiner

    unknown = [k for k in kinds if k not in COARSE_KINDS]
    if unknown:  # before any file is looked at
        raise InputError(f"unknown coarse kind(s) {unknown}; known: {sorted(COARSE_KINDS)}")
    root = Path(data_root)
    ann_path = Path(annotations) if annotations is not None else root / REAL_EVAL
    if not ann_path.is_file():
        raise InputError(
            f"{ann_path}: real evaluation annotations not found; build them with "
            f"`segrefiner data real --out {root}`"
        )
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        refiner = (
            Refiner.from_checkpoint(checkpoint, device=device, seed=seed)
            if checkpoint is not None
            else None
        )
        return evaluate_refinement(
            ann_path,
            root / "images",
            refiner,
            kinds=kinds,
            seed=seed,
            with_ap=with_ap,
            checkpoint=None if checkpoint is None else str(checkpoint),
            progress=progress,
            mode=mode,
            guards=guards,
        )
    finally:
        torch.set_num_threads(previous)


REAL_TRAIN = Path("annotations") / "real_train.json"


def calibrate_score(
    checkpoint: str | os.PathLike,
    data_root: str | os.PathLike = "data/real",
    *,
    seeds: Sequence[int] = (0, 1),
    mode: str = "instance",
    kinds: Sequence[str] = tuple(COARSE_KINDS),
    device: str = "cpu",
    threads: int | None = 1,
    annotations: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Fit ``checkpoint``'s score calibration on the real-photo *training* split.

    Every instance of ``annotations`` (default ``<data_root>/annotations/real_train.json``)
    gets a coarse mask of each kind per seed, is refined on the ``mode`` path, and the IoU
    change is regressed on the score features (:func:`segrefiner.inference.score.
    fit_calibration`). Returns the :class:`~segrefiner.inference.score.ScoreCalibration`, with
    its provenance (checkpoint hash, split, seeds, rows) and in-sample Spearman correlations
    per kind in ``quality``.
    """
    from segrefiner.inference.score import fit_calibration

    root = Path(data_root)
    ann_path = Path(annotations) if annotations is not None else root / REAL_TRAIN
    rows = calibration_rows(
        checkpoint, root, seeds=seeds, mode=mode, kinds=kinds, device=device, threads=threads,
        annotations=ann_path, progress=progress,
    )  # fmt: skip
    features = np.array([r.features for r in rows])
    deltas = np.array([r.delta("iou") for r in rows])
    fitted_on = calibration_provenance(checkpoint, ann_path, seeds, kinds, len(rows))
    calibration = fit_calibration(features, deltas, mode=mode, fitted_on=fitted_on)
    return dataclasses.replace(calibration, quality=fit_quality(calibration, rows, kinds))


def calibration_provenance(
    checkpoint: str | os.PathLike,
    annotations: str | os.PathLike,
    seeds: Sequence[int],
    kinds: Sequence[str],
    rows: int,
) -> dict[str, Any]:
    """What a calibration was fitted on (its ``fitted_on`` record)."""
    from segrefiner.checkpoint import resolve_checkpoint

    source = resolve_checkpoint(checkpoint)
    return {
        "checkpoint": Path(source.path).name,
        "checkpoint_sha256": source.sha256,
        "annotations": str(annotations),
        "seeds": list(seeds),
        "kinds": list(kinds),
        "rows": rows,
    }


def fit_quality(calibration: Any, rows: list[InstanceRow], kinds: Sequence[str]) -> dict[str, Any]:
    """Spearman correlations between ``calibration``'s scores and the IoU changes of
    ``rows``, over all of them and per kind."""
    scores = calibration.score(np.array([r.features for r in rows]))
    deltas = np.array([r.delta("iou") for r in rows])
    quality: dict[str, Any] = {"spearman": spearman(scores, deltas)}
    for kind in kinds:
        pick = np.array([r.kind == kind for r in rows])
        quality[f"spearman_{kind}"] = spearman(scores[pick], deltas[pick])
    return quality


def calibration_rows(
    checkpoint: str | os.PathLike,
    data_root: str | os.PathLike,
    *,
    seeds: Sequence[int],
    mode: str,
    kinds: Sequence[str],
    device: str,
    threads: int | None,
    annotations: str | os.PathLike,
    progress: Callable[[str], None] | None = None,
) -> list[InstanceRow]:
    """The refined rows (with score features) of every seed, to fit a calibration on."""
    rows: list[InstanceRow] = []
    for seed in seeds:
        report = evaluate_real(
            checkpoint,
            data_root,
            kinds=kinds,
            seed=seed,
            device=device,
            threads=threads,
            with_ap=False,
            annotations=annotations,
            progress=progress,
            mode=mode,
        )
        rows += [r for r in report.rows if r.features is not None]
    if not rows:
        raise InputError(f"{annotations}: no instance was refined; nothing to calibrate on")
    return rows

"""The refine-coco stage: a segmentor's COCO results refined with the LR model, sharded.

Work directory layout (``work_dir``)::

    refined.zarr/            MaskStore (layout "refined-coco"): per image id, the refined masks
                             of its detections, (N, H, W) bool in results-file order
    inputs/<shard>.json      the shard's images and detections (written by prepare)
    parts/<shard>.json       the shard's refined result entries (RLE) and per-image rows,
                             written atomically before the shard's completion record
    rejected.json            results entries set aside when reading (index, image id, reason)
    manifest.json            per-image rows (status, counts, reason) + rejected entries
                             (written by finalize)

The output JSON has every accepted detection of the input, in input order, with the same
``image_id``, ``category_id``, ``bbox`` and ``score`` and a refined ``segmentation`` (RLE).
Instances under ``area_thr`` pixels pass through unrefined; so do all detections of an image
that cannot be read (the manifest says why). Images without detections get none. Every
detection that went through the network also carries ``refine_score``, the refinement's
predicted IoU change (:mod:`segrefiner.inference.score`; COCO and LVIS evaluation ignore the
extra field); with a guard (``RefineConfig.guard``) a detection scored below it keeps its coarse
mask. The manifest's summary counts the guarded detections and summarises the scores.

Within a shard, images are decoded and cropped ahead on reader threads, their crops run in full
network batches across image boundaries (:class:`segrefiner.inference.packing.CropQueue`), and
pasting, RLE encoding and store writes run behind on a writer thread
(:class:`pipelines.prefetch.WriteBehind`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Unpack

import numpy as np

from pipelines.models import file_sha256
from pipelines.prefetch import WriteBehind, prefetch
from pipelines.refine import (
    KIND,
    InferenceSetup,
    RefineConfig,
    completed_parts,
    open_or_create_work,
    refine_key,
    refine_shard,
    refine_stage,
    run_fingerprint,
)
from pipelines.sharding import Shard, plan_shards
from pipelines.stage import ShardRun, run_stage
from pipelines.stores import MaskStore
from segrefiner import rle
from segrefiner.data.coco import load_coco_instances, load_segmentor_results
from segrefiner.errors import InputError
from segrefiner.inference import InferenceConfig, item_generator
from segrefiner.inference.instance import (
    CropResults,
    PreparedInstances,
    finish_instances,
    prepare_instances,
)
from segrefiner.inference.packing import CropQueue
from segrefiner.inference.score import ScoreCalibration, score_histogram
from segrefiner.io import image_size, read_image, read_json, write_json
from segrefiner.locking import folder_lock

log = logging.getLogger(__name__)

LAYOUT = "refined-coco"


# --------------------------------------------------------------------------- prepare


def prepare_refine_coco(
    results: str | os.PathLike,
    annotations: str | os.PathLike,
    image_root: str | os.PathLike,
    work_dir: str | os.PathLike,
    config: RefineConfig,
    *,
    num_shards: int = 1,
    overwrite: bool = False,
) -> list[Shard]:
    """Read and check the inputs, set aside bad entries, and write the per-shard inputs.

    Resuming (same inputs, settings and shard count) keeps the existing work directory.
    """
    work = Path(work_dir)
    ann = load_coco_instances(annotations, image_root)
    res = load_segmentor_results(results, ann, strict=False)
    fingerprint = run_fingerprint(
        config,
        results=file_sha256(results),
        annotations=file_sha256(annotations),
        image_root=str(Path(image_root).resolve()),
        num_shards=num_shards,
    )
    ids = [str(g.image.id) for g in res.groups]
    counts = np.array([len(g.detections) for g in res.groups], dtype=np.int64)
    store = open_or_create_work(
        work, fingerprint, ids, {"num_detections": counts}, overwrite, LAYOUT
    )
    shards = plan_shards(len(ids), num_shards)
    write_json(
        work / "rejected.json",
        [dataclasses.asdict(r) | {"image_id": r.image_id} for r in res.rejected],
    )
    for shard in shards:
        path = work / "inputs" / f"{shard.name}.json"
        if path.is_file() and store.completion_record(shard.name) is not None:
            continue
        images = []
        for group in res.groups[shard.start : shard.stop]:
            info = group.image
            try:  # a name leaving the image root fails this image only, at run time
                image_path, path_error = str(ann.image_path(info.id)), None
            except InputError as exc:
                image_path, path_error = None, str(exc)
            images.append(
                {
                    "image_id": info.id,
                    "file_name": info.file_name,
                    "path": image_path,
                    "path_error": path_error,
                    "height": info.height,
                    "width": info.width,
                    "detections": [
                        {
                            "index": d.index,
                            "category_id": d.category_id,
                            "bbox": list(d.bbox),
                            "score": d.score,
                            "segmentation": d.segmentation,
                        }
                        for d in group.detections
                    ],
                }
            )
        write_json(path, {"shard": dataclasses.asdict(shard), "images": images})
    store.update_attrs(
        {
            "shards": [dataclasses.asdict(s) for s in shards],
            "num_entries": res.num_entries,
            "num_rejected": len(res.rejected),
        }
    )
    return shards


# --------------------------------------------------------------------------- one shard


class _Emitter:
    """Collects a shard's outputs: store masks, RLE entries and per-image rows."""

    def __init__(
        self,
        store: MaskStore | None,
        infer: InferenceConfig | None = None,
        calibration: ScoreCalibration | None = None,
    ):
        self.store = store
        self.infer = infer or InferenceConfig()
        self.calibration = calibration
        self.entries: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []

    def emit(
        self,
        image: dict,
        masks: np.ndarray | None,
        refined: np.ndarray,
        status: str,
        reason: str | None,
        scores: np.ndarray | None = None,
        guarded: np.ndarray | None = None,
    ) -> None:
        """Add an image's entries and row. ``masks`` ``None``: its detections pass through
        exactly as they came (not decoded, not stored)."""
        detections = image["detections"]
        if masks is None:
            segmentations = [det["segmentation"] for det in detections]
        else:
            if self.store is not None:
                self.store.write_mask(KIND, str(image["image_id"]), masks, attrs={"status": status})
            segmentations = rle.encode_many(masks)
        n = len(detections)
        scores = np.full(n, np.nan) if scores is None else scores
        guarded = np.zeros(n, bool) if guarded is None else guarded
        for det, seg, was_refined, score, held in zip(
            detections, segmentations, refined, scores, guarded, strict=True
        ):
            self.entries.append(
                {
                    "index": det["index"],
                    "image_id": image["image_id"],
                    "category_id": det["category_id"],
                    "bbox": det["bbox"],
                    "score": det["score"],
                    "segmentation": seg,
                    "refined": bool(was_refined),
                    "refine_score": None if np.isnan(score) else round(float(score), 6),
                    "guarded": bool(held),
                }
            )
        self.rows.append(
            {
                "image_id": image["image_id"],
                "status": status,
                "reason": reason,
                "detections": n,
                "refined": int(np.sum(refined)),
                "guarded": int(np.sum(guarded)),
            }
        )

    def emit_refined(self, image: dict, prepared: PreparedInstances, results: CropResults) -> None:
        done = finish_instances(prepared, results, self.infer, self.calibration)
        # an instance the guard held back keeps its coarse mask: passed through, not refined
        refined = np.zeros(len(prepared.masks), bool)
        refined[prepared.todo] = True
        refined &= ~done.guarded
        self.emit(image, done.masks, refined, "ok", None, done.scores, done.guarded)


def run_refine_coco_shard(
    work_dir: str | os.PathLike, config: RefineConfig, shard: Shard
) -> dict[str, Any]:
    """Refine one shard; a completed shard is skipped. Returns the completion record."""
    return refine_shard(work_dir, config, shard, _refine_images)


def _refine_images(
    payload: dict, store: MaskStore, config: RefineConfig, setup: InferenceSetup
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A shard's images: the part file (result entries, per-image rows) and the counts."""
    denoiser, diffusion, infer, calibrations = setup
    emitter = _Emitter(store if config.write_store else None, infer, calibrations.get("instance"))

    def load(image: dict) -> tuple[np.ndarray | None, PreparedInstances | None, str | None]:
        # Runs on a reader thread: decoding and cropping overlap the network's work. The file's
        # header is checked against the declared size before any mask is decoded at that size
        # (a wrong declared 20000 x 20000 would cost gigabytes); such an image passes its
        # detections through as they came (``None`` masks).
        h, w = image["height"], image["width"]
        where = f"image id {image['image_id']}"
        try:
            if image["path"] is None:
                raise InputError(image["path_error"])
            actual = image_size(image["path"])
        except InputError as exc:
            actual, reason = None, str(exc)
        if actual is not None and actual != (h, w):
            return (
                None,
                None,
                (
                    f"{image['path']}: image is {actual[1]}x{actual[0]} (WxH) but the annotations "
                    f"say {w}x{h}"
                ),
            )
        coarse = np.stack([rle.decode(d["segmentation"], h, w, where) for d in image["detections"]])
        if actual is None:
            return coarse, None, reason
        try:
            pixels = read_image(image["path"])
            if pixels.shape[:2] != (h, w):
                raise InputError(
                    f"{image['path']}: image is {pixels.shape[1]}x{pixels.shape[0]} (WxH) but the "
                    f"annotations say {w}x{h}"
                )
            return coarse, prepare_instances(pixels, coarse, infer, config.device), None
        except InputError as exc:
            return coarse, None, str(exc)

    def unrefined(image: dict, masks: np.ndarray | None, reason: str) -> None:
        log.warning("image id %s: passed through unrefined: %s", image["image_id"], reason)
        flags = np.zeros(len(image["detections"]), bool)
        behind.submit(emitter.emit, image, masks, flags, "failed", reason)

    with WriteBehind(depth=4) as behind:
        # crops of consecutive images share full batches; pasting, RLE and store writes run
        # behind on the writer thread while the next batches are computed
        queue = CropQueue(
            denoiser,
            diffusion,
            infer.batch_size,
            on_done=lambda image, prepared, results: behind.submit(
                emitter.emit_refined, image, prepared, results
            ),
            on_failed=lambda image, prepared, reason: unrefined(image, prepared.masks, reason),
            device=config.device,
        )
        for image, (coarse, prepared, error) in prefetch(load, payload["images"], depth=4):
            if prepared is None:
                unrefined(image, coarse, error)
                continue
            dets = image["detections"]
            gens = [
                item_generator(config.seed, "coco", image["image_id"], dets[i]["index"])
                for i in prepared.todo
            ]
            queue.add(image, prepared, gens)
        queue.flush()
    counts = {
        "images": len(emitter.rows),
        "detections": len(emitter.entries),
        "refined": int(sum(e["refined"] for e in emitter.entries)),
        "failed_images": sum(r["status"] != "ok" for r in emitter.rows),
    }
    return {"entries": emitter.entries, "rows": emitter.rows}, counts


# --------------------------------------------------------------------------- finalize


def finalize_refine_coco(work_dir: str | os.PathLike, output: str | os.PathLike) -> dict[str, Any]:
    """Assemble the refined results JSON (input order) and the manifest, atomically."""
    work = Path(work_dir)
    store, parts = completed_parts(work)
    entries, rows = [], []
    for part in parts:
        entries += part["entries"]
        rows += part["rows"]
    entries.sort(key=lambda e: e["index"])
    keys = ("image_id", "category_id", "bbox", "score", "segmentation")
    write_json(output, [_result_entry(e, keys) for e in entries])
    rejected = read_json(work / "rejected.json")
    summary = {
        "output": str(output),
        "images": len(rows),
        "detections": len(entries),
        "refined": sum(e["refined"] for e in entries),
        "passed_through": sum(not e["refined"] for e in entries),
        "guarded": sum(e.get("guarded", False) for e in entries),
        "guard": (store.attrs.get("fingerprint") or {}).get("guard"),
        "scores": score_histogram([e.get("refine_score") for e in entries]),
        "failed_images": sum(r["status"] != "ok" for r in rows),
        "rejected_entries": len(rejected),
        "shards": len(parts),
    }
    write_json(
        work / "manifest.json", {"summary": summary, "images": rows, "rejected": rejected}, indent=1
    )
    store.update_attrs({"complete": True, "summary": summary})
    return summary


def _result_entry(entry: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """One results-file entry: the COCO fields, plus ``refine_score`` (the predicted IoU
    change) for every detection that went through the network, guarded or not."""
    out = {k: entry[k] for k in keys}
    if entry.get("refine_score") is not None:
        out["refine_score"] = entry["refine_score"]
    return out


# --------------------------------------------------------------------------- all of it


def refine_coco(
    results: str | os.PathLike,
    annotations: str | os.PathLike,
    image_root: str | os.PathLike,
    output: str | os.PathLike,
    config: RefineConfig,
    *,
    work_dir: str | os.PathLike | None = None,
    **run: Unpack[ShardRun],
) -> dict[str, Any]:
    """Refine a results file end to end: prepare, run the shards, assemble the output.

    ``run``: ``num_shards``, ``dask_address``, ``n_workers``, ``dask_threads``, ``overwrite``,
    ``progress``, as in :func:`pipelines.stage.run_stage` (``n_workers=0`` without
    ``dask_address``: the shards run in this process). The work directory defaults to
    ``<output stem>.work`` beside ``output``.
    """
    output = Path(output)
    work = Path(work_dir) if work_dir else output.with_name(output.stem + ".work")
    inputs = {"results": results, "annotations": annotations, "image_root": image_root}
    with folder_lock(work, f"refining into {output}"):
        return run_stage(REFINE_COCO, work, config, inputs, {"output": output}, **run)


def _finalized(work_dir: str | os.PathLike, *, output: str | os.PathLike) -> bool:
    return Path(output).is_file()


# The stage contract (pipelines.stage): inputs results, annotations, image_root; output output.
def fingerprint_refine_coco(
    config: RefineConfig,
    num_shards: int | None,
    *,
    results: str | os.PathLike,
    annotations: str | os.PathLike,
    image_root: str | os.PathLike,
    **_: Any,
) -> str:
    """The content key of a refine-coco run: the results' and the image list's contents, the
    image folder, the checkpoint, the config and the shard count."""
    files = {"results": results, "annotations": annotations}
    return refine_key(config, num_shards, files=files, image_root=str(image_root))


REFINE_COCO = refine_stage(
    "refine-coco", prepare_refine_coco, run_refine_coco_shard, finalize_refine_coco, _finalized,
    fingerprint_refine_coco,
)  # fmt: skip

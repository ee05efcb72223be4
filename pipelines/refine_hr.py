"""The refine-big / refine-dis / refine-thin stages: high-resolution masks refined with the HR
model (global step + local patches), sharded over images.

Outputs use the official naming under ``out_dir``: BIG ``<name>_refine.png``; DIS
``<set>/<name>.png``; ThinObject-5K and plain pairs ``<name>.png`` (8-bit 0/255 PNGs written
atomically). Work directory (``<out_dir>/.work`` unless given)::

    refined.zarr/          MaskStore (layout "refined-hr"): per sample id the refined (H, W) mask
    inputs/<shard>.json    the shard's samples (id, image, coarse, output name)
    parts/<shard>.json     per-sample rows (status, reason, written, seconds: the packed
                           group's time shared out), written before the completion record
    manifest.json          every sample's row and the totals (written by finalize)

Memory stays bounded on any image size: ``pack_images`` images are in flight at a time and the
local step keeps one batch of patch probabilities alive (``batch_size``); a CUDA
out-of-memory error halves the batch.
A sample that still fails is passed through (its coarse mask is written as the output when the
image cannot be read but the mask can) and listed with its reason; a coarse mask of another size
than its image writes no output.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
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
from segrefiner.data.folders import DIS_SETS, SampleRecord, read_big, read_dis, read_thin_object
from segrefiner.errors import InputError
from segrefiner.inference import item_generator
from segrefiner.inference.packing import refine_semantic_packed
from segrefiner.inference.score import ScoreCalibration, score_histogram
from segrefiner.inference.semantic import SemanticItem, SemanticResult
from segrefiner.io import read_image, read_mask, resolve_under, write_json, write_mask
from segrefiner.locking import folder_lock

log = logging.getLogger(__name__)

LAYOUT = "refined-hr"
DATASETS = ("big", "dis", "thin")


def list_samples(
    dataset: str,
    data_root: str | os.PathLike,
    *,
    folder: str | None = None,
    sets: tuple[str, ...] | None = None,
    segmentor: str = "isnet",
    coarse_dir: str | None = None,
) -> list[SampleRecord]:
    """The samples to refine, each with an image and a coarse mask.

    - ``big``: ``<folder>/<name>_im.jpg`` + ``<name>_seg.png`` (default folder
      ``big/coarse/deeplab``, the official input layout).
    - ``dis``: ``dis/<set>/im/<name>.jpg`` + ``dis/coarse/<segmentor>/<set>/<name>.png`` for the
      given sets (default: every test/validation set present).
    - ``thin``: ThinObject-5K test list, coarse masks ``<coarse_dir>/<name>.png``.
    """
    root = Path(data_root)
    if dataset == "big":
        return read_big(root, folder or "big/coarse/deeplab", require_gt=False, require_coarse=True)
    if dataset == "dis":
        if sets is None:
            sets = tuple(
                s for s in DIS_SETS if s != "DIS-TR" and (root / "dis" / s / "im").is_dir()
            )
        if not sets:
            raise InputError(f"{root}: no DIS-5K test/validation sets found under dis/")
        records = read_dis(root, sets, segmentor=segmentor, require_gt=False, require_coarse=True)
        return [r for r in records if r.coarse is not None]
    if dataset == "thin":
        if coarse_dir is None:
            raise InputError("ThinObject-5K refinement needs the coarse masks' folder (coarse_dir)")
        records = read_thin_object(root, "test")
        return [
            dataclasses.replace(r, coarse=resolve_under(root, Path(coarse_dir) / f"{r.name}.png"))
            for r in records
        ]
    raise InputError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")


def output_name(record: SampleRecord) -> str:
    """The official output file name of a sample, relative to the output folder."""
    if record.dataset == "big":
        return f"{record.name}_refine.png"
    if record.dataset == "dis":
        return f"{record.split}/{record.name}.png"
    return f"{record.name}.png"


# --------------------------------------------------------------------------- prepare


def prepare_refine_hr(
    records: list[SampleRecord],
    out_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    config: RefineConfig,
    *,
    num_shards: int = 1,
    overwrite: bool = False,
) -> list[Shard]:
    """Write the per-shard inputs and create (or resume) the store."""
    work = Path(work_dir)
    ids = [r.sample_id for r in records]
    if len(set(ids)) != len(ids):
        raise InputError("duplicate sample ids in the listing")
    fingerprint = run_fingerprint(
        config,
        samples=file_digest_of_listing(records),
        out_dir=str(Path(out_dir).resolve()),
        num_shards=num_shards,
    )
    store = open_or_create_work(work, fingerprint, ids, {}, overwrite, LAYOUT)
    shards = plan_shards(len(records), num_shards)
    for shard in shards:
        samples = [
            {
                "sample_id": r.sample_id,
                "image": str(r.image),
                "coarse": str(r.coarse),
                "output": str(Path(out_dir) / output_name(r)),
            }
            for r in records[shard.start : shard.stop]
        ]
        write_json(work / "inputs" / f"{shard.name}.json", {"samples": samples})
    store.update_attrs({"shards": [dataclasses.asdict(s) for s in shards]})
    return shards


def file_digest_of_listing(records: list[SampleRecord]) -> list[list[str]]:
    """What identifies the inputs: (sample id, image and coarse content hashes)."""
    return [[r.sample_id, file_sha256(r.image), file_sha256(r.coarse)] for r in records]


# --------------------------------------------------------------------------- one shard


def _load(sample: dict) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """Read one sample (on a reader thread): ``(image, coarse, None)`` or, when it cannot be
    refined, ``(None, coarse or None, reason)``."""
    try:
        image = read_image(sample["image"])
    except InputError as exc:
        try:  # pass the coarse mask through when it can be read
            coarse = read_mask(sample["coarse"])
        except InputError:
            coarse = None
        return None, coarse, str(exc)
    try:
        return image, read_mask(sample["coarse"], shape=image.shape[:2]), None
    except InputError as exc:  # unreadable, or not the image's size: nothing to pass through
        return None, None, str(exc)


def _refine_group(
    group: list[tuple[dict, np.ndarray, np.ndarray]],
    denoiser: Any,
    diffusion: Any,
    infer: Any,
    config: RefineConfig,
    calibration: ScoreCalibration | None = None,
) -> list[SemanticResult | str]:
    """Refine a group of samples with their patches packed into shared batches; a sample that
    runs out of memory even alone gets its reason instead of a mask
    (:func:`segrefiner.inference.packing.refine_semantic_packed`)."""
    items = [
        SemanticItem(image, coarse, item_generator(config.seed, sample["sample_id"]),
                     sample["coarse"])
        for sample, image, coarse in group
    ]  # fmt: skip
    with warnings.catch_warnings():  # the manifest row says "empty" instead
        warnings.filterwarnings("ignore", message=".*returning an empty mask")
        return refine_semantic_packed(denoiser, diffusion, items, infer, config.device, calibration)


def _write_outputs(
    store: MaskStore, config: RefineConfig, sample: dict, mask: np.ndarray | None, status: str
) -> None:
    if mask is not None:
        write_mask(sample["output"], mask)
        if config.write_store:
            store.write_mask(KIND, sample["sample_id"], mask, attrs={"status": status})


def run_refine_hr_shard(
    work_dir: str | os.PathLike, config: RefineConfig, shard: Shard
) -> dict[str, Any]:
    """Refine one shard's images; a completed shard is skipped. Returns the completion record.

    Images are read ahead on threads, ``config.pack_images`` of them at a time share network
    batches, and PNG / store writes run behind on another thread.
    """
    return refine_shard(work_dir, config, shard, _refine_samples)


def _refine_samples(
    payload: dict, store: MaskStore, config: RefineConfig, setup: InferenceSetup
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A shard's samples: the part file (per-sample rows) and the counts."""
    samples = payload["samples"]
    denoiser, diffusion, infer, calibrations = setup
    rows: dict[str, dict[str, Any]] = {}
    group: list[tuple[dict, np.ndarray, np.ndarray]] = []
    group_started = time.perf_counter()

    def finish(sample: dict, mask: np.ndarray | None, status: str, reason: str | None,
               seconds: float, behind: WriteBehind,
               result: SemanticResult | None = None) -> None:  # fmt: skip
        if status == "failed":
            log.warning("%s: %s", sample["sample_id"], reason)
        score = None if result is None or np.isnan(result.score) else round(result.score, 6)
        rows[sample["sample_id"]] = {
            "sample_id": sample["sample_id"],
            "output": sample["output"],
            "status": status,
            "reason": reason,
            "written": mask is not None,
            "seconds": round(seconds, 3),
            "refine_score": score,
            "guarded": bool(result is not None and result.guarded),
        }
        behind.submit(_write_outputs, store, config, sample, mask, status)

    def run_group(behind: WriteBehind) -> None:
        outputs = _refine_group(
            group, denoiser, diffusion, infer, config, calibrations.get("semantic")
        )
        each = (time.perf_counter() - group_started) / len(group)
        for (sample, _, coarse), out in zip(group, outputs, strict=True):
            if isinstance(out, str):  # out of memory even alone: pass the coarse mask through
                finish(sample, coarse, "failed", out, each, behind)
                continue
            pixels = int(coarse.sum())
            if pixels > infer.min_foreground:
                finish(sample, out.mask, "ok", None, each, behind, out)
            else:
                reason = f"coarse mask has {pixels} <= {infer.min_foreground} pixels: empty output"
                finish(sample, out.mask, "empty", reason, each, behind, out)

    with WriteBehind(depth=2) as behind:
        for sample, (image, coarse, error) in prefetch(_load, samples, depth=2):
            if image is None:
                finish(sample, coarse, "failed", error, 0.0, behind)
                continue
            if not group:
                group_started = time.perf_counter()
            group.append((sample, image, coarse))
            if len(group) >= config.pack_images:
                run_group(behind)
                group = []
        if group:
            run_group(behind)
    ordered = [rows[sample["sample_id"]] for sample in samples]
    return {"rows": ordered}, {
        "samples": len(ordered),
        "failed": sum(r["status"] == "failed" for r in ordered),
    }


# --------------------------------------------------------------------------- finalize / all


def finalize_refine_hr(work_dir: str | os.PathLike) -> dict[str, Any]:
    """Check every shard finished and write the manifest; returns the summary."""
    work = Path(work_dir)
    store, parts = completed_parts(work)
    rows = [row for part in parts for row in part["rows"]]
    summary = {
        "samples": len(rows),
        "ok": sum(r["status"] == "ok" for r in rows),
        "empty": sum(r["status"] == "empty" for r in rows),
        "failed": sum(r["status"] == "failed" for r in rows),
        "passed_through": sum(r["status"] == "failed" and r["written"] for r in rows),
        "guarded": sum(r.get("guarded", False) for r in rows),
        "guard": (store.attrs.get("fingerprint") or {}).get("guard"),
        "scores": score_histogram([r.get("refine_score") for r in rows]),
        "shards": len(parts),
    }
    write_json(work / "manifest.json", {"summary": summary, "samples": rows}, indent=1)
    store.update_attrs({"complete": True, "summary": summary})
    return summary


def refine_hr(
    records: list[SampleRecord],
    out_dir: str | os.PathLike,
    config: RefineConfig,
    *,
    work_dir: str | os.PathLike | None = None,
    **run: Unpack[ShardRun],
) -> dict[str, Any]:
    """Refine ``records`` (see :func:`list_samples`) into ``out_dir``; ``run`` as in
    :func:`pipelines.refine_coco.refine_coco`. The work directory defaults to
    ``<out_dir>/.work``."""
    if not records:
        raise InputError("nothing to refine: the listing is empty")
    work = Path(work_dir) if work_dir else Path(out_dir) / ".work"
    with folder_lock(out_dir, "refining into it"):
        summary = run_stage(
            REFINE_HR, work, config, {"records": records, "out_dir": out_dir}, **run
        )
    summary["out_dir"] = str(out_dir)
    return summary


def _finalized(work_dir: str | os.PathLike) -> bool:
    return (Path(work_dir) / "manifest.json").is_file()


# The stage contract (pipelines.stage): inputs records, out_dir; no outputs (the masks are
# written by the shards, the manifest by finalize).
def fingerprint_refine_hr(
    config: RefineConfig, num_shards: int | None, *, records: list[SampleRecord], **_: Any
) -> str:
    """The content key of an HR refinement run: every listed image's and mask's content (not
    the output folder), the checkpoint, the config and the shard count."""
    return refine_key(config, num_shards, samples=file_digest_of_listing(records))


REFINE_HR = refine_stage(
    "refine-hr", prepare_refine_hr, run_refine_hr_shard, finalize_refine_hr, _finalized,
    fingerprint_refine_hr,
)  # fmt: skip

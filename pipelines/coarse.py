"""Stage ``gen-coarse-hr``: offline coarse masks for HR training (spec §4.6), into a mask store.

For every sample of DIS-TR + ThinObject-5K train (or a folder of image/mask pairs), in sorted
``sample_id`` order, two masks are made from the ground truth with
:mod:`segrefiner.data.degrade`: ``coarse`` (``modify_boundary``) and ``coarse_expand``
(``modify_boundary`` of the hole-filled mask). They go to a :class:`~pipelines.stores.MaskStore`
with layout ``coarse-hr`` (see ``data/README.md``).

The work is cut into shards, contiguous ranges of that order. The three steps a flow can call:

* :func:`prepare_coarse_hr` lists the samples, creates (or checks) the store, plans the shards;
* :func:`run_shard` makes and writes one shard's masks, then its completion record; a shard that
  already has one is skipped, so a re-run after an interruption only does what is missing;
* :func:`finalize_coarse_hr` writes the manifest (status per sample) once every shard is done.

:func:`generate_coarse_hr` does all three on a Dask cluster. Each sample's generator derives from
(seed, sample id, kind) only, so the store is the same whatever the number of shards or workers.
Samples that cannot be read (missing or unreadable file, mask size differing from the image) are
listed as failed with the reason; the other samples are unaffected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pipelines.fingerprint import content_key
from pipelines.models import file_sha256
from pipelines.sharding import Shard, ShardsFailedError, plan_shards
from pipelines.stage import Stage, run_stage
from pipelines.stores import MaskStore
from segrefiner.data.degrade import modify_boundary, modify_boundary_expand
from segrefiner.data.folders import (
    SampleRecord,
    load_sample,
    read_hr_training,
    read_pairs,
)
from segrefiner.errors import InputError
from segrefiner.io import read_mask, write_json, write_mask

__all__ = [
    "KINDS",
    "LAYOUT",
    "CoarseHRConfig",
    "Shard",
    "ShardResult",
    "ShardsFailedError",
    "export_pngs",
    "finalize_coarse_hr",
    "generate_coarse_hr",
    "plan_shards",
    "prepare_coarse_hr",
    "read_manifest",
    "run_shard",
    "sample_rng",
]

log = logging.getLogger(__name__)

LAYOUT = "coarse-hr"
KINDS = ("coarse", "coarse_expand")
# Index columns written when the store is created: where each sample comes from.
_SOURCE_COLUMNS = ("dataset", "split", "name", "image", "gt")
# Index columns written by finalize: the manifest.
_RESULT_COLUMNS = ("status", "reason", "height", "width")
DEFAULT_SAMPLES_PER_SHARD = 64


@dataclass(frozen=True)
class CoarseHRConfig:
    """What a shard needs besides the store: where the data is and how to degrade.

    ``data_root`` holds the files named in the store's index (relative paths), so the same store
    can be continued on a machine that mounts the data elsewhere. The other fields are the
    official degradation parameters (spec §4.5) and the global seed (a non-negative int).
    """

    data_root: str
    seed: int = 0
    iou_target: float = 0.8
    regional_sample_rate: float = 0.1
    sample_rate: float = 0.1
    move_rate: float = 0.0

    def generator(self) -> dict[str, Any]:
        """The generator description recorded in (and checked against) the store."""
        return {
            "coarse": "segrefiner.data.degrade.modify_boundary",
            "coarse_expand": "segrefiner.data.degrade.modify_boundary_expand",
            "params": {
                "iou_target": self.iou_target,
                "regional_sample_rate": self.regional_sample_rate,
                "sample_rate": self.sample_rate,
                "move_rate": self.move_rate,
            },
            "seeding": "SeedSequence([seed, blake2b64(sample_id), blake2b64(kind)])",
            # As the official script (gt x 255 in uint8 arithmetic): any non-zero level of the
            # ground truth is foreground, so anti-aliased edges count.
            "gt_foreground": "nonzero",
        }


@dataclass(frozen=True)
class ShardResult:
    """What :func:`run_shard` reports: counts and time, no arrays."""

    shard: int
    num_samples: int
    ok: int
    failed: int
    skipped: bool
    seconds: float


# --------------------------------------------------------------------------- planning


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def sample_rng(seed: int, sample_id: str, kind: str) -> np.random.Generator:
    """The generator for one (sample, kind): depends on nothing else (not shard, not worker)."""
    if seed < 0:
        raise InputError(f"seed: must be a non-negative integer, got {seed}")
    return np.random.default_rng(np.random.SeedSequence([seed, _hash64(sample_id), _hash64(kind)]))


def list_samples(
    data_root: str | os.PathLike, *, images: str | None = None, masks: str | None = None
) -> list[SampleRecord]:
    """The samples of the stage, sorted by id: DIS-TR + ThinObject-5K train, or image/mask pairs.

    Non-strict listing: a sample with a missing file is kept so that the manifest reports it.
    """
    if (images is None) != (masks is None):
        raise InputError("give both images and masks folders, or neither")
    if images is not None and masks is not None:
        records = read_pairs(data_root, images, masks, strict=False)
    else:
        records = read_hr_training(data_root, strict=False)
    return sorted(records, key=lambda r: r.sample_id)


def _relative(path: Path | None, root: Path) -> str:
    if path is None:
        return ""
    return path.relative_to(root).as_posix()


def prepare_coarse_hr(
    data_root: str | os.PathLike,
    store_path: str | os.PathLike,
    config: CoarseHRConfig,
    *,
    num_shards: int | None = None,
    images: str | None = None,
    masks: str | None = None,
    overwrite: bool = False,
) -> list[Shard]:
    """Create the store (or check that an existing one was made from the same inputs and
    parameters) and return the shard plan.

    ``num_shards`` defaults to one shard per 64 samples. Re-planning an existing store with
    another shard count drops the completion records that no longer match a planned shard (their
    samples are made again, identically). :class:`InputError` when an existing store differs in
    samples, sources, seed or parameters and ``overwrite`` is false.
    """
    root = Path(data_root)
    records = list_samples(root, images=images, masks=masks)
    n = len(records)
    if num_shards is None:
        num_shards = max(1, math.ceil(n / DEFAULT_SAMPLES_PER_SHARD))
    shards = plan_shards(n, num_shards)
    columns: dict[str, list[str]] = {
        "dataset": [r.dataset for r in records],
        "split": [r.split for r in records],
        "name": [r.name for r in records],
        "image": [_relative(r.image, root) for r in records],
        "gt": [_relative(r.gt, root) for r in records],
    }
    attrs = {
        "generator": config.generator(),
        "seed": config.seed,
        "data_root": str(root.resolve()),
        "sources": (
            {"images": images, "masks": masks}
            if images is not None
            else {"dis": "dis/DIS-TR", "thin_object": "thin_object/list/train.txt"}
        ),
        "num_shards": len(shards),
        "complete": False,
    }
    sample_ids = [r.sample_id for r in records]
    if MaskStore.exists(store_path) and not overwrite:
        store = MaskStore.open(store_path, "r+")
        _check_same_inputs(store, config, sample_ids, columns)
        planned = {s.name: s for s in shards}
        for unit in store.completed_units():
            record = store.completion_record(unit) or {}
            shard = planned.get(unit)
            if shard is None or _span(record) != (shard.start, shard.stop):
                store.clear_completion(unit)
        pending = [s for s in shards if store.completion_record(s.name) is None]
        update: dict[str, Any] = {"num_shards": len(shards)}
        if pending:
            update["complete"] = False
        store.update_attrs(update)
    else:
        MaskStore.create(
            store_path,
            layout=LAYOUT,
            kinds=KINDS,
            sample_ids=sample_ids,
            columns=columns,
            attrs=attrs,
            overwrite=overwrite,
        )
    return shards


def _span(record: dict[str, Any] | None) -> tuple[Any, Any]:
    return (None, None) if record is None else (record.get("start"), record.get("stop"))


def _check_same_inputs(
    store: MaskStore,
    config: CoarseHRConfig,
    sample_ids: list[str],
    columns: dict[str, list[str]],
) -> None:
    attrs = store.attrs
    problems = []
    if attrs.get("layout") != LAYOUT:
        problems.append(f"layout {attrs.get('layout')!r} is not {LAYOUT!r}")
    if attrs.get("seed") != config.seed:
        problems.append(f"seed {attrs.get('seed')} differs from {config.seed}")
    if attrs.get("generator") != config.generator():
        problems.append("degradation parameters differ")
    if store.sample_ids != sample_ids:
        problems.append("the list of samples differs")
    else:
        for name, values in columns.items():
            if [str(v) for v in store.read_column(name)] != values:
                problems.append(f"source column {name!r} differs")
    if problems:
        raise InputError(
            f"{store.path}: the existing store was made from other inputs ("
            + "; ".join(problems)
            + "); use overwrite or another store path"
        )


# --------------------------------------------------------------------------- one shard


def _make_masks(gt: np.ndarray, sample_id: str, config: CoarseHRConfig) -> dict[str, np.ndarray]:
    """``H x W`` bool GT -> {kind: ``H x W`` bool coarse mask} for every kind of the layout."""
    params = config.generator()["params"]
    return {
        "coarse": modify_boundary(gt, sample_rng(config.seed, sample_id, "coarse"), **params),
        "coarse_expand": modify_boundary_expand(
            gt, sample_rng(config.seed, sample_id, "coarse_expand"), **params
        ),
    }


def _portable_reason(message: str, root: Path) -> str:
    # Error messages name files with the data root; keep the store independent of where it was.
    for prefix in {str(root), str(root.resolve())}:
        message = message.replace(prefix.rstrip(os.sep) + os.sep, "")
    return message


def run_shard(store_path: str | os.PathLike, shard: Shard, config: CoarseHRConfig) -> ShardResult:
    """Make and write the coarse masks of one shard, then its completion record.

    Skips the shard when its completion record is already there. Per sample: load image and GT
    (the GT must have the image's size), make every kind, write them; a sample whose files
    cannot be read is recorded as failed with the reason (and any leftover masks of it removed).
    Other errors propagate: the shard stays incomplete and a re-run retries it.
    """
    started = time.perf_counter()
    store = MaskStore.open(store_path, "r+")
    if store.attrs.get("seed") != config.seed or store.attrs.get("generator") != config.generator():
        raise InputError(f"{store_path}: config differs from the one the store was created with")
    done = store.completion_record(shard.name)
    if done is not None and _span(done) == (shard.start, shard.stop):
        return ShardResult(
            shard.index, shard.stop - shard.start, done["ok"], done["failed"], True, 0.0
        )
    root = Path(config.data_root)
    cols = {
        c: store.read_column(c)[shard.start : shard.stop] for c in ("sample_id", *_SOURCE_COLUMNS)
    }
    entries = []
    for i in range(shard.stop - shard.start):
        sample_id = str(cols["sample_id"][i])
        record = SampleRecord(
            sample_id=sample_id,
            dataset=str(cols["dataset"][i]),
            split=str(cols["split"][i]),
            name=str(cols["name"][i]),
            image=root / str(cols["image"][i]),
            gt=root / str(cols["gt"][i]) if str(cols["gt"][i]) else None,
        )
        entries.append(_run_sample(store, record, config, root))
    ok = sum(e["status"] == "ok" for e in entries)
    # Written last: its presence means every mask of the shard is in the store.
    store.mark_complete(
        shard.name,
        {
            "shard": shard.index,
            "start": shard.start,
            "stop": shard.stop,
            "ok": ok,
            "failed": len(entries) - ok,
            "samples": entries,
        },
    )
    seconds = time.perf_counter() - started
    log.info("shard %d: %d ok, %d failed, %.1f s", shard.index, ok, len(entries) - ok, seconds)
    return ShardResult(shard.index, len(entries), ok, len(entries) - ok, False, seconds)


def _run_sample(
    store: MaskStore, record: SampleRecord, config: CoarseHRConfig, root: Path
) -> dict[str, Any]:
    try:
        if record.gt is None:
            raise InputError(f"{record.image}: sample has no ground-truth mask")
        sample = load_sample(record)
        gt = read_mask(record.gt, shape=sample.gt.shape, foreground="nonzero")
    except InputError as exc:
        for kind in KINDS:
            store.delete_mask(kind, record.sample_id)
        reason = _portable_reason(str(exc), root)
        log.warning("%s: failed: %s", record.sample_id, reason)
        return {
            "sample_id": record.sample_id,
            "status": "failed",
            "reason": reason,
            "height": 0,
            "width": 0,
        }
    assert sample.gt is not None
    height, width = sample.gt.shape
    source = {
        "image": _relative(record.image, root),
        "gt": _relative(record.gt, root),
    }
    for kind, mask in _make_masks(gt, record.sample_id, config).items():
        store.write_mask(kind, record.sample_id, mask, attrs=source)
    return {
        "sample_id": record.sample_id,
        "status": "ok",
        "reason": "",
        "height": height,
        "width": width,
    }


# --------------------------------------------------------------------------- finishing


def finalize_coarse_hr(store_path: str | os.PathLike) -> dict[str, Any]:
    """Write the manifest columns once every planned shard is complete; return a summary.

    Summary: ``complete``, ``samples``, ``ok``, ``failed`` (counts), ``failed_samples``
    (``[{"sample_id", "reason"}]``) and ``missing_shards`` (indices without a completion record;
    when any, nothing is written and ``complete`` is false).
    """
    store = MaskStore.open(store_path, "r+")
    n = len(store.sample_ids)
    shards = plan_shards(n, int(store.attrs["num_shards"])) if n else []
    entries: list[dict[str, Any]] = []
    missing = []
    for shard in shards:
        record = store.completion_record(shard.name)
        if _span(record) != (shard.start, shard.stop):
            missing.append(shard.index)
            continue
        entries += record["samples"]
    summary: dict[str, Any] = {"store": os.fspath(store_path), "samples": n}
    if missing:
        done = len(entries)
        summary.update(complete=False, done=done, missing_shards=missing)
        return summary
    if [e["sample_id"] for e in entries] != store.sample_ids:
        raise InputError(f"{store_path}: shard records do not cover the samples in order")
    store.write_column("status", [e["status"] for e in entries])
    store.write_column("reason", [e["reason"] for e in entries])
    store.write_column("height", np.array([e["height"] for e in entries], dtype=np.int32))
    store.write_column("width", np.array([e["width"] for e in entries], dtype=np.int32))
    ok = sum(e["status"] == "ok" for e in entries)
    store.update_attrs({"complete": True, "ok": ok, "failed": n - ok})
    summary.update(
        complete=True,
        ok=ok,
        failed=n - ok,
        failed_samples=[
            {"sample_id": e["sample_id"], "reason": e["reason"]}
            for e in entries
            if e["status"] != "ok"
        ],
        missing_shards=[],
    )
    return summary


def read_manifest(store_path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every sample of a finished store: sample_id, status (``ok``/``failed``), reason, height,
    width, and its source files (relative to the data root)."""
    store = MaskStore.open(store_path)
    if not store.attrs.get("complete"):
        raise InputError(f"{store_path}: the store is not complete (run the stage again)")
    names = ("sample_id", *_SOURCE_COLUMNS, *_RESULT_COLUMNS)
    cols = {c: store.read_column(c) for c in names}
    rows = []
    for i in range(len(cols["sample_id"])):
        row: dict[str, Any] = {}
        for c in names:
            value = cols[c][i]
            row[c] = int(value) if c in ("height", "width") else str(value)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- driver


def generate_coarse_hr(
    data_root: str | os.PathLike,
    store_path: str | os.PathLike,
    *,
    seed: int = 0,
    num_shards: int | None = None,
    dask_address: str | None = None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    processes: bool = True,
    images: str | None = None,
    masks: str | None = None,
    overwrite: bool = False,
    config: CoarseHRConfig | None = None,
) -> dict[str, Any]:
    """Run the whole stage on Dask; return the summary of :func:`finalize_coarse_hr`.

    Args:
        data_root: the data root (``dis/DIS-TR``, ``thin_object/``; or ``images``/``masks``).
        store_path: the zarr store to create or continue.
        seed: global seed (ignored when ``config`` is given).
        num_shards: default one per 64 samples.
        dask_address: an existing scheduler; default a LocalCluster of ``n_workers`` x
            ``threads_per_worker`` (``processes=False``: threads of this process).
        images, masks: folders (relative to ``data_root``) of image/mask pairs to use instead
            of DIS-TR + ThinObject-5K.
        overwrite: replace an existing store made from other inputs or parameters.
        config: full degradation config (its ``data_root`` is replaced by ``data_root``).

    Runs as :func:`pipelines.stage.run_stage` runs any stage: shards already complete in the
    store are skipped, a shard that raises is tried once more; when some still fail, the others
    finish, the store is left incomplete and :class:`ShardsFailedError` is raised; running again
    does only the missing shards.
    """
    started = time.perf_counter()
    config = dataclasses.replace(
        config or CoarseHRConfig(data_root="", seed=seed), data_root=os.fspath(data_root)
    )
    inputs = {"images": images, "masks": masks}
    summary = run_stage(
        COARSE_HR, store_path, config, inputs, num_shards=num_shards, dask_address=dask_address,
        n_workers=max(n_workers, 1), threads_per_worker=threads_per_worker,
        dask_threads=not processes, overwrite=overwrite,
    )  # fmt: skip
    summary["seconds"] = round(time.perf_counter() - started, 3)
    log.info(
        "gen-coarse-hr: %d samples, %d ok, %d failed, %d/%d shards skipped",
        summary["samples"],
        summary.get("ok", 0),
        summary.get("failed", 0),
        summary["skipped_shards"],
        summary["shards"],
    )
    return summary


def _run_shard_last(store_path: str, config: CoarseHRConfig, shard: Shard) -> ShardResult:
    # run_shards passes the shard last; a module-level function pickles for Dask workers.
    return run_shard(store_path, shard, config)


def _prepare(*, work_dir, config, num_shards=None, overwrite=False, images=None, masks=None):
    return prepare_coarse_hr(
        config.data_root, work_dir, config,
        num_shards=num_shards, images=images, masks=masks, overwrite=overwrite,
    )  # fmt: skip


def _shard_done(store_path: str | os.PathLike, shard: Shard) -> bool:
    # the completion record is there and covers the same samples
    store = MaskStore.open(store_path) if MaskStore.exists(store_path) else None
    record = store.completion_record(shard.name) if store is not None else None
    return record is not None and (record.get("start"), record.get("stop")) == (
        shard.start,
        shard.stop,
    )


def _fingerprint(config: CoarseHRConfig, num_shards: int | None, *, images=None, masks=None, **_):
    # the ground truths' contents and the degradation config (not where the data root is)
    samples = list_samples(config.data_root, images=images, masks=masks)
    truths = [[r.sample_id, file_sha256(r.gt) if r.gt and Path(r.gt).is_file() else None]
              for r in samples]  # fmt: skip
    return content_key(config=dataclasses.replace(config, data_root=""), ground_truth=truths)


# The stage contract (pipelines.stage); the store is the work folder, finalize always runs.
COARSE_HR = Stage(
    "coarse-hr", _prepare, _run_shard_last, finalize_coarse_hr, MaskStore.exists, _shard_done,
    fingerprint=_fingerprint,
)  # fmt: skip


# --------------------------------------------------------------------------- export


def export_pngs(
    store_path: str | os.PathLike,
    out_root: str | os.PathLike,
    *,
    kinds: Sequence[str] = KINDS,
    sample_ids: Sequence[str] | None = None,
    collection_json: bool = True,
) -> int:
    """Write the official layout: ``<folder of the image folder>/<kind>/<name>.png`` (0/255).

    For DIS-TR that is ``dis/DIS-TR/coarse/<n>.png`` and ``dis/DIS-TR/coarse_expand/<n>.png``;
    for ThinObject-5K ``thin_object/coarse/<n>.png`` and ``thin_object/coarse_expand/<n>.png``.
    With ``collection_json``, also ``collection_hr.json`` as the official script writes it
    (DIS and ThinObject samples only). Failed samples are skipped. Returns the number of PNGs.
    """
    manifest = read_manifest(store_path)
    store = MaskStore.open(store_path)
    wanted = None if sample_ids is None else set(sample_ids)
    out = Path(out_root)
    collection: dict[str, list[dict[str, Any]]] = {"thin": [], "dis": []}
    written = 0
    for row in manifest:
        if row["status"] != "ok" or (wanted is not None and row["sample_id"] not in wanted):
            continue
        names = {kind: _official_name(row, kind) for kind in (*KINDS, *kinds)}
        for kind in kinds:
            write_mask(out / names[kind], store.read_mask(kind, row["sample_id"]))
            written += 1
        group = {"dis": "dis", "thin_object": "thin"}.get(row["dataset"])
        if group is not None:
            collection[group].append(
                {
                    "filename": row["image"],
                    "maskname": row["gt"],
                    "coarsename": names["coarse"],
                    "expandname": names["coarse_expand"],
                    "height": row["height"],
                    "width": row["width"],
                }
            )
    if collection_json and (collection["thin"] or collection["dis"]):
        write_json(out / "collection_hr.json", collection)
    return written


def _official_name(row: dict[str, Any], kind: str) -> str:
    image = PurePosixPath(row["image"])
    # dis/DIS-TR/im/x.jpg -> dis/DIS-TR/<kind>/x.png; thin_object/images/x.jpg -> thin_object/<kind>/x.png
    return (image.parent.parent / kind / f"{row['name']}.png").as_posix()

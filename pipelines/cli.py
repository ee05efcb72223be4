"""Pipeline commands of the ``segrefiner`` CLI, registered as ``segrefiner.commands`` plugins
(see pyproject.toml) so the library's CLI finds them without importing this layer.

    segrefiner refine-coco --results RES.json --images DIR --checkpoint CKPT -o OUT.json
    segrefiner refine-dataset --kind big|dis|thin --data-root DIR --checkpoint CKPT -o OUT_DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipelines.config import RefineConfig
from pipelines.settings import add_options, from_args
from segrefiner.cli.argtypes import add_command, non_negative_int, positive_int
from segrefiner.errors import InputError


def _common(p: argparse.ArgumentParser, output_help: str, run: Any) -> None:
    # What both commands end with: the output; RefineConfig's settings (--checkpoint, required,
    # to --guard) from its declaration; where and how the shards run; the function they run.
    p.add_argument("-o", "--output", type=Path, required=True, help=output_help)
    add_options(p, RefineConfig)
    p.add_argument("--shards", type=positive_int, default=1, help="number of shards (default 1)")
    p.add_argument("--dask-address", default=None, help="scheduler of an existing Dask cluster")
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=0,
        help="LocalCluster worker processes (0: run in this process)",
    )
    p.add_argument("--work-dir", type=Path, default=None, help="where shards keep their state")
    p.add_argument("--overwrite", action="store_true", help="discard a work dir from other inputs")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> RefineConfig:
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda requested but CUDA is not available")
    return from_args(RefineConfig, args)  # the values were checked as they were parsed


def _stage_options(args: argparse.Namespace) -> dict[str, Any]:
    """The stage runner's config, work directory and shard options, from :func:`_common`'s."""
    return {
        "config": _config(args),
        "work_dir": args.work_dir,
        "num_shards": args.shards,
        "dask_address": args.dask_address,
        "n_workers": args.workers,
        "overwrite": args.overwrite,
    }


def _checkpoint_exists(checkpoint: str) -> None:
    from segrefiner.checkpoint import resolve_checkpoint

    resolve_checkpoint(checkpoint)  # a missing file is named (with the presets) before any work


class _ShardBar:
    """A tqdm bar over shards (items per shard vary little: they are contiguous ranges)."""

    def __init__(self, total: int, desc: str):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="shard", file=sys.stderr)

    def __call__(self, shard: Any, result: Any, error: str | None) -> None:
        self.bar.update(1)
        if error:
            self.bar.write(f"shard {shard.index} failed: {error}", file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _run(fn, total: int, desc: str, **kwargs) -> dict[str, Any] | None:
    from pipelines.sharding import ShardsFailedError

    bar = _ShardBar(total, desc)
    try:
        return fn(progress=bar, **kwargs)
    except ShardsFailedError as exc:
        print(f"segrefiner {desc}: {exc}", file=sys.stderr)
        return None
    finally:
        bar.close()


# --------------------------------------------------------------------------- refine-coco


def register_refine_coco(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers, "refine-coco",
        "Refine every detection's mask of a COCO-format results file; boxes, scores and "
        "categories are kept. Re-running with the same inputs resumes.",
        "refine a segmentor's COCO results JSON with the LR model (sharded, resumable)",
    )  # fmt: skip
    p.add_argument("--results", type=Path, required=True, help="segmentor results (COCO format)")
    p.add_argument(
        "--images", type=Path, required=True, help="image folder, e.g. data/coco/val2017"
    )
    p.add_argument(
        "--annotations",
        type=Path,
        default=None,
        help="annotation file listing the images (default: <images>/../annotations/instances_<images name>.json)",
    )
    _common(p, "refined results JSON", run_refine_coco)


def run_refine_coco(args: argparse.Namespace) -> int:
    from pipelines.refine_coco import refine_coco

    annotations = (
        args.annotations
        or args.images.parent / "annotations" / f"instances_{args.images.name}.json"
    )
    if not annotations.is_file():
        raise InputError(f"{annotations}: annotation file not found (give --annotations)")
    _checkpoint_exists(args.checkpoint)
    summary = _run(
        refine_coco,
        args.shards,
        "refine-coco",
        results=args.results,
        annotations=annotations,
        image_root=args.images,
        output=args.output,
        **_stage_options(args),
    )
    if summary is None:
        return 1
    print(
        f"refined {summary['refined']} of {summary['detections']} detections in "
        f"{summary['images']} images ({summary['passed_through']} passed through) -> {args.output}"
    )
    if summary["failed_images"] or summary["rejected_entries"]:
        print(
            f"set aside: {summary['failed_images']} unreadable images (passed through), "
            f"{summary['rejected_entries']} malformed entries (not in the output); see the "
            "work directory's manifest.json",
            file=sys.stderr,
        )
    return 0


# --------------------------------------------------------------------------- refine-dataset


def register_refine_dataset(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers, "refine-dataset",
        "Refine a folder dataset's coarse masks (global step + local patches) and write PNGs "
        "in the official naming.",
        "refine BIG / DIS-5K / ThinObject-5K coarse masks with the HR model",
    )  # fmt: skip
    p.add_argument("--kind", choices=["big", "dis", "thin"], required=True)
    p.add_argument("--data-root", type=Path, required=True, help="the data root (e.g. data/)")
    p.add_argument(
        "--folder",
        default=None,
        help="big: folder of *_im.jpg/*_seg.png (default big/coarse/deeplab)",
    )
    p.add_argument(
        "--sets", nargs="+", default=None, help="dis: sets (default: all test sets present)"
    )
    p.add_argument(
        "--segmentor", default="isnet", help="dis: coarse masks under dis/coarse/<segmentor>"
    )
    p.add_argument(
        "--coarse-dir",
        default=None,
        help="thin: folder of coarse <name>.png (relative to the root)",
    )
    _common(p, "output folder", run_refine_dataset)


def run_refine_dataset(args: argparse.Namespace) -> int:
    from pipelines.refine_hr import list_samples, refine_hr

    _checkpoint_exists(args.checkpoint)
    records = list_samples(
        args.kind,
        args.data_root,
        folder=args.folder,
        sets=tuple(args.sets) if args.sets else None,
        segmentor=args.segmentor,
        coarse_dir=args.coarse_dir,
    )
    summary = _run(
        refine_hr,
        min(args.shards, max(len(records), 1)),
        f"refine-{args.kind}",
        records=records,
        out_dir=args.output,
        **_stage_options(args),
    )
    if summary is None:
        return 1
    print(
        f"refined {summary['ok']} of {summary['samples']} images ({summary['empty']} empty coarse, "
        f"{summary['failed']} failed, of which {summary['passed_through']} passed through) "
        f"-> {args.output}"
    )
    return 0

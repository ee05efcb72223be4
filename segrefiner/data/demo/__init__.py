"""The demo data set: small stand-ins for COCO/LVIS, BIG, DIS-5K and ThinObject-5K.

Same formats and layout as the real data, so that pointing a pipeline at real data is a change of
root::

    <out>/coco/{train2017,val2017}/<12-digit id>.jpg
    <out>/coco/annotations/instances_{train,val}2017.json
    <out>/lvis/annotations/lvis_v1_{train,val}.json        LVIS v1 format (coco_url file names)
    <out>/lvis/annotations/lvis_v1_val_cocofied.json       see segrefiner.data.lvis
    <out>/results/segmentor_val.segm.json                  a segmentor's results on val2017
    <out>/big/test/<name>_{im.jpg,gt.png,seg.png}          long side >= 2048
    <out>/dis/DIS-{TR,VD,TE1}/{im,gt}/<name>.{jpg,png}
    <out>/dis/coarse/isnet/DIS-{VD,TE1}/<name>.png
    <out>/thin_object/{images/<n>.jpg, masks/<n>.png, list/{train,test}.txt}
    <out>/DEMO.json                                        seed, scale, counts, generator version

Images are real photographs (scikit-image samples) with synthetic objects composited on them
(:mod:`segrefiner.data.demo.shapes`): thin parts, holes and concavities, textured from another
photograph. As in LVIS v1, LVIS val also holds a few COCO train images (which the cocofied
annotation drops) and LVIS annotates some objects of categories COCO lacks.

Coarse masks come from a segmentor-like process that is deliberately *not* the training
degradation: a low-resolution prediction (Mask R-CNN's 28 x 28 box grid for instances, a 1/8 or
1/16 grid for semantic masks), smoothed, perturbed by low-frequency noise, upsampled bilinearly
and thresholded. That gives blobby boundaries, lost thin parts, filled small holes and box
truncation; detection scores follow mask quality; there are misses and low-score false positives.

Everything is a function of the seed (per-item generators from ``(seed, stream, index)``): the
same seed gives byte-identical files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from segrefiner import __version__, io
from segrefiner.data.demo.coco import _generate_coco
from segrefiner.data.demo.common import (
    CATEGORIES,
    GENERATOR_VERSION,
    SCALES,
    DemoCategory,
    DemoScale,
    DemoSummary,
    _write_json,
    coarse_instance_mask,
    coarse_semantic_mask,
)
from segrefiner.data.demo.hr import _generate_big, _generate_dis, _generate_thin
from segrefiner.data.lvis import build_cocofied_lvis
from segrefiner.errors import InputError

__all__ = [
    "CATEGORIES",
    "FILES",
    "GENERATOR_VERSION",
    "SCALES",
    "DemoCategory",
    "DemoScale",
    "DemoSummary",
    "coarse_instance_mask",
    "coarse_semantic_mask",
    "generate_demo",
]

# --------------------------------------------------------------------------------------------

FILES = {
    "coco_train": "coco/annotations/instances_train2017.json",
    "coco_val": "coco/annotations/instances_val2017.json",
    "coco_train_images": "coco/train2017",
    "coco_val_images": "coco/val2017",
    "lvis_train": "lvis/annotations/lvis_v1_train.json",
    "lvis_val": "lvis/annotations/lvis_v1_val.json",
    "lvis_val_cocofied": "lvis/annotations/lvis_v1_val_cocofied.json",
    "segmentor_results": "results/segmentor_val.segm.json",
    "big_test": "big/test",
    "dis": "dis",
    "dis_coarse": "dis/coarse/isnet",
    "thin_object": "thin_object",
}


def _resolve_scale(scale: str | DemoScale) -> tuple[str, DemoScale]:
    if isinstance(scale, DemoScale):
        return "custom", scale
    if scale not in SCALES:
        raise InputError(f"unknown demo scale {scale!r} (known: {', '.join(SCALES)})")
    return scale, SCALES[scale]


def _metadata(seed: int, scale_name: str, scale: DemoScale, counts: dict[str, int]) -> dict:
    return {
        "generator": "segrefiner.data.demo",
        "generator_version": GENERATOR_VERSION,
        "segrefiner_version": __version__,
        "seed": seed,
        "scale": scale_name,
        "scale_params": asdict(scale),
        "counts": counts,
        "files": FILES,
    }


def _matches(meta: Any, seed: int, scale: DemoScale) -> bool:
    return (
        isinstance(meta, dict)
        and meta.get("generator_version") == GENERATOR_VERSION
        and meta.get("seed") == seed
        and meta.get("scale_params") == asdict(scale)
    )


def generate_demo(
    out_dir: str | os.PathLike, seed: int = 0, *, scale: str | DemoScale = "default",
    force: bool = False,
) -> DemoSummary:  # fmt: skip
    """Generate the demo data set under ``out_dir`` (layout in the module docstring).

    An existing complete demo (``DEMO.json`` present) made with the same seed, scale and
    generator version is reused unless ``force``; one made with other settings is replaced.
    The data set is built in a temporary sibling folder and renamed into place, so ``out_dir``
    is never left half-written; an existing non-empty folder that is not a demo data set is
    refused.
    """
    out = Path(out_dir)
    scale_name, params = _resolve_scale(scale)
    marker = out / "DEMO.json"
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if marker.is_file():
        meta = io.read_json(marker)
        if not force and _matches(meta, seed, params):
            return DemoSummary(str(out), seed, scale_name, meta.get("counts", {}), 0.0, True, FILES)
    elif out.is_dir() and any(out.iterdir()):
        raise InputError(
            f"{out}: not empty and not a demo data set (no DEMO.json); refusing to overwrite"
        )

    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        counts = _generate_into(tmp, seed, params)
        _write_json(tmp / "DEMO.json", _metadata(seed, scale_name, params, counts), indent=2)
        io.replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DemoSummary(
        str(out), seed, scale_name, counts, time.perf_counter() - start, False, FILES
    )


def _generate_into(root: Path, seed: int, scale: DemoScale) -> dict[str, int]:
    made = _generate_coco(root, seed, scale)
    counts = made.counts
    _write_json(root / FILES["coco_train"], made.coco_train)
    _write_json(root / FILES["coco_val"], made.coco_val)
    _write_json(root / FILES["lvis_train"], made.lvis_train)
    _write_json(root / FILES["lvis_val"], made.lvis_val)
    cocofied = build_cocofied_lvis(made.lvis_val, made.coco_val)
    _write_json(root / FILES["lvis_val_cocofied"], cocofied)
    _write_json(root / FILES["segmentor_results"], made.results)
    counts["cocofied_val_images"] = len(cocofied["images"])
    counts["cocofied_val_instances"] = len(cocofied["annotations"])
    counts["big_images"] = _generate_big(root, seed, scale)
    counts.update(_generate_dis(root, seed, scale))
    counts.update(_generate_thin(root, seed, scale))
    return {k: int(v) for k, v in sorted(counts.items())}

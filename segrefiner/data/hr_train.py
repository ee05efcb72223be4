"""The HR training set: high-resolution composites with real edges, in the DIS-TR layout.

Built from a real-photo data root (``segrefiner data real``) and one pinned Debian package of
photographs (:data:`segrefiner.data.fetch.HR_SOURCES`: ``mate-backgrounds``, 12 nature photos
of 1280-2560 px). Writes, in the official DIS-5K training layout so every HR reader and the
gen-coarse-hr stage take it as it is::

    <out>/dis/DIS-TR/im/<name>.jpg    <out>/dis/DIS-TR/gt/<name>.png (0/255)
    <out>/HR_TRAIN.json               settings, seed, counts, generator version

Samples (one foreground mask per image, as DIS):

* ``h<00000>``: a cut-out of the real training split (a human-made polygon mask, or one of the
  RGBA alpha mattes) scaled up onto a high-resolution photograph (long side ``long_side``),
  with the blending of :func:`segrefiner.data.composite.make_composite` (feathered edge,
  colour matching, blur, noise, JPEG), so the object's border is not a seam;
* ``r<image id>_<annotation id>``: every instance of the real training split on its own photo
  at native resolution (real edges, human-made masks);
* with ``demo_root``, the demo data set's DIS-TR and ThinObject-5K training images
  (``demo_<name>``), thin structures included.

Nothing of the real evaluation split is read. The same seed gives byte-identical files; the
folder is written beside the final one and swapped in, so an interrupted build leaves nothing
half-made.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from segrefiner import io
from segrefiner.data import fetch
from segrefiner.data.coco import load_coco_instances
from segrefiner.data.composite import (
    instance_masks,
    TRAIN_ANNOTATIONS,
    CompositeConfig,
    _rng,
    load_cutouts,
    make_composite,
)
from segrefiner.errors import InputError

GENERATOR_VERSION = 1
PHOTO_PREFIX = "usr/share/backgrounds/mate/nature"
STAMP = "HR_TRAIN.json"


@dataclass(frozen=True)
class HRTrainConfig:
    count: int = 300  # high-resolution composites
    long_side: tuple[int, int] = (1024, 2048)
    object_frac: tuple[float, float] = (0.06, 0.4)  # cut-out box area / image area
    min_area: int = 2000  # composites whose object is smaller are not kept
    real_min_area: int = 900  # real instances smaller than this are left out


@dataclass
class HRTrainSummary:
    out: str
    composites: int
    real: int
    demo: int
    photos: int
    seconds: float
    reused: bool = False


def _write_pair(folder: Path, name: str, image: np.ndarray, gt: np.ndarray, quality: int) -> None:
    Image.fromarray(image).save(folder / "im" / f"{name}.jpg", quality=quality)
    cv2.imwrite(str(folder / "gt" / f"{name}.png"), gt.astype(np.uint8) * 255)


def _photos(cache: str | os.PathLike | None, offline: bool) -> list[np.ndarray]:
    deb = fetch.fetch(fetch.HR_SOURCES["mate-backgrounds"], cache, offline)
    members = fetch.deb_members(deb, PHOTO_PREFIX, (".jpg",))
    photos = []
    for name in sorted(members):
        image = cv2.imdecode(np.frombuffer(members[name], np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"{deb}: {name} is not a readable image")
        photos.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return photos


def _copy_demo(demo_root: Path, dis: Path) -> int:
    from segrefiner.data.folders import load_sample, read_hr_training

    made = 0
    for record in read_hr_training(demo_root):
        sample = load_sample(record)
        if sample.gt is None:
            continue
        name = "demo_" + record.sample_id.replace("/", "_")
        _write_pair(dis, name, sample.image, sample.gt, 95)
        made += 1
    return made


def build_hr_train(
    real_root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    config: HRTrainConfig | None = None,
    demo_root: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    offline: bool = False,
    force: bool = False,
) -> HRTrainSummary:
    """Write the HR training set under ``out`` (see the module docstring); reused when
    ``HR_TRAIN.json`` records the same settings, seed and inputs (unless ``force``)."""
    cfg = config or HRTrainConfig()
    real_root, out = Path(real_root), Path(out)
    train_path = real_root / TRAIN_ANNOTATIONS
    if not train_path.is_file():
        raise InputError(
            f"{train_path}: real training annotations not found; build them with "
            f"`segrefiner data real --out {real_root}`"
        )
    source = fetch.HR_SOURCES["mate-backgrounds"]
    stamp = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "config": asdict(cfg),
        "photos": f"{source.name} {source.version} sha256 {source.sha256}",
        "real_annotations": fetch.sha256_file(train_path),
        "demo": str(demo_root) if demo_root else None,
    }
    stamp_path = out / STAMP
    if not force and stamp_path.is_file():
        old = io.read_json(stamp_path)
        if {k: old.get(k) for k in stamp} == _plain(stamp):
            return HRTrainSummary(str(out), **old["counts"], seconds=0.0, reused=True)
    started = time.perf_counter()
    photos = _photos(cache, offline)
    train = load_coco_instances(train_path, real_root / "images")
    composite_cfg = replace(
        CompositeConfig(),
        long_side=cfg.long_side,
        objects=(1, 1),
        object_frac=cfg.object_frac,
        own_background_prob=0.0,
        min_area=cfg.min_area,
    )
    cutouts = load_cutouts(train, real_root, composite_cfg.min_cutout_area)
    if not cutouts:
        raise InputError(f"{real_root}: no cut-outs in the real training split")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    dis = work / "dis" / "DIS-TR"
    (dis / "im").mkdir(parents=True)
    (dis / "gt").mkdir(parents=True)
    made = 0
    for index in range(cfg.count):
        rng = _rng(seed, "hr-composite", index)
        photo = photos[int(rng.integers(len(photos)))]
        image, pasted, _ = make_composite(photo, [], cutouts, rng, composite_cfg)
        if not pasted:
            continue
        gt = np.logical_or.reduce([m for m, _ in pasted])
        if np.count_nonzero(gt) < cfg.min_area:
            continue
        lo, hi = composite_cfg.jpeg_quality
        quality = int(rng.integers(lo, hi + 1))
        _write_pair(dis, f"h{index:05d}", image, gt, quality)
        made += 1
    real = 0
    for image_id, image, ann, mask in instance_masks(
        train, cfg.real_min_area, sorted(train.images)
    ):
        _write_pair(dis, f"r{image_id}_{ann.id}", image, mask, 95)
        real += 1
    demo = _copy_demo(Path(demo_root), dis) if demo_root else 0
    counts = {"composites": made, "real": real, "demo": demo, "photos": len(photos)}
    io.write_json(work / STAMP, {**_plain(stamp), "counts": counts}, indent=2)
    io.replace_dir(work, out)
    return HRTrainSummary(str(out), **counts, seconds=time.perf_counter() - started)


def _plain(obj: Any) -> Any:
    """Tuples as lists, as they read back from JSON."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj

"""Training composites with real edges: real object cut-outs pasted onto real photographs.

Reads a real-photo data root built by ``segrefiner data real`` and writes, beside it::

    <root>/images/composite/c<00000>.jpg        the composites
    <root>/annotations/train_mix.json           COCO instances: the real training photos with
                                                their own annotations, then the composites
    <root>/COMPOSITES.json                      settings, seed, counts, generator version

Cut-outs are the training split's human-made instances (polygon masks cut from their
photographs, not touching the image border) and the RGBA cut-outs of ``<root>/cutouts``
(real alpha mattes). Backgrounds are the training split's photographs, which keep their own
annotated instances (occluded where a cut-out lands), and the photographs of
``<root>/backgrounds``. Nothing of the evaluation split is read.

Per composite, all drawn from a generator seeded by ``(seed, index)``:

1. a background, cropped at a random scale to a random aspect and resized so its long side is
   in ``long_side``;
2. ``objects`` cut-outs, each scaled so its box covers ``object_frac`` of the image, maybe
   flipped and rotated, colour-matched part-way to the background under it, brightness and
   contrast jittered, pasted with a feathered edge (binary cut-outs: Gaussian-blurred alpha;
   mattes: their own alpha) and allowed to leave the frame a little. The instance mask is
   ``alpha >= 0.5``; a later paste occludes earlier instances;
3. the whole image maybe blurred, then Gaussian noise, then JPEG at a random quality, so the
   pasted border is not a seam a network can spot.

Instances smaller than ``min_area`` pixels after occlusion are dropped. The same seed gives
byte-identical files.
"""

from __future__ import annotations

import os
import shutil
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import Any

import cv2
import numpy as np
from PIL import Image

from segrefiner import io, rle
from segrefiner.data.coco import InstanceSet, load_coco_instances
from segrefiner.data.real import real_assets
from segrefiner.errors import InputError

GENERATOR_VERSION = 1
TRAIN_ANNOTATIONS = Path("annotations") / "real_train.json"
MIX_ANNOTATIONS = Path("annotations") / "train_mix.json"
COMPOSITE_DIR = "composite"
MATTE_CATEGORY = "cutout"


@dataclass(frozen=True)
class CompositeConfig:
    count: int = 1200
    long_side: tuple[int, int] = (448, 768)
    objects: tuple[int, int] = (1, 3)  # cut-outs per composite, inclusive
    object_frac: tuple[float, float] = (0.04, 0.35)  # cut-out box area / image area
    own_background_prob: float = 0.5  # a training photo (with its own instances) as background
    rotate_prob: float = 0.4
    max_rotation: float = 20.0  # degrees
    colour_match: tuple[float, float] = (0.0, 0.5)  # fraction of the way to the background stats
    feather_sigma: tuple[float, float] = (0.4, 1.3)  # px, for binary cut-outs
    blur_prob: float = 0.4
    blur_sigma: tuple[float, float] = (0.3, 0.9)
    noise_std: tuple[float, float] = (0.0, 4.0)  # grey levels
    jpeg_quality: tuple[int, int] = (60, 95)
    min_area: int = 400
    min_cutout_area: int = 900


@dataclass
class Cutout:
    rgb: np.ndarray  # h x w x 3 uint8
    alpha: np.ndarray  # h x w float32 in [0, 1]
    category: str
    matte: bool  # a real alpha matte (no feathering) rather than a binary polygon mask
    source: str


@dataclass
class Background:
    image_id: int | None  # a training photo's id (its instances come along), or None
    path: Path


def _rng(seed: int, *keys: object) -> np.random.Generator:
    parts = [seed, *(zlib.crc32(str(k).encode()) for k in keys)]
    return np.random.default_rng(np.random.SeedSequence(parts))


def instance_masks(
    instances: InstanceSet, min_area: int, image_ids: Iterable[int] | None = None
) -> Iterator[tuple[int, np.ndarray, Any, np.ndarray]]:
    """``(image id, image, annotation, mask)`` of every non-crowd instance with at least
    ``min_area`` pixels, image by image (each image read once, only when it has one);
    ``image_ids``: which images and in what order (default: the file's order)."""
    for image_id in instances.images if image_ids is None else image_ids:
        anns = [a for a in instances.annotations_of(image_id) if not a.iscrowd]
        image = None
        for ann in anns:
            mask = instances.annotation_mask(ann)
            if np.count_nonzero(mask) < min_area:
                continue
            if image is None:
                image = instances.read_image(image_id)
            yield image_id, image, ann, mask


def load_cutouts(train: InstanceSet, root: Path, min_area: int) -> list[Cutout]:
    """The training split's instances away from the image border, plus ``<root>/cutouts``."""
    cutouts: list[Cutout] = []
    for image_id, image, ann, mask in instance_masks(train, min_area):
        info = train.images[image_id]
        if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
            continue  # a truncated object's frame edge is not an object edge
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        y0, y1 = max(rows[0] - 3, 0), min(rows[-1] + 4, info.height)
        x0, x1 = max(cols[0] - 3, 0), min(cols[-1] + 4, info.width)
        cutouts.append(
            Cutout(
                rgb=np.ascontiguousarray(image[y0:y1, x0:x1]),
                alpha=mask[y0:y1, x0:x1].astype(np.float32),
                category=train.categories[ann.category_id].name,
                matte=False,
                source=f"{info.file_name}#{ann.id}",
            )
        )
    for path in real_assets(root).cutouts:
        rgba = np.asarray(Image.open(path).convert("RGBA"))
        alpha = rgba[..., 3].astype(np.float32) / 255.0
        if np.count_nonzero(alpha >= 0.5) < min_area:
            continue
        cutouts.append(Cutout(rgba[..., :3].copy(), alpha, MATTE_CATEGORY, True, path.name))
    return cutouts


def list_backgrounds(train: InstanceSet, root: Path) -> list[Background]:
    """Training photos (with their instances) and the photographs of ``<root>/backgrounds``."""
    out = [Background(i, train.image_path(i)) for i in train.images]
    out += [Background(None, p) for p in real_assets(root).backgrounds]
    return out


def _crop_resize(
    image: np.ndarray, masks: list[np.ndarray], rng: np.random.Generator, cfg: CompositeConfig
) -> tuple[np.ndarray, list[np.ndarray]]:
    """A random crop (60-100% of each side) resized to a long side drawn from ``long_side``."""
    H, W = image.shape[:2]
    ch, cw = int(H * rng.uniform(0.6, 1.0)), int(W * rng.uniform(0.6, 1.0))
    y0, x0 = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
    long_side = int(rng.integers(cfg.long_side[0], cfg.long_side[1] + 1))
    scale = long_side / max(ch, cw)
    size = (max(round(cw * scale), 16), max(round(ch * scale), 16))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = cv2.resize(image[y0 : y0 + ch, x0 : x0 + cw], size, interpolation=interp)
    resized = [
        cv2.resize(m[y0 : y0 + ch, x0 : x0 + cw].astype(np.float32), size, cv2.INTER_LINEAR) >= 0.5
        for m in masks
    ]
    return out, resized


def _transform_cutout(
    cut: Cutout, area: float, rng: np.random.Generator, cfg: CompositeConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled (box area ``area``), maybe flipped and rotated, feathered: float RGB and alpha."""
    h, w = cut.alpha.shape
    scale = float(np.sqrt(area / (h * w)))
    size = (max(round(w * scale), 4), max(round(h * scale), 4))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    rgb = cv2.resize(cut.rgb, size, interpolation=interp).astype(np.float32)
    alpha = cv2.resize(cut.alpha, size, interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    if rng.random() < cfg.rotate_prob:
        angle = float(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
        hh, ww = alpha.shape
        m = cv2.getRotationMatrix2D((ww / 2, hh / 2), angle, 1.0)
        cos, sin = abs(m[0, 0]), abs(m[0, 1])
        nw, nh = int(hh * sin + ww * cos) + 1, int(hh * cos + ww * sin) + 1
        m[0, 2] += nw / 2 - ww / 2
        m[1, 2] += nh / 2 - hh / 2
        rgb = cv2.warpAffine(np.ascontiguousarray(rgb), m, (nw, nh), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(np.ascontiguousarray(alpha), m, (nw, nh), flags=cv2.INTER_LINEAR)
    if not cut.matte:
        sigma = float(rng.uniform(*cfg.feather_sigma))
        alpha = cv2.GaussianBlur(np.ascontiguousarray(alpha), (0, 0), sigma)
    # Brightness / contrast jitter of the object alone.
    gain, bias = float(rng.uniform(0.85, 1.15)), float(rng.uniform(-15, 15))
    rgb = rgb * gain + bias
    return np.ascontiguousarray(rgb), np.clip(np.ascontiguousarray(alpha), 0.0, 1.0)


def _colour_match(
    rgb: np.ndarray, alpha: np.ndarray, under: np.ndarray, k: float
) -> np.ndarray:  # fmt: skip
    """Move the object's per-channel mean/std a fraction ``k`` toward the region under it."""
    inside = alpha >= 0.5
    if k <= 0 or not inside.any():
        return rgb
    obj = rgb[inside]
    mean_o, std_o = obj.mean(0), obj.std(0) + 1e-3
    mean_b, std_b = under.reshape(-1, 3).mean(0), under.reshape(-1, 3).std(0) + 1e-3
    gain = 1.0 + k * (np.clip(std_b / std_o, 0.5, 2.0) - 1.0)
    return (rgb - mean_o) * gain + mean_o + k * (mean_b - mean_o)


def make_composite(
    background: np.ndarray,
    own_masks: list[np.ndarray],
    cutouts: list[Cutout],
    rng: np.random.Generator,
    cfg: CompositeConfig,
) -> tuple[np.ndarray, list[tuple[np.ndarray, str]], list[np.ndarray]]:
    """One composite: (``H x W x 3`` uint8 RGB before JPEG, pasted ``(mask, category)``, the
    background's own instance masks after occlusion)."""
    canvas, own = _crop_resize(background, own_masks, rng, cfg)
    H, W = canvas.shape[:2]
    out = canvas.astype(np.float32)
    pasted: list[tuple[np.ndarray, str]] = []
    for _ in range(int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))):
        cut = cutouts[int(rng.integers(len(cutouts)))]
        area = float(rng.uniform(*cfg.object_frac)) * H * W
        rgb, alpha = _transform_cutout(cut, area, rng, cfg)
        h, w = alpha.shape
        if h >= H or w >= W:  # too large for this canvas: shrink to fit
            f = 0.9 * min(H / h, W / w)
            size = (max(int(w * f), 4), max(int(h * f), 4))
            rgb, alpha = cv2.resize(rgb, size), cv2.resize(alpha, size)
            h, w = alpha.shape
        # Up to a quarter of the object may leave the frame, as truncated objects do.
        x = int(rng.integers(-(w // 4), W - w + w // 4 + 1))
        y = int(rng.integers(-(h // 4), H - h + h // 4 + 1))
        cx0, cy0, cx1, cy1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if cx1 - cx0 < 4 or cy1 - cy0 < 4:
            continue
        obj = rgb[cy0 - y : cy1 - y, cx0 - x : cx1 - x]
        a = alpha[cy0 - y : cy1 - y, cx0 - x : cx1 - x]
        under = out[cy0:cy1, cx0:cx1]
        obj = _colour_match(obj, a, under, float(rng.uniform(*cfg.colour_match)))
        out[cy0:cy1, cx0:cx1] = a[..., None] * np.clip(obj, 0, 255) + (1 - a[..., None]) * under
        mask = np.zeros((H, W), bool)
        mask[cy0:cy1, cx0:cx1] = a >= 0.5
        for m in own:
            m &= ~mask
        for m, _ in pasted:
            m &= ~mask
        pasted.append((mask, cut.category))
    if rng.random() < cfg.blur_prob:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(*cfg.blur_sigma)))
    noise = float(rng.uniform(*cfg.noise_std))
    if noise > 0:
        out = out + rng.normal(0.0, noise, out.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), pasted, own


@dataclass
class CompositeSummary:
    out: str
    composites: int
    instances: int
    real_images: int
    real_instances: int
    cutouts: int
    backgrounds: int
    seconds: float
    reused: bool = False


def _annotation(ann_id: int, image_id: int, category_id: int, mask: np.ndarray) -> dict:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    bbox = [
        float(cols[0]),
        float(rows[0]),
        float(cols[-1] + 1 - cols[0]),
        float(rows[-1] + 1 - rows[0]),
    ]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": rle.encode(mask),
        "area": float(np.count_nonzero(mask)),
        "bbox": bbox,
        "iscrowd": 0,
    }


def generate_composites(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    config: CompositeConfig | None = None,
    force: bool = False,
) -> CompositeSummary:
    """Write the composites and ``annotations/train_mix.json`` under a real-photo data root.

    Reused when ``COMPOSITES.json`` records the same settings, seed and generator version
    (unless ``force``). The composite folder is written beside the final one and renamed into
    place, and the annotation file last, so an interrupted run leaves no half set behind.
    """
    cfg = config or CompositeConfig()
    root = Path(root)
    train_path = root / TRAIN_ANNOTATIONS
    if not train_path.is_file():
        raise InputError(
            f"{train_path}: real training annotations not found; build them with "
            f"`segrefiner data real --out {root}`"
        )
    stamp_path = root / "COMPOSITES.json"
    stamp = {"generator_version": GENERATOR_VERSION, "seed": seed, "config": asdict(cfg)}
    if not force and stamp_path.is_file() and (root / MIX_ANNOTATIONS).is_file():
        old = io.read_json(stamp_path)
        if {k: old.get(k) for k in stamp} == _jsonable(stamp):
            return CompositeSummary(str(root), **old["counts"], seconds=0.0, reused=True)
    started = time.perf_counter()
    train = load_coco_instances(train_path, root / "images")
    cutouts = load_cutouts(train, root, cfg.min_cutout_area)
    backgrounds = list_backgrounds(train, root)
    if not cutouts or not backgrounds:
        raise InputError(f"{root}: no cut-outs or no backgrounds to composite")
    data = io.read_json(train_path)
    categories = list(data["categories"])
    cat_ids = {c["name"]: c["id"] for c in categories}
    if MATTE_CATEGORY not in cat_ids:
        cat_ids[MATTE_CATEGORY] = max(cat_ids.values(), default=0) + 1
        categories.append({"id": cat_ids[MATTE_CATEGORY], "name": MATTE_CATEGORY})
    images = list(data["images"])
    annotations = list(data["annotations"])
    next_image = max((im["id"] for im in images), default=0) + 1
    next_ann = max((a["id"] for a in annotations), default=0) + 1
    final_dir = root / "images" / COMPOSITE_DIR
    work_dir = root / "images" / f".{COMPOSITE_DIR}.tmp"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    cache: dict[Path, np.ndarray] = {}
    made = 0
    for index in range(cfg.count):
        rng = _rng(seed, "composite", index)
        own_bg = rng.random() < cfg.own_background_prob
        photos = [b for b in backgrounds if (b.image_id is not None) == own_bg] or backgrounds
        bg = photos[int(rng.integers(len(photos)))]
        if bg.path not in cache:
            cache[bg.path] = io.read_image(bg.path)
        own_anns = (
            [a for a in train.annotations_of(bg.image_id) if not a.iscrowd]
            if bg.image_id is not None
            else []
        )
        own_masks = [train.annotation_mask(a) for a in own_anns]
        image, pasted, own = make_composite(cache[bg.path], own_masks, cutouts, rng, cfg)
        entries = [(m, a.category_id) for m, a in zip(own, own_anns)]
        entries += [(m, cat_ids[c]) for m, c in pasted]
        entries = [(m, c) for m, c in entries if np.count_nonzero(m) >= cfg.min_area]
        if not entries:
            continue
        name = f"c{index:05d}.jpg"
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        Image.fromarray(image).save(work_dir / name, quality=quality)
        image_id = next_image + index
        images.append(
            {
                "id": image_id,
                "file_name": f"{COMPOSITE_DIR}/{name}",
                "height": image.shape[0],
                "width": image.shape[1],
            }
        )
        for mask, category_id in entries:
            annotations.append(_annotation(next_ann, image_id, category_id, mask))
            next_ann += 1
        made += 1
    io.replace_dir(work_dir, final_dir)
    mix = {"info": {"description": "real training photos + composites"}, "images": images,
           "annotations": annotations, "categories": categories}  # fmt: skip
    io.write_json(root / MIX_ANNOTATIONS, mix)
    counts = {
        "composites": made,
        "instances": len(annotations) - len(data["annotations"]),
        "real_images": len(data["images"]),
        "real_instances": len(data["annotations"]),
        "cutouts": len(cutouts),
        "backgrounds": len(backgrounds),
    }
    io.write_json(stamp_path, {**stamp, "counts": counts}, indent=2)
    return CompositeSummary(str(root), **counts, seconds=time.perf_counter() - started)


def _jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj

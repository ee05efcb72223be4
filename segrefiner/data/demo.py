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
(:mod:`segrefiner.data.shapes`): thin parts, holes and concavities, textured from another
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

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from segrefiner import __version__, io, rle
from segrefiner.data import shapes
from segrefiner.data.coarse_kinds import extent, lowres_like, maskrcnn_like
from segrefiner.data.lvis import build_cocofied_lvis
from segrefiner.errors import InputError

# Bump whenever the generated content changes, so that demo folders made by an older version
# are regenerated instead of silently reused (2: the instance segmentor's thin-part blobs).
GENERATOR_VERSION = 2
JPEG_QUALITY = 90
COCO_URL = "http://images.cocodataset.org/"


@dataclass(frozen=True)
class DemoScale:
    """How much to generate. Counts are images; sizes are pixels (long side)."""

    coco_train: int
    coco_val: int
    lvis_val_from_train: int  # COCO train images that LVIS v1 val annotates (as the real one)
    big: int
    dis_tr: int
    dis_vd: int
    dis_te1: int
    thin_train: int
    thin_test: int
    dis_long_side: int = 1024
    thin_long_side: int = 800


SCALES: dict[str, DemoScale] = {
    "default": DemoScale(120, 24, 6, 4, 16, 4, 4, 16, 4),
    # For tests: every folder present, BIG still >= 2048 px, a few seconds on one core.
    "ci": DemoScale(6, 4, 2, 1, 2, 1, 1, 2, 1, dis_long_side=640, thin_long_side=480),
}

COCO_SIZES = ((480, 640), (640, 480), (427, 640), (375, 500), (360, 640), (640, 427), (612, 612))
BIG_SIZES = ((1536, 2048), (1440, 2560), (2048, 1536), (2048, 3072))


@dataclass(frozen=True)
class DemoCategory:
    """A category of the demo: its shape kind, COCO identity (None: LVIS only) and LVIS fields.

    ``size`` is the object's long side as a fraction of the image's long side.
    """

    kind: str
    coco_id: int | None
    coco_name: str | None
    supercategory: str
    lvis_id: int
    lvis_name: str
    synset: str
    frequency: str
    synonyms: tuple[str, ...]
    definition: str
    size: tuple[float, float] = (0.2, 0.4)


# Real COCO ids/names and LVIS v1 ids/synsets/frequencies.
CATEGORIES: tuple[DemoCategory, ...] = (
    DemoCategory("bicycle", 2, "bicycle", "vehicle", 94, "bicycle", "bicycle.n.01", "f",
                 ("bicycle", "bike_(bicycle)"), "a wheeled vehicle that has two wheels and is moved by foot pedals", (0.3, 0.6)),
    DemoCategory("airplane", 5, "airplane", "vehicle", 3, "airplane", "airplane.n.01", "f",
                 ("airplane", "aeroplane"), "an aircraft that has a fixed wing and is powered by propellers or jets", (0.25, 0.55)),
    DemoCategory("handbag", 31, "handbag", "accessory", 35, "handbag", "bag.n.04", "f",
                 ("handbag", "purse", "pocketbook"), "a container used for carrying money and small personal items or accessories", (0.15, 0.35)),
    DemoCategory("banana", 52, "banana", "food", 45, "banana", "banana.n.02", "f",
                 ("banana",), "elongated crescent-shaped yellow fruit with soft sweet flesh", (0.12, 0.3)),
    DemoCategory("broccoli", 56, "broccoli", "food", 154, "broccoli", "broccoli.n.01", "f",
                 ("broccoli",), "plant with dense clusters of tight green flower buds", (0.15, 0.35)),
    DemoCategory("chair", 62, "chair", "furniture", 232, "chair", "chair.n.01", "f",
                 ("chair",), "a seat for one person, with a support for the back", (0.25, 0.5)),
    DemoCategory("candy_cane", None, None, "food", 197, "candy_cane", "candy_cane.n.01", "c",
                 ("candy_cane",), "a hard candy in the shape of a rod (usually with stripes)", (0.1, 0.25)),
    DemoCategory("coat_hanger", None, None, "furniture", 278, "coat_hanger", "coat_hanger.n.01", "c",
                 ("coat_hanger", "clothes_hanger", "dress_hanger"), "a hanger that is shaped like a person's shoulders", (0.2, 0.4)),
    DemoCategory("bucket", None, None, "kitchen", 160, "bucket", "bucket.n.01", "f",
                 ("bucket", "pail"), "a roughly cylindrical vessel that is open at the top", (0.15, 0.3)),
)  # fmt: skip
# LVIS categories that never appear: they only fill `neg_category_ids` (verified absent).
ABSENT_LVIS_CATEGORIES: tuple[dict[str, Any], ...] = (
    {"id": 164, "name": "bulldozer", "synset": "bulldozer.n.01", "frequency": "r",
     "synonyms": ["bulldozer", "dozer"], "def": "large powerful tractor; a large blade in front flattens areas of ground"},
    {"id": 184, "name": "calculator", "synset": "calculator.n.02", "frequency": "c",
     "synonyms": ["calculator"], "def": "a small machine that is used for mathematical calculations"},
    {"id": 200, "name": "canoe", "synset": "canoe.n.01", "frequency": "c",
     "synonyms": ["canoe"], "def": "small and light boat; pointed at both ends; propelled with a paddle"},
)  # fmt: skip
COCO_CATEGORIES = tuple(c for c in CATEGORIES if c.coco_id is not None)
LVIS_ONLY_CATEGORIES = tuple(c for c in CATEGORIES if c.coco_id is None)
TINY_KINDS = ("banana", "broccoli", "handbag", "airplane")
SEMANTIC_KINDS = {
    "big": ("bicycle", "chair", "airplane", "handbag", "broccoli"),
    "dis": ("tree", "fence", "bicycle", "chair", "coat_hanger", "bucket"),
    "thin": ("bicycle", "chair", "coat_hanger", "tree", "fence", "candy_cane", "bucket"),
}
DIS_GROUPS = {
    "tree": "Plants#2#Tree",
    "fence": "Architecture#3#Fence",
    "bicycle": "Transport#5#Bicycle",
    "chair": "Furniture#4#Chair",
    "coat_hanger": "Accessories#1#Hanger",
    "bucket": "Kitchenware#6#Bucket",
}

# Random streams: one generator per (seed, stream, item) so that items are independent.
_IDS, _COCO, _SEGMENTOR, _BIG, _DIS, _THIN, _FED = range(1, 8)
_DIS_SPLITS = {"DIS-TR": 0, "DIS-VD": 1, "DIS-TE1": 2}


@dataclass
class DemoSummary:
    """What :func:`generate_demo` produced (or found)."""

    out_dir: str
    seed: int
    scale: str
    counts: dict[str, int]
    seconds: float
    reused: bool = False
    files: dict[str, str] = field(default_factory=dict)


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


# --------------------------------------------------------------------------------------------
# Segmentor-like coarse masks


# The segmentor-like processes live in segrefiner.data.coarse_kinds (one implementation); the
# demo keeps its historical names.
coarse_instance_mask = maskrcnn_like
coarse_semantic_mask = lowres_like


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 0.0


# --------------------------------------------------------------------------------------------
# Scenes


@dataclass
class _Object:
    category: DemoCategory
    segmentation: Any  # COCO polygons or RLE
    mask: np.ndarray  # H x W bool, the decoded segmentation (the ground truth of record)
    area: float
    bbox: list[float]  # XYWH


def _segmentation(mask: np.ndarray) -> tuple[Any, np.ndarray]:
    """COCO polygons that decode exactly to ``mask``, or RLE when it has holes (polygons
    cannot carry holes: pycocotools merges them as a union). Returns the segmentation and its
    decoded mask (the ground truth of record)."""
    up = cv2.resize(mask.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None or not (hierarchy[0][:, 3] >= 0).any():
        # Tracing the 2x-upsampled mask puts vertices a quarter pixel outside pixel centres,
        # which pycocotools rasterises back to exactly the same pixels.
        polys = [((c.reshape(-1, 2) + 0.5) / 2).ravel().tolist() for c in contours if len(c) >= 3]
        if polys:
            decoded = rle.decode(polys, *mask.shape)
            if np.array_equal(decoded, mask):
                return polys, decoded
    return rle.encode(mask), mask


def _bbox(mask: np.ndarray) -> list[float]:
    """Tight COCO box ``[x, y, w, h]`` of a non-empty mask (as pycocotools ``toBbox``)."""
    x0, y0, x1, y1 = extent(mask)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def _place(mask: np.ndarray, H: int, W: int, top: int, left: int) -> np.ndarray:
    full = np.zeros((H, W), bool)
    h, w = mask.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + h, H), min(left + w, W)
    if y1 > y0 and x1 > x0:
        full[y0:y1, x0:x1] = mask[y0 - top : y1 - top, x0 - left : x1 - left]
    return full


def _coco_scene(rng: np.random.Generator, H: int, W: int) -> tuple[np.ndarray, list[_Object]]:
    """A photograph with 2-6 annotated objects (some tiny, some of LVIS-only categories)."""
    image, bg_name = shapes.background(rng, H, W)
    plan: list[tuple[DemoCategory, bool]] = [
        (COCO_CATEGORIES[int(rng.integers(len(COCO_CATEGORIES)))], False)
        for _ in range(int(rng.integers(2, 5)))
    ]
    if rng.random() < 0.5:
        plan.append((LVIS_ONLY_CATEGORIES[int(rng.integers(len(LVIS_ONLY_CATEGORIES)))], False))
    tiny = [c for c in COCO_CATEGORIES if c.kind in TINY_KINDS]
    plan += [(tiny[int(rng.integers(len(tiny)))], True) for _ in range(int(rng.integers(0, 3)))]

    placed: list[tuple[DemoCategory, np.ndarray]] = []
    occupied = np.zeros((H, W), bool)
    for cat, is_tiny in plan:
        if is_tiny:
            long_side = int(rng.integers(14, 30))
        else:
            long_side = round(rng.uniform(*cat.size) * max(H, W))
        long_side = min(long_side, int(0.95 * min(H, W)))
        m = shapes.object_mask(cat.kind, rng, long_side)
        h, w = m.shape
        for _ in range(12):
            top = int(rng.integers(-h // 8, max(H - h + h // 8, -h // 8 + 1) + 1))
            left = int(rng.integers(-w // 8, max(W - w + w // 8, -w // 8 + 1) + 1))
            full = _place(m, H, W, top, left)
            area = np.count_nonzero(full)
            if area and np.count_nonzero(full & occupied) <= 0.15 * area:
                placed.append((cat, full))
                occupied |= full
                break

    objects: list[_Object] = []
    in_front = np.zeros((H, W), bool)
    for cat, full in reversed(placed):  # later objects occlude earlier ones
        visible = full & ~in_front
        in_front |= full
        n = np.count_nonzero(visible)
        if n < 12 or n < 0.6 * np.count_nonzero(full):
            continue
        seg, gt = _segmentation(visible)
        objects.append(_Object(cat, seg, gt, float(np.count_nonzero(gt)), _bbox(gt)))
    objects.reverse()
    for obj in objects:
        x0, y0, x1, y1 = extent(obj.mask)
        shapes.paint_object(image, obj.mask[y0:y1, x0:x1], y0, x0, rng, avoid=bg_name)
    return _to_uint8(image), objects


def _semantic_scene(
    rng: np.random.Generator, H: int, W: int, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """One large object of ``kind`` on a photograph: image ``uint8``, GT ``bool``."""
    image, bg_name = shapes.background(rng, H, W)
    m = shapes.object_mask(kind, rng, round(rng.uniform(0.55, 0.9) * min(H, W)))
    h, w = m.shape
    top = int(rng.integers(0, max(H - h, 0) + 1))
    left = int(rng.integers(0, max(W - w, 0) + 1))
    shapes.paint_object(image, m, top, left, rng, avoid=bg_name)
    return _to_uint8(image), _place(m, H, W, top, left)


def _kind(kinds: tuple[str, ...], seed: int, index: int) -> str:
    # Cycle through the kinds (from a seed-dependent start) so that small sets stay varied.
    return kinds[(seed + index) % len(kinds)]


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    # json.dumps runs the C encoder; json.dump (io.write_json) streams through the Python one,
    # which is several times slower on polygon-heavy annotation files.
    with io.atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent), encoding="utf-8")


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="JPEG", quality=JPEG_QUALITY)


# --------------------------------------------------------------------------------------------
# COCO / LVIS


def _coco_image_entry(image_id: int, split: str, H: int, W: int) -> dict[str, Any]:
    name = f"{image_id:012d}.jpg"
    return {
        "license": 1,
        "file_name": name,
        "coco_url": f"{COCO_URL}{split}/{name}",
        "height": H,
        "width": W,
        "date_captured": "2013-11-14 16:28:13",
        "flickr_url": "",
        "id": image_id,
    }


def _info(what: str) -> dict[str, Any]:
    return {
        "description": f"SegRefiner demo data: {what} (synthetic objects on scikit-image photographs)",
        "url": "",
        "version": f"segrefiner-demo-{GENERATOR_VERSION}",
        "year": 2017,
        "contributor": "segrefiner.data.demo",
        "date_created": "2017/09/01",
    }


LICENSES = [
    {
        "id": 1,
        "name": "scikit-image sample data (each photograph's license: skimage.data)",
        "url": "https://scikit-image.org/docs/stable/api/skimage.data.html",
    }
]


@dataclass
class _CocoFiles:
    coco_train: dict[str, Any]
    coco_val: dict[str, Any]
    lvis_train: dict[str, Any]
    lvis_val: dict[str, Any]
    results: list[dict[str, Any]]
    counts: dict[str, int]


def _generate_coco(root: Path, seed: int, scale: DemoScale) -> _CocoFiles:
    """Writes the COCO-like images; returns the COCO instances (train/val), LVIS (train/val)
    and the segmentor results on val."""
    n_train, n_val = scale.coco_train, scale.coco_val
    ids = _rng(seed, _IDS).choice(581_929, size=n_train + n_val, replace=False) + 1
    train_ids, val_ids = (
        sorted(int(i) for i in ids[:n_train]),
        sorted(int(i) for i in ids[n_train:]),
    )

    coco = {s: {"info": _info(f"COCO-format {s}"), "licenses": LICENSES, "images": [], "annotations": []}
            for s in ("train2017", "val2017")}  # fmt: skip
    lvis_images: dict[str, list] = {"train": [], "val": []}
    lvis_anns: dict[str, list] = {"train": [], "val": []}
    results: list[dict] = []
    ann_id = 0
    # LVIS v1 val also annotates COCO train images; those leave LVIS train.
    n_moved = scale.lvis_val_from_train
    to_lvis_val = set(train_ids[:: max(n_train // max(n_moved, 1), 1)][:n_moved])
    counts = {"coco_instances_small": 0, "segmentor_false_positives": 0, "segmentor_missed": 0}

    for index, (split, image_id) in enumerate(
        [("train2017", i) for i in train_ids] + [("val2017", i) for i in val_ids]
    ):
        rng = _rng(seed, _COCO, index)
        H, W = COCO_SIZES[int(rng.integers(len(COCO_SIZES)))]
        image, objects = _coco_scene(rng, H, W)
        entry = _coco_image_entry(image_id, split, H, W)
        _write_jpeg(root / "coco" / split / entry["file_name"], image)
        coco[split]["images"].append(entry)
        lvis_split = "val" if split == "val2017" or image_id in to_lvis_val else "train"
        present: set[int] = set()
        for obj in objects:
            if obj.category.coco_id is not None:
                ann_id += 1
                counts["coco_instances_small"] += obj.area < 512
                coco[split]["annotations"].append(
                    {
                        "segmentation": obj.segmentation,
                        "area": obj.area,
                        "iscrowd": 0,
                        "image_id": image_id,
                        "bbox": obj.bbox,
                        "category_id": obj.category.coco_id,
                        "id": ann_id,
                    }
                )
            lvis_anns[lvis_split].append(
                {
                    "area": obj.area,
                    "id": 0,  # numbered per file below
                    "segmentation": obj.segmentation,
                    "image_id": image_id,
                    "bbox": obj.bbox,
                    "category_id": obj.category.lvis_id,
                }
            )
            present.add(obj.category.lvis_id)
        lvis_images[lvis_split].append(_lvis_image_entry(entry, present, _rng(seed, _FED, index)))
        if split == "val2017":
            results += _segmentor_results(image_id, objects, _rng(seed, _SEGMENTOR, index), counts)

    for s in ("train2017", "val2017"):
        coco[s]["categories"] = [
            {"supercategory": c.supercategory, "id": c.coco_id, "name": c.coco_name}
            for c in sorted(COCO_CATEGORIES, key=lambda c: c.coco_id or 0)
        ]
    lvis = {}
    categories = _lvis_categories(lvis_images["train"], lvis_anns["train"])
    for s in ("train", "val"):
        for k, ann in enumerate(lvis_anns[s], start=1):
            ann["id"] = k
        lvis[s] = {
            "info": _info(f"LVIS v1 {s}"),
            "licenses": LICENSES,
            "images": lvis_images[s],
            "annotations": lvis_anns[s],
            "categories": categories,
        }
    counts.update(
        coco_train_images=n_train,
        coco_val_images=n_val,
        coco_train_instances=len(coco["train2017"]["annotations"]),
        coco_val_instances=len(coco["val2017"]["annotations"]),
        lvis_train_images=len(lvis_images["train"]),
        lvis_val_images=len(lvis_images["val"]),
        segmentor_detections=len(results),
    )
    return _CocoFiles(
        coco["train2017"], coco["val2017"], lvis["train"], lvis["val"], results, counts
    )


def _lvis_image_entry(coco_entry: dict, present: set[int], rng: np.random.Generator) -> dict:
    """LVIS image entry with sensible federated fields: a few verified-absent categories, and
    now and then a present category marked as not exhaustively annotated."""
    all_ids = [c.lvis_id for c in CATEGORIES] + [c["id"] for c in ABSENT_LVIS_CATEGORIES]
    absent = [i for i in all_ids if i not in present]
    neg = sorted(int(i) for i in rng.choice(absent, size=int(rng.integers(1, 4)), replace=False))
    not_exhaustive = []
    if present and rng.random() < 0.2:
        not_exhaustive = [int(rng.choice(sorted(present)))]
    return {
        "date_captured": coco_entry["date_captured"],
        "neg_category_ids": neg,
        "id": coco_entry["id"],
        "license": 1,
        "height": coco_entry["height"],
        "width": coco_entry["width"],
        "flickr_url": "",
        "coco_url": coco_entry["coco_url"],
        "not_exhaustive_category_ids": not_exhaustive,
    }


def _lvis_categories(images: list[dict], anns: list[dict]) -> list[dict]:
    """LVIS category entries with image/instance counts from the train annotations."""
    instance_count: dict[int, int] = {}
    image_sets: dict[int, set[int]] = {}
    for ann in anns:
        instance_count[ann["category_id"]] = instance_count.get(ann["category_id"], 0) + 1
        image_sets.setdefault(ann["category_id"], set()).add(ann["image_id"])
    entries = [
        {"name": c.lvis_name, "instance_count": 0, "def": c.definition, "synonyms": list(c.synonyms),
         "image_count": 0, "id": c.lvis_id, "frequency": c.frequency, "synset": c.synset}
        for c in CATEGORIES
    ] + [
        {"name": c["name"], "instance_count": 0, "def": c["def"], "synonyms": c["synonyms"],
         "image_count": 0, "id": c["id"], "frequency": c["frequency"], "synset": c["synset"]}
        for c in ABSENT_LVIS_CATEGORIES
    ]  # fmt: skip
    for e in entries:
        e["instance_count"] = instance_count.get(e["id"], 0)
        e["image_count"] = len(image_sets.get(e["id"], ()))
    return sorted(entries, key=lambda e: e["id"])


def _segmentor_results(
    image_id: int, objects: list[_Object], rng: np.random.Generator, counts: dict[str, int]
) -> list[dict]:
    """A segmentor's detections on one image (COCO results entries, best score first)."""
    dets: list[tuple[float, int, np.ndarray]] = []
    H, W = objects[0].mask.shape if objects else (0, 0)
    for obj in objects:
        cat = obj.category
        if cat.coco_id is None:
            # Now and then an object of a category the segmentor does not know is taken for one.
            if rng.random() < 0.35:
                coarse = coarse_instance_mask(obj.mask, rng, noise=0.18)
                wrong = COCO_CATEGORIES[int(rng.integers(len(COCO_CATEGORIES)))]
                dets.append((float(rng.uniform(0.05, 0.4)), int(wrong.coco_id or 0), coarse))
                counts["segmentor_false_positives"] += 1
            continue
        if rng.random() < (0.3 if obj.area < 512 else 0.06):
            counts["segmentor_missed"] += 1
            continue
        coarse = coarse_instance_mask(obj.mask, rng)
        if not coarse.any():
            counts["segmentor_missed"] += 1
            continue
        quality = _iou(coarse, obj.mask)
        # Scores follow mask quality only loosely, as a real mask head's do.
        score = float(np.clip(0.3 + 0.65 * quality + rng.normal(0, 0.1), 0.05, 0.995))
        dets.append((score, int(cat.coco_id), coarse))
        if rng.random() < 0.1:  # a duplicate with a wrong label and a low score
            other = [c for c in COCO_CATEGORIES if c is not cat]
            wrong = other[int(rng.integers(len(other)))]
            dets.append((score * rng.uniform(0.1, 0.4), int(wrong.coco_id or 0), coarse))
            counts["segmentor_false_positives"] += 1
    if H and rng.random() < 0.4:  # background clutter taken for an object
        m = shapes.object_mask("blob", rng, int(rng.integers(20, max(21, min(H, W) // 4))))
        top, left = (
            int(rng.integers(0, H - m.shape[0] + 1)),
            int(rng.integers(0, W - m.shape[1] + 1)),
        )
        wrong = COCO_CATEGORIES[int(rng.integers(len(COCO_CATEGORIES)))]
        dets.append(
            (float(rng.uniform(0.05, 0.3)), int(wrong.coco_id or 0), _place(m, H, W, top, left))
        )
        counts["segmentor_false_positives"] += 1

    dets.sort(key=lambda d: -d[0])
    return [
        {
            "image_id": image_id,
            "category_id": category_id,
            "bbox": _bbox(coarse),
            "score": round(score, 5),
            "segmentation": rle.encode(coarse),
        }
        for score, category_id, coarse in dets
    ]


# --------------------------------------------------------------------------------------------
# BIG, DIS, ThinObject


def _generate_big(root: Path, seed: int, scale: DemoScale) -> int:
    for k in range(scale.big):
        rng = _rng(seed, _BIG, k)
        H, W = BIG_SIZES[k % len(BIG_SIZES)]
        kind = _kind(SEMANTIC_KINDS["big"], seed, k)
        image, gt = _semantic_scene(rng, H, W, kind)
        # BIG's coarse masks come from semantic segmentors run at low resolution.
        coarse = coarse_semantic_mask(gt, rng, stride=12, noise=0.12, blur=0.8, thicken=6)
        name = f"{kind}_{k + 1:03d}"
        _write_jpeg(root / "big" / "test" / f"{name}_im.jpg", image)
        io.write_mask(root / "big" / "test" / f"{name}_gt.png", gt)
        io.write_mask(root / "big" / "test" / f"{name}_seg.png", coarse)
    return scale.big


def _long_side_size(rng: np.random.Generator, long_side: int) -> tuple[int, int]:
    short = round(float(long_side * rng.choice([0.75, 0.667, 0.5625, 1.0])))
    return (long_side, short) if rng.random() < 0.35 else (short, long_side)


def _generate_dis(root: Path, seed: int, scale: DemoScale) -> dict[str, int]:
    counts = {}
    for split, n in (
        ("DIS-TR", scale.dis_tr),
        ("DIS-VD", scale.dis_vd),
        ("DIS-TE1", scale.dis_te1),
    ):
        for k in range(n):
            rng = _rng(seed, _DIS, _DIS_SPLITS[split] * 10_000 + k)
            H, W = _long_side_size(rng, scale.dis_long_side)
            kind = _kind(SEMANTIC_KINDS["dis"], seed, _DIS_SPLITS[split] * 7 + k)
            image, gt = _semantic_scene(rng, H, W, kind)
            # DIS-5K names look like "<group>#<Super>#<n>#<Class>#<photo id>".
            name = f"{DIS_GROUPS[kind]}#demo{_DIS_SPLITS[split]}{k + 1:04d}"
            _write_jpeg(root / "dis" / split / "im" / f"{name}.jpg", image)
            io.write_mask(root / "dis" / split / "gt" / f"{name}.png", gt)
            if split != "DIS-TR":
                coarse = coarse_semantic_mask(gt, rng, stride=6, blur=0.8, thicken=3)
                io.write_mask(root / "dis" / "coarse" / "isnet" / split / f"{name}.png", coarse)
        counts[f"dis_{split.split('-')[1].lower()}_images"] = n
    return counts


def _generate_thin(root: Path, seed: int, scale: DemoScale) -> dict[str, int]:
    lists: dict[str, list[str]] = {"train": [], "test": []}
    for k in range(scale.thin_train + scale.thin_test):
        rng = _rng(seed, _THIN, k)
        H, W = _long_side_size(rng, scale.thin_long_side)
        kind = _kind(SEMANTIC_KINDS["thin"], seed, k)
        image, gt = _semantic_scene(rng, H, W, kind)
        name = f"{kind}_{k + 1:04d}"
        _write_jpeg(root / "thin_object" / "images" / f"{name}.jpg", image)
        io.write_mask(root / "thin_object" / "masks" / f"{name}.png", gt)
        lists["train" if k < scale.thin_train else "test"].append(f"{name}.png")
    for split, names in lists.items():
        path = root / "thin_object" / "list" / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return {"thin_train_images": scale.thin_train, "thin_test_images": scale.thin_test}


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

"""The demo generator's building blocks: scales, categories, per-item generators, scenes
(synthetic objects on real photographs) and writers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from segrefiner import io, rle
from segrefiner.data.coarse_kinds import extent, lowres_like, maskrcnn_like
from segrefiner.data.demo import shapes

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

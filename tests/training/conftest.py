"""Tiny training data sets written to temporary folders in the real layouts.

LR: ``coco/train2017/*.jpg`` + ``lvis/annotations/lvis_v1_train.json`` (LVIS v1 format, polygon
annotations). HR: ``dis/DIS-TR/{im,gt,coarse,coarse_expand}`` and
``thin_object/{images,masks,coarse,coarse_expand,list/train.txt}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

IMAGE_SIZE = (96, 128)  # H, W of the LR images


def _photo(height: int, width: int, seed: int) -> np.ndarray:
    from skimage import data

    base = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    return np.roll(base, int(rng.integers(0, width)), axis=1).copy()


def _ellipse_polygon(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> list[float]:
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], 1)
    return [float(v) for v in pts.reshape(-1)]


def _polygon_mask(poly: list[float], height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    pts = np.asarray(poly).reshape(-1, 2).round().astype(np.int32)
    cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def write_lvis_root(root: Path, num_images: int = 6, seed: int = 0) -> Path:
    """LVIS-format training data: each image has one large object (painted on the photo) and
    one small annotation (area <= 512, never chosen)."""
    rng = np.random.default_rng(seed)
    height, width = IMAGE_SIZE
    (root / "coco" / "train2017").mkdir(parents=True, exist_ok=True)
    (root / "lvis" / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        image_id = 100 + i
        image = _photo(height, width, seed + i)
        cx, cy = rng.uniform(35, width - 35), rng.uniform(30, height - 30)
        rx, ry = rng.uniform(18, 30), rng.uniform(14, 25)
        poly = _ellipse_polygon(cx, cy, rx, ry)
        mask = _polygon_mask(poly, height, width)
        image[mask] = (image[mask] * 0.3 + np.array([220, 40, 40]) * 0.7).astype(np.uint8)
        name = f"{image_id:012d}.jpg"
        Image.fromarray(image).save(root / "coco" / "train2017" / name, quality=95)
        images.append(
            {
                "id": image_id,
                "coco_url": f"http://images.cocodataset.org/train2017/{name}",
                "height": height,
                "width": width,
                "not_exhaustive_category_ids": [],
                "neg_category_ids": [],
            }
        )
        ys, xs = np.nonzero(mask)
        box = [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]
        annotations.append(
            {
                "id": 1000 + 2 * i,
                "image_id": image_id,
                "category_id": 1,
                "segmentation": [poly],
                "area": float(mask.sum()),
                "bbox": box,
            }
        )
        small = _ellipse_polygon(8, 8, 5, 5, 12)
        annotations.append(
            {
                "id": 1001 + 2 * i,
                "image_id": image_id,
                "category_id": 2,
                "segmentation": [small],
                "area": float(_polygon_mask(small, height, width).sum()),
                "bbox": [3.0, 3.0, 10.0, 10.0],
            }
        )
    categories = [
        {"id": 1, "name": "blob", "synset": "blob.n.01", "frequency": "f"},
        {"id": 2, "name": "speck", "synset": "speck.n.01", "frequency": "r"},
    ]
    ann = {"images": images, "annotations": annotations, "categories": categories}
    (root / "lvis" / "annotations" / "lvis_v1_train.json").write_text(json.dumps(ann))
    return root


def _write_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path)


def write_hr_root(root: Path, seed: int = 0) -> Path:
    """Two DIS-TR and two ThinObject samples (320 x 288 / 200 x 240) with offline coarse masks
    in the official PNG layout; ``coarse`` is the GT dilated, ``coarse_expand`` eroded, so a
    test can tell which one a crop came from."""
    rng = np.random.default_rng(seed)
    kernel = np.ones((7, 7), np.uint8)
    samples = [
        ("dis/DIS-TR", "im", "gt", "Cat#1#Thing#a", (288, 320)),
        ("dis/DIS-TR", "im", "gt", "Cat#1#Thing#b", (288, 320)),
        ("thin_object", "images", "masks", "obj_1", (200, 240)),
        ("thin_object", "images", "masks", "obj_2", (200, 240)),
    ]
    thin_names = []
    for folder, im_dir, gt_dir, name, (height, width) in samples:
        base = root / folder
        image = _photo(height, width, seed + len(name))
        poly = _ellipse_polygon(
            rng.uniform(100, width - 100), rng.uniform(80, height - 80), 60, 45, 32
        )
        gt = _polygon_mask(poly, height, width)
        image[gt] = (image[gt] * 0.4 + 120).astype(np.uint8)
        (base / im_dir).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(base / im_dir / f"{name}.jpg", quality=95)
        _write_mask(base / gt_dir / f"{name}.png", gt)
        dilated = cv2.dilate(gt.astype(np.uint8), kernel) > 0
        eroded = cv2.erode(gt.astype(np.uint8), kernel) > 0
        _write_mask(base / "coarse" / f"{name}.png", dilated)
        _write_mask(base / "coarse_expand" / f"{name}.png", eroded)
        if folder == "thin_object":
            thin_names.append(f"{name}.png")
    (root / "thin_object" / "list").mkdir(parents=True, exist_ok=True)
    (root / "thin_object" / "list" / "train.txt").write_text("\n".join(thin_names) + "\n")
    return root


@pytest.fixture(scope="session")
def lvis_root(tmp_path_factory) -> Path:
    """Read-only LR training data (copy it before changing anything)."""
    return write_lvis_root(tmp_path_factory.mktemp("lvis_data"))


@pytest.fixture(scope="session")
def hr_root(tmp_path_factory) -> Path:
    """Read-only HR training data."""
    return write_hr_root(tmp_path_factory.mktemp("hr_data"))


def tiny_overrides(data_root: Path, run_dir: Path, **extra: object) -> list[str]:
    """Overrides for a fast CPU run: tiny network, 32 px crops, global batch 2, no workers."""
    values: dict[str, object] = {
        "data.root": str(data_root),
        "data.crop_size": 32,
        "data.batch_size": 2,
        "data.num_workers": 0,
        "model.preset": "tiny",
        "schedule.max_iters": 4,
        "schedule.milestones": "[2]",
        "checkpoint.dir": str(run_dir),
        "checkpoint.interval": 2,
        "checkpoint.export_official": "false",
        "log.interval": 1,
        "runtime.device": "cpu",
        "runtime.threads": 1,
        "inference.model_size": 32,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]

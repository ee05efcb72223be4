"""A small COCO-style instance set built from drawn shapes, with scored detections."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from segrefiner.rle import encode, to_rle

CATEGORIES = [
    {"id": 1, "name": "disc", "frequency": "f"},
    {"id": 3, "name": "box", "frequency": "c"},
    {"id": 7, "name": "blob", "frequency": "r"},
]


def _shape(rng: np.random.Generator, h: int, w: int, size: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cx, cy = int(rng.integers(size, w - size)), int(rng.integers(size, h - size))
    kind = int(rng.integers(0, 3))
    if kind == 0:
        cv2.circle(mask, (cx, cy), size, 1, -1)
    elif kind == 1:
        cv2.rectangle(mask, (cx - size, cy - size // 2), (cx + size, cy + size // 2), 1, -1)
    else:
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        radii = size * (0.6 + 0.4 * rng.random(12))
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [pts.round().astype(np.int32)], 1)
    return mask.astype(bool)


def _polygon(mask: np.ndarray) -> list[list[float]]:
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def make_toy_set(
    seed: int = 0,
    num_images: int = 6,
    size: tuple[int, int] = (120, 160),
    lvis_fields: bool = True,
    crowd: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(annotations, results)``: GT as polygons and RLE, detections as RLE with scores.

    Objects range from tiny (inside the boundary band) to large; detections are shifted,
    dilated or eroded copies of the GTs plus some false positives, all of GT categories.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    images, anns, results = [], [], []
    ann_id = 1
    for img_id in range(1, num_images + 1):
        images.append({"id": img_id * 10, "height": h, "width": w, "file_name": f"{img_id}.jpg"})
        present = []
        for k in range(int(rng.integers(2, 5))):
            cat = CATEGORIES[int(rng.integers(0, len(CATEGORIES)))]["id"]
            gt = _shape(rng, h, w, int(rng.choice([3, 6, 12, 25])))
            as_polygon = k % 2 == 0 and _polygon(gt)
            segm = as_polygon if as_polygon else encode(gt)
            is_crowd = int(crowd and k == 1)
            if is_crowd:
                segm = encode(gt)
            area = float(mask_utils.area(to_rle(segm, h, w)))
            x, y, bw, bh = cv2.boundingRect(gt.astype(np.uint8))
            anns.append(
                {
                    "id": ann_id,
                    "image_id": img_id * 10,
                    "category_id": cat,
                    "segmentation": segm,
                    "area": area,
                    "bbox": [float(x), float(y), float(bw), float(bh)],
                    "iscrowd": is_crowd,
                }
            )
            ann_id += 1
            present.append(cat)
            # 1-3 detections per GT: shifted / grown / shrunk copies
            for _ in range(int(rng.integers(1, 4))):
                det = gt.astype(np.uint8)
                op = int(rng.integers(0, 3))
                if op == 0:
                    det = np.roll(det, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), (0, 1))
                elif op == 1:
                    det = cv2.dilate(
                        det, np.ones((3, 3), np.uint8), iterations=int(rng.integers(1, 3))
                    )
                else:
                    det = cv2.erode(det, np.ones((3, 3), np.uint8), iterations=1)
                results.append(
                    {
                        "image_id": img_id * 10,
                        "category_id": cat,
                        "segmentation": encode(det.astype(bool)),
                        "score": round(float(rng.random()), 4),
                    }
                )
        # false positives of a category present in the image
        for _ in range(int(rng.integers(0, 3))):
            results.append(
                {
                    "image_id": img_id * 10,
                    "category_id": present[int(rng.integers(0, len(present)))],
                    "segmentation": encode(_shape(rng, h, w, int(rng.choice([4, 10])))),
                    "score": round(float(rng.random()) * 0.5, 4),
                }
            )
    if lvis_fields:
        for img in images:
            img["neg_category_ids"] = []
            img["not_exhaustive_category_ids"] = []
    dataset = {"images": images, "annotations": anns, "categories": [dict(c) for c in CATEGORIES]}
    return dataset, results

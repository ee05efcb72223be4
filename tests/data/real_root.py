"""A tiny data root in the layout ``segrefiner data real`` writes (no network needed)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segrefiner import rle

HEIGHT, WIDTH = 96, 128


def _photo(seed: int) -> np.ndarray:
    from skimage import data

    base = cv2.resize(data.coffee(), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    return np.roll(base, seed * 17, axis=1).copy()


def _ellipse(cx: int, cy: int, rx: int, ry: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.ellipse(mask, (cx, cy), (rx, ry), 0, 0, 360, 1, -1)
    return mask.astype(bool)


def write_real_root(root: Path, images_per_split: int = 2) -> Path:
    """``annotations/real_{eval,train}.json`` (two ellipse objects per image, painted on the
    photo), ``images/{eval,train}/``, one RGBA cut-out, one background and a ``REAL.json``."""
    categories = [{"id": 1, "name": "blob"}, {"id": 2, "name": "disc"}]
    ann_id = 1
    for split_index, split in enumerate(("eval", "train")):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(images_per_split):
            image_id = 1 + split_index * 100 + i
            image = _photo(image_id)
            masks = [_ellipse(40 + 3 * i, 45, 24, 18), _ellipse(95, 50 - 2 * i, 16, 20)]
            for m, colour in zip(masks, ((220, 40, 40), (40, 60, 220))):
                image[m] = (image[m] * 0.3 + np.array(colour) * 0.7).astype(np.uint8)
            name = f"{split}/p{image_id}.jpg"
            Image.fromarray(image).save(root / "images" / name, quality=95)
            images.append({"id": image_id, "file_name": name, "height": HEIGHT, "width": WIDTH})
            for category_id, m in zip((1, 2), masks):
                rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
                bbox = [
                    int(cols[0]),
                    int(rows[0]),
                    int(cols[-1] - cols[0] + 1),
                    int(rows[-1] - rows[0] + 1),
                ]
                annotations.append(
                    {"id": ann_id, "image_id": image_id, "category_id": category_id,
                     "segmentation": rle.encode(m), "area": int(m.sum()), "bbox": bbox,
                     "iscrowd": 0}
                )  # fmt: skip
                ann_id += 1
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        doc = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"real_{split}.json").write_text(json.dumps(doc))
    (root / "cutouts").mkdir(exist_ok=True)
    rgba = np.zeros((40, 30, 4), np.uint8)
    rgba[..., :3] = (30, 200, 90)
    cv2.ellipse(rgba, (15, 20), (12, 17), 0, 0, 360, (30, 200, 90, 255), -1)
    Image.fromarray(rgba, "RGBA").save(root / "cutouts" / "leaf.png")
    (root / "backgrounds").mkdir(exist_ok=True)
    Image.fromarray(_photo(5)[::-1].copy()).save(root / "backgrounds" / "bg.jpg", quality=95)
    (root / "REAL.json").write_text(json.dumps({"builder_version": 1, "fixture": True}))
    return root

"""The COCO / LVIS part of the demo: images, instances (train/val), LVIS annotations and a
segmentor's results on val."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segrefiner import rle
from segrefiner.data.demo import shapes
from segrefiner.data.demo.common import (
    _COCO,
    _FED,
    _IDS,
    _SEGMENTOR,
    ABSENT_LVIS_CATEGORIES,
    CATEGORIES,
    COCO_CATEGORIES,
    COCO_SIZES,
    COCO_URL,
    GENERATOR_VERSION,
    DemoScale,
    _bbox,
    _coco_scene,
    _iou,
    _Object,
    _place,
    _rng,
    _write_jpeg,
    coarse_instance_mask,
)

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

"""The high-resolution part of the demo: BIG, DIS-5K and ThinObject-5K stand-ins."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segrefiner import io
from segrefiner.data.demo.common import (
    _BIG,
    _DIS,
    _DIS_SPLITS,
    _THIN,
    BIG_SIZES,
    DIS_GROUPS,
    SEMANTIC_KINDS,
    DemoScale,
    _kind,
    _rng,
    _semantic_scene,
    _write_jpeg,
    coarse_semantic_mask,
)

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

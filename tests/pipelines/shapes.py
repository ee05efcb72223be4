"""Realistic binary shapes drawn with OpenCV, and tiny HR data sets on disk, for the tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def disc(size: int = 200) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.circle(m, (size // 2, size // 2), size // 3, 1, -1)
    return m.astype(bool)


def ring(size: int = 256) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.circle(m, (size // 2, size // 2), size // 3, 1, -1)
    cv2.circle(m, (size // 2, size // 2), size // 6, 0, -1)
    return m.astype(bool)


def thin_bars(size: int = 200) -> np.ndarray:
    """A frame of 3-5 px bars: the thin structures of ThinObject-5K."""
    m = np.zeros((size, size), np.uint8)
    cv2.line(m, (20, 30), (size - 20, 40), 1, 4)
    cv2.line(m, (30, 20), (40, size - 20), 1, 3)
    cv2.line(m, (20, size - 30), (size - 30, 25), 1, 5)
    return m.astype(bool)


def holes(size: int = 200) -> np.ndarray:
    """A blob with three holes of different sizes."""
    m = np.zeros((size, size), np.uint8)
    cv2.ellipse(m, (size // 2, size // 2), (size // 3, size // 4), 20, 0, 360, 1, -1)
    for (x, y), r in (((size // 2 - 25, size // 2), 12), ((size // 2 + 25, size // 2), 8)):
        cv2.circle(m, (x, y), r, 0, -1)
    cv2.circle(m, (size // 2, size // 2 + 25), 5, 0, -1)
    return m.astype(bool)


def concave(size: int = 200) -> np.ndarray:
    """A five-pointed star: deep concavities."""
    c = size / 2
    angles = np.arange(10) * np.pi / 5 - np.pi / 2
    radii = np.where(np.arange(10) % 2 == 0, size * 0.42, size * 0.17)
    pts = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], 1)
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    return m.astype(bool)


SHAPES = {"disc": disc, "ring": ring, "thin_bars": thin_bars, "holes": holes, "concave": concave}


def random_object(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A blob of ellipses with thin lines (legs, wires) and a few holes: ``h x w`` bool."""
    m = np.zeros((h, w), np.uint8)
    for _ in range(2):
        centre = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
        axes = (int(rng.integers(w // 10, w // 4)), int(rng.integers(h // 10, h // 4)))
        cv2.ellipse(m, centre, axes, float(rng.integers(180)), 0, 360, 1, -1)
    for _ in range(3):
        p1 = (int(rng.integers(w)), int(rng.integers(h)))
        p2 = (int(rng.integers(w)), int(rng.integers(h)))
        cv2.line(m, p1, p2, 1, int(rng.integers(2, 5)))
    for _ in range(2):
        cv2.circle(m, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(3, 10)), 0, -1)
    return m.astype(bool)


def save_image(path: Path, h: int, w: int, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=90)


def save_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def make_hr_root(root: Path, *, n_dis: int = 5, n_thin: int = 4, seed: int = 0) -> list[str]:
    """DIS-TR (``n_dis``) and ThinObject-5K train (``n_thin``) samples of 64-120 px; returns
    the ids of the good samples in sorted order."""
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n_dis):
        h, w = int(rng.integers(64, 120)), int(rng.integers(64, 120))
        name = f"{i}#Animal#{i}#cat_{i:03d}"  # DIS names contain '#'
        save_image(root / "dis/DIS-TR/im" / f"{name}.jpg", h, w, rng)
        save_mask(root / "dis/DIS-TR/gt" / f"{name}.png", random_object(h, w, rng))
        ids.append(f"dis/DIS-TR/{name}")
    lines = []
    for i in range(n_thin):
        h, w = int(rng.integers(64, 120)), int(rng.integers(64, 120))
        name = f"thin {i:02d}"  # a space in the name
        save_image(root / "thin_object/images" / f"{name}.jpg", h, w, rng)
        save_mask(root / "thin_object/masks" / f"{name}.png", random_object(h, w, rng))
        lines.append(f"{name}.png")
        ids.append(f"thin_object/train/{name}")
    (root / "thin_object/list").mkdir(parents=True, exist_ok=True)
    (root / "thin_object/list/train.txt").write_text("\n".join(lines) + "\n")
    return sorted(ids)

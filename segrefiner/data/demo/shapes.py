"""Synthetic objects with realistic boundaries, and their appearance on real photographs.

Used by the demo data set generator (:mod:`segrefiner.data.demo`). An object is a list of
drawing primitives in an abstract frame (roughly ``[-2, 2]^2``, y pointing down), rendered at any
size as a tight binary mask. The kinds are built to carry what makes refinement hard: thin parts
(bicycle spokes, chair legs, hanger wire, twigs), holes (wheels, handles, lattices) and
concavities (crescents, swept wings, florets).

Appearance: backgrounds and object textures are crops of the photographs that ship with
scikit-image (loaded offline); the object texture gets a brightness/contrast shift against the
local background so that the object's edges in the image follow the ground-truth boundary, and a
soft (about 1 px) anti-aliased edge.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# Sub-pixel precision of cv2 drawing calls (coordinates are multiplied by 2**_SHIFT).
_SHIFT = 4
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Fill:
    """A filled polygon; ``value=False`` cuts a hole into what was drawn before."""

    points: np.ndarray  # (N, 2) float x, y in the abstract frame
    value: bool = True


@dataclass(frozen=True)
class Stroke:
    """A polyline of width ``width`` (abstract units), clipped to ``[min_px, max_px]`` pixels."""

    points: np.ndarray  # (N, 2)
    width: float
    min_px: float = 1.0
    max_px: float = math.inf
    closed: bool = False
    value: bool = True


@dataclass(frozen=True)
class Disc:
    """A filled disc (``width=None``) or a ring of the given width."""

    center: tuple[float, float]
    radius: float
    width: float | None = None
    min_px: float = 1.0
    max_px: float = math.inf
    value: bool = True


Primitive = Fill | Stroke | Disc


# --------------------------------------------------------------------------------------------
# Geometry helpers


def _arc(
    cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 48
) -> np.ndarray:
    """Points on an elliptical arc from angle ``a0`` to ``a1`` (radians, y down)."""
    t = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def radial_profile(
    rng: np.random.Generator, n: int, roughness: float, harmonics: int
) -> np.ndarray:
    """A smooth random closed radial function ``r(theta)`` on ``n`` angles, values around 1.

    Sum of cosines whose amplitudes decay with the harmonic order, so low orders make lobes and
    concavities and high orders make bumpy edges.
    """
    theta = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, harmonics + 1):
        amp = rng.normal(0.0, roughness / k**1.1)
        r += amp * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.clip(r, 0.25, None)


def blob(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    roughness: float = 0.25,
    harmonics: int = 6,
    n: int = 160,
) -> np.ndarray:
    """Closed polygon of a random blob/star around ``(cx, cy)`` with radii about ``rx, ry``."""
    r = radial_profile(rng, n, roughness, harmonics)
    r = r / r.max()
    theta = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * r * np.cos(theta), cy + ry * r * np.sin(theta)], axis=1)


def _mirror(prims: list[Primitive]) -> list[Primitive]:
    out: list[Primitive] = []
    for p in prims:
        if isinstance(p, Disc):
            out.append(
                Disc((-p.center[0], p.center[1]), p.radius, p.width, p.min_px, p.max_px, p.value)
            )
        else:
            pts = p.points * np.array([-1.0, 1.0])
            out.append(
                Fill(pts, p.value)
                if isinstance(p, Fill)
                else Stroke(pts, p.width, p.min_px, p.max_px, p.closed, p.value)
            )
    return out


# --------------------------------------------------------------------------------------------
# Object kinds. Each builder returns (primitives, rotation range in degrees).


def _bicycle(rng: np.random.Generator) -> tuple[list[Primitive], float]:
    p: list[Primitive] = []
    rear, front = (-1.55, 0.0), (1.55, 0.0)
    tire = rng.uniform(0.07, 0.15)
    n_spokes = int(rng.choice([0, 8, 12, 16]))
    for c in (rear, front):
        p.append(Disc(c, 1.0, width=tire, min_px=1.5))
        for k in range(n_spokes):
            a = np.pi * k / max(n_spokes, 1) + rng.uniform(0, 0.05)
            d = np.array([np.cos(a), np.sin(a)]) * (1.0 - tire / 2)
            p.append(Stroke(np.array([np.add(c, d), np.subtract(c, d)]), 0.012, 1.0, 3.0))
        p.append(Disc(c, 0.09))
    bb, seat, head_t, head_b = (-0.15, 0.05), (-0.55, -1.35), (1.0, -1.25), (1.12, -0.85)
    frame = rng.uniform(0.05, 0.09)
    for a, b in [
        (rear, bb),
        (rear, seat),
        (bb, seat),
        (seat, head_t),
        (bb, head_b),
        (head_t, head_b),
        (head_b, front),
    ]:
        p.append(Stroke(np.array([a, b]), frame, 1.5))
    saddle_c = (-0.62, -1.6)
    p.append(Stroke(np.array([seat, saddle_c]), frame * 0.8, 1.5))
    p.append(Fill(np.array([[-0.95, -1.66], [-0.3, -1.7], [-0.35, -1.58], [-0.85, -1.54]])))
    stem = (0.9, -1.62)
    p.append(Stroke(np.array([head_t, stem, (0.62, -1.68)]), frame * 0.8, 1.5))
    p.append(Disc(bb, 0.2, width=0.06, min_px=1.0))
    crank = rng.uniform(0, 2 * np.pi)
    p.append(
        Stroke(np.array([bb, (bb[0] + 0.35 * np.cos(crank), bb[1] + 0.35 * np.sin(crank))]), 0.06)
    )
    return p, 8.0


def _chair(rng: np.random.Generator) -> tuple[list[Primitive], float]:
    p: list[Primitive] = []
    depth = rng.uniform(0.2, 0.35)
    fl, fr = (-1.0, 0.0), (0.8, 0.0)
    bl, br = (-0.7, -depth), (1.1, -depth)
    p.append(Fill(np.array([fl, fr, br, bl])))
    p.append(Fill(np.array([fl, fr, (0.8, 0.1), (-1.0, 0.1)])))  # seat edge
    leg = rng.uniform(0.05, 0.11)
    floor = rng.uniform(1.3, 1.7)
    for top, drop in [(fl, floor), (fr, floor), (bl, floor - depth), (br, floor - depth)]:
        splay = rng.uniform(-0.08, 0.08)
        p.append(Stroke(np.array([top, (top[0] + splay, drop)]), leg, 1.5))
    if rng.random() < 0.6:  # rungs between the front legs
        y = floor * rng.uniform(0.5, 0.7)
        p.append(Stroke(np.array([(-1.0, y), (0.8, y)]), leg * 0.7, 1.0))
    top_y = -rng.uniform(1.6, 2.1)
    p.append(Stroke(np.array([bl, (bl[0] - 0.1, top_y)]), leg, 1.5))
    p.append(Stroke(np.array([br, (br[0] - 0.1, top_y)]), leg, 1.5))
    if rng.random() < 0.5:  # slatted back: holes between slats
        for y in np.linspace(top_y + 0.1, -depth - 0.5, int(rng.integers(2, 5))):
            p.append(Stroke(np.array([(bl[0] - 0.1, y), (br[0] - 0.1, y)]), leg * 1.3, 1.0))
    else:  # solid back panel with a cut-out
        y0, y1 = top_y, top_y + rng.uniform(0.6, 0.9)
        p.append(Fill(np.array([(-0.82, y0), (1.02, y0), (1.02, y1), (-0.82, y1)])))
        if rng.random() < 0.6:
            p.append(Fill(blob(rng, 0.1, (y0 + y1) / 2, 0.45, 0.12, 0.1, 4), value=False))
    return p, 6.0


def _airplane(rng: np.random.Generator) -> tuple[list[Primitive], float]:
    p: list[Primitive] = []
    length, girth = 1.8, rng.uniform(0.13, 0.2)
    x = np.linspace(-length, length, 60)
    half = girth * np.sqrt(np.clip(1 - ((x + 0.3) / (length + 0.3)) ** 2, 0, 1)) ** 0.7
    p.append(Fill(np.concatenate([np.stack([x, half], 1), np.stack([x[::-1], -half[::-1]], 1)])))
    sweep, span, chord = rng.uniform(0.2, 0.7), rng.uniform(1.3, 1.8), rng.uniform(0.35, 0.6)
    for s in (1, -1):
        p.append(
            Fill(
                np.array(
                    [
                        (0.3, 0),
                        (0.3 - chord, 0),
                        (0.3 - chord - sweep, s * span),
                        (0.3 - sweep - 0.12, s * span),
                    ]
                )
            )
        )
        p.append(Fill(np.array([(-1.35, 0), (-1.6, 0), (-1.85, s * 0.6), (-1.72, s * 0.6)])))
        ex = 0.1 - sweep * 0.45
        p.append(Fill(blob(rng, ex, s * span * 0.45, 0.22, 0.07, 0.02, 3)))
    return p, 180.0


def _handbag(rng: np.random.Generator) -> tuple[list[Primitive], float]:
    p: list[Primitive] = []
    w, h = rng.uniform(0.9, 1.2), rng.uniform(0.6, 0.9)
    body = np.array([(-w * 0.8, -h), (w * 0.8, -h), (w, h), (-w, h)])
    p.append(Fill(body))
    p.append(Fill(blob(rng, 0, h * 0.95, w * 0.98, 0.12, 0.02, 3)))
    strap_h = rng.uniform(0.7, 1.3)
    p.append(Stroke(_arc(0, -h, w * 0.55, strap_h, np.pi, 2 * np.pi), rng.uniform(0.06, 0.12), 1.5))
    p.append(Disc((0.0, -h + 0.25), 0.08))
    return p, 15.0


def _banana(rng: np.random.Generator) -> tuple[list[Primitive], float]:
    bend = rng.uniform(0.2, 0.45)
    outer = _arc(0, 1.4, 2.0, 2.0, np.pi + 0.5, 2 * np.pi - 0.5)
    inner = _arc(0, 1.4 + bend, 1.85, 1.85 + bend * 0.3, 2 * np.pi - 0.55, np.pi + 0.55)
    p: list[Primitive] = [Fill(np.concatenate([outer, inner]))]
    tip = outer[-1]
    p.append(Stroke(np.array([tip, tip + np.array([0.25, -0.12])]), 0.08, 1.0))
    return p, 180.0


def _broccoli(rng: np.random.Generator) -> tuple[list[Primitive], float]:
    p: list[Primitive] = [Fill(np.array([(-0.28, -0.1), (0.28, -0.1), (0.2, 1.5), (-0.2, 1.5)]))]
    n = int(rng.integers(4, 8))
    for k in range(n):
        a = np.pi * (0.1 + 0.8 * k / max(n - 1, 1))
        cx, cy = (
            0.9 * np.cos(a) * rng.uniform(0.7, 1.1),
            -0.4 - 0.8 * np.sin(a) * rng.uniform(0.6, 1.0),
        )
        r = rng.uniform(0.35, 0.55)
        p.append(Stroke(np.array([(0.0, 0.2), (cx, cy)]), 0.12, 1.0))
        p.append(Fill(blob(rng, cx, cy, r, r, roughness=0.12, harmonics=14)))
    return p, 30.0


def _candy_cane(rng: np.random.Generator) -> tuple[list[Primitive], float]:
    r = rng.uniform(0.4, 0.6)
    hook = _arc(r, -0.8, r, r, np.pi, 2 * np.pi)
    pts = np.concatenate([[(0.0, 1.6)], hook, [(2 * r, -0.8 + rng.uniform(0.2, 0.5))]])
    return [Stroke(pts, rng.uniform(0.12, 0.2), 1.5)], 180.0


def _coat_hanger(rng: np.random.Generator) -> tuple[list[Primitive], float]:
    wire = rng.uniform(0.035, 0.06)
    hook = _arc(0.0, -1.2, 0.25, 0.25, 0.0, 1.4 * np.pi)
    p: list[Primitive] = [Stroke(np.concatenate([hook[::-1], [(0.25, -1.2), (0.0, -0.6)]]), wire)]
    sag = rng.uniform(0.0, 0.15)
    p.append(
        Stroke(
            np.array(
                [(0.0, -0.6), (1.8, 0.4), (1.7, 0.55), (0.0, 0.55 + sag), (-1.7, 0.55), (-1.8, 0.4)]
            ),
            wire,
            closed=True,
        )
    )
    return p, 10.0


def _bucket(rng: np.random.Generator) -> tuple[list[Primitive], float]:
    top, bottom = rng.uniform(0.8, 1.0), rng.uniform(0.55, 0.75)
    p: list[Primitive] = [
        Fill(np.array([(-top, -0.5), (top, -0.5), (bottom, 0.9), (-bottom, 0.9)]))
    ]
    p.append(Fill(blob(rng, 0, -0.5, top, 0.12, 0.0, 2)))
    p.append(
        Stroke(
            _arc(0, -0.45, top * 0.98, rng.uniform(0.8, 1.2), np.pi, 2 * np.pi),
            rng.uniform(0.025, 0.05),
        )
    )
    return p, 10.0


def _blob(rng: np.random.Generator) -> tuple[list[Primitive], float]:
    return [
        Fill(
            blob(
                rng,
                0,
                0,
                1.0,
                rng.uniform(0.6, 1.0),
                rng.uniform(0.15, 0.4),
                int(rng.integers(3, 9)),
            )
        )
    ], 180.0


def _ring(rng: np.random.Generator) -> tuple[list[Primitive], float]:
    inner = rng.uniform(0.35, 0.65)
    return [
        Fill(blob(rng, 0, 0, 1.0, 1.0, 0.08, 5)),
        Fill(blob(rng, rng.uniform(-0.1, 0.1), 0, inner, inner, 0.08, 4), value=False),
    ], 180.0


def _tree(rng: np.random.Generator) -> tuple[list[Primitive], float]:
    p: list[Primitive] = []

    def branch(x: float, y: float, angle: float, length: float, width: float, depth: int) -> None:
        x1, y1 = x + length * np.cos(angle), y + length * np.sin(angle)
        mid = (
            (x + x1) / 2 + rng.normal(0, 0.04 * length),
            (y + y1) / 2 + rng.normal(0, 0.04 * length),
        )
        p.append(Stroke(np.array([(x, y), mid, (x1, y1)]), width, 1.0))
        if depth == 0:
            return
        for _ in range(int(rng.integers(2, 4))):
            branch(
                x1,
                y1,
                angle + rng.normal(0, 0.55),
                length * rng.uniform(0.55, 0.8),
                width * 0.62,
                depth - 1,
            )

    branch(
        0.0,
        2.0,
        -np.pi / 2 + rng.normal(0, 0.1),
        1.3,
        rng.uniform(0.12, 0.2),
        int(rng.integers(4, 6)),
    )
    return p, 5.0


def _fence(rng: np.random.Generator) -> tuple[list[Primitive], float]:
    w, h = rng.uniform(1.5, 2.0), rng.uniform(0.9, 1.3)
    bar = rng.uniform(0.025, 0.05)
    p: list[Primitive] = [
        Stroke(np.array([(-w, -h), (w, -h), (w, h), (-w, h)]), bar * 2, closed=True)
    ]
    for x in np.linspace(-w, w, int(rng.integers(6, 14)))[1:-1]:
        p.append(Stroke(np.array([(x, -h), (x, h)]), bar, 1.0, 4.0))
    if rng.random() < 0.7:
        p.append(Stroke(np.array([(-w, h), (w, -h)]), bar * 1.5, 1.0))
    for x in np.linspace(-w, w, int(rng.integers(6, 14))):
        p.append(Fill(np.array([(x - bar * 2, -h), (x + bar * 2, -h), (x, -h - 0.18)])))
    return p, 4.0


BUILDERS: dict[str, Callable[[np.random.Generator], tuple[list[Primitive], float]]] = {
    "bicycle": _bicycle,
    "chair": _chair,
    "airplane": _airplane,
    "handbag": _handbag,
    "banana": _banana,
    "broccoli": _broccoli,
    "candy_cane": _candy_cane,
    "coat_hanger": _coat_hanger,
    "bucket": _bucket,
    "blob": _blob,
    "ring": _ring,
    "tree": _tree,
    "fence": _fence,
}
KINDS = tuple(BUILDERS)


# --------------------------------------------------------------------------------------------
# Rendering


def _bounds(prims: Sequence[Primitive]) -> tuple[float, float, float, float]:
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    for p in prims:
        if isinstance(p, Disc):
            ext = p.radius + (p.width or 0.0) / 2
            c = np.asarray(p.center)
            lo, hi = np.minimum(lo, c - ext), np.maximum(hi, c + ext)
        else:
            pad = p.width / 2 if isinstance(p, Stroke) else 0.0
            lo = np.minimum(lo, p.points.min(0) - pad)
            hi = np.maximum(hi, p.points.max(0) + pad)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def _px(width: float, scale: float, lo: float, hi: float) -> int:
    return max(1, round(min(max(width * scale, lo), hi)))


def render(prims: Sequence[Primitive], long_side: int, angle_deg: float = 0.0) -> np.ndarray:
    """Rasterise primitives so that their rotated extent spans ``long_side`` pixels.

    Returns a tight ``h x w`` ``bool`` mask (``max(h, w)`` is about ``long_side``).
    """
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    rotated: list[Primitive] = []
    for p in prims:
        if isinstance(p, Disc):
            rotated.append(
                Disc(
                    tuple(rot @ np.asarray(p.center)),
                    p.radius,
                    p.width,
                    p.min_px,
                    p.max_px,
                    p.value,
                )
            )
        elif isinstance(p, Fill):
            rotated.append(Fill(p.points @ rot.T, p.value))
        else:
            rotated.append(Stroke(p.points @ rot.T, p.width, p.min_px, p.max_px, p.closed, p.value))
    x0, y0, x1, y1 = _bounds(rotated)
    margin = 2
    scale = (long_side - 2 * margin) / max(x1 - x0, y1 - y0)
    w = round((x1 - x0) * scale) + 2 * margin + 4
    h = round((y1 - y0) * scale) + 2 * margin + 4
    canvas = np.zeros((h, w), np.uint8)

    def to_px(pts: np.ndarray) -> np.ndarray:
        xy = (pts - (x0, y0)) * scale + margin + 2
        return np.round(xy * _ONE).astype(np.int32)

    for p in rotated:
        v = 1 if p.value else 0
        if isinstance(p, Fill):
            cv2.fillPoly(canvas, [to_px(p.points)], v, cv2.LINE_8, _SHIFT)
        elif isinstance(p, Stroke):
            t = _px(p.width, scale, p.min_px, p.max_px)
            cv2.polylines(canvas, [to_px(p.points)], p.closed, v, t, cv2.LINE_8, _SHIFT)
        else:
            c = to_px(np.asarray([p.center]))[0]
            r = round(p.radius * scale * _ONE)
            t = -1 if p.width is None else _px(p.width, scale, p.min_px, p.max_px)
            cv2.circle(canvas, (int(c[0]), int(c[1])), r, v, t, cv2.LINE_8, _SHIFT)
    ys, xs = np.nonzero(canvas)
    if len(ys) == 0:
        return np.zeros((1, 1), bool)
    return canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(bool)


def object_mask(kind: str, rng: np.random.Generator, long_side: int) -> np.ndarray:
    """A random object of ``kind`` (one of :data:`KINDS`) as a tight ``h x w`` ``bool`` mask
    whose longer side is about ``long_side`` pixels (random rotation and mirroring included)."""
    prims, max_angle = BUILDERS[kind](rng)
    if rng.random() < 0.5:
        prims = _mirror(prims)
    return render(prims, long_side, rng.uniform(-max_angle, max_angle))


# --------------------------------------------------------------------------------------------
# Photographs and compositing

# scikit-image sample photographs that load without a download (checked with skimage 0.24-0.26).
COLOR_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "stereo_motorcycle",
    "colorwheel",
)
GRAY_PHOTOS = ("camera", "coins", "moon", "grass", "gravel", "brick", "clock", "cell", "page")
PHOTOS = COLOR_PHOTOS + GRAY_PHOTOS


@functools.cache
def photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as ``H x W x 3`` ``uint8`` RGB (read-only)."""
    from skimage import data as skdata

    img = getattr(skdata, name)()
    if isinstance(img, tuple):  # stereo pairs
        img = img[0]
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (
            (np.clip(img, 0, 1) * 255).astype(np.uint8)
            if img.dtype.kind == "f"
            else img.astype(np.uint8)
        )
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = np.ascontiguousarray(img[:, :, :3])
    img.setflags(write=False)
    return img


def photo_crop(rng: np.random.Generator, name: str, height: int, width: int) -> np.ndarray:
    """A random crop of a photograph with the aspect of ``height x width``, resized to it,
    randomly mirrored, with a mild colour cast. ``float32`` ``H x W x 3`` in ``[0, 255]``."""
    src = photo(name)
    sh, sw = src.shape[:2]
    aspect = width / height
    frac = rng.uniform(0.5, 1.0)
    ch = min(sh, max(8, round(min(sh, sw / aspect) * frac)))
    cw = min(sw, max(8, round(ch * aspect)))
    y0, x0 = int(rng.integers(0, sh - ch + 1)), int(rng.integers(0, sw - cw + 1))
    crop = src[y0 : y0 + ch, x0 : x0 + cw]
    interp = cv2.INTER_AREA if width < cw else cv2.INTER_LINEAR
    out = cv2.resize(crop, (width, height), interpolation=interp)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    # Tint grey photographs so that scenes are not colourless; colour ones get a mild cast.
    low, high = (0.75, 1.15) if name in GRAY_PHOTOS else (0.9, 1.1)
    out = out.astype(np.float32) * rng.uniform(low, high, size=3).astype(np.float32)
    return np.clip(out, 0, 255, out=out)


def background(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, str]:
    """A background: a random crop of a random photograph, ``float32`` ``H x W x 3`` in
    ``[0, 255]``, and the photograph's name. Upscaled backgrounds get a little sensor grain."""
    name = str(rng.choice(PHOTOS))
    img = photo_crop(rng, name, height, width)
    if max(height, width) > 1000:
        grain = rng.normal(0.0, 2.5, size=(height, width, 1)).astype(np.float32)
        img = np.clip(img + grain, 0, 255)
    return img, name


def paint_object(
    image: np.ndarray,
    mask: np.ndarray,
    top: int,
    left: int,
    rng: np.random.Generator,
    avoid: str = "",
) -> None:
    """Paint an object into ``image`` (``float32`` ``H x W x 3``, modified in place).

    ``mask`` (``h x w`` ``bool``) is the object's ground-truth region placed with its top-left
    corner at ``(top, left)`` (it may stick out of the image). The texture is a crop of a
    photograph other than ``avoid``, shifted in brightness away from the local background so
    that the visible edge is the mask boundary; the edge is softened over about one pixel so
    that ``alpha >= 0.5`` reproduces the mask on straight edges.
    """
    H, W = image.shape[:2]
    h, w = mask.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + h, H), min(left + w, W)
    if y1 <= y0 or x1 <= x0:
        return
    m = mask[y0 - top : y1 - top, x0 - left : x1 - left]
    if not m.any():
        return
    region = image[y0:y1, x0:x1]
    names = [n for n in PHOTOS if n != avoid]
    tex = photo_crop(rng, str(rng.choice(names)), y1 - y0, x1 - x0)
    lum_bg = float(region[m].mean()) if m.any() else 128.0
    shift = rng.uniform(45, 95)
    target = lum_bg - shift if lum_bg > 128 else lum_bg + shift
    target = float(np.clip(target, 25, 230))
    contrast = rng.uniform(0.45, 0.9)
    tex = (tex - tex[m].mean()) * contrast + target
    # A gentle shading gradient so objects do not look flat.
    yy, xx = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
    g = (
        1
        + rng.uniform(-0.2, 0.2) * (xx / max(x1 - x0, 1) - 0.5)
        + rng.uniform(-0.2, 0.2) * (yy / max(y1 - y0, 1) - 0.5)
    )
    tex = np.clip(tex * g[:, :, None], 0, 255)
    alpha = cv2.GaussianBlur(m.astype(np.float32), (5, 5), 0.55)
    # Keep the drawn region opaque: the blur only softens the outermost pixel ring.
    alpha = np.maximum(alpha, m * 0.75)[:, :, None]
    region[...] = alpha * tex + (1 - alpha) * region

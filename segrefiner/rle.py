"""COCO run-length encoding (RLE) of binary masks, with validation.

The one place where masks are encoded and decoded for COCO-format results and annotations.
Encoded RLE follows pycocotools: ``{"size": [H, W], "counts": str}`` (compressed counts as an
ASCII string, column-major). Uncompressed RLE (``counts`` a list of ints) and polygons are
accepted on decode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from segrefiner.errors import InputError


def encode(mask: np.ndarray) -> dict[str, Any]:
    """Encode an ``H x W`` binary mask as compressed RLE with ``counts`` as ``str``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"a mask to encode must be 2-D (H x W), got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": rle["counts"].decode("ascii"),
    }


def encode_many(masks: np.ndarray) -> list[dict[str, Any]]:
    """Encode an ``N x H x W`` stack of binary masks (one pycocotools call)."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise InputError(f"masks to encode must be N x H x W, got shape {masks.shape}")
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(
        np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8, copy=False))
    )
    return [
        {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
        for r in rles
    ]


def to_rle(
    segmentation: Any, height: int, width: int, item: str = "segmentation"
) -> dict[str, Any]:
    """Normalise a COCO ``segmentation`` (compressed/uncompressed RLE or polygons) to compressed
    RLE of size ``(height, width)``, as pycocotools wants it (``counts`` as bytes).

    ``item`` names the entry in error messages (e.g. ``"results.json[12]"``).
    """
    if isinstance(segmentation, dict):
        size = segmentation.get("size")
        counts = segmentation.get("counts")
        if not (isinstance(size, list | tuple) and len(size) == 2 and counts is not None):
            raise InputError(f"{item}: malformed RLE (needs 'size' [H, W] and 'counts')")
        if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in size):
            raise InputError(f"{item}: malformed RLE ('size' must be two integers)")
        if [int(size[0]), int(size[1])] != [int(height), int(width)]:
            raise InputError(
                f"{item}: RLE size {size[0]}x{size[1]} (HxW) differs from the image size "
                f"{height}x{width}"
            )
        if isinstance(counts, list):
            if not all(isinstance(c, int | np.integer) and c >= 0 for c in counts):
                raise InputError(
                    f"{item}: malformed RLE (uncompressed counts must be non-negative ints)"
                )
            if sum(counts) != int(height) * int(width):
                raise InputError(
                    f"{item}: malformed RLE (counts sum to {sum(counts)}, expected {height * width})"
                )
            return mask_utils.frPyObjects(segmentation, int(height), int(width))
        if isinstance(counts, str):
            try:
                counts = counts.encode("ascii", errors="strict")
            except UnicodeEncodeError:
                raise InputError(f"{item}: malformed RLE (counts are not ASCII)") from None
        if not isinstance(counts, bytes):
            raise InputError(f"{item}: malformed RLE ('counts' must be a string or a list)")
        rle = {"size": [int(height), int(width)], "counts": counts}
        _check_compressed(rle, item)
        return rle
    if isinstance(segmentation, list):
        polys = [p for p in segmentation if isinstance(p, list | tuple)]
        if len(polys) != len(segmentation) or not polys:
            raise InputError(
                f"{item}: malformed polygons (expected a non-empty list of coordinate lists)"
            )
        for p in polys:
            if len(p) < 6 or len(p) % 2 or not all(_finite_number(v) for v in p):
                raise InputError(f"{item}: malformed polygon (needs >= 3 finite x,y pairs)")
        return mask_utils.merge(
            mask_utils.frPyObjects([list(map(float, p)) for p in polys], int(height), int(width))
        )
    raise InputError(f"{item}: unsupported segmentation type {type(segmentation).__name__}")


def _finite_number(value: Any) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and bool(np.isfinite(value))
    )


def _check_compressed(rle: dict[str, Any], item: str) -> None:
    # pycocotools decodes garbage counts without complaint; re-derive the pixel total instead.
    h, w = rle["size"]
    try:
        counts = rle_runs(rle["counts"])
    except InputError as exc:
        raise InputError(f"{item}: {exc}") from None
    if (counts < 0).any():
        raise InputError(f"{item}: malformed RLE counts (negative run)")
    if int(counts.sum()) != h * w:
        raise InputError(
            f"{item}: malformed RLE (runs cover {int(counts.sum())} pixels, expected {h * w})"
        )


def rle_runs(counts: bytes | str) -> np.ndarray:
    """Run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``), as int64.

    Vectorised: each value is a little-endian group of 5-bit chunks (``char - 48``), 0x20 marks
    "more chunks follow", 0x10 in the last chunk is the sign; from the fourth value on, each is
    a delta to the value two places earlier.
    """
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    chunks = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if chunks.size == 0:
        return np.zeros(0, dtype=np.int64)
    if chunks.min() < 0 or chunks.max() > 63:
        raise InputError("malformed RLE counts (bad character)")
    last = (chunks & 0x20) == 0
    if not last[-1]:
        raise InputError("malformed RLE counts (truncated)")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 7:  # 35 bits: more than any 32-bit count needs
        raise InputError("malformed RLE counts (value too long)")
    position = np.arange(chunks.size) - np.repeat(starts, lengths)
    values = np.add.reduceat((chunks & 0x1F) << (5 * position), starts)
    negative = (chunks[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * lengths[negative])
    # Undo the delta coding: values 3, 5, 7, ... accumulate on value 1; 4, 6, ... on value 2.
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    return runs


def decode(segmentation: Any, height: int, width: int, item: str = "segmentation") -> np.ndarray:
    """Decode a COCO segmentation to an ``H x W`` ``bool`` mask (validated, see :func:`to_rle`)."""
    return mask_utils.decode(to_rle(segmentation, height, width, item)).astype(bool)


def area(segmentation: Any, height: int, width: int, item: str = "segmentation") -> int:
    """Pixel count of a COCO segmentation without decoding it."""
    return int(mask_utils.area(to_rle(segmentation, height, width, item)))

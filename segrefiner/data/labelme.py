"""labelme annotation files (``*.json``) read and rasterised into instance masks.

A labelme file holds ``imageHeight``, ``imageWidth``, ``imagePath`` (relative to the JSON),
``imageData`` (the image's bytes in base64, or null) and ``shapes``: ``label``, ``points``
(``[[x, y], ...]`` in pixels), optional ``group_id`` and ``shape_type`` (absent means polygon;
only polygons are supported).

Instances (what labelme's own ``labelme2coco`` example does):

- shapes sharing ``(label, group_id)`` with ``group_id`` not null are ONE instance made of several
  polygons; every other shape is an instance of its own;
- labels in ``not_instances`` (default :data:`NON_INSTANCE_LABELS`: ``_background_``,
  ``__ignore__``, ``_container_``, ``shelf``) are painted but are not instances;
- paint order: a shape drawn later covers earlier ones, so an instance's mask is its polygons
  minus the union of every shape drawn after them (ignore regions and containers included).
  An instance whose mask ends up empty is dropped (and counted).

Rasterisation convention: pixel ``(x, y)`` is the unit square centred on integer ``(x, y)``;
vertices are rounded to the nearest integer (``numpy.rint``) and the polygon is filled with
``cv2.fillPoly`` (8-connected edges, boundary pixels included) on the ``H x W`` image grid;
vertices outside the image are clipped by the fill.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from segrefiner.errors import InputError

NON_INSTANCE_LABELS: frozenset[str] = frozenset(
    {"_background_", "__ignore__", "_container_", "shelf"}
)


@dataclass(frozen=True)
class LabelmeShape:
    """One polygon: ``points`` is ``N x 2`` ``float64`` ``(x, y)`` pixels, ``N >= 3``."""

    label: str
    group_id: int | None
    points: np.ndarray = field(repr=False, compare=False)


@dataclass(frozen=True)
class LabelmeDocument:
    """A checked labelme file. ``image_data`` is the decoded ``imageData`` bytes (or None)."""

    source: str
    height: int
    width: int
    image_path: str | None
    image_data: bytes | None = field(repr=False)
    shapes: tuple[LabelmeShape, ...]


@dataclass(frozen=True)
class LabelmeInstance:
    """One instance: its label, ``group_id``, the indices of its shapes in drawing order and its
    final (paint-order) mask, ``H x W`` ``bool``."""

    label: str
    group_id: int | None
    shape_indices: tuple[int, ...]
    mask: np.ndarray = field(repr=False, compare=False)


def parse_labelme(data: bytes | str | dict[str, Any], source: str) -> LabelmeDocument:
    """Check a labelme file (bytes/str of JSON, or the parsed dict); ``source`` names it in
    errors. Refused: bad JSON, missing or mistyped fields, non-polygon shapes, polygons with
    fewer than 3 points or non-finite coordinates, ``imageData`` that is not base64."""
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{source}: malformed JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: a labelme file must be a JSON object")
    height, width = data.get("imageHeight"), data.get("imageWidth")
    for name, value in (("imageHeight", height), ("imageWidth", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{source}: {name} must be a positive integer, got {value!r}")
    image_path = data.get("imagePath")
    if image_path is not None and not isinstance(image_path, str):
        raise InputError(f"{source}: imagePath must be a string, got {image_path!r}")
    image_data = data.get("imageData")
    if image_data is not None:
        if not isinstance(image_data, str):
            raise InputError(f"{source}: imageData must be base64 text or null")
        try:
            image_data = base64.b64decode(image_data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"{source}: imageData is not valid base64 ({exc})") from None
    shapes = data.get("shapes")
    if not isinstance(shapes, list):
        raise InputError(f"{source}: 'shapes' must be a list")
    parsed = tuple(_shape(s, f"{source}: shapes[{i}]") for i, s in enumerate(shapes))
    return LabelmeDocument(source, height, width, image_path, image_data, parsed)


def _shape(entry: Any, where: str) -> LabelmeShape:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: a shape must be a JSON object")
    label = entry.get("label")
    if not isinstance(label, str) or not label:
        raise InputError(f"{where}: label must be a non-empty string, got {label!r}")
    shape_type = entry.get("shape_type")
    if shape_type not in (None, "polygon"):
        raise InputError(f"{where}: shape_type {shape_type!r} is not supported (polygon only)")
    group_id = entry.get("group_id")
    if group_id is not None and (isinstance(group_id, bool) or not isinstance(group_id, int)):
        raise InputError(f"{where}: group_id must be an integer or null, got {group_id!r}")
    points = entry.get("points")
    if not isinstance(points, list) or len(points) < 3:
        raise InputError(f"{where}: a polygon needs a list of >= 3 [x, y] points")
    for p in points:
        if not (
            isinstance(p, list)
            and len(p) == 2
            and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in p
            )
        ):
            raise InputError(f"{where}: point {p!r} is not [x, y] with finite numbers")
    return LabelmeShape(label, group_id, np.asarray(points, dtype=np.float64))


def paint_order_map(doc: LabelmeDocument) -> np.ndarray:
    """``H x W`` ``int32``: at each pixel, 1 + the index of the last shape drawn over it (0 where
    none), i.e. what labelme's painter shows."""
    canvas = np.zeros((doc.height, doc.width), np.int32)
    for index, shape in enumerate(doc.shapes):
        pts = np.rint(shape.points).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(canvas, [pts], index + 1)
    return canvas


def rasterise_instances(
    doc: LabelmeDocument, not_instances: frozenset[str] = NON_INSTANCE_LABELS
) -> tuple[list[LabelmeInstance], int]:
    """The instances of a labelme file with their paint-order masks (see the module docstring),
    ordered by their first shape; returns ``(instances, number dropped because empty)``."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, shape in enumerate(doc.shapes):
        if shape.label in not_instances:
            continue
        key = (
            ("group", shape.label, shape.group_id)
            if shape.group_id is not None
            else ("shape", index)
        )
        groups.setdefault(key, []).append(index)
    canvas = paint_order_map(doc)
    instances: list[LabelmeInstance] = []
    dropped = 0
    for indices in groups.values():
        mask = np.isin(canvas, np.asarray(indices, np.int32) + 1)
        if not mask.any():
            dropped += 1
            continue
        first = doc.shapes[indices[0]]
        instances.append(LabelmeInstance(first.label, first.group_id, tuple(indices), mask))
    return instances, dropped

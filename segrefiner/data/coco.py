"""COCO-format instance annotations (``instances_*.json``) and segmentor results, checked on read.

The file is read into small frozen records (:class:`ImageInfo`, :class:`Category`,
:class:`Annotation`) held by an :class:`InstanceSet`; pixels are read only when asked
(:meth:`InstanceSet.read_image`, :meth:`InstanceSet.annotation_mask`). Errors are
:class:`~segrefiner.errors.InputError` naming the file, the entry and the problem.

Conventions: ``bbox`` is COCO ``[x, y, w, h]`` (XYWH, pixels, float); masks are ``H x W`` ``bool``;
images are ``H x W x 3`` ``uint8`` RGB. Image file names are relative to an image root
(``data/coco/val2017`` for ``instances_val2017.json``; ``data/coco`` for LVIS, whose names carry
the split folder, see :func:`file_name_from_coco_url`).

Segmentor results (the input of ``refine-coco``) are a COCO results list checked against an
annotation file's images and categories (:func:`load_segmentor_results`), grouped by image in
first-appearance order (as the official ``CocoRefine``), each detection keeping its index in the
file so that outputs can be written back in the same order. ``strict=False`` sets bad entries
aside with their reasons instead of raising, for batch runs that must report them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segrefiner import io, rle
from segrefiner.errors import InputError

COCO_URL_PREFIXES = ("http://images.cocodataset.org/", "https://images.cocodataset.org/")

# The 80 (non-contiguous) COCO category ids.
COCO_CATEGORY_IDS: tuple[int, ...] = (
    *range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70,
    *range(72, 83), *range(84, 91),
)  # fmt: skip


@dataclass(frozen=True)
class ImageInfo:
    """One image entry: ``file_name`` is relative to the image root; size in pixels."""

    id: int
    file_name: str
    height: int
    width: int


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    supercategory: str = ""


@dataclass(frozen=True)
class Annotation:
    """One instance. ``segmentation`` is kept as in the file (polygons or RLE) until decoded;
    ``bbox`` is XYWH in pixels; ``area`` is the file's value (pixels)."""

    id: int
    image_id: int
    category_id: int
    area: float
    bbox: tuple[float, float, float, float]
    iscrowd: bool = False
    segmentation: Any = field(default=None, repr=False, compare=False)


def file_name_from_coco_url(url: str, where: str = "coco_url") -> str:
    """``http://images.cocodataset.org/train2017/000000391895.jpg`` -> ``train2017/000000391895.jpg``
    (what the official LVIS loader does; the result is relative to the COCO root)."""
    for prefix in COCO_URL_PREFIXES:
        if url.startswith(prefix) and len(url) > len(prefix):
            return url[len(prefix) :]
    raise InputError(f"{where}: coco_url {url!r} does not start with {COCO_URL_PREFIXES[0]}")


# --------------------------------------------------------------------------------------------
# Field checks shared by the COCO, LVIS and results readers


def check_id(value: Any, where: str, name: str = "id") -> int:
    """An integer id (``bool`` and floats refused: JSON ``1.0`` is not a COCO id)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: {name} must be an integer, got {value!r}")
    return value


def check_number(value: Any, where: str, name: str) -> float:
    """A finite number (JSON ``NaN``/``Infinity`` are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{where}: {name} must be a finite number, got {value!r}")
    return float(value)


def check_bbox(value: Any, where: str) -> tuple[float, float, float, float]:
    """A COCO box ``[x, y, w, h]`` of finite numbers with ``w, h >= 0``."""
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise InputError(f"{where}: bbox must be [x, y, w, h], got {value!r}")
    x, y, w, h = (check_number(v, where, "bbox value") for v in value)
    if w < 0 or h < 0:
        raise InputError(f"{where}: bbox [x, y, w, h] has a negative size: {list(value)!r}")
    return x, y, w, h


def check_segmentation_shape(value: Any, where: str) -> None:
    """Cheap structural check (full validation happens on decode, see :mod:`segrefiner.rle`)."""
    if isinstance(value, dict):
        if "counts" not in value or "size" not in value:
            raise InputError(f"{where}: malformed RLE segmentation (needs 'size' and 'counts')")
    elif isinstance(value, list):
        if not value or not all(isinstance(p, list) for p in value):
            raise InputError(
                f"{where}: malformed polygon segmentation (a list of coordinate lists)"
            )
    else:
        raise InputError(
            f"{where}: segmentation must be polygons or RLE, got {type(value).__name__}"
        )


def to_rle(segmentation: Any, height: int, width: int, where: str) -> dict[str, Any]:
    """:func:`segrefiner.rle.to_rle`, with every malformed input reported as :class:`InputError`
    naming ``where`` (a string where a number belongs would otherwise escape as TypeError)."""
    return _named(rle.to_rle, segmentation, height, width, where)


def decode(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """:func:`segrefiner.rle.decode` (``H x W`` ``bool``) with errors as in :func:`to_rle`."""
    return _named(rle.decode, segmentation, height, width, where)


def _named(fn: Callable[..., Any], segmentation: Any, height: int, width: int, where: str) -> Any:
    try:
        return fn(segmentation, height, width, where)
    except InputError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"{where}: malformed segmentation ({exc})") from None


def _list_of_dicts(data: Mapping[str, Any], key: str, source: str, required: bool = True) -> list:
    value = data.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InputError(f"{source}: '{key}' must be a list of objects")
    return value


# --------------------------------------------------------------------------------------------


class InstanceSet:
    """A checked instance-segmentation annotation file (COCO or LVIS).

    ``images`` and ``categories`` keep file order; ``annotations`` keep file order too.
    """

    def __init__(
        self,
        images: Mapping[int, ImageInfo],
        categories: Mapping[int, Category],
        annotations: list[Annotation],
        *,
        source: str = "<memory>",
        image_root: str | os.PathLike | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self.images: dict[int, ImageInfo] = dict(images)
        self.categories: dict[int, Category] = dict(categories)
        self.annotations: list[Annotation] = list(annotations)
        self.source = source
        self.image_root = Path(image_root) if image_root is not None else None
        self.info: dict[str, Any] = dict(info or {})
        self._by_image: dict[int, list[Annotation]] = {i: [] for i in self.images}
        for ann in self.annotations:
            self._by_image[ann.image_id].append(ann)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return (
            f"InstanceSet({self.source!r}, images={len(self.images)}, "
            f"categories={len(self.categories)}, annotations={len(self.annotations)})"
        )

    def annotations_of(self, image_id: int) -> list[Annotation]:
        """The annotations of one image, in file order."""
        return list(self._by_image[self._image(image_id).id])

    def image_path(self, image_id: int) -> Path:
        """Absolute path of an image file; names that leave the image root are refused."""
        info = self._image(image_id)
        if self.image_root is None:
            raise InputError(f"{self.source}: no image root given, cannot locate {info.file_name}")
        return io.resolve_under(self.image_root, info.file_name)

    def read_image(self, image_id: int) -> np.ndarray:
        """Read an image as ``H x W x 3`` ``uint8`` RGB; its size must match the entry."""
        info = self._image(image_id)
        path = self.image_path(image_id)
        image = io.read_image(path)
        if image.shape[:2] != (info.height, info.width):
            raise InputError(
                f"{path}: image is {image.shape[1]}x{image.shape[0]} (WxH) but {self.source} "
                f"says {info.width}x{info.height} for image id {info.id}"
            )
        return image

    def missing_images(self, image_ids: list[int] | None = None) -> list[tuple[int, str]]:
        """``(image_id, reason)`` for images whose file is absent or outside the root
        (existence only; unreadable files surface in :meth:`read_image`)."""
        missing = []
        for image_id in self.images if image_ids is None else image_ids:
            try:
                path = self.image_path(image_id)
            except InputError as exc:
                missing.append((image_id, str(exc)))
                continue
            if not path.is_file():
                missing.append((image_id, f"{path}: image file not found"))
        return missing

    def annotation_mask(self, ann: Annotation) -> np.ndarray:
        """Decode an annotation to an ``H x W`` ``bool`` mask at its image's size."""
        info = self._image(ann.image_id)
        where = f"{self.source}: annotation id {ann.id}"
        return decode(ann.segmentation, info.height, info.width, where)

    def _image(self, image_id: int) -> ImageInfo:
        try:
            return self.images[image_id]
        except KeyError:
            raise InputError(f"{self.source}: unknown image id {image_id!r}") from None


def _by_id(
    data: dict, key: str, what: str, parse: Callable[[dict, str], Any], source: str
) -> dict[int, Any]:
    """The parsed entries of ``data[key]`` by their ``id``; a repeated id is refused."""
    out: dict[int, Any] = {}
    for i, entry in enumerate(_list_of_dicts(data, key, source)):
        item = parse(entry, f"{source}: {key}[{i}]")
        if item.id in out:
            raise InputError(f"{source}: {key}[{i}]: duplicate {what} id {item.id}")
        out[item.id] = item
    return out


def parse_instances(
    data: Any,
    *,
    source: str = "<memory>",
    image_root: str | os.PathLike | None = None,
    parse_image: Callable[[dict, str], ImageInfo] | None = None,
    parse_category: Callable[[dict, str], Category] | None = None,
) -> InstanceSet:
    """Check a parsed COCO-style annotation dict and build an :class:`InstanceSet`.

    ``parse_image``/``parse_category`` let the LVIS reader add its own fields. Refused:
    missing or mistyped fields, duplicate image/category/annotation ids, annotations of unknown
    images or categories, non-finite or negative boxes/areas, malformed segmentations.
    """
    if not isinstance(data, dict):
        raise InputError(
            f"{source}: an annotation file must be a JSON object, got {type(data).__name__}"
        )
    parse_image = parse_image or _coco_image
    parse_category = parse_category or _coco_category

    images: dict[int, ImageInfo] = _by_id(data, "images", "image", parse_image, source)
    categories: dict[int, Category] = _by_id(data, "categories", "category", parse_category, source)

    annotations: list[Annotation] = []
    seen: set[int] = set()
    for i, entry in enumerate(_list_of_dicts(data, "annotations", source, required=False)):
        ann = _annotation(entry, f"{source}: annotations[{i}]")
        where = f"{source}: annotations[{i}] (id {ann.id})"
        if ann.id in seen:
            raise InputError(f"{where}: duplicate annotation id {ann.id}")
        if ann.image_id not in images:
            raise InputError(f"{where}: unknown image_id {ann.image_id}")
        if ann.category_id not in categories:
            raise InputError(f"{where}: unknown category_id {ann.category_id}")
        seen.add(ann.id)
        annotations.append(ann)

    info = data.get("info") if isinstance(data.get("info"), dict) else None
    return InstanceSet(
        images, categories, annotations, source=source, image_root=image_root, info=info
    )


def load_coco_instances(
    path: str | os.PathLike, image_root: str | os.PathLike | None = None
) -> InstanceSet:
    """Read and check a COCO instances JSON (e.g. ``instances_val2017.json``).

    ``image_root`` is the folder the ``file_name`` entries are relative to
    (``data/coco/val2017``). Images with a ``coco_url`` but no ``file_name`` (LVIS style) get
    the name derived from the URL.
    """
    return parse_instances(io.read_json(path), source=str(path), image_root=image_root)


def _coco_image(entry: dict, where: str) -> ImageInfo:
    image_id = check_id(entry.get("id"), where)
    file_name = entry.get("file_name")
    if file_name is None and isinstance(entry.get("coco_url"), str):
        file_name = file_name_from_coco_url(entry["coco_url"], where)
    if not isinstance(file_name, str) or not file_name:
        raise InputError(f"{where}: image id {image_id} has no file_name")
    height, width = entry.get("height"), entry.get("width")
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(
                f"{where}: image id {image_id}: {name} must be a positive integer, got {value!r}"
            )
    return ImageInfo(image_id, file_name, height, width)


def _coco_category(entry: dict, where: str) -> Category:
    cat_id = check_id(entry.get("id"), where)
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: category id {cat_id} has no name")
    supercategory = entry.get("supercategory", "")
    return Category(cat_id, name, supercategory if isinstance(supercategory, str) else "")


def _annotation(entry: dict, where: str) -> Annotation:
    ann_id = check_id(entry.get("id"), where)
    where = f"{where} (id {ann_id})"
    image_id = check_id(entry.get("image_id"), where, "image_id")
    category_id = check_id(entry.get("category_id"), where, "category_id")
    if "segmentation" not in entry:
        raise InputError(f"{where}: no segmentation")
    check_segmentation_shape(entry["segmentation"], where)
    area = check_number(entry.get("area"), where, "area")
    if area < 0:
        raise InputError(f"{where}: negative area {area}")
    bbox = check_bbox(entry.get("bbox"), where)
    iscrowd = entry.get("iscrowd", 0)
    if iscrowd not in (0, 1):
        raise InputError(f"{where}: iscrowd must be 0 or 1, got {iscrowd!r}")
    return Annotation(
        ann_id, image_id, category_id, area, bbox, bool(iscrowd), entry["segmentation"]
    )


# --------------------------------------------------------------------------------------------
# Segmentor results (COCO results format)


@dataclass(frozen=True)
class Detection:
    """One entry of a results file.

    ``index`` is its 0-based position in the file; ``bbox`` is XYWH in pixels as the file has
    it; ``score`` is in ``[0, 1]``; ``segmentation`` is compressed RLE
    ``{"size": [H, W], "counts": str}`` of the image's size (polygons and uncompressed RLE in the
    file are converted).
    """

    index: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    score: float
    segmentation: dict[str, Any] = field(repr=False, compare=False)

    def mask(self) -> np.ndarray:
        """The coarse mask as ``H x W`` ``bool``."""
        h, w = self.segmentation["size"]
        return rle.decode(self.segmentation, h, w, f"detection {self.index}")

    @property
    def area(self) -> int:
        """Mask area in pixels (no decoding)."""
        h, w = self.segmentation["size"]
        return rle.area(self.segmentation, h, w, f"detection {self.index}")


@dataclass(frozen=True)
class ImageDetections:
    """The detections of one image, in file order."""

    image: ImageInfo
    detections: tuple[Detection, ...]


@dataclass(frozen=True)
class RejectedEntry:
    """A results entry set aside in lenient mode: its index, image id (if readable) and why."""

    index: int
    image_id: Any
    reason: str


@dataclass(frozen=True)
class SegmentorResults:
    """A checked results file grouped by image (first-appearance order)."""

    source: str
    annotations: InstanceSet
    groups: tuple[ImageDetections, ...]
    rejected: tuple[RejectedEntry, ...]
    num_entries: int

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self) -> Iterator[ImageDetections]:
        return iter(self.groups)

    @property
    def num_detections(self) -> int:
        return sum(len(g.detections) for g in self.groups)

    def read_image(self, image_id: int) -> np.ndarray:
        """Pixels of one image (``H x W x 3`` ``uint8`` RGB) from the annotation's image root."""
        return self.annotations.read_image(image_id)


def parse_segmentor_results(
    entries: Any,
    annotations: InstanceSet,
    *,
    source: str = "<memory>",
    strict: bool = True,
    category_ids: Collection[int] | None = None,
) -> SegmentorResults:
    """Check a parsed COCO results list against ``annotations`` and group it by image.

    Each entry needs ``image_id`` (known image), ``category_id`` (one of ``category_ids``,
    by default the annotation file's categories; pass :data:`COCO_CATEGORY_IDS` when the image
    list is the cocofied LVIS val, which lists only the categories that occur), ``bbox``
    (``[x, y, w, h]``, finite, ``w, h >= 0``), ``score`` (finite, in ``[0, 1]``) and
    ``segmentation`` (RLE or polygons, valid, RLE size equal to the image size).
    ``strict=True`` raises :class:`InputError` at the first bad entry; ``strict=False`` collects
    bad entries in :attr:`SegmentorResults.rejected` and keeps the good ones.
    """
    if not isinstance(entries, list):
        raise InputError(
            f"{source}: a results file must be a JSON list, got {type(entries).__name__}"
        )
    known = frozenset(annotations.categories if category_ids is None else category_ids)
    groups: dict[int, list[Detection]] = {}
    rejected: list[RejectedEntry] = []
    for index, entry in enumerate(entries):
        try:
            det = _detection(entry, index, annotations, known, f"{source}[{index}]")
        except InputError as exc:
            if strict:
                raise
            image_id = entry.get("image_id") if isinstance(entry, dict) else None
            rejected.append(RejectedEntry(index, image_id, str(exc)))
            continue
        groups.setdefault(det.image_id, []).append(det)
    return SegmentorResults(
        source=source,
        annotations=annotations,
        groups=tuple(ImageDetections(annotations.images[i], tuple(d)) for i, d in groups.items()),
        rejected=tuple(rejected),
        num_entries=len(entries),
    )


def load_segmentor_results(
    path: str | os.PathLike,
    annotations: InstanceSet,
    *,
    strict: bool = True,
    category_ids: Collection[int] | None = None,
) -> SegmentorResults:
    """Read a segmentor's COCO results JSON (``*.segm.json``) and check it, see
    :func:`parse_segmentor_results`. ``annotations`` is the image list it refers to, e.g.
    ``load_coco_instances("data/coco/annotations/instances_val2017.json", "data/coco/val2017")``.
    """
    return parse_segmentor_results(
        io.read_json(path), annotations, source=str(path), strict=strict, category_ids=category_ids
    )


def _detection(
    entry: Any, index: int, annotations: InstanceSet, known: frozenset[int], where: str
) -> Detection:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: a result must be a JSON object, got {type(entry).__name__}")
    for key in ("image_id", "category_id", "bbox", "score", "segmentation"):
        if key not in entry:
            raise InputError(f"{where}: missing '{key}'")
    image_id = check_id(entry["image_id"], where, "image_id")
    image = annotations.images.get(image_id)
    if image is None:
        raise InputError(f"{where}: unknown image_id {image_id} (not in {annotations.source})")
    category_id = check_id(entry["category_id"], where, "category_id")
    if category_id not in known:
        raise InputError(
            f"{where}: unknown category_id {category_id} (not in {annotations.source})"
        )
    bbox = check_bbox(entry["bbox"], where)
    score = check_number(entry["score"], where, "score")
    if not 0.0 <= score <= 1.0:
        raise InputError(f"{where}: score {score} is outside [0, 1]")
    compressed = to_rle(entry["segmentation"], image.height, image.width, where)
    counts = compressed["counts"]
    segmentation = {
        "size": [image.height, image.width],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }
    return Detection(index, image_id, category_id, bbox, score, segmentation)

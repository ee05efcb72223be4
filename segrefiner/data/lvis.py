"""LVIS v1 annotation files, and the "cocofied" LVIS val annotation used as COCO ground truth.

LVIS v1 differs from COCO in: images carry ``coco_url`` instead of ``file_name`` (the file name
is the URL without ``http://images.cocodataset.org/``, e.g. ``train2017/000000391895.jpg``,
relative to the COCO root), and the federated fields ``not_exhaustive_category_ids`` /
``neg_category_ids``; categories carry ``synset``, ``frequency`` (``r``/``c``/``f``),
``synonyms`` and counts; annotations have no ``iscrowd``.

The cocofied val annotation (what the official ``scripts/lvis2coco.py`` writes, after
RefineMask's ``tools/cocofied_lvis.py``) keeps the LVIS v1 val images that are in COCO
``instances_val2017.json`` and the annotations of the 80 COCO synsets, re-labelled with COCO
category ids; it is the ground truth of the COCO evaluation (mask AP, boundary AP).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from segrefiner import io
from segrefiner.data.coco import (
    Category,
    ImageInfo,
    InstanceSet,
    check_id,
    file_name_from_coco_url,
    parse_instances,
)
from segrefiner.errors import InputError

FREQUENCIES = ("r", "c", "f")

# COCO category id of each of the 80 COCO synsets, in COCO order: the table of the official
# `scripts/lvis2coco.py`, itself from RefineMask's `tools/cocofied_lvis.py` and detectron2's
# `datasets/prepare_cocofied_lvis.py` (all "extracted from the official LVIS mapping"
# `lvis-api/data/coco_to_synset.json`). Some forks map hot dog (58) to `sausage.n.01` instead of
# `frank.n.02`; pass `synset_map=` to build with another table.
COCO_SYNSET_CATEGORIES: tuple[tuple[str, int], ...] = (
    ("person.n.01", 1),
    ("bicycle.n.01", 2),
    ("car.n.01", 3),
    ("motorcycle.n.01", 4),
    ("airplane.n.01", 5),
    ("bus.n.01", 6),
    ("train.n.01", 7),
    ("truck.n.01", 8),
    ("boat.n.01", 9),
    ("traffic_light.n.01", 10),
    ("fireplug.n.01", 11),
    ("stop_sign.n.01", 13),
    ("parking_meter.n.01", 14),
    ("bench.n.01", 15),
    ("bird.n.01", 16),
    ("cat.n.01", 17),
    ("dog.n.01", 18),
    ("horse.n.01", 19),
    ("sheep.n.01", 20),
    ("beef.n.01", 21),
    ("elephant.n.01", 22),
    ("bear.n.01", 23),
    ("zebra.n.01", 24),
    ("giraffe.n.01", 25),
    ("backpack.n.01", 27),
    ("umbrella.n.01", 28),
    ("bag.n.04", 31),
    ("necktie.n.01", 32),
    ("bag.n.06", 33),
    ("frisbee.n.01", 34),
    ("ski.n.01", 35),
    ("snowboard.n.01", 36),
    ("ball.n.06", 37),
    ("kite.n.03", 38),
    ("baseball_bat.n.01", 39),
    ("baseball_glove.n.01", 40),
    ("skateboard.n.01", 41),
    ("surfboard.n.01", 42),
    ("tennis_racket.n.01", 43),
    ("bottle.n.01", 44),
    ("wineglass.n.01", 46),
    ("cup.n.01", 47),
    ("fork.n.01", 48),
    ("knife.n.01", 49),
    ("spoon.n.01", 50),
    ("bowl.n.03", 51),
    ("banana.n.02", 52),
    ("apple.n.01", 53),
    ("sandwich.n.01", 54),
    ("orange.n.01", 55),
    ("broccoli.n.01", 56),
    ("carrot.n.01", 57),
    ("frank.n.02", 58),
    ("pizza.n.01", 59),
    ("doughnut.n.02", 60),
    ("cake.n.03", 61),
    ("chair.n.01", 62),
    ("sofa.n.01", 63),
    ("pot.n.04", 64),
    ("bed.n.01", 65),
    ("dining_table.n.01", 67),
    ("toilet.n.02", 70),
    ("television_receiver.n.01", 72),
    ("laptop.n.01", 73),
    ("mouse.n.04", 74),
    ("remote_control.n.01", 75),
    ("computer_keyboard.n.01", 76),
    ("cellular_telephone.n.01", 77),
    ("microwave.n.02", 78),
    ("oven.n.01", 79),
    ("toaster.n.02", 80),
    ("sink.n.01", 81),
    ("electric_refrigerator.n.01", 82),
    ("book.n.01", 84),
    ("clock.n.01", 85),
    ("vase.n.01", 86),
    ("scissors.n.01", 87),
    ("teddy.n.01", 88),
    ("hand_blower.n.01", 89),
    ("toothbrush.n.01", 90),
)
COCO_SYNSET_TO_CATEGORY_ID: dict[str, int] = dict(COCO_SYNSET_CATEGORIES)


@dataclass(frozen=True)
class LvisImageInfo(ImageInfo):
    """An LVIS image: ``file_name`` is derived from ``coco_url`` (relative to the COCO root)."""

    coco_url: str = ""
    not_exhaustive_category_ids: tuple[int, ...] = ()
    neg_category_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class LvisCategory(Category):
    synset: str = ""
    frequency: str = ""  # "r" (rare), "c" (common) or "f" (frequent)
    synonyms: tuple[str, ...] = ()
    image_count: int = 0
    instance_count: int = 0


def parse_lvis(
    data: Any, *, source: str = "<memory>", image_root: str | os.PathLike | None = None
) -> InstanceSet:
    """Check a parsed LVIS v1 annotation dict (also a cocofied one) and build an
    :class:`InstanceSet` of :class:`LvisImageInfo` / :class:`LvisCategory` records.

    Besides the COCO checks: every image needs a COCO ``coco_url`` and the two federated lists
    (of known category ids); every category needs a ``synset`` and a ``frequency``.
    """
    instances = parse_instances(
        data,
        source=source,
        image_root=image_root,
        parse_image=_lvis_image,
        parse_category=_lvis_category,
    )
    for info in instances.images.values():
        for key in ("not_exhaustive_category_ids", "neg_category_ids"):
            unknown = [c for c in getattr(info, key) if c not in instances.categories]
            if unknown:
                raise InputError(
                    f"{source}: image id {info.id}: {key} has unknown category ids {unknown}"
                )
    return instances


def load_lvis(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> InstanceSet:
    """Read and check an LVIS v1 JSON (``lvis_v1_train.json``, ``lvis_v1_val.json`` or the
    cocofied val). ``image_root`` is the COCO root (``data/coco``): file names carry the split
    folder."""
    return parse_lvis(io.read_json(path), source=str(path), image_root=image_root)


def _lvis_image(entry: dict, where: str) -> LvisImageInfo:
    image_id = check_id(entry.get("id"), where)
    where = f"{where} (id {image_id})"
    url = entry.get("coco_url")
    if not isinstance(url, str):
        raise InputError(f"{where}: LVIS image has no coco_url")
    file_name = file_name_from_coco_url(url, where)
    height, width = entry.get("height"), entry.get("width")
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{where}: {name} must be a positive integer, got {value!r}")
    lists = []
    for key in ("not_exhaustive_category_ids", "neg_category_ids"):
        value = entry.get(key)
        if not isinstance(value, list):
            raise InputError(f"{where}: {key} must be a list of category ids")
        lists.append(tuple(check_id(v, where, key) for v in value))
    return LvisImageInfo(image_id, file_name, height, width, url, lists[0], lists[1])


def _lvis_category(entry: dict, where: str) -> LvisCategory:
    cat_id = check_id(entry.get("id"), where)
    where = f"{where} (id {cat_id})"
    name, synset, frequency = entry.get("name"), entry.get("synset"), entry.get("frequency")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: category has no name")
    if not isinstance(synset, str) or not synset:
        raise InputError(f"{where}: category has no synset")
    if frequency not in FREQUENCIES:
        raise InputError(f"{where}: frequency must be one of {FREQUENCIES}, got {frequency!r}")
    synonyms = entry.get("synonyms", [])
    if not isinstance(synonyms, list) or not all(isinstance(s, str) for s in synonyms):
        raise InputError(f"{where}: synonyms must be a list of strings")
    counts = []
    for key in ("image_count", "instance_count"):
        value = entry.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{where}: {key} must be a non-negative integer, got {value!r}")
        counts.append(value)
    return LvisCategory(cat_id, name, "", synset, frequency, tuple(synonyms), counts[0], counts[1])


# --------------------------------------------------------------------------------------------
# The cocofied LVIS val annotation


def build_cocofied_lvis(
    lvis_val: Mapping[str, Any],
    coco_val: Mapping[str, Any],
    synset_map: Mapping[str, int] = COCO_SYNSET_TO_CATEGORY_ID,
    *,
    sources: tuple[str, str] = ("lvis_val", "coco_val"),
) -> dict[str, Any]:
    """The cocofied LVIS val annotation, as the official ``scripts/lvis2coco.py`` builds it.

    - images: the LVIS images (LVIS order) whose id is an image id of ``coco_val``;
    - annotations: those of kept images whose LVIS category's synset is in ``synset_map``,
      re-labelled with the COCO category id and renumbered ``1, 2, ...`` (LVIS order);
    - each kept image's ``not_exhaustive_category_ids`` / ``neg_category_ids`` mapped to COCO
      ids (categories outside the map dropped);
    - categories: the LVIS categories (all LVIS fields kept, ``id`` set to the COCO id) whose
      COCO id occurs in a kept annotation or a mapped federated list, in LVIS order;
    - ``info`` and ``licenses`` copied from the LVIS file.

    The inputs are not modified. Where the official script fails with a ``KeyError``
    (annotation or federated id of an unknown LVIS category) this raises :class:`InputError`.
    """
    lvis_name, coco_name = sources
    for name, data in ((lvis_name, lvis_val), (coco_name, coco_val)):
        if not isinstance(data, Mapping) or not isinstance(data.get("images"), list):
            raise InputError(f"{name}: not an annotation file (no 'images' list)")
    for key in ("annotations", "categories"):
        if not isinstance(lvis_val.get(key), list):
            raise InputError(f"{lvis_name}: no '{key}' list")

    synset_of: dict[int, str] = {}
    for i, cat in enumerate(lvis_val["categories"]):
        where = f"{lvis_name}: categories[{i}]"
        if not isinstance(cat, Mapping) or not isinstance(cat.get("synset"), str):
            raise InputError(f"{where}: category without a synset")
        synset_of[check_id(cat.get("id"), where)] = cat["synset"]

    def coco_id(lvis_cat: Any, where: str) -> int | None:
        synset = synset_of.get(lvis_cat)
        if synset is None:
            raise InputError(f"{where}: unknown LVIS category id {lvis_cat!r}")
        return synset_map.get(synset)

    coco_image_ids = {img.get("id") for img in coco_val["images"] if isinstance(img, Mapping)}
    used: set[int] = set()

    images = []
    for i, img in enumerate(lvis_val["images"]):
        if not isinstance(img, Mapping) or img.get("id") not in coco_image_ids:
            continue
        new = copy.deepcopy(dict(img))
        for key in ("not_exhaustive_category_ids", "neg_category_ids"):
            where = f"{lvis_name}: images[{i}] (id {img.get('id')}) {key}"
            if not isinstance(img.get(key), list):
                raise InputError(f"{where}: missing or not a list")
            mapped = [c for c in (coco_id(v, where) for v in img[key]) if c is not None]
            used.update(mapped)
            new[key] = mapped
        images.append(new)

    annotations = []
    for i, ann in enumerate(lvis_val["annotations"]):
        if not isinstance(ann, Mapping) or ann.get("image_id") not in coco_image_ids:
            continue
        cid = coco_id(ann.get("category_id"), f"{lvis_name}: annotations[{i}]")
        if cid is None:
            continue
        new = copy.deepcopy(dict(ann))
        new["category_id"] = cid
        new["id"] = len(annotations) + 1
        annotations.append(new)
        used.add(cid)

    categories = []
    for cat in lvis_val["categories"]:
        cid = synset_map.get(cat["synset"])
        if cid is None or cid not in used:
            continue
        new = copy.deepcopy(dict(cat))
        new["id"] = cid
        categories.append(new)

    out: dict[str, Any] = {"images": images, "annotations": annotations, "categories": categories}
    for key in ("info", "licenses"):
        if key in lvis_val:
            out[key] = copy.deepcopy(lvis_val[key])
    return out


def write_cocofied_lvis(
    lvis_val_path: str | os.PathLike,
    coco_val_path: str | os.PathLike,
    out_path: str | os.PathLike,
    synset_map: Mapping[str, int] = COCO_SYNSET_TO_CATEGORY_ID,
) -> dict[str, int]:
    """Build the cocofied LVIS val from the two files and write it atomically.

    Default paths of the official script: ``data/lvis/annotations/lvis_v1_val.json``,
    ``data/coco/annotations/instances_val2017.json`` ->
    ``data/lvis/annotations/lvis_v1_val_cocofied.json``. Returns counts of what was kept.
    """
    lvis_val = io.read_json(lvis_val_path)
    coco_val = io.read_json(coco_val_path)
    out = build_cocofied_lvis(
        lvis_val, coco_val, synset_map, sources=(str(lvis_val_path), str(coco_val_path))
    )
    io.write_json(out_path, out)
    return {
        "images": len(out["images"]),
        "annotations": len(out["annotations"]),
        "categories": len(out["categories"]),
        "lvis_annotations": len(lvis_val["annotations"]),
    }

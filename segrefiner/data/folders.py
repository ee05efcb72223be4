"""Readers for the folder layouts of BIG, DIS-5K, ThinObject-5K and plain image/mask pairs.

A reader walks a layout under the data root and returns small :class:`SampleRecord` s (paths
only, no pixels), sorted by ``sample_id``. :func:`load_sample` reads the pixels of one record.

Layouts (paths relative to the data root):

* BIG: one folder (official ``big/coarse/deeplab``) holding ``<name>_im.jpg``,
  ``<name>_gt.png`` and the coarse ``<name>_seg.png``.
* DIS-5K: ``dis/<set>/im/<name>.jpg`` and ``dis/<set>/gt/<name>.png`` for ``<set>`` in
  ``DIS-TR``, ``DIS-VD``, ``DIS-TE1`` .. ``DIS-TE4``; coarse masks of a segmentor in
  ``dis/coarse/<segmentor>/<set>/<name>.png``.
* ThinObject-5K: ``thin_object/list/<split>.txt`` (mask file names, one per line),
  ``thin_object/masks/<name>.png``, ``thin_object/images/<name>.jpg``.
* pairs: an image folder and a mask folder whose files match by stem.

Problems that concern one sample (a mask with no image, a list entry naming a missing file, an
image with no mask when one is required) raise :class:`InputError` naming every such file when
``strict`` (the default). With ``strict=False`` such a sample is kept with the path where the
file was expected, so that a batch stage can report it as failed instead of dropping it.
Structural problems (missing folders, duplicate ids, names leaving the data root) always raise.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from segrefiner.errors import InputError
from segrefiner.io import read_image, read_mask

__all__ = [
    "DIS_SETS",
    "IMAGE_SUFFIXES",
    "Sample",
    "SampleRecord",
    "load_sample",
    "read_big",
    "read_dis",
    "read_hr_training",
    "read_pairs",
    "read_thin_object",
]

DIS_SETS = ("DIS-TR", "DIS-VD", "DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# Errors list at most this many files; the count of the rest follows.
_MAX_LISTED = 20


@dataclass(frozen=True)
class SampleRecord:
    """One sample of a folder layout: where its files are, no pixels.

    ``sample_id`` is ``<dataset>/<split>/<name>`` and unique within a listing; ``name`` is the
    file stem used for output names; ``gt`` / ``coarse`` are ``None`` when the layout has none
    for this sample.
    """

    sample_id: str
    dataset: str
    split: str
    name: str
    image: Path
    gt: Path | None = None
    coarse: Path | None = None


@dataclass(frozen=True)
class Sample:
    """The pixels of a record: ``image`` ``H x W x 3`` ``uint8`` RGB, masks ``H x W`` ``bool``."""

    record: SampleRecord
    image: np.ndarray
    gt: np.ndarray | None
    coarse: np.ndarray | None


def load_sample(record: SampleRecord) -> Sample:
    """Read a record's image and masks; every mask must have the image's size.

    Raises :class:`InputError` naming the file that is missing (every missing one), unreadable
    or of another size.
    """
    files = (
        ("image", record.image),
        ("ground-truth mask", record.gt),
        ("coarse mask", record.coarse),
    )
    missing = [
        f"{path}: {what} file not found" for what, path in files if path and not path.is_file()
    ]
    if missing:
        raise InputError("; ".join(missing))
    image = read_image(record.image)
    shape = image.shape[:2]
    gt = read_mask(record.gt, shape=shape) if record.gt is not None else None
    coarse = read_mask(record.coarse, shape=shape) if record.coarse is not None else None
    return Sample(record=record, image=image, gt=gt, coarse=coarse)


# --------------------------------------------------------------------------- helpers


def _rel(root: Path, relative: str | os.PathLike) -> Path:
    """``root / relative``, refusing names that leave ``root`` (absolute or with ``..``).

    The check is on the name, not on ``Path.resolve()``: data sets are commonly symlinked into
    the data root, and resolving would wrongly reject those.
    """
    text = os.fspath(relative).replace("\\", "/")
    parts = PurePosixPath(text).parts
    if PurePosixPath(text).is_absolute() or ".." in parts or not text.strip():
        raise InputError(f"{relative}: path resolves outside the data root {root}")
    return root / Path(*parts) if parts else root


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise InputError(f"{path}: {what} folder not found")


def _raise_problems(problems: list[str]) -> None:
    if not problems:
        return
    shown = problems[:_MAX_LISTED]
    more = len(problems) - len(shown)
    tail = f"\n... and {more} more" if more else ""
    raise InputError(f"{len(problems)} problem(s) in the data set:\n" + "\n".join(shown) + tail)


def _checked(records: list[SampleRecord], problems: list[str]) -> list[SampleRecord]:
    """``records`` sorted by sample id, once no problem was found (else all are raised)."""
    _raise_problems(problems)
    return sorted(records, key=lambda r: r.sample_id)


def _files(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    """Plain files of ``folder`` (not recursive) whose suffix (any case) is in ``suffixes``."""
    wanted = {s.lower() for s in suffixes}
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in wanted)


def _by_stem(files: list[Path], problems: list[str]) -> dict[str, Path]:
    """Map stem -> file; two files with one stem (``a.jpg`` and ``a.png``) are a duplicate id."""
    out: dict[str, Path] = {}
    for path in files:
        if path.stem in out:
            problems.append(f"{path}: duplicate sample id {path.stem!r} (also {out[path.stem]})")
        else:
            out[path.stem] = path
    return out


def _check_unique(records: list[SampleRecord]) -> None:
    seen: dict[str, SampleRecord] = {}
    problems = []
    for rec in records:
        if rec.sample_id in seen:
            problems.append(
                f"{rec.gt or rec.image}: duplicate sample id {rec.sample_id!r} "
                f"(also {seen[rec.sample_id].gt or seen[rec.sample_id].image})"
            )
        seen[rec.sample_id] = rec
    _raise_problems(problems)


def _pair(
    *,
    dataset: str,
    split: str,
    images: dict[str, Path],
    gts: dict[str, Path],
    coarses: dict[str, Path],
    expected_image: dict[str, Path],
    expected_gt: dict[str, Path],
    expected_coarse: dict[str, Path],
    require_gt: bool,
    require_coarse: bool,
    strict: bool,
    problems: list[str],
) -> list[SampleRecord]:
    """Join image / gt / coarse maps keyed by name into records, collecting problems.

    ``expected_*`` give the path a missing file would have (used in messages and, when not
    strict, in the record so that loading it fails with that path).
    """
    records = []
    for name in sorted(set(images) | set(gts) | set(coarses)):
        image = images.get(name)
        if image is None:
            orphan = gts.get(name) or coarses[name]
            problems_here = f"{orphan}: no image {expected_image[name]} for this mask"
            if strict:
                problems.append(problems_here)
                continue
            image = expected_image[name]
        masks: dict[str, Path | None] = {}
        for field, found, expected, required, what in (
            ("gt", gts, expected_gt, require_gt, "ground-truth"),
            ("coarse", coarses, expected_coarse, require_coarse, "coarse"),
        ):
            masks[field] = found.get(name)
            if masks[field] is None and required:
                if strict:
                    problems.append(f"{image}: no {what} mask {expected[name]}")
                    break  # no record
                masks[field] = expected[name]
        else:
            sample_id = f"{dataset}/{split}/{name}"
            records.append(SampleRecord(sample_id, dataset, split, name, image, **masks))
    return records


def _read_folders(
    root: Path,
    dataset: str,
    split: str,
    im_dir: Path,
    gt_dir: Path,
    coarse: str | None,
    *,
    folder_names: tuple[str, str, str | None],
    require_gt: bool,
    require_coarse: bool,
    strict: bool,
    problems: list[str],
) -> list[SampleRecord]:
    """Records of an image folder and a mask folder matched by stem, with the coarse masks of
    the folder ``coarse`` (relative to ``root``) when given.

    ``folder_names`` name the image, mask and coarse folders in "folder not found" errors; a
    missing mask folder is an error only with ``require_gt``, a missing coarse folder only when
    it has a name (without one it holds no masks).
    """
    image_what, gt_what, coarse_what = folder_names
    _require_dir(im_dir, image_what)
    images = _by_stem(_files(im_dir, IMAGE_SUFFIXES), problems)
    gts: dict[str, Path] = {}
    if gt_dir.is_dir():
        gts = _by_stem(_files(gt_dir, (".png",)), problems)
    elif require_gt:
        raise InputError(f"{gt_dir}: {gt_what} folder not found")
    coarse_dir = _rel(root, coarse) if coarse is not None else None
    coarses: dict[str, Path] = {}
    if coarse_dir is not None:
        if coarse_what is not None:
            _require_dir(coarse_dir, coarse_what)
        if coarse_dir.is_dir():
            coarses = _by_stem(_files(coarse_dir, (".png",)), problems)
    names = set(images) | set(gts) | set(coarses)
    return _pair(
        dataset=dataset,
        split=split,
        images=images,
        gts=gts,
        coarses=coarses,
        expected_image=_keys(names, im_dir, ".jpg"),
        expected_gt=_keys(names, gt_dir, ".png"),
        expected_coarse=_keys(names, coarse_dir or im_dir.parent / "coarse", ".png"),
        require_gt=require_gt,
        require_coarse=require_coarse and coarse is not None,
        strict=strict,
        problems=problems,
    )


def _keys(names: Iterable[str], folder: Path, suffix: str) -> dict[str, Path]:
    return {name: folder / f"{name}{suffix}" for name in names}


# --------------------------------------------------------------------------- readers


def read_big(
    data_root: str | os.PathLike,
    folder: str = "big/coarse/deeplab",
    *,
    split: str = "test",
    require_gt: bool = True,
    require_coarse: bool = False,
    strict: bool = True,
) -> list[SampleRecord]:
    """BIG: ``<folder>/<name>_im.jpg`` with ``<name>_gt.png`` and coarse ``<name>_seg.png``.

    ``folder`` is relative to ``data_root``. Sample ids are ``big/<split>/<name>``.
    """
    root = Path(data_root)
    base = _rel(root, folder)
    _require_dir(base, "BIG")
    found: dict[str, dict[str, Path]] = {"_im.jpg": {}, "_gt.png": {}, "_seg.png": {}}
    for path in sorted(p for p in base.iterdir() if p.is_file()):
        for suffix, table in found.items():
            if path.name.endswith(suffix) and len(path.name) > len(suffix):
                table[path.name[: -len(suffix)]] = path
    names = set().union(*found.values())
    problems: list[str] = []
    records = _pair(
        dataset="big",
        split=split,
        images=found["_im.jpg"],
        gts=found["_gt.png"],
        coarses=found["_seg.png"],
        expected_image={n: base / f"{n}_im.jpg" for n in names},
        expected_gt={n: base / f"{n}_gt.png" for n in names},
        expected_coarse={n: base / f"{n}_seg.png" for n in names},
        require_gt=require_gt,
        require_coarse=require_coarse,
        strict=strict,
        problems=problems,
    )
    _raise_problems(problems)
    return records


def read_dis(
    data_root: str | os.PathLike,
    sets: Iterable[str] = ("DIS-TR",),
    *,
    segmentor: str | None = None,
    require_gt: bool = True,
    require_coarse: bool = False,
    strict: bool = True,
) -> list[SampleRecord]:
    """DIS-5K: ``dis/<set>/im/<name>.jpg``, ``dis/<set>/gt/<name>.png``.

    With ``segmentor``, coarse masks come from ``dis/coarse/<segmentor>/<set>/<name>.png``
    (a set without that folder has no coarse masks). Sample ids are ``dis/<set>/<name>``.
    """
    root = Path(data_root)
    sets = list(sets)
    unknown = [s for s in sets if s not in DIS_SETS]
    if unknown:
        raise InputError(f"unknown DIS-5K set(s) {unknown}; known: {list(DIS_SETS)}")
    records: list[SampleRecord] = []
    problems: list[str] = []
    for set_name in sets:
        set_dir = _rel(root, f"dis/{set_name}")
        records += _read_folders(
            root,
            "dis",
            set_name,
            set_dir / "im",
            set_dir / "gt",
            None if segmentor is None else f"dis/coarse/{segmentor}/{set_name}",
            folder_names=(f"DIS-5K {set_name} image", f"DIS-5K {set_name} ground-truth", None),
            require_gt=require_gt,
            require_coarse=require_coarse,
            strict=strict,
            problems=problems,
        )
    return _checked(records, problems)


def read_thin_object(
    data_root: str | os.PathLike, split: str = "train", *, strict: bool = True
) -> list[SampleRecord]:
    """ThinObject-5K: names from ``thin_object/list/<split>.txt`` (mask file names).

    GT ``thin_object/masks/<name>.png``, image ``thin_object/images/<name>.jpg``. Sample ids are
    ``thin_object/<split>/<name>``. Blank lines are skipped; an entry naming a missing mask, a
    duplicate entry or a name leaving the data root is an error.
    """
    root = Path(data_root)
    list_file = _rel(root, f"thin_object/list/{split}.txt")
    if not list_file.is_file():
        raise InputError(f"{list_file}: ThinObject-5K list file not found")
    masks_dir, images_dir = root / "thin_object" / "masks", root / "thin_object" / "images"
    problems: list[str] = []
    records: list[SampleRecord] = []
    seen: dict[str, int] = {}
    lines = list_file.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry:
            continue
        where = f"{list_file}:{lineno}"
        if "/" in entry or "\\" in entry or entry in {".", ".."}:
            # Entries are plain file names; anything else could point anywhere.
            raise InputError(
                f"{where}: entry {entry!r} resolves outside the data root "
                f"(entries must be mask file names)"
            )
        name = PurePosixPath(entry).stem
        if name in seen:
            problems.append(f"{where}: duplicate entry {entry!r} (also line {seen[name]})")
            continue
        seen[name] = lineno
        gt = masks_dir / entry
        image = images_dir / f"{name}.jpg"
        if not gt.is_file():
            if strict:
                problems.append(f"{where}: listed mask {gt} does not exist")
                continue
        elif not image.is_file() and strict:
            problems.append(f"{gt}: no image {image} for this mask")
            continue
        records.append(
            SampleRecord(
                sample_id=f"thin_object/{split}/{name}",
                dataset="thin_object",
                split=split,
                name=name,
                image=image,
                gt=gt,
            )
        )
    return _checked(records, problems)


def read_pairs(
    data_root: str | os.PathLike,
    images: str = "images",
    masks: str = "masks",
    *,
    coarse: str | None = None,
    dataset: str = "pairs",
    split: str = "all",
    require_gt: bool = True,
    require_coarse: bool = False,
    strict: bool = True,
) -> list[SampleRecord]:
    """A folder of images and a folder of masks matched by stem (``a.jpg`` <-> ``a.png``).

    Folders are relative to ``data_root``; ``coarse`` names an optional folder of coarse masks.
    Images may have any of :data:`IMAGE_SUFFIXES`; masks are ``.png``. Sample ids are
    ``<dataset>/<split>/<stem>``.
    """
    root = Path(data_root)
    im_dir, gt_dir = _rel(root, images), _rel(root, masks)
    problems: list[str] = []
    records = _read_folders(
        root,
        dataset,
        split,
        im_dir,
        gt_dir,
        coarse,
        folder_names=("image", "mask", "coarse mask"),
        require_gt=require_gt,
        require_coarse=require_coarse,
        strict=strict,
        problems=problems,
    )
    _raise_problems(problems)
    return records


def read_hr_training(data_root: str | os.PathLike, *, strict: bool = True) -> list[SampleRecord]:
    """The HR training set: DIS-TR plus ThinObject-5K train, whichever of the two is present.

    Sorted by ``sample_id``; :class:`InputError` when neither ``dis/DIS-TR`` nor
    ``thin_object/list/train.txt`` exists under ``data_root``.
    """
    root = Path(data_root)
    has_dis = (root / "dis" / "DIS-TR").is_dir()
    has_thin = (root / "thin_object" / "list" / "train.txt").is_file()
    if not (has_dis or has_thin):
        raise InputError(
            f"{root}: no HR training data (expected dis/DIS-TR/ or thin_object/list/train.txt)"
        )
    records: list[SampleRecord] = []
    if has_dis:
        records += read_dis(root, ("DIS-TR",), strict=strict)
    if has_thin:
        records += read_thin_object(root, "train", strict=strict)
    records.sort(key=lambda r: r.sample_id)
    _check_unique(records)
    return records

"""Reading images and masks with clear errors, and atomic writes.

Conventions used across the project:
- images are ``H x W x 3`` ``uint8`` arrays in **RGB** order;
- masks are ``H x W`` arrays; on read, a mask file is converted to grayscale and binarised with
  ``value >= 128`` (the official scripts' rule), giving ``bool``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from segrefiner.errors import InputError

# BIG images reach 5000 x 3600; DIS images can be larger. PIL's bomb guard would reject some.
Image.MAX_IMAGE_PIXELS = 20_000 * 20_000

MASK_THRESHOLD = 128


# What a damaged, truncated, foreign or oversized file raises while it is decoded.
_UNREADABLE = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    SyntaxError,
    ValueError,
    MemoryError,
)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, Image.DecompressionBombError | MemoryError):
        return f"too large to decode safely: {exc}"
    return str(exc)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``H x W x 3`` ``uint8`` RGB (grayscale/RGBA are converted; EXIF
    orientation applied, as the official reader does)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            im.load()
            # As the official reader (mmcv imdecode, flag "color", i.e. cv2.IMREAD_COLOR): a
            # JPEG's EXIF orientation is applied, so pixels are as a viewer shows them.
            upright = ImageOps.exif_transpose(im)
            return np.asarray(upright.convert("RGB"), dtype=np.uint8).copy()
    except _UNREADABLE as exc:
        raise InputError(f"{path}: unreadable image ({_reason(exc)})") from exc


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image file as :func:`read_image` would return it (EXIF orientation
    applied), from its header only: nothing is decoded."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
    except _UNREADABLE as exc:
        raise InputError(f"{path}: unreadable image ({_reason(exc)})") from exc
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def read_mask(
    path: str | os.PathLike,
    shape: tuple[int, int] | None = None,
    foreground: Literal["levels", "nonzero"] = "levels",
) -> np.ndarray:
    """Read a mask file as ``H x W`` ``bool``, by one rule for every kind of mask file:

    * the level of a pixel is its grey value; for colour (RGB, RGBA, palette) files the largest
      of its red, green and blue values (a red, green or blue mask is foreground where coloured;
      alpha is ignored);
    * a file whose levels are all 0 or 1 is a label mask: 1 is foreground;
    * otherwise 8-bit levels ``>= 128`` are foreground (the official rule for 0/255 masks), and
      16-bit levels ``>= 32768`` (or ``>= 128`` when no level exceeds 255: 8-bit values
      stored in a 16-bit file).

    ``foreground="nonzero"`` makes every non-zero level foreground instead (the official
    offline coarse-mask script reads ground truths so). ``shape`` (H, W), when given, must
    match the mask's size, else :class:`InputError`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: mask file not found")
    if foreground not in ("levels", "nonzero"):
        raise InputError(f"foreground: expected 'levels' or 'nonzero', got {foreground!r}")
    try:
        with Image.open(path) as im:
            im.load()
            levels = mask_levels(im)
    except _UNREADABLE as exc:
        raise InputError(f"{path}: unreadable mask ({_reason(exc)})") from exc
    if shape is not None and levels.shape != tuple(shape):
        raise InputError(
            f"{path}: mask size {levels.shape[1]}x{levels.shape[0]} (WxH) differs from the "
            f"image size {shape[1]}x{shape[0]}"
        )
    return levels > 0 if foreground == "nonzero" else binarize_levels(levels)


def mask_levels(im: Image.Image) -> np.ndarray:
    """The per-pixel level of an opened mask image (see :func:`read_mask`): ``H x W`` integers."""
    if im.mode == "1":
        return np.asarray(im, dtype=np.uint8)
    if im.mode in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return np.asarray(im.convert("RGB"), dtype=np.uint8).max(axis=2)
    if im.mode in ("LA", "La"):
        im = im.convert("L")
    if im.mode == "F":
        raise InputError("floating-point mask files are not read; save 8-bit 0/255 or 0/1")
    return np.asarray(im)


def binarize_levels(levels: np.ndarray) -> np.ndarray:
    """Foreground of mask levels by the rule of :func:`read_mask`."""
    levels = np.asarray(levels)
    top = int(levels.max()) if levels.size else 0
    if top <= 1:
        return levels == 1
    if top > 255:
        return levels >= 32768
    return levels >= MASK_THRESHOLD


def _read_umask() -> int:
    mask = os.umask(0o022)  # read once, at import: os.umask is process-wide, not thread-safe
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary file keeps the target's suffix so writers that pick a format from the
    extension (PIL, cv2) still work. On error the temporary file is removed and ``path`` is
    untouched, so an interrupted run never leaves a half-written output.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
        )
    except (FileExistsError, NotADirectoryError) as exc:
        raise InputError(f"{path}: cannot be written, a part of its folder is a file") from exc
    except PermissionError as exc:
        raise InputError(f"{path}: cannot be written, no permission in {path.parent}") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs follow the umask
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move the finished folder ``src`` onto ``dst`` (same file system), replacing any old one.

    The old folder is first renamed aside, then ``src`` renamed into place, then the old one
    removed: ``dst`` is always either the old or the new complete folder, never a mix. ``dst``
    gets the permissions of the umask (``src`` may be a private temporary folder).
    """
    src, dst = Path(src), Path(dst)
    os.chmod(src, 0o777 & ~_UMASK)  # a mkdtemp folder is 0700; the data follows the umask
    if not dst.exists():
        os.replace(src, dst)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
    os.replace(dst, old / dst.name)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write a binary mask atomically as an 8-bit PNG with values 0/255."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"{path}: a mask must be 2-D (H x W), got shape {mask.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8)).save(tmp, format="PNG")


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    """Write JSON atomically."""
    text = json.dumps(obj, indent=indent)  # the C encoder; json.dump streams in pure Python
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, naming the file in the error when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: JSON file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: malformed JSON ({exc})") from exc


def resolve_under(root: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """Join ``relative`` onto ``root`` and refuse results that leave ``root``."""
    root_path = Path(root).resolve()
    candidate = (root_path / relative).resolve()
    if candidate != root_path and root_path not in candidate.parents:
        raise InputError(f"{relative}: path resolves outside the data root {root_path}")
    return candidate


_HASHES: dict[tuple[str, int, int], str] = {}
_HASHES_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (cached per process by path, size and mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _HASHES_LOCK:
        known = _HASHES.get(key)
    if known is None:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
        known = digest.hexdigest()
        with _HASHES_LOCK:
            _HASHES[key] = known
    return known

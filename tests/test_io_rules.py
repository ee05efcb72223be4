"""How files are read: one rule for masks (label, 8-bit, 16-bit, colour, 1-bit) and upright images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segrefiner.errors import InputError
from segrefiner.io import read_mask

SQUARE = np.zeros((12, 10), bool)
SQUARE[2:7, 3:8] = True


def _save(path, array, mode=None):
    im = Image.fromarray(array)
    if mode is not None:
        im = im.convert(mode)
    im.save(path)
    return path


@pytest.mark.parametrize(
    ("name", "array", "mode"),
    [
        ("label 0/1, 8-bit", SQUARE.astype(np.uint8), None),
        ("0/255, 8-bit", SQUARE.astype(np.uint8) * 255, None),
        ("soft 8-bit", np.where(SQUARE, 200, 40).astype(np.uint8), None),
        ("label 0/1, 16-bit", SQUARE.astype(np.uint16), None),
        ("0/65535, 16-bit", SQUARE.astype(np.uint16) * 65535, None),
        ("0/255 stored in 16 bits", SQUARE.astype(np.uint16) * 255, None),
        ("1-bit", SQUARE.astype(np.uint8) * 255, "1"),
        ("grey as RGB", np.repeat((SQUARE.astype(np.uint8) * 255)[..., None], 3, axis=2), None),
        ("red", np.stack([SQUARE * 255, SQUARE * 0, SQUARE * 0], axis=2).astype(np.uint8), None),
        ("blue", np.stack([SQUARE * 0, SQUARE * 0, SQUARE * 200], axis=2).astype(np.uint8), None),
        (
            "RGBA",
            np.stack([SQUARE * 255] * 3 + [np.full(SQUARE.shape, 255)], axis=2).astype(np.uint8),
            None,
        ),
    ],
)
def test_every_kind_of_mask_file_reads_as_the_same_square(tmp_path, name, array, mode) -> None:
    path = _save(tmp_path / "m.png", array, mode)
    np.testing.assert_array_equal(read_mask(path), SQUARE, err_msg=name)


def test_palette_masks_use_their_colours(tmp_path) -> None:
    # a VOC-style label PNG: index 0 black, index 1 a dark green (level 128)
    im = Image.fromarray(SQUARE.astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 0, 128, 0] + [0, 0, 0] * 254)
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), SQUARE)


def test_empty_and_low_levels(tmp_path) -> None:
    assert not read_mask(_save(tmp_path / "e.png", np.zeros((4, 4), np.uint8))).any()
    # levels above 1 but below 128 everywhere: an 8-bit mask with no foreground
    dim = np.where(SQUARE, 100, 0).astype(np.uint8)
    assert not read_mask(_save(tmp_path / "d.png", dim)).any()


def test_float_masks_are_refused_by_name(tmp_path) -> None:
    path = tmp_path / "f.tiff"
    Image.fromarray(SQUARE.astype(np.float32)).save(path)
    with pytest.raises(InputError, match=r"f\.tiff: unreadable mask \(floating-point"):
        read_mask(path)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_images_are_read_upright_as_the_official_reader_reads_them(tmp_path, orientation) -> None:
    import cv2

    from segrefiner.io import read_image

    rng = np.random.default_rng(orientation)
    pixels = np.kron(rng.integers(0, 255, (4, 6, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, quality=95, exif=exif)
    ours = read_image(path)
    official = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert ours.shape == official.shape
    assert ours.shape[:2] == ((48, 32) if orientation in (6, 8) else (32, 48))
    assert np.abs(ours.astype(int) - official.astype(int)).max() <= 3  # JPEG decoders differ
    from segrefiner.io import image_size

    assert image_size(path) == ours.shape[:2]  # from the header alone, orientation applied


def test_finished_folders_and_files_follow_the_umask(tmp_path) -> None:
    import stat
    import tempfile

    import segrefiner.io as sio

    work = Path(tempfile.mkdtemp(dir=tmp_path))  # 0700, as the data builders make them
    sio.write_mask(work / "m.png", np.ones((4, 4), bool))
    sio.replace_dir(work, tmp_path / "data")
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o777 & ~sio._UMASK
    assert stat.S_IMODE((tmp_path / "data" / "m.png").stat().st_mode) == 0o666 & ~sio._UMASK


def test_the_foreground_rule_is_checked_and_nonzero_counts_every_level(tmp_path) -> None:
    levels = np.where(SQUARE, 200, 0).astype(np.uint8)
    levels[0, 0] = 3  # a faint level: not foreground by the 8-bit rule, foreground if non-zero
    path = _save(tmp_path / "m.png", levels)
    assert not read_mask(path)[0, 0] and read_mask(path, foreground="nonzero")[0, 0]
    with pytest.raises(InputError, match="foreground: expected 'levels' or 'nonzero'"):
        read_mask(path, foreground="half")  # type: ignore[arg-type]

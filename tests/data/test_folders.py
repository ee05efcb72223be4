"""Folder readers for BIG, DIS-5K, ThinObject-5K and image/mask pairs, and load_sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segrefiner.data.folders import (
    SampleRecord,
    load_sample,
    read_big,
    read_dis,
    read_hr_training,
    read_pairs,
    read_thin_object,
)
from segrefiner.errors import InputError
from tests.pipelines.shapes import make_hr_root, random_object, save_image, save_mask

RNG = np.random.default_rng(0)


def _pair(image: Path, mask: Path | None, h: int = 40, w: int = 50) -> None:
    save_image(image, h, w, RNG)
    if mask is not None:
        save_mask(mask, random_object(h, w, RNG))


# --------------------------------------------------------------------------- BIG


def make_big(root: Path) -> Path:
    folder = root / "big/coarse/deeplab"
    for name in ("b_2", "a_1"):
        _pair(folder / f"{name}_im.jpg", folder / f"{name}_gt.png")
        save_mask(folder / f"{name}_seg.png", random_object(40, 50, RNG))
    return folder


def test_big(tmp_path: Path) -> None:
    folder = make_big(tmp_path)
    recs = read_big(tmp_path)
    assert [r.sample_id for r in recs] == ["big/test/a_1", "big/test/b_2"]
    r = recs[0]
    assert (r.dataset, r.split, r.name) == ("big", "test", "a_1")
    assert r.image == folder / "a_1_im.jpg"
    assert r.gt == folder / "a_1_gt.png" and r.coarse == folder / "a_1_seg.png"
    sample = load_sample(r)
    assert sample.image.shape == (40, 50, 3) and sample.image.dtype == np.uint8
    assert sample.gt.shape == (40, 50) and sample.gt.dtype == bool
    assert sample.coarse is not None and sample.coarse.dtype == bool


def test_big_coarse_without_image(tmp_path: Path) -> None:
    folder = make_big(tmp_path)
    save_mask(folder / "c_3_seg.png", np.ones((4, 4), bool))
    with pytest.raises(InputError, match=r"c_3_seg\.png: no image .*c_3_im\.jpg"):
        read_big(tmp_path)
    lax = read_big(tmp_path, strict=False, require_gt=False)
    assert [r.name for r in lax] == ["a_1", "b_2", "c_3"]
    with pytest.raises(InputError, match=r"c_3_im\.jpg: image file not found"):
        load_sample(lax[-1])


def test_big_missing_gt_and_coarse(tmp_path: Path) -> None:
    folder = make_big(tmp_path)
    _pair(folder / "d_4_im.jpg", None)
    with pytest.raises(InputError, match=r"d_4_im\.jpg: no ground-truth mask .*d_4_gt\.png"):
        read_big(tmp_path)
    recs = read_big(tmp_path, require_gt=False)
    assert recs[-1].gt is None and recs[-1].coarse is None
    with pytest.raises(InputError, match=r"d_4_im\.jpg: no coarse mask .*d_4_seg\.png"):
        read_big(tmp_path, require_gt=False, require_coarse=True)


def test_big_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="BIG folder not found"):
        read_big(tmp_path)
    with pytest.raises(InputError, match="outside the data root"):
        read_big(tmp_path, folder="../elsewhere")
    with pytest.raises(InputError, match="outside the data root"):
        read_big(tmp_path, folder="/etc")


# --------------------------------------------------------------------------- DIS


def make_dis(root: Path) -> None:
    for set_name, names in (("DIS-TR", ["x#1", "a#2"]), ("DIS-TE1", ["t"])):
        for name in names:
            _pair(root / f"dis/{set_name}/im/{name}.jpg", root / f"dis/{set_name}/gt/{name}.png")
    save_mask(root / "dis/coarse/isnet/DIS-TE1/t.png", random_object(40, 50, RNG))


def test_dis(tmp_path: Path) -> None:
    make_dis(tmp_path)
    recs = read_dis(tmp_path, ["DIS-TR", "DIS-TE1"], segmentor="isnet")
    assert [r.sample_id for r in recs] == ["dis/DIS-TE1/t", "dis/DIS-TR/a#2", "dis/DIS-TR/x#1"]
    assert recs[0].coarse == tmp_path / "dis/coarse/isnet/DIS-TE1/t.png"
    assert recs[1].coarse is None  # no coarse folder for DIS-TR
    assert recs[1].image == tmp_path / "dis/DIS-TR/im/a#2.jpg"
    assert recs[1].gt == tmp_path / "dis/DIS-TR/gt/a#2.png"
    assert load_sample(recs[0]).coarse is not None


def test_dis_errors(tmp_path: Path) -> None:
    make_dis(tmp_path)
    with pytest.raises(InputError, match="unknown DIS-5K set"):
        read_dis(tmp_path, ["DIS-TE9"])
    with pytest.raises(InputError, match="DIS-VD image folder not found"):
        read_dis(tmp_path, ["DIS-VD"])
    with pytest.raises(InputError, match="outside the data root"):
        read_dis(tmp_path, ["DIS-TE1"], segmentor="../../x")
    # GT without image; coarse without image; two images with one stem.
    save_mask(tmp_path / "dis/DIS-TR/gt/orphan.png", np.ones((4, 4), bool))
    save_mask(tmp_path / "dis/coarse/isnet/DIS-TE1/ghost.png", np.ones((4, 4), bool))
    save_image(tmp_path / "dis/DIS-TE1/im/t.png", 40, 50, RNG)
    with pytest.raises(InputError) as err:
        read_dis(tmp_path, ["DIS-TR", "DIS-TE1"], segmentor="isnet")
    message = str(err.value)
    assert "gt/orphan.png: no image" in message and "DIS-TR/im/orphan.jpg" in message
    assert "DIS-TE1/ghost.png: no image" in message
    assert "im/t.png: duplicate sample id 't'" in message


# --------------------------------------------------------------------------- ThinObject


def make_thin(root: Path, lines: list[str]) -> None:
    for name in ("b", "a"):
        _pair(root / f"thin_object/images/{name}.jpg", root / f"thin_object/masks/{name}.png")
    (root / "thin_object/list").mkdir(parents=True, exist_ok=True)
    (root / "thin_object/list/train.txt").write_text("\n".join(lines) + "\n")


def test_thin_object(tmp_path: Path) -> None:
    make_thin(tmp_path, ["b.png", "", "  a.png  "])
    recs = read_thin_object(tmp_path)
    assert [r.sample_id for r in recs] == ["thin_object/train/a", "thin_object/train/b"]
    assert recs[0].image == tmp_path / "thin_object/images/a.jpg"
    assert recs[0].gt == tmp_path / "thin_object/masks/a.png"
    assert load_sample(recs[0]).gt is not None


def test_thin_object_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="list file not found"):
        read_thin_object(tmp_path)
    make_thin(tmp_path, ["a.png", "missing.png", "a.png"])
    with pytest.raises(InputError) as err:
        read_thin_object(tmp_path)
    assert "train.txt:2: listed mask" in str(err.value) and "missing.png does not exist" in str(
        err.value
    )
    assert "train.txt:3: duplicate entry 'a.png' (also line 1)" in str(err.value)
    (tmp_path / "thin_object/list/train.txt").write_text("a.png\n../../secret.png\n")
    with pytest.raises(InputError, match=r"train\.txt:2: entry '\.\./\.\./secret\.png' resolves"):
        read_thin_object(tmp_path)
    # A mask without image; non-strict keeps both problem samples for the caller to report.
    save_mask(tmp_path / "thin_object/masks/noimage.png", np.ones((4, 4), bool))
    (tmp_path / "thin_object/list/train.txt").write_text("a.png\nnoimage.png\nmissing.png\n")
    with pytest.raises(InputError, match=r"noimage\.png: no image .*noimage\.jpg"):
        read_thin_object(tmp_path)
    lax = read_thin_object(tmp_path, strict=False)
    assert [r.name for r in lax] == ["a", "missing", "noimage"]
    # Every missing file of the sample is named.
    with pytest.raises(
        InputError,
        match=r"images/missing\.jpg: image file not found; .*"
        r"masks/missing\.png: ground-truth mask file not found",
    ):
        load_sample(lax[1])


def test_hr_training(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no HR training data"):
        read_hr_training(tmp_path)
    ids = make_hr_root(tmp_path, n_dis=2, n_thin=2)
    assert [r.sample_id for r in read_hr_training(tmp_path)] == ids


# --------------------------------------------------------------------------- pairs


def test_pairs(tmp_path: Path) -> None:
    _pair(tmp_path / "images/b.png", tmp_path / "masks/b.png")
    _pair(tmp_path / "images/a.jpg", tmp_path / "masks/a.png")
    save_mask(tmp_path / "coarse/a.png", np.ones((40, 50), bool))
    recs = read_pairs(tmp_path, coarse="coarse", dataset="mine", split="val")
    assert [r.sample_id for r in recs] == ["mine/val/a", "mine/val/b"]
    assert recs[0].coarse == tmp_path / "coarse/a.png" and recs[1].coarse is None
    assert recs[1].image == tmp_path / "images/b.png"


def test_pairs_errors(tmp_path: Path) -> None:
    _pair(tmp_path / "images/a.jpg", tmp_path / "masks/a.png")
    _pair(tmp_path / "images/a.png", None)
    save_mask(tmp_path / "masks/z.png", np.ones((4, 4), bool))
    with pytest.raises(InputError) as err:
        read_pairs(tmp_path)
    assert "images/a.png: duplicate sample id 'a'" in str(err.value)
    assert "masks/z.png: no image" in str(err.value)
    with pytest.raises(InputError, match="outside the data root"):
        read_pairs(tmp_path, images="../images")
    with pytest.raises(InputError, match="mask folder not found"):
        read_pairs(tmp_path, masks="nope")


def test_symlinked_dataset_is_inside_the_root(tmp_path: Path) -> None:
    # Data sets are often symlinked into the data root; that is not "outside the root".
    elsewhere = tmp_path / "elsewhere"
    make_thin(elsewhere, ["a.png"])
    root = tmp_path / "root"
    root.mkdir()
    (root / "thin_object").symlink_to(elsewhere / "thin_object")
    assert [r.name for r in read_thin_object(root)] == ["a"]


# --------------------------------------------------------------------------- load_sample


def test_load_sample_size_mismatch_names_the_file(tmp_path: Path) -> None:
    save_image(tmp_path / "im.jpg", 40, 50, RNG)
    save_mask(tmp_path / "gt.png", np.ones((40, 51), bool))
    save_mask(tmp_path / "seg.png", np.ones((40, 50), bool))
    rec = SampleRecord("x/y/z", "x", "y", "z", tmp_path / "im.jpg", tmp_path / "gt.png")
    with pytest.raises(InputError, match=r"gt\.png: mask size 51x40 \(WxH\) differs"):
        load_sample(rec)
    rec = SampleRecord("x/y/z", "x", "y", "z", tmp_path / "im.jpg", None, tmp_path / "seg.png")
    assert load_sample(rec).gt is None


def test_load_sample_unreadable_image(tmp_path: Path) -> None:
    (tmp_path / "im.jpg").write_bytes(b"not a jpeg")
    save_mask(tmp_path / "gt.png", np.ones((4, 4), bool))
    rec = SampleRecord("x/y/z", "x", "y", "z", tmp_path / "im.jpg", tmp_path / "gt.png")
    with pytest.raises(InputError, match=r"im\.jpg: unreadable image"):
        load_sample(rec)

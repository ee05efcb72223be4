"""The LR training pipeline on a tiny LVIS-format data set."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import numpy as np
import pytest

from segrefiner.errors import InputError
from segrefiner.inference.config import IMAGE_MEAN, IMAGE_STD
from segrefiner.training.batching import collate_crops
from segrefiner.training.config import DataConfig, LRDataConfig
from segrefiner.training.data_lr import LRTrainingSet, load_instances
from segrefiner.training.sampling import PositionBatchSampler, sample_rng
from segrefiner.training.transforms import lr_object_box, mask_box


def _config(root, **changes) -> DataConfig:
    return dataclasses.replace(DataConfig(root=str(root), crop_size=64), **changes)


def _dataset(root, seed=0, **changes) -> LRTrainingSet:
    return LRTrainingSet.from_config(_config(root, **changes), seed)


def test_sample_shapes_values_and_small_annotations_never_chosen(lvis_root) -> None:
    ds = _dataset(lvis_root)
    assert len(ds) == 6
    for p in range(12):
        s = ds[p]
        assert s["image"].shape == (3, 64, 64) and s["image"].dtype == np.float32
        assert s["gt"].shape == s["coarse"].shape == (1, 64, 64)
        assert set(np.unique(s["gt"])) <= {0.0, 1.0} and set(np.unique(s["coarse"])) <= {0.0, 1.0}
        assert s["gt"].sum() > 0
        assert s["annotation_id"] % 2 == 0  # the odd ids are the area <= 512 specks
        assert s["skipped"] == []


def test_crop_contains_the_object_with_the_margin(lvis_root) -> None:
    # lr_object_box on the decoded masks: the whole box inside, side = box + 40 (capped).
    ds = _dataset(lvis_root)
    instances = ds.instances
    for image_id, anns in ds.items:
        gt = instances.annotation_mask(anns[0])
        x0, y0, x1, y1 = mask_box(gt)
        h, w = gt.shape
        for k in range(20):
            cx0, cy0, cx1, cy1 = lr_object_box((x0, y0, x1, y1), h, w, 40, sample_rng(k, image_id))
            assert cx0 <= x0 and cy0 <= y0 and cx1 >= x1 and cy1 >= y1
            assert 0 <= cx0 and 0 <= cy0 and cx1 <= w and cy1 <= h
            assert cx1 - cx0 == min(x1 - x0 + 40, w)
            assert cy1 - cy0 == min(y1 - y0 + 40, h)


def test_margin_is_split_at_random() -> None:
    box = (100, 100, 150, 140)
    lefts = {lr_object_box(box, 400, 400, 40, sample_rng(0, i))[0] for i in range(200)}
    assert min(lefts) == 60 and max(lefts) == 100  # the whole 40 px on either side
    assert len(lefts) > 20
    # An object wider than the image minus the pad: the crop is the whole width.
    assert lr_object_box((5, 0, 395, 10), 400, 400, 40, sample_rng(0, 0))[::2] == (0, 400)


def test_flip_is_consistent_between_image_and_masks(lvis_root) -> None:
    plain = _dataset(lvis_root, flip_prob=0.0)
    flipped = _dataset(lvis_root, flip_prob=1.0)
    for p in range(4):
        a, b = plain[p], flipped[p]
        assert a["index"] == b["index"] and not a["flip"] and b["flip"]
        for key in ("image", "gt", "coarse"):
            np.testing.assert_array_equal(b[key], a[key][..., ::-1])
        assert not np.array_equal(a["gt"], b["gt"])  # the object is not symmetric in the crop


def test_normalisation_is_imagenet_rgb(lvis_root, tmp_path) -> None:
    from PIL import Image

    root = tmp_path / "data"
    shutil.copytree(lvis_root, root)
    for path in (root / "coco" / "train2017").iterdir():
        Image.fromarray(np.full((96, 128, 3), (10, 128, 250), np.uint8)).save(path, quality=100)
    s = _dataset(root)[0]
    for c, value in enumerate((10, 128, 250)):
        expected = (value - IMAGE_MEAN[c]) / IMAGE_STD[c]
        np.testing.assert_allclose(s["image"][c], expected, atol=2 / IMAGE_STD[c])


def test_same_position_same_sample_and_epochs_cover_the_set(lvis_root) -> None:
    ds = _dataset(lvis_root, seed=3)
    a, b = ds[5], ds[5]
    for key in ("image", "gt", "coarse"):
        np.testing.assert_array_equal(a[key], b[key])
    assert sorted(ds[p]["index"] for p in range(6)) == list(range(6))  # epoch 0: a permutation
    other = _dataset(lvis_root, seed=4)
    assert [ds[p]["index"] for p in range(6)] != [other[p]["index"] for p in range(6)]


def test_bad_images_are_skipped_with_their_reason(lvis_root, tmp_path, caplog) -> None:
    root = tmp_path / "data"
    shutil.copytree(lvis_root, root)
    images = sorted((root / "coco" / "train2017").iterdir())
    images[0].write_bytes(b"not a jpeg")
    images[1].unlink()
    ds = _dataset(root)
    seen = []
    for p in range(18):
        s = ds[p]
        seen += s["skipped"]
        assert s["gt"].sum() > 0
    assert len(seen) >= 2
    assert any("unreadable image" in r for r in seen) and any("not found" in r for r in seen)
    # The loop logs and counts what the samples carry.
    batch = collate_crops([ds[p] for p in range(18)])
    assert len(batch["skipped"]) == len(seen)


def test_a_wrong_image_size_is_skipped(lvis_root, tmp_path) -> None:
    root = tmp_path / "data"
    shutil.copytree(lvis_root, root)
    ann_path = root / "lvis" / "annotations" / "lvis_v1_train.json"
    data = json.loads(ann_path.read_text())
    data["images"][0]["height"] = 97
    ann_path.write_text(json.dumps(data))
    ds = _dataset(root)
    reasons = [r for p in range(18) for r in ds[p]["skipped"]]
    assert reasons and all("says 128x97" in r for r in reasons)


def test_no_usable_record_is_an_error_not_a_hang(lvis_root, tmp_path) -> None:
    root = tmp_path / "data"
    shutil.copytree(lvis_root, root)
    for path in (root / "coco" / "train2017").iterdir():
        path.unlink()
    ds = _dataset(root, max_retries=3)
    with pytest.raises(InputError, match="no usable record after 4 tries"):
        ds[0]


def test_images_without_usable_annotation_are_left_out(lvis_root, tmp_path, caplog) -> None:
    root = tmp_path / "data"
    shutil.copytree(lvis_root, root)
    ann_path = root / "lvis" / "annotations" / "lvis_v1_train.json"
    data = json.loads(ann_path.read_text())
    data["annotations"] = data["annotations"][1:]  # image 100 keeps only its small speck
    ann_path.write_text(json.dumps(data))
    with caplog.at_level(logging.INFO, logger="segrefiner.training.data_lr"):
        ds = _dataset(root)
    assert len(ds) == 5 and 100 not in [image_id for image_id, _ in ds.items]
    assert "5 images (1 without a usable annotation left out)" in caplog.text
    with pytest.raises(InputError, match="no image has a usable annotation"):
        LRTrainingSet.from_config(_config(root, lr=LRDataConfig(min_area=10_000.0)), 0)
    with pytest.raises(InputError, match="no image has a usable annotation"):
        LRTrainingSet.from_config(_config(root, lr=LRDataConfig(min_image_side=100)), 0)
    assert len(load_instances(ann_path, root / "coco").images) == 6


def test_positions_split_over_ranks_like_one_process() -> None:
    one = list(PositionBatchSampler(4, 2, 5))
    two = [list(PositionBatchSampler(4, 2, 5, rank=r, world_size=2)) for r in range(2)]
    assert one == [[8, 9, 10, 11], [12, 13, 14, 15], [16, 17, 18, 19]]
    assert [a + b for a, b in zip(*two)] == one
    with pytest.raises(ValueError, match="does not split"):
        PositionBatchSampler(3, 0, 1, rank=0, world_size=2)


def test_coarse_kinds_are_drawn_by_weight(lvis_root) -> None:
    lr = LRDataConfig(
        annotations="lvis/annotations/lvis_v1_train.json",
        coarse_kinds=("maskrcnn", "lowres", "official"),
        coarse_weights=(0.0, 1.0, 1.0),
    )
    ds = _dataset(lvis_root, lr=lr)
    kinds = [ds[p]["coarse_kind"] for p in range(16)]
    assert set(kinds) == {"lowres", "official"}  # weight 0: never drawn
    assert [ds[p]["coarse_kind"] for p in range(16)] == kinds  # a position's draw is fixed
    only = _dataset(
        lvis_root, lr=dataclasses.replace(lr, coarse_kinds=("maskrcnn",), coarse_weights=())
    )
    assert {only[p]["coarse_kind"] for p in range(4)} == {"maskrcnn"}


def test_the_official_recipe_keeps_its_random_stream(lvis_root) -> None:
    # One kind, "official": no extra draw, so the samples are the ones the recipe always gave.
    from segrefiner.data.degrade import modify_boundary
    from segrefiner.training.transforms import make_crop

    ds = _dataset(lvis_root)
    sample = ds[3]
    assert sample["coarse_kind"] == "official"
    rng = sample_rng(0, 3, 0)  # the generator of position 3, first try
    image_id, anns = ds.items[sample["index"]]
    ann = anns[int(rng.integers(len(anns)))]
    gt = ds.instances.annotation_mask(ann)
    coarse = modify_boundary(gt, rng)
    box = lr_object_box(mask_box(gt), *gt.shape, ds.pad, rng)
    flip = bool(rng.random() < ds.flip_prob)
    expected = make_crop(ds.instances.read_image(image_id), gt, coarse, box, ds.crop_size, flip)
    assert np.array_equal(sample["coarse"], expected["coarse"])


@pytest.mark.parametrize(
    ("kinds", "weights", "message"),
    [(("sam",), (), "unknown or no kinds"), ((), (), "unknown or no kinds"),
     (("maskrcnn", "lowres"), (1.0,), "one non-negative weight per kind"),
     (("maskrcnn",), (0.0,), "not all zero")],
)  # fmt: skip
def test_bad_coarse_kind_settings_are_named(kinds, weights, message) -> None:
    from segrefiner.training.config import load_train_config

    overrides = [f"data.lr.coarse_kinds={list(kinds)}", f"data.lr.coarse_weights={list(weights)}"]
    with pytest.raises(InputError, match=message):
        load_train_config(None, overrides)

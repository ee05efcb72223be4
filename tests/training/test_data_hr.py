"""The HR training pipeline: object crop + native-resolution patch, offline coarse masks."""

from __future__ import annotations

import dataclasses
import logging
import shutil

import numpy as np
import pytest
import torch

from segrefiner.errors import InputError
from segrefiner.training.batching import collate_crops
from segrefiner.training.config import DataConfig, HRDataConfig
from segrefiner.training.data_hr import (
    CoarseSource,
    FolderCoarseSource,
    HRTrainingSet,
    global_resampled,
)
from segrefiner.training.sampling import sample_rng
from segrefiner.training.transforms import hr_object_box, mixed_patch, patch_side
from tests.training.conftest import tiny_overrides


def _config(root, **hr) -> DataConfig:
    return DataConfig(
        task="hr", root=str(root), crop_size=64, hr=dataclasses.replace(HRDataConfig(), **hr)
    )


def test_two_crops_per_image_with_the_official_shapes(hr_root) -> None:
    ds = HRTrainingSet.from_config(_config(hr_root, patch_size=128), seed=0)
    assert len(ds) == 4 and ds.crops_per_sample == 2
    samples = [ds[p] for p in range(8)]
    for s in samples:
        for prefix in ("object_", "patch_"):
            assert s[prefix + "image"].shape == (3, 64, 64)
            assert s[prefix + "gt"].shape == s[prefix + "coarse"].shape == (1, 64, 64)
        x0, y0, x1, y1 = s["patch_box"]
        assert x1 - x0 == y1 - y0 == 128  # native resolution, then resized to the crop size
        assert 0 < s["patch_gt"].sum() < 64 * 64  # a mixed patch
        assert s["notes"] == [] and s["skipped"] == []
    assert {s["coarse_kind"] for s in samples} == {"coarse", "coarse_expand"}
    assert {s["patch_source"] for s in samples} >= {"online"}
    batch = collate_crops(samples[:3])
    assert batch["image"].shape == (6, 3, 64, 64)
    # object crops first, then the patches (as the official get_train_input)
    assert batch["slots"].tolist() == [0, 0, 0, 1, 1, 1]
    assert batch["positions"].tolist() == [0, 1, 2, 0, 1, 2]


def test_offline_masks_come_from_the_source(hr_root) -> None:
    # coarse = GT dilated, coarse_expand = GT eroded in the fixture: the object crop's coarse
    # mask must be a superset / subset of its GT accordingly (no flip: same geometry).
    ds = HRTrainingSet.from_config(_config(hr_root, online_patch_prob=0.0), seed=1)
    for p in range(8):
        s = ds[p]
        gt, coarse = s["object_gt"] > 0, s["object_coarse"] > 0
        if s["coarse_kind"] == "coarse":
            assert (coarse >= gt).all() and coarse.sum() > gt.sum()
        else:
            assert (coarse <= gt).all() and coarse.sum() < gt.sum()
        assert s["patch_source"] == s["coarse_kind"]


def test_global_resampled_is_the_global_pass_resampling() -> None:
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    for height, width in ((300, 200), (777, 1301), (64, 64)):
        mask = rng.random((height, width)) < 0.5
        t = torch.from_numpy(mask.astype(np.float32))[None, None]
        down = F.interpolate(t, (32, 32), mode="nearest")
        full = (F.interpolate(down, (height, width), mode="nearest")[0, 0] >= 0.5).numpy()
        box = (3, 5, min(width, 60), min(height, 50))
        got = global_resampled(mask, box, 32)
        np.testing.assert_array_equal(got, full[box[1] : box[3], box[0] : box[2]])


def test_global_patch_prob_feeds_resampled_patches_and_zero_keeps_the_draws(hr_root) -> None:
    official = HRTrainingSet.from_config(_config(hr_root), seed=3)
    zero = HRTrainingSet.from_config(_config(hr_root, global_patch_prob=0.0), seed=3)
    for p in range(4):
        a, b = official[p], zero[p]
        assert a["patch_source"] == b["patch_source"]
        np.testing.assert_array_equal(a["patch_coarse"], b["patch_coarse"])
    ds = HRTrainingSet.from_config(
        dataclasses.replace(_config(hr_root, global_patch_prob=1.0, global_size=16), flip_prob=0),
        seed=3,
    )
    sources = set()
    for p in range(12):
        s = ds[p]
        sources.add(s["patch_source"])
        assert s["patch_source"].startswith("global-")
        # a 16 x 16 staircase of a whole image: the patch's coarse mask is blocky, and when it
        # comes from the ground truth it only differs from it near the boundary
        if s["patch_source"] == "global-gt":
            assert (s["patch_coarse"] != s["patch_gt"]).mean() < 0.5
    assert "global-gt" in sources and len(sources) >= 2


def test_flip_is_shared_by_object_and_patch(hr_root) -> None:
    plain = HRTrainingSet.from_config(dataclasses.replace(_config(hr_root), flip_prob=0.0), 0)
    flipped = HRTrainingSet.from_config(dataclasses.replace(_config(hr_root), flip_prob=1.0), 0)
    for p in range(3):
        a, b = plain[p], flipped[p]
        for key in ("object_image", "object_gt", "object_coarse", "patch_image", "patch_gt"):
            np.testing.assert_array_equal(b[key], a[key][..., ::-1])


def test_hr_object_box_contains_the_object_with_random_margins() -> None:
    box = (50, 60, 120, 90)
    boxes = [hr_object_box(box, 200, 300, sample_rng(0, i)) for i in range(300)]
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 <= 50 - 1 and 120 <= x1 <= 299 and 0 <= y0 <= 59 and 90 <= y1 <= 199
    assert len({b[0] for b in boxes}) > 30 and len({b[2] for b in boxes}) > 100
    # An object touching the borders: the crop reaches them.
    assert hr_object_box((0, 0, 300, 200), 200, 300, sample_rng(0, 0)) == (0, 0, 300, 200)


def test_patch_side_halves_for_small_images() -> None:
    assert patch_side(300, 400, 256) == 256
    assert patch_side(200, 400, 256) == 100
    assert patch_side(201, 255, 256) == 100


def test_mixed_patch_exact_search_after_the_random_tries() -> None:
    # One foreground pixel in a corner of a large image: almost no random draw hits it.
    gt = np.zeros((300, 300), bool)
    gt[0, 0] = True
    choice = mixed_patch(gt, 16, sample_rng(0, 0), tries=5)
    assert choice.mixed
    x0, y0, x1, y1 = choice.box
    assert (x0, y0) == (0, 0) and (x1, y1) == (16, 16)


def test_mixed_patch_is_uniform_over_the_mixed_positions() -> None:
    gt = np.zeros((40, 40), bool)
    gt[:, 20:] = True  # mixed 10 px patches start at x in 11..19
    xs = {mixed_patch(gt, 10, sample_rng(0, i), tries=3).box[0] for i in range(200)}
    assert xs == set(range(11, 20))


def test_no_mixed_patch_terminates_and_is_logged(hr_root, tmp_path, caplog) -> None:
    from PIL import Image

    root = tmp_path / "data"
    shutil.copytree(hr_root, root)
    # An all-foreground ground truth has no patch with background: the official loop would
    # never end here.
    for gt in (root / "dis" / "DIS-TR" / "gt").iterdir():
        size = Image.open(gt).size
        Image.fromarray(np.full(size[::-1], 255, np.uint8)).save(gt)
    ds = HRTrainingSet.from_config(_config(root, patch_size=64, patch_tries=10), seed=0)
    samples = [ds[p] for p in range(8)]
    notes = [n for s in samples for n in s["notes"]]
    assert notes and all("no 64x64 patch holds both foreground and background" in n for n in notes)
    dis = [s for s in samples if s["name"].startswith("dis/")]
    assert dis and all(s["patch_gt"].min() == 1.0 for s in dis)

    # Training on that data ends, and the loop logs the notes its batches carry.
    from segrefiner.training import load_train_config, train

    overrides = tiny_overrides(
        root,
        tmp_path / "run",
        **{"data.task": "hr", "data.hr.patch_size": 64, "data.hr.patch_tries": 10},
    )
    with caplog.at_level(logging.INFO, logger="segrefiner.training"):
        result = train(load_train_config(None, overrides))
    assert result.finished
    logged = [r.getMessage() for r in caplog.records if r.name == "segrefiner.training"]
    expected = "no 64x64 patch holds both foreground and background; used a random patch"
    noted = [m for m in logged if m.startswith("rank 0: dis/DIS-TR/") and m.endswith(expected)]
    assert noted
    assert not [m for m in logged if m.startswith("rank 0: thin_object/") and expected in m]


def test_missing_or_mis_sized_coarse_masks_are_skipped(hr_root, tmp_path) -> None:
    from PIL import Image

    root = tmp_path / "data"
    shutil.copytree(hr_root, root)
    (root / "thin_object" / "coarse" / "obj_1.png").unlink()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(
        root / "dis" / "DIS-TR" / "coarse_expand" / "Cat#1#Thing#a.png"
    )
    ds = HRTrainingSet.from_config(_config(root), seed=0)
    reasons = [r for p in range(16) for r in ds[p]["skipped"]]
    assert any("obj_1.png: mask file not found" in r for r in reasons)
    assert any("coarse_expand mask is 10x10 (WxH) but the image is 320x288" in r for r in reasons)


def test_folder_source_layout_and_store_requirement(hr_root) -> None:
    from segrefiner.data.folders import read_hr_training

    records = read_hr_training(hr_root)
    source = FolderCoarseSource(records)
    assert isinstance(source, CoarseSource)
    assert source.path("dis/DIS-TR/Cat#1#Thing#a", "coarse") == (
        hr_root / "dis" / "DIS-TR" / "coarse" / "Cat#1#Thing#a.png"
    )
    assert source.path("thin_object/train/obj_2", "coarse_expand") == (
        hr_root / "thin_object" / "coarse_expand" / "obj_2.png"
    )
    with pytest.raises(InputError, match="no such sample"):
        source.get("dis/DIS-TR/nope", "coarse")
    with pytest.raises(InputError, match=r"pipelines/train\.py"):
        HRTrainingSet.from_config(_config(hr_root, coarse="store", coarse_store="x.zarr"), 0)


def test_global_patches_are_flagged_exact_and_collated(hr_root) -> None:
    ds = HRTrainingSet.from_config(_config(hr_root, global_patch_prob=0.5), seed=3)
    samples = [ds[p] for p in range(8)]
    batch = collate_crops(samples)
    n = len(samples)
    assert batch["exact"].dtype == torch.bool and batch["exact"].shape == (2 * n,)
    assert not batch["exact"][:n].any()  # object crops: the forward process, as official
    expected = [s["patch_source"].startswith("global-") for s in samples]
    assert batch["exact"][n:].tolist() == expected and any(expected) and not all(expected)


def test_exact_crops_see_t0_and_their_whole_coarse_mask() -> None:
    from segrefiner.diffusion import DiscreteDiffusion
    from segrefiner.training.config import TrainConfig
    from segrefiner.training.loop import training_step

    seen = {}

    class Recorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t):
            seen["x"], seen["t"] = x.detach().clone(), t.clone()
            return x[:, 3:4] * 0 + self.w

    gen = torch.Generator().manual_seed(0)
    fine = (torch.rand(4, 1, 16, 16, generator=gen) < 0.5).float()
    coarse = 1 - fine  # every pixel differs: a forward-process sample is never all coarse
    image = torch.zeros(4, 3, 16, 16)
    net = Recorder()
    config = TrainConfig()
    exact = torch.tensor([False, True, False, True])

    def run(flags):
        gens = [torch.Generator().manual_seed(i) for i in range(4)]
        optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
        training_step(
            net, optimizer, DiscreteDiffusion(), image, fine, coarse, gens, config, exact=flags
        )
        return seen["x"][:, 3:4], seen["t"]

    x_plain, t_plain = run(None)
    x_exact, t_exact = run(exact)
    assert t_exact[exact].tolist() == [0, 0]
    assert torch.equal(x_exact[exact], coarse[exact])
    # the other crops keep their draws exactly
    assert torch.equal(t_exact[~exact], t_plain[~exact])
    assert torch.equal(x_exact[~exact], x_plain[~exact])
    assert not torch.equal(x_plain[exact], coarse[exact])


def test_global_object_crops_are_the_global_pass_view(hr_root) -> None:
    import torch.nn.functional as F

    from segrefiner.inference.preprocess import normalize_image

    config = dataclasses.replace(_config(hr_root, global_object_prob=1.0), flip_prob=0)
    ds = HRTrainingSet.from_config(config, seed=4)
    sample = ds[0]
    assert sample["object_source"] == "global"
    # the network input of the global pass for the same image (spec 5.2: legacy nearest)
    from segrefiner.data.folders import load_sample

    loaded = load_sample(next(r for r in ds.records if r.sample_id == sample["name"]))
    size = config.crop_size
    expected = F.interpolate(normalize_image(loaded.image), (size, size), mode="nearest")[0]
    np.testing.assert_allclose(sample["object_image"], expected.numpy(), atol=1e-5)
    gt = torch.from_numpy(loaded.gt.astype(np.float32))[None, None]
    np.testing.assert_array_equal(
        sample["object_gt"][0], F.interpolate(gt, (size, size), mode="nearest")[0, 0].numpy()
    )
    official = HRTrainingSet.from_config(_config(hr_root), seed=4)[0]
    assert official["object_source"] == "box"


def test_native_patches_crop_a_whole_image_coarse_mask_and_train_exact(hr_root) -> None:
    official = HRTrainingSet.from_config(_config(hr_root), seed=3)
    zero = HRTrainingSet.from_config(_config(hr_root, native_patch_prob=0.0), seed=3)
    for p in range(4):
        np.testing.assert_array_equal(official[p]["patch_coarse"], zero[p]["patch_coarse"])

    def dataset(kinds):
        config = _config(hr_root, native_patch_prob=1.0, native_kinds=kinds)
        return HRTrainingSet.from_config(dataclasses.replace(config, flip_prob=0), seed=3)

    # "offline": the store's mask at native resolution (the fixture's coarse is the dilated GT,
    # coarse_expand the eroded one), no resampling, trained at t = 0
    for p in range(6):
        s = dataset(("offline",))[p]
        assert s["patch_source"] == f"native-{s['coarse_kind']}" and s["patch_exact"]
        gt, coarse = s["patch_gt"] > 0, s["patch_coarse"] > 0
        if s["coarse_kind"] == "coarse":
            assert (coarse >= gt).all()
        else:
            assert (coarse <= gt).all()
    # a segmentor-like kind is made from the whole ground truth, then cropped: not the GT
    kinds = ("maskrcnn", "lowres", "official")
    samples = [dataset(kinds)[p] for p in range(12)]
    assert {s["patch_source"] for s in samples} == {f"native-{k}" for k in kinds}
    assert all(s["patch_exact"] for s in samples)
    assert any((s["patch_coarse"] != s["patch_gt"]).any() for s in samples)
    batch = collate_crops(samples)
    assert batch["exact"][len(samples) :].all() and not batch["exact"][: len(samples)].any()


def test_unknown_native_kind_is_refused(tmp_path) -> None:
    from segrefiner.training import load_train_config

    with pytest.raises(InputError, match=r"data\.hr\.native_kinds: unknown or no kinds"):
        load_train_config(
            None, tiny_overrides(tmp_path, tmp_path / "run", **{"data.hr.native_kinds": "[sam]"})
        )

from __future__ import annotations

import numpy as np
import pytest
import torch

from segrefiner import Refiner
from segrefiner.inference import InferenceConfig
from segrefiner.inference.instance import (
    crop_instances,
    instance_boxes,
    paste_changes,
    paste_masks,
)
from segrefiner.inference.preprocess import normalize_image
from tests.conftest import blob_mask

# The network at 64 x 64 keeps CPU tests fast; the geometry is the same as at 256.
FAST = InferenceConfig(model_size=64)


def oracle_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Reads the answer off the image, whose red channel is bright exactly on the object; the
    local average makes it unsure near boundaries, as a trained model is."""
    red = torch.nn.functional.avg_pool2d(x[:, :1], 5, stride=1, padding=2, count_include_pad=False)
    return 4.0 * (red - 0.065)


def test_instance_boxes_pad_and_clip() -> None:
    masks = np.zeros((2, 100, 80), bool)
    masks[0, 30:40, 10:20] = True
    masks[1, 0:5, 70:80] = True
    boxes = instance_boxes(masks, pad_width=20)
    assert boxes.tolist() == [[0, 10, 40, 60], [50, 0, 80, 25]]


def test_crop_paste_identity_for_a_model_sized_box() -> None:
    """A box of exactly the network size: crop and paste are both exact identities."""
    rng = np.random.default_rng(0)
    mask = np.zeros((300, 320), bool)
    mask[30:286, 40:296] = rng.random((256, 256)) > 0.5
    boxes = np.array([[40, 30, 296, 286]])
    image = normalize_image(np.zeros((300, 320, 3), np.uint8))
    _, crop = crop_instances(image, torch.from_numpy(mask[None]), boxes, 256)
    assert torch.equal(crop[0, 0].bool(), torch.from_numpy(mask[30:286, 40:296]))
    pasted = paste_masks(crop, boxes, 300, 320)[0].numpy()
    assert np.array_equal(pasted, mask)


def test_crop_paste_round_trip_rescaled() -> None:
    mask = blob_mask((480, 640), (300, 240), 120)
    boxes = instance_boxes(mask[None], 20)
    image = normalize_image(np.zeros((480, 640, 3), np.uint8))
    _, crop = crop_instances(image, torch.from_numpy(mask[None]), boxes, 256)
    pasted = paste_masks(crop, boxes, 480, 640)[0].numpy()
    iou = (pasted & mask).sum() / (pasted | mask).sum()
    assert iou > 0.98
    x0, y0, x1, y1 = boxes[0]
    outside = pasted.copy()
    outside[y0:y1, x0:x1] = False
    assert not outside.any()


def test_oracle_model_recovers_the_object(photo) -> None:
    """End-to-end plumbing check: with a model that reads the object off the image, the
    instance path returns the object whatever the coarse mask (coordinates, resizing, paste)."""
    gt = blob_mask(photo.shape[:2], (200, 190), 80)
    image = photo.copy()
    image[..., 0] = np.where(gt, 255, 0)
    coarse = np.roll(gt, (12, -9), axis=(0, 1))
    refiner = Refiner.from_checkpoint("tiny", seed=0)
    refiner.model = oracle_model
    out = refiner.refine_instances(image, coarse[None])[0]
    iou = (out & gt).sum() / (out | gt).sum()
    coarse_iou = (coarse & gt).sum() / (coarse | gt).sum()
    assert coarse_iou < 0.85
    assert iou > 0.97


def test_tiny_preset_on_a_photograph(photo) -> None:
    refiner = Refiner.from_checkpoint("tiny", seed=0, config=FAST)
    masks = np.stack(
        [blob_mask(photo.shape[:2], (200, 190), 80), blob_mask(photo.shape[:2], (100, 300), 50, 1)]
    )
    small = np.zeros(photo.shape[:2], bool)
    small[5:20, 5:20] = True  # 225 px < 512: passed through
    out = refiner.refine_instances(photo, np.concatenate([masks, small[None]]))
    assert out.shape == (3, *photo.shape[:2]) and out.dtype == bool
    assert np.array_equal(out[2], small)
    again = Refiner.from_checkpoint("tiny", seed=0, config=FAST)
    again.model.load_state_dict(refiner.model.state_dict())
    assert np.array_equal(again.refine_instances(photo, np.concatenate([masks, small[None]])), out)


def test_seed_and_batch_independence(photo) -> None:
    torch.manual_seed(0)
    refiner = Refiner.from_checkpoint("tiny", seed=7, config=FAST)
    masks = np.stack([blob_mask(photo.shape[:2], (120 + 60 * i, 190), 50, i) for i in range(3)])
    all_at_once = refiner.refine_instances(photo, masks, keys=["a", "b", "c"])
    alone = refiner.refine_instances(photo, masks[1:2], keys=["b"])
    assert np.array_equal(all_at_once[1], alone[0])
    one_by_one = Refiner(refiner.model, seed=7, config=FAST.replace(batch_size=1))
    assert np.array_equal(
        one_by_one.refine_instances(photo, masks, keys=["a", "b", "c"]), all_at_once
    )


def test_seed_changes_the_sampling(photo, monkeypatch) -> None:
    """Different seeds draw different commit noise (observed through the loop's noise)."""
    import segrefiner.diffusion as diffusion

    drawn = []
    real = diffusion.noise_for_steps

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        drawn.append(out.clone())
        return out

    monkeypatch.setattr(diffusion, "noise_for_steps", spy)
    mask = blob_mask(photo.shape[:2], (200, 190), 80)[None]
    Refiner.from_checkpoint("tiny", seed=1, config=FAST).refine_instances(photo, mask)
    Refiner.from_checkpoint("tiny", seed=2, config=FAST).refine_instances(photo, mask)
    assert len(drawn) == 2 and drawn[0].shape[0] == 5  # 5 noisy steps per run, drawn at once
    assert not torch.equal(drawn[0][0], drawn[1][0])


def test_bad_inputs(photo) -> None:
    from segrefiner.errors import InputError

    refiner = Refiner.from_checkpoint("tiny", seed=0, config=FAST)
    with pytest.raises(InputError, match="differs from the image size"):
        refiner.refine_instances(photo, np.zeros((1, 10, 10), bool))
    with pytest.raises(InputError, match="N x H x W"):
        refiner.refine_instances(photo, np.zeros(photo.shape[:2], bool))
    with pytest.raises(InputError, match="uint8"):
        refiner.refine_instances(photo.astype(np.float32), np.zeros((1, *photo.shape[:2]), bool))


def _echo_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Returns its mask channel, sure of every pixel (probabilities exactly 0 and 1 in float32):
    the network changes nothing."""
    return 400.0 * (x[:, 3:4] - 0.5)


def _jagged_mask(height: int, width: int) -> np.ndarray:
    """A blob with a 1-px line and a ragged edge: detail a 64 x 64 round trip cannot keep."""
    rng = np.random.default_rng(3)
    mask = blob_mask((height, width), (100, 150), 60)
    mask[100, 20:280] = True
    edge = mask[:, 150:] & ~np.roll(mask[:, 150:], 2, axis=1)
    mask[:, 150:] ^= edge & (rng.random(edge.shape) > 0.5)
    return mask


@pytest.mark.parametrize("paste", ["crop", "changes"])
def test_paste_of_a_crop_the_network_left_alone(paste: str) -> None:
    """A model that changes nothing: "changes" returns the coarse mask pixel for pixel; the
    official "crop" paste returns it through the 64 x 64 round trip, which changes it."""
    height, width = 200, 300
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    coarse = _jagged_mask(height, width)
    refiner = Refiner.from_checkpoint("tiny", seed=0, config=FAST.replace(paste=paste))
    refiner.model = _echo_model
    out = refiner.refine_instances(image, coarse[None])[0]
    if paste == "changes":
        assert np.array_equal(out, coarse)
    else:
        boxes = instance_boxes(coarse[None], FAST.pad_width)
        _, crop = crop_instances(
            normalize_image(image), torch.from_numpy(coarse[None]), boxes, FAST.model_size
        )
        assert np.array_equal(out, paste_masks(crop, boxes, height, width)[0].numpy())
        assert not np.array_equal(out, coarse)


def test_paste_changes_adds_and_removes_only_what_changed() -> None:
    """A 64 x 64 crop on a 128 x 192 box (2 x 3 px per crop pixel): a block the network adds
    and a block it removes land on exactly their pixels; the rest is the coarse mask."""
    height, width = 128, 192
    masks = np.zeros((1, height, width), bool)
    masks[0, 40:100, 30:150] = True
    masks[0, 70, 5:180] = True  # a 1-px line the crop cannot represent
    coarse = torch.zeros((1, 1, 64, 64))
    coarse[0, 0, 20:50, 10:50] = 1.0  # its crop (the exact crop does not matter here)
    probs = coarse.clone()
    probs[0, 0, 0:10, 0:10] = 1.0  # added: rows 0-19, columns 0-29 of the box
    probs[0, 0, 30:40, 20:30] = 0.0  # removed: rows 60-79, columns 60-89
    boxes = np.array([[0, 0, width, height]])
    out = paste_changes(probs, coarse, boxes, masks)[0]
    expected = masks[0].copy()
    expected[0:20, 0:30] = True
    expected[60:80, 60:90] = False
    # bilinear resampling blurs each block's edge by less than half a crop pixel
    assert np.array_equal(out[2:18, 2:28], np.ones((16, 26), bool))
    assert not out[61:79, 62:88].any()
    inner = np.ones((height, width), bool)
    inner[0:21, 0:32] = False
    inner[59:81, 58:92] = False
    assert np.array_equal(out[inner], expected[inner])
    assert out[70, 5:58].all() and out[70, 92:180].all()  # the line stays native


def test_unknown_paste_is_refused() -> None:
    from segrefiner.errors import InputError

    with pytest.raises(InputError, match="paste: expected one of"):
        InferenceConfig(paste="native")

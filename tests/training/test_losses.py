"""Losses against values computed by hand on 3 x 3 inputs."""

from __future__ import annotations

import math

import pytest
import torch

from segrefiner.training.losses import (
    batch_iou,
    mask_loss,
    segrefiner_loss,
    sobel_magnitude,
    texture_loss,
)

EPS = 1e-4


def _grid(center: float, edge: float, corner: float) -> torch.Tensor:
    return torch.tensor(
        [[corner, edge, corner], [edge, center, edge], [corner, edge, corner]]
    ).view(1, 1, 3, 3)


def test_sobel_magnitude_of_a_centre_pixel() -> None:
    # A 1 at the centre of a 3 x 3 map: the 3 x 3 mean (zero padding counted) is 1/9 at every
    # pixel. Centre: gx = gy = 0. Edge (1, 0): the right column of the x kernel sees
    # (1/9, 1/9, 1/9) with weights (-1, -2, -1), so gx = -4/9 / 4 = -1/9; gy cancels.
    # Corner (0, 0): gx = gy = -(2 + 1)/9 / 4 = -1/12.
    y = torch.zeros(1, 1, 3, 3)
    y[0, 0, 1, 1] = 1.0
    expected = _grid(
        center=math.sqrt(EPS), edge=math.sqrt(1 / 81 + EPS), corner=math.sqrt(2 / 144 + EPS)
    )
    torch.testing.assert_close(sobel_magnitude(y), expected, rtol=1e-6, atol=1e-7)


def test_texture_and_mask_loss_by_hand() -> None:
    # logits 0 -> sigmoid 0.5 everywhere; its 3 x 3 mean: centre 1/2, edge 1/3, corner 2/9.
    # Edge (1, 0): gx = -(1/3 + 2 * 1/2 + 1/3) / 4 = -5/12, gy = 0.
    # Corner (0, 0): gx = gy = -(2 * 1/3 + 1/2) / 4 = -7/24. Centre: 0.
    # The all-zero target has magnitude sqrt(1e-4) everywhere.
    logits = torch.zeros(1, 1, 3, 3)
    target = torch.zeros(1, 1, 3, 3)
    s_pred = _grid(
        center=math.sqrt(EPS),
        edge=math.sqrt(25 / 144 + EPS),
        corner=math.sqrt(2 * 49 / 576 + EPS),
    )
    torch.testing.assert_close(sobel_magnitude(torch.sigmoid(logits)), s_pred, rtol=1e-6, atol=1e-7)
    expected_texture = float((s_pred - math.sqrt(EPS)).abs().mean())
    assert texture_loss(logits, target).item() == pytest.approx(expected_texture, rel=1e-6)
    # BCE of logit 0 is ln 2 whatever the target.
    assert mask_loss(logits, target).item() == pytest.approx(math.log(2), rel=1e-6)
    parts = segrefiner_loss(logits, target)
    assert parts.loss_texture.item() == pytest.approx(5 * expected_texture, rel=1e-6)
    assert parts.total.item() == pytest.approx(math.log(2) + 5 * expected_texture, rel=1e-6)


def test_bce_by_hand() -> None:
    logits = torch.tensor([2.0, -1.0]).view(1, 1, 1, 2)
    target = torch.tensor([1.0, 1.0]).view(1, 1, 1, 2)
    # -log(sigmoid(x)) = log(1 + e^-x)
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2
    assert mask_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_iou_per_sample_mean_with_eps() -> None:
    logits = torch.tensor([[1.0, -1.0], [1.0, 1.0]]).view(1, 1, 2, 2)
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    first = (2 + 1e-3) / (3 + 1e-3)
    # second sample: empty prediction and empty target -> (0 + eps) / (0 + eps) = 1
    logits2 = torch.cat([logits, -torch.ones_like(logits)])
    target2 = torch.cat([target, torch.zeros_like(target)])
    assert batch_iou(logits, target).item() == pytest.approx(first, rel=1e-6)
    assert batch_iou(logits2, target2).item() == pytest.approx((first + 1.0) / 2, rel=1e-6)


def test_loss_is_float32_under_bfloat16_logits_and_has_gradients() -> None:
    logits = torch.randn(2, 1, 8, 8, dtype=torch.bfloat16, requires_grad=True)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    parts = segrefiner_loss(logits, target)
    assert parts.total.dtype == torch.float32
    parts.total.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad.float()).all()
    assert not parts.iou.requires_grad and not parts.loss_mask.requires_grad

"""Training losses and the logged IoU (spec §4.1).

``loss_mask``: mean BCE-with-logits against the fine mask. ``loss_texture``: 5 x the mean L1
between smoothed Sobel magnitudes of ``sigmoid(logits)`` and of the fine mask, where the
magnitude is ``sqrt(gx^2 + gy^2 + 1e-4)`` of a 3 x 3 average-pooled map (zero padding counted in
the mean) and the Sobel kernels are divided by 4. Everything is computed in float32, also when
the network ran under bfloat16 autocast.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from segrefiner.checkpoint import SOBEL_X, SOBEL_Y

TEXTURE_EPS = 1e-4  # inside the square root: keeps the gradient finite on flat regions
IOU_EPS = 1e-3


def sobel_magnitude(y: torch.Tensor) -> torch.Tensor:
    """Smoothed gradient magnitude of ``y``: float (B, 1, H, W) -> float32 (B, 1, H, W).

    ``A`` = 3 x 3 average pooling (stride 1, zero padding 1, padding counted), then
    ``sqrt(Gx(A y)^2 + Gy(A y)^2 + 1e-4)`` with the Sobel kernels / 4 as cross-correlations
    with zero padding 1.
    """
    y = y.float()
    smooth = F.avg_pool2d(y, 3, stride=1, padding=1, count_include_pad=True)
    kx = torch.tensor(SOBEL_X, dtype=torch.float32, device=y.device).div(4.0).view(1, 1, 3, 3)
    ky = torch.tensor(SOBEL_Y, dtype=torch.float32, device=y.device).div(4.0).view(1, 1, 3, 3)
    gx = F.conv2d(smooth, kx, padding=1)
    gy = F.conv2d(smooth, ky, padding=1)
    return torch.sqrt(gx * gx + gy * gy + TEXTURE_EPS)


def mask_loss(logits: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits; ``logits`` and ``fine`` (B, 1, H, W), ``fine`` in {0, 1}."""
    return F.binary_cross_entropy_with_logits(logits.float(), fine.float())


def texture_loss(logits: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    """Mean |S(sigmoid(logits)) - S(fine)| with S = :func:`sobel_magnitude` (unweighted)."""
    return (sobel_magnitude(torch.sigmoid(logits.float())) - sobel_magnitude(fine)).abs().mean()


@torch.no_grad()
def batch_iou(logits: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    """Mean over samples of IoU([fine >= 0.5], [logits >= 0]) with eps 1e-3 (logged only).

    ``logits``, ``fine``: (B, 1, H, W). Returns a float32 scalar in [0, 1].
    """
    pred = (logits >= 0).flatten(1).float()
    target = (fine >= 0.5).flatten(1).float()
    inter = (pred * target).sum(1)
    union = pred.sum(1) + target.sum(1) - inter
    return ((inter + IOU_EPS) / (union + IOU_EPS)).mean()


@dataclass(frozen=True)
class LossParts:
    """The weighted loss terms of one batch; ``total`` is what is back-propagated."""

    total: torch.Tensor
    loss_mask: torch.Tensor
    loss_texture: torch.Tensor
    iou: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {
            "loss": float(self.total),
            "loss_mask": float(self.loss_mask),
            "loss_texture": float(self.loss_texture),
            "iou": float(self.iou),
        }


def segrefiner_loss(
    logits: torch.Tensor,
    fine: torch.Tensor,
    mask_weight: float = 1.0,
    texture_weight: float = 5.0,
) -> LossParts:
    """The official training objective: ``mask_weight`` x BCE + ``texture_weight`` x texture L1.

    ``logits``: (B, 1, H, W) network output (any float dtype); ``fine``: (B, 1, H, W) target in
    {0, 1}. The logged ``iou`` carries no gradient.
    """
    loss_mask = mask_weight * mask_loss(logits, fine)
    loss_texture = texture_weight * texture_loss(logits, fine)
    return LossParts(
        total=loss_mask + loss_texture,
        loss_mask=loss_mask.detach(),
        loss_texture=loss_texture.detach(),
        iou=batch_iou(logits.detach(), fine),
    )

"""Image and mask tensors for the network."""

from __future__ import annotations

import numpy as np
import torch

from segrefiner.errors import InputError
from segrefiner.inference.config import IMAGE_MEAN, IMAGE_STD


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an ``H x W x 3`` ``uint8`` RGB image."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{name}: expected an H x W x 3 RGB array, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise InputError(f"{name}: expected dtype uint8 (0-255), got {image.dtype}")
    return image


def check_masks(masks: np.ndarray, shape: tuple[int, int], name: str = "mask") -> np.ndarray:
    """Validate masks of spatial size ``shape`` (H, W) and binarise them (``> 0`` or ``>= 0.5``
    for floats in [0, 1]); returns ``bool``."""
    masks = np.asarray(masks)
    if masks.shape[-2:] != tuple(shape):
        raise InputError(
            f"{name}: mask size {masks.shape[-1]}x{masks.shape[-2]} (WxH) differs from the "
            f"image size {shape[1]}x{shape[0]}"
        )
    if masks.dtype == bool:
        return masks
    if np.issubdtype(masks.dtype, np.floating):
        if not np.isfinite(masks).all():
            raise InputError(f"{name}: mask contains non-finite values")
        return masks >= 0.5
    return masks > 0


def normalize_image(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``H x W x 3`` uint8 RGB -> float32 (1, 3, H, W), ImageNet mean/std on the 0-255 scale."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    tensor = tensor.permute(2, 0, 1).unsqueeze(0).float()
    mean = torch.tensor(IMAGE_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=device).view(1, 3, 1, 1)
    return (tensor - mean) / std

"""How a network runs, not what it computes: wrappers that change the precision or the batch
shapes a network sees without changing the results the inference paths rely on.

Both take and return a :data:`~segrefiner.diffusion.Denoiser`
(``(x (B, 4, H, W), t (B,)) -> logits (B, 1, H, W)``), so they stack around a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from segrefiner.diffusion import Denoiser

__all__ = ["AutocastDenoiser", "PaddedBatches"]


class AutocastDenoiser:
    """Wraps a network so every call runs under ``torch.autocast`` (e.g. bfloat16 on CUDA).

    The reverse step computes probabilities in float32 from the returned logits.
    """

    def __init__(self, model: Denoiser, device_type: str, dtype: torch.dtype = torch.bfloat16):
        self.model = model
        self.device_type = device_type
        self.dtype = dtype

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model(x, t)


class PaddedBatches:
    """Pads every batch with zero items up to the smallest of a few fixed ``sizes`` and drops
    their outputs, so a compiled network (``torch.compile``, CUDA graphs) sees a handful of
    shapes instead of recompiling for each odd tail batch. Items do not interact in the
    network, so the real items' outputs are unchanged. A batch larger than every size runs
    as it is.
    """

    def __init__(self, model: Denoiser, sizes: Sequence[int]):
        if not sizes or min(sizes) < 1:
            raise ValueError(f"batch sizes must be positive, got {list(sizes)}")
        self.model = model
        self.sizes = sorted(set(sizes))

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        target = next((s for s in self.sizes if s >= n), n)
        if target == n:
            return self.model(x, t)
        x = torch.cat([x, x.new_zeros((target - n, *x.shape[1:]))])
        t = torch.cat([t, t.new_zeros(target - n)])
        return self.model(x, t)[:n]

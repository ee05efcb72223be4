"""SegRefiner's discrete diffusion over binary masks (spec §3).

Every pixel is either "fine" (its value comes from the fine mask: the ground truth in
training, the current prediction at inference) or "coarse" (its value comes from the coarse
input mask). ``fine_prob[t]`` is the cumulative probability that a pixel is still fine at step
``t``; it falls linearly from 0.8 at ``t = 0`` (the least degraded state the network sees) to
0.0 at ``t = 5`` (the coarse mask itself). Inference starts from the coarse mask at ``t = 5``
and walks down to ``t = 0``.

This module holds the schedule (:class:`DiscreteDiffusion`) with the forward step used in
training (:meth:`~DiscreteDiffusion.q_sample`) and the reverse step used at inference
(:meth:`~DiscreteDiffusion.reverse_step`), and :func:`sample_loop`, the one loop where model
and schedule meet. Randomness always comes from explicit per-item ``torch.Generator`` s, so an
item's result does not depend on which other items share its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class DiscreteDiffusion:
    """The linear "stay fine" schedule: ``fine_prob = linspace(start, stop, num_steps)``."""

    num_steps: int = 6
    start: float = 0.8
    stop: float = 0.0

    @property
    def fine_prob(self) -> np.ndarray:
        """(num_steps,) float64: cumulative probability that a pixel is fine at step t."""
        return np.linspace(self.start, self.stop, self.num_steps)

    @property
    def fine_prob_prev(self) -> np.ndarray:
        """(num_steps,) float64: ``fine_prob`` of the step before (1.0 before t = 0)."""
        return np.concatenate([[1.0], self.fine_prob[:-1]])

    @property
    def inference_steps(self) -> list[int]:
        """Step indices of a full reverse pass, noisiest first: [5, 4, 3, 2, 1, 0]."""
        return list(range(self.num_steps - 1, -1, -1))

    # -- training ---------------------------------------------------------------------------

    def q_sample(
        self,
        fine: torch.Tensor,
        coarse: torch.Tensor,
        t: torch.Tensor,
        generators: Sequence[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Forward (degrading) step: mix fine and coarse masks pixel-wise.

        ``fine``, ``coarse``: float (B, 1, H, W) in {0, 1}; ``t``: long (B,). Each pixel keeps
        the fine value with probability ``fine_prob[t]``, else takes the coarse value.
        Returns float (B, 1, H, W) in {0, 1}.
        """
        keep_prob = torch.as_tensor(self.fine_prob, dtype=fine.dtype, device=fine.device)[t]
        u = uniform_noise(fine.shape, generators, fine.device, fine.dtype)
        keep = u < keep_prob.view(-1, 1, 1, 1)
        return torch.where(keep, fine, coarse)

    # -- inference --------------------------------------------------------------------------

    def transition_prob(self, confidence: torch.Tensor, t: int) -> torch.Tensor:
        """Probability that a coarse pixel becomes fine at step ``t`` (paper Eq. for p_c→f).

        ``confidence`` in [0, 1] is ``2 |sigmoid(logits) - 0.5|``; with confidence 1 this is
        0.16, 0.190476, 0.235294, 0.307692, 0.444444, 1.0 for t = 5..0.
        """
        cur, prev = float(self.fine_prob[t]), float(self.fine_prob_prev[t])
        return confidence * (prev - cur) / (1.0 - confidence * cur)

    def reverse_step(
        self,
        logits: torch.Tensor,
        t: int,
        coarse: torch.Tensor,
        fine_prob: torch.Tensor,
        noise: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One reverse step given the network's ``logits`` at step ``t``.

        ``coarse``: float (B, 1, H, W) in {0, 1}, the original coarse mask; ``fine_prob``:
        float (B, 1, H, W), the accumulated probability that each pixel is already fine.
        ``noise``: uniform [0, 1) of the same shape, or ``None`` for the last step.
        Returns ``(x, fine_prob)``: for the last step ``x`` is the probability map
        ``sigmoid(logits)``; otherwise the next mask, where pixels committed with probability
        ``fine_prob`` take the hard prediction and the others revert to the coarse mask.
        """
        mask_prob = torch.sigmoid(logits.float())
        confidence = 2.0 * (mask_prob - 0.5).abs()
        fine_prob = fine_prob + (1.0 - fine_prob) * self.transition_prob(confidence, t)
        if noise is None:
            return mask_prob, fine_prob
        commit = noise < fine_prob
        prediction = (logits >= 0).to(coarse.dtype)
        return torch.where(commit, prediction, coarse), fine_prob


def uniform_noise(
    shape: torch.Size | tuple[int, ...],
    generators: Sequence[torch.Generator] | None,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform [0, 1) noise of ``shape`` (B, ...), item ``i`` drawn from ``generators[i]``.

    Generators live on the CPU, so the same seeds give the same noise on every device.
    ``None`` draws from torch's global generator.
    """
    if generators is None:
        return torch.rand(shape, device=device, dtype=dtype)
    if len(generators) != shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {shape[0]}")
    noise = torch.stack([torch.rand(shape[1:], generator=g) for g in generators])
    return noise.to(device=device, dtype=dtype)


def noise_for_steps(
    shape: torch.Size | tuple[int, ...],
    num_steps: int,
    generators: Sequence[torch.Generator],
    device: torch.device | str,
) -> torch.Tensor:
    """The noise of ``num_steps`` successive :func:`uniform_noise` calls, drawn at once:
    float32 (num_steps, B, ...), step ``s`` of item ``i`` from ``generators[i]``.

    Each generator yields the same numbers as in step-by-step drawing (a CPU generator fills
    a tensor in order), so results do not change; on CUDA the noise goes over in one
    asynchronous copy from pinned memory, so the loop never waits for the GPU between steps.
    """
    if len(generators) != shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {shape[0]}")
    noise = torch.stack([torch.rand((num_steps, *shape[1:]), generator=g) for g in generators], 1)
    if torch.device(device).type == "cuda":
        return noise.pin_memory().to(device, non_blocking=True)
    return noise.to(device)


def _run_network(model: Denoiser, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``model(x, t)``; on the CPU one item per call.

    CPU convolution and matrix kernels choose their blocking by batch size, so a batched call
    can change an item's logits in the last bits with the number of items beside it (measured:
    up to 1e-6 between batches of 1, 3, 8 and 16 on an AMD EPYC), and a probability near 0.5
    then commits or reverts another pixel. One item per call keeps every item's result a
    function of its own inputs, and on the CPU it costs nothing: one by one takes 0.5-0.6x the
    time of a batch of 4 for the tiny and small networks at 256 x 256 and 0.9-1.06x for the
    official one (``benchmarks/cpu_batching.py``). On CUDA the batch runs as it is.
    """
    if x.device.type != "cpu" or x.shape[0] == 1:
        return model(x, t)
    return torch.cat([model(x[i : i + 1], t[i : i + 1]) for i in range(x.shape[0])])


@torch.no_grad()
def sample_loop(
    model: Denoiser,
    diffusion: DiscreteDiffusion,
    image: torch.Tensor,
    coarse: torch.Tensor,
    steps: Sequence[int],
    generators: Sequence[torch.Generator] | None = None,
    fine_prob: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the reverse process over ``steps`` (descending step indices).

    ``image``: float (B, 3, H, W), normalized RGB; ``coarse``: float (B, 1, H, W) in {0, 1};
    ``generators``: one per item for the commit noise (``None``: global RNG);
    ``fine_prob``: initial accumulated fine probability (default zeros).
    Returns ``(mask_prob, fine_prob)``: float (B, 1, H, W) foreground probability of the last
    step and the accumulated fine probability.
    """
    if not steps:
        raise ValueError("sample_loop needs at least one step")
    coarse = coarse.to(image.dtype)
    x = coarse
    acc = torch.zeros_like(coarse, dtype=torch.float32) if fine_prob is None else fine_prob.float()
    batch = image.shape[0]
    noisy = len(steps) - 1  # the last step commits nothing and draws no noise
    drawn = None
    if generators is not None and noisy:
        drawn = noise_for_steps(x.shape, noisy, generators, image.device)
    for i, t in enumerate(steps):
        t_batch = torch.full((batch,), int(t), dtype=torch.long, device=image.device)
        logits = _run_network(model, torch.cat([image, x], dim=1), t_batch)
        if i == noisy:
            noise = None
        elif drawn is not None:
            noise = drawn[i]
        else:
            noise = uniform_noise(x.shape, None, image.device)
        x, acc = diffusion.reverse_step(logits, int(t), coarse, acc, noise)
    return x, acc

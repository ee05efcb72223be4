"""Where every random number of a training run comes from.

A run is a sequence of *sample positions* ``p = 0, 1, 2, ...``: iteration ``i`` consumes the
global batch ``[i * B, (i + 1) * B)``, and process ``r`` of ``R`` takes the slice
``[i * B + r * B / R, i * B + (r + 1) * B / R)``. Position ``p`` falls in epoch ``p // N``
(``N`` samples) and names the sample ``order(epoch)[p % N]``, where each epoch's order is a
permutation drawn from ``(seed, epoch)``.

Everything a sample needs (annotation choice, coarse-mask degradation, crop, flip; the
diffusion step ``t`` and the forward-process noise of each crop) is drawn from generators
seeded by ``(seed, stream, position, ...)``. Hence:

* a run is reproducible, and resuming at iteration ``i`` needs nothing but ``i``;
* the samples, their augmentation and their noise do not depend on the number of processes,
  data-loader workers or their scheduling (ranks draw different ``t`` and noise because they
  hold different positions: the identical per-rank draws of the official code, spec §8.23, do
  not happen).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Sampler

from segrefiner.inference.seeding import item_generator

# Stream ids keep the generators of different purposes independent.
STREAM_ORDER = 1
STREAM_SAMPLE = 2
STREAM_DIFFUSION = 3


@lru_cache(maxsize=4)
def epoch_order(seed: int, epoch: int, num_samples: int) -> np.ndarray:
    """The permutation of ``range(num_samples)`` used in ``epoch``: int64 (num_samples,)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, STREAM_ORDER, epoch]))
    order = rng.permutation(num_samples)
    order.flags.writeable = False
    return order


def sample_index(seed: int, position: int, num_samples: int) -> int:
    """The dataset index that sample ``position`` reads (before any replacement)."""
    epoch, offset = divmod(position, num_samples)
    return int(epoch_order(seed, epoch, num_samples)[offset])


def sample_rng(seed: int, position: int, attempt: int = 0) -> np.random.Generator:
    """The numpy generator of sample ``position``; ``attempt > 0`` for a replacement sample
    (when the first choice could not be used)."""
    return np.random.default_rng(np.random.SeedSequence([seed, STREAM_SAMPLE, position, attempt]))


def crop_generator(seed: int, position: int, slot: int) -> torch.Generator:
    """The CPU torch generator of one crop's step ``t`` and forward-process noise.

    ``slot`` is the crop's place within its sample (0: object crop; 1: HR patch)."""
    return item_generator(seed, STREAM_DIFFUSION, position, slot)


def draw_steps(generators: list[torch.Generator], num_steps: int) -> torch.Tensor:
    """One step index ``t ~ U{0..num_steps-1}`` per crop: long (B,)."""
    return torch.cat([torch.randint(num_steps, (1,), generator=g) for g in generators])


class PositionBatchSampler(Sampler[list[int]]):
    """Yields, for iterations ``start_iter .. max_iters - 1``, this process's sample positions.

    ``batch_size`` is global; each of ``world_size`` processes gets ``batch_size // world_size``
    consecutive positions of the iteration's global batch.
    """

    def __init__(
        self, batch_size: int, start_iter: int, max_iters: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size % world_size:
            raise ValueError(
                f"global batch size {batch_size} does not split over {world_size} processes"
            )
        self.batch_size = batch_size
        self.per_rank = batch_size // world_size
        self.start_iter = start_iter
        self.max_iters = max_iters
        self.rank = rank

    def __iter__(self) -> Iterator[list[int]]:
        for it in range(self.start_iter, self.max_iters):
            first = it * self.batch_size + self.rank * self.per_rank
            yield list(range(first, first + self.per_rank))

    def __len__(self) -> int:
        return max(0, self.max_iters - self.start_iter)

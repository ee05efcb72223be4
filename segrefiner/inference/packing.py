"""Network batches shared across images, for both inference paths, and what a CUDA
out-of-memory error does to them.

Instance (LR) path: :class:`CropQueue` takes the prepared crops of one image after another and runs them through
the reverse process in batches of exactly ``batch_size`` (only the very last batch of a shard
may be smaller): a batch can hold the end of one image and the start of the next, and an image
is handed back once all its crops are refined, in the order images came in. Every crop keeps
its own generator, so an image's result does not depend on how its crops were batched.

A CUDA out-of-memory error halves the batch size for the rest of the queue and retries the same
crops with the same noise; a crop that does not fit even alone fails its image, whose other
crops are then skipped.

Semantic (HR) path: :func:`refine_semantic_packed` refines a group of images whose global
passes and local patches share batches (:func:`~segrefiner.inference.semantic.refine_semantic_group`);
an out-of-memory error halves the batch size and runs the group again with the same noise; at
batch size 1 the images are run one by one, and an image that does not fit even alone gets its
reason instead of a result.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from segrefiner.diffusion import DiscreteDiffusion
from segrefiner.inference.config import InferenceConfig
from segrefiner.inference.instance import CropResults, PreparedInstances, refine_crops
from segrefiner.inference.score import ScoreCalibration
from segrefiner.inference.semantic import SemanticItem, SemanticResult, refine_semantic_group

__all__ = ["CropQueue", "refine_semantic_packed"]

log = logging.getLogger(__name__)

DoneFn = Callable[[Any, PreparedInstances, CropResults], None]
FailedFn = Callable[[Any, PreparedInstances, str], None]


@dataclass
class _Job:
    key: Any
    prepared: PreparedInstances
    generators: list[torch.Generator]
    parts: list[CropResults] = field(default_factory=list)
    taken: int = 0  # crops already run (or skipped after a failure)
    failed: str | None = None

    @property
    def left(self) -> int:
        return self.prepared.num_crops - self.taken


class CropQueue:
    """Runs queued crops in full batches; see the module docs.

    ``on_done(key, prepared, results)`` gets an image's crop results ((K, 1, S, S)
    probabilities and score features);
    ``on_failed(key, prepared, reason)`` an image none of whose masks could be refined.
    Callbacks run on the caller's thread, in the order images were added.
    """

    def __init__(
        self,
        denoiser: Any,
        diffusion: DiscreteDiffusion,
        batch_size: int,
        on_done: DoneFn,
        on_failed: FailedFn,
        device: str = "cpu",
    ):
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.denoiser = denoiser
        self.diffusion = diffusion
        self.batch_size = batch_size
        self.on_done = on_done
        self.on_failed = on_failed
        self.device = device
        self._jobs: deque[_Job] = deque()
        self._queued = 0  # crops not yet run

    def add(self, key: Any, prepared: PreparedInstances, generators: list[torch.Generator]) -> None:
        """Queue one image's crops (``generators``: one per crop); runs every batch that is
        full."""
        if len(generators) != prepared.num_crops:
            raise ValueError(f"{len(generators)} generators for {prepared.num_crops} crops")
        self._jobs.append(_Job(key, prepared, list(generators)))
        self._queued += prepared.num_crops
        while self._queued >= self.batch_size:
            self._run(self.batch_size)
        self._hand_back()

    def flush(self) -> None:
        """Run what is left (one last, smaller batch) and hand every image back."""
        while self._queued:
            self._run(min(self.batch_size, self._queued))
        self._hand_back()

    # ----------------------------------------------------------------------------- internals

    def _take(self, n: int) -> list[tuple[_Job, int, int]]:
        """The next ``n`` crops as (job, start, stop) runs, in queue order."""
        runs, need = [], n
        for job in self._jobs:
            if need == 0:
                break
            k = min(job.left, need)
            if k:
                runs.append((job, job.taken, job.taken + k))
                need -= k
        return runs

    def _run(self, n: int) -> None:
        runs = self._take(n)
        crops = torch.cat([job.prepared.crops[a:b] for job, a, b in runs])
        coarse = torch.cat([job.prepared.coarse[a:b] for job, a, b in runs])
        gens = [g for job, a, b in runs for g in job.generators[a:b]]
        try:
            fresh = [_copy(g) for g in gens]  # a retry draws the same noise as a clean run
            results = refine_crops(self.denoiser, self.diffusion, crops, coarse, fresh, len(gens))
        except torch.OutOfMemoryError:
            _release_cuda_cache(self.device)
            if n > 1:
                self.batch_size = max(1, n // 2)
                log.warning("out of memory; batch size now %d", self.batch_size)
                return  # the caller's loop retries these crops at the smaller size
            (job, _, _) = runs[0]
            job.failed = "out of memory at batch size 1"
            self._queued -= job.left
            job.taken = job.prepared.num_crops
            job.parts.clear()
            return
        start = 0
        for job, a, b in runs:
            job.parts.append(results[start : start + b - a])
            start += b - a
            job.taken = b
        self._queued -= n

    def _hand_back(self) -> None:
        while self._jobs and self._jobs[0].left == 0:
            job = self._jobs.popleft()
            if job.failed is not None:
                self.on_failed(job.key, job.prepared, job.failed)
                continue
            parts = job.parts or [CropResults(job.prepared.coarse)]  # (0, 1, S, S)
            self.on_done(job.key, job.prepared, CropResults.cat(parts))


def refine_semantic_packed(
    denoiser: Any,
    diffusion: DiscreteDiffusion,
    items: Sequence[SemanticItem],
    config: InferenceConfig,
    device: str = "cpu",
    calibration: ScoreCalibration | None = None,
) -> list[SemanticResult | str]:
    """:func:`~segrefiner.inference.semantic.refine_semantic_group` that survives running out
    of CUDA memory (see the module docs): per item, in order, its result or the reason it has
    none (``"<name>: out of memory at batch size 1"``). Each item's noise starts from its
    generator's state at the call, whatever the retries."""
    states = [item.generator.get_state() if item.generator is not None else None for item in items]

    def fresh(indices: Sequence[int]) -> list[SemanticItem]:
        return [dataclasses.replace(items[i], generator=_from_state(states[i])) for i in indices]

    def run(indices: list[int], batch: int) -> list[SemanticResult | str]:
        while True:
            try:
                return list(
                    refine_semantic_group(
                        denoiser, diffusion, fresh(indices), config.replace(batch_size=batch),
                        device, calibration,
                    )
                )  # fmt: skip
            except torch.OutOfMemoryError:
                _release_cuda_cache(device)
                if batch > 1:
                    batch = max(1, batch // 2)
                    names = ", ".join(items[i].name for i in indices)
                    log.warning("%s: out of memory; retrying with batch size %d", names, batch)
                elif len(indices) == 1:
                    return [f"{items[indices[0]].name}: out of memory at batch size 1"]
                else:
                    return [out for i in indices for out in run([i], 1)]

    return run(list(range(len(items))), config.batch_size)


def _copy(generator: torch.Generator) -> torch.Generator:
    return torch.Generator().set_state(generator.get_state())


def _from_state(state: torch.Tensor | None) -> torch.Generator | None:
    return None if state is None else torch.Generator().set_state(state)


def _release_cuda_cache(device: str | torch.device) -> None:
    # what the failed attempt allocated goes back to the device before the smaller retry
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()

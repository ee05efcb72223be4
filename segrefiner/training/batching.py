"""What the training data sets share: sample positions, replacement of unusable samples, and
the collation of samples into network batches.

A data set is indexed by *sample position* (see :mod:`segrefiner.training.sampling`), not by
record: ``dataset[p]`` reads record ``sample_index(seed, p, len(dataset))``. When that record
cannot be used (unreadable image, mask of another size, no usable object) its reason is
recorded and a replacement record drawn from ``(seed, p, attempt)`` is tried, up to
``max_retries`` times; the reasons travel with the sample so that the training loop logs and
counts them in the main process (data-loader workers are separate processes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from segrefiner.errors import InputError
from segrefiner.training.sampling import sample_index, sample_rng


class SkipSample(Exception):
    """A record that cannot give a training sample; the message says why."""


class PositionDataset(Dataset):
    """Base class: subclasses implement ``__len__`` (records), ``record_name`` and
    ``make_sample(index, rng) -> dict`` (raising :class:`SkipSample` or :class:`InputError`
    for a record that cannot be used)."""

    #: crops per sample (LR: the object crop; HR: object crop + patch)
    crops_per_sample = 1

    def __init__(self, seed: int, max_retries: int) -> None:
        self.seed = int(seed)
        self.max_retries = int(max_retries)

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def record_name(self, index: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def make_sample(
        self, index: int, rng: np.random.Generator
    ) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def __getitem__(self, position: int) -> dict[str, Any]:
        """The sample at ``position``: arrays of :meth:`make_sample` plus ``position``,
        ``index``, ``name``, ``skipped`` (reasons of records replaced on the way) and ``notes``."""
        n = len(self)
        if n == 0:
            raise InputError("the training set is empty")
        skipped: list[str] = []
        for attempt in range(self.max_retries + 1):
            rng = sample_rng(self.seed, position, attempt)
            index = sample_index(self.seed, position, n) if attempt == 0 else int(rng.integers(n))
            try:
                sample = self.make_sample(index, rng)
            except (SkipSample, InputError) as exc:
                skipped.append(f"{self.record_name(index)}: {exc}")
                continue
            sample.setdefault("notes", [])
            sample.update(position=position, index=index, skipped=skipped)
            sample["name"] = self.record_name(index)
            return sample
        raise InputError(
            f"sample position {position}: no usable record after {self.max_retries + 1} tries; "
            "last problems: " + "; ".join(skipped[-3:])
        )


def collate_crops(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch of crops.

    LR samples hold ``image`` / ``gt`` / ``coarse``; HR samples hold ``object_*`` and
    ``patch_*``. The batch is ``image`` float32 (C, 3, S, S), ``gt`` and ``coarse`` float32
    (C, 1, S, S), with HR object crops first and patches after them (as the official
    ``get_train_input``), plus per-crop ``positions`` and ``slots`` (long (C,)) for the
    diffusion generators, ``exact`` (bool (C,): crops trained at t = 0 with their coarse mask
    as the network's input, see :func:`segrefiner.training.loop.training_step`), and
    per-sample ``names``, ``skipped`` and ``notes``.
    """
    if "image" in samples[0]:
        groups = [("", 0)]
    else:
        groups = [("object_", 0), ("patch_", 1)]
    out: dict[str, Any] = {}
    for key in ("image", "gt", "coarse"):
        out[key] = torch.from_numpy(
            np.stack([s[prefix + key] for prefix, _ in groups for s in samples])
        )
    out["positions"] = torch.tensor(
        [s["position"] for _, _ in groups for s in samples], dtype=torch.long
    )
    out["slots"] = torch.tensor([slot for _, slot in groups for _ in samples], dtype=torch.long)
    out["exact"] = torch.tensor(
        [bool(s.get(prefix + "exact", False)) for prefix, _ in groups for s in samples],
        dtype=torch.bool,
    )
    out["names"] = [s["name"] for s in samples]
    out["skipped"] = [reason for s in samples for reason in s["skipped"]]
    out["notes"] = [note for s in samples for note in s["notes"]]
    return out

"""How a training run reports: a small callback interface, called on the main process only.

A tracker (e.g. an MLflow adapter in ``flows/``) implements the methods it needs by subclassing
:class:`Callback`; the training loop never imports a tracking library. Metric names are the
same everywhere: ``loss``, ``loss_mask``, ``loss_texture``, ``iou``, ``lr``, ``grad_norm``
(with clipping), ``iters_per_s``, ``samples_per_s`` (images per second over all processes),
``crops_per_s``, ``data_wait`` (fraction of the time spent waiting for data), ``skipped``
(samples replaced so far because they could not be used).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segrefiner.io import atomic_path

log = logging.getLogger("segrefiner.training")


class Callback:
    """No-op base class; override what you need. Values are plain Python numbers/strings."""

    def on_train_start(self, info: Mapping[str, Any]) -> None:
        """Once, before the first iteration: the resolved config (flat ``{"a.b": value}``),
        ``start_step``, ``max_iters``, ``world_size``, ``run_dir``, dataset size."""

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Every ``log.interval`` iterations: means over the interval (``step`` = iterations
        done)."""

    def on_checkpoint(self, step: int, path: str) -> None:
        """After a training checkpoint was written."""

    def on_train_end(self, result: Mapping[str, Any]) -> None:
        """Once, after the final checkpoints: paths, final metrics, counts."""


class CallbackList(Callback):
    """Fans each event out to several callbacks, in order."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, info: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_start(info)

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_log(step, metrics)

    def on_checkpoint(self, step: int, path: str) -> None:
        for cb in self.callbacks:
            cb.on_checkpoint(step, path)

    def on_train_end(self, result: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_end(result)


class LoggingCallback(Callback):
    """One log line per record through :mod:`logging` (logger ``segrefiner.training``)."""

    def __init__(self, max_iters: int) -> None:
        self.max_iters = max_iters

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        parts = [f"iter {step}/{self.max_iters}"]
        for key in ("loss", "loss_mask", "loss_texture", "iou", "lr", "grad_norm"):
            if key in metrics:
                parts.append(f"{key} {metrics[key]:.4g}")
        if "samples_per_s" in metrics:
            parts.append(f"{metrics['samples_per_s']:.2f} samples/s")
        if metrics.get("skipped"):
            parts.append(f"skipped {int(metrics['skipped'])}")
        log.info(", ".join(parts))

    def on_checkpoint(self, step: int, path: str) -> None:
        log.info("iter %d: checkpoint %s", step, path)


class JsonlCallback(Callback):
    """Appends ``{"step": ..., **metrics}`` per record to a JSON-lines file. Records of steps
    at or after a resumed run's start are dropped first, so the file reads as one run."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def on_train_start(self, info: Mapping[str, Any]) -> None:
        start = int(info.get("start_step", 0))
        if not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = []
        for line in lines:
            try:
                if int(json.loads(line)["step"]) <= start:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill
        # Rewritten only when something goes (records logged after the last checkpoint of a
        # killed run), so a reader following the file normally sees it only grow.
        if len(kept) != len(lines):
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")


class HistoryCallback(Callback):
    """Keeps every record in memory (``history``: list of ``(step, metrics)``); for tests and
    notebooks."""

    def __init__(self) -> None:
        self.history: list[tuple[int, dict[str, float]]] = []
        self.checkpoints: list[tuple[int, str]] = []
        self.started: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None

    def on_train_start(self, info: Mapping[str, Any]) -> None:
        self.started = dict(info)

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.history.append((step, dict(metrics)))

    def on_checkpoint(self, step: int, path: str) -> None:
        self.checkpoints.append((step, path))

    def on_train_end(self, result: Mapping[str, Any]) -> None:
        self.result = dict(result)

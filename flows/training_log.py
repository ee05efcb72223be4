"""Training curves to MLflow: the training loop's callback, and a follower that feeds it the
metrics a training process in another process appends to its ``metrics.jsonl``."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from flows.tracking import TrackedRun
from segrefiner.training.callbacks import Callback

log = logging.getLogger(__name__)

__all__ = ["MlflowTrainingCallback", "follow_jsonl"]


class MlflowTrainingCallback(Callback):
    """The training loop's callback logging to an MLflow run: params at the start, curves
    ``train/<metric>`` per logged step, checkpoints as tags, final metrics at the end."""

    def __init__(self, run: TrackedRun) -> None:
        self.run = run
        self.last_step = -1

    def on_train_start(self, info: Mapping[str, Any]) -> None:
        self.run.set_tags({k: v for k, v in info.items() if not isinstance(v, dict)})

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        if step <= self.last_step:
            return  # a resumed run replays nothing twice
        self.last_step = step
        self.run.log_metrics({f"train/{k}": v for k, v in metrics.items()}, step=step)

    def on_checkpoint(self, step: int, path: str) -> None:
        self.run.set_tags({"last_checkpoint": path, "last_checkpoint_step": step})

    def on_train_end(self, result: Mapping[str, Any]) -> None:
        metrics = result.get("metrics") or {}
        self.run.log_metrics({f"final/{k}": v for k, v in metrics.items()})


def follow_jsonl(
    path: str | os.PathLike,
    callback: Callback,
    stop: threading.Event,
    interval: float = 5.0,
) -> threading.Thread:
    """Feed ``{"step": ..., **metrics}`` lines appended to ``path`` to ``callback.on_log``
    until ``stop`` is set (then once more); for training that runs in another process."""

    def read_new(offset: int) -> int:
        try:
            if os.path.getsize(path) < offset:
                offset = 0  # rewritten by a resumed run; steps already seen are skipped
            with open(path, encoding="utf-8") as fh:
                fh.seek(offset)
                while True:
                    line = fh.readline()
                    if not line.endswith("\n"):
                        return offset  # an unfinished line: read it next time
                    offset = fh.tell()
                    try:
                        record = json.loads(line)
                        step = int(record.pop("step"))
                    except (ValueError, KeyError, TypeError):
                        continue
                    callback.on_log(step, record)
        except FileNotFoundError:
            return offset
        except OSError as exc:
            log.warning("reading %s: %s", path, exc)
            return offset

    def loop() -> None:
        offset = 0
        while not stop.wait(interval):
            offset = read_new(offset)
        read_new(offset)

    thread = threading.Thread(target=loop, name="follow-training-metrics", daemon=True)
    thread.start()
    return thread

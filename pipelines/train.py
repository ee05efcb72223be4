"""Stages ``train-lr`` / ``train-hr``: run the training loop under torchrun, return a record.

:func:`train_stage` is what a flow calls: it launches
``python -m torch.distributed.run --standalone --nproc-per-node N -m pipelines.train ...`` as a
subprocess (N from the argument, ``runtime.nproc`` or the GPU count), waits, and returns a
small record (checkpoint paths, final metrics). A failed run raises
:class:`TrainingFailedError`; since runs continue from ``<checkpoint.dir>/latest.pt``, a retry
of the stage resumes from the last checkpoint.

Run as a module (this is what torchrun starts in every process), it trains with the offline HR
coarse masks read from the gen-coarse-hr mask store (:class:`StoreCoarseSource`) when the
config says ``data.hr.coarse: store``; everything else is the library's
:func:`segrefiner.training.train`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.stores import MaskStore
from segrefiner.errors import InputError, SegRefinerError
from segrefiner.training.config import TrainConfig, load_train_config
from segrefiner.training.distributed import default_nproc, env_ranks, torchrun_command
from segrefiner.training.loop import read_result, train

__all__ = ["StoreCoarseSource", "TrainingFailedError", "anchored_overrides", "main", "train_stage"]

log = logging.getLogger(__name__)

_TAIL_LINES = 40


class TrainingFailedError(RuntimeError):
    """The training processes exited with an error; the message ends with the log's tail."""


class StoreCoarseSource:
    """Offline coarse masks from the gen-coarse-hr mask store (kinds ``coarse``,
    ``coarse_expand``), keyed by the sample ids of :func:`segrefiner.data.folders.read_hr_training`.

    The store is opened lazily in each process (data-loader workers included), never pickled.
    """

    def __init__(self, store_path: str | os.PathLike) -> None:
        self.store_path = os.fspath(store_path)
        self._store: MaskStore | None = None
        MaskStore.open(self.store_path)  # fail early, in the caller, when there is no store

    def __getstate__(self) -> dict[str, Any]:
        return {"store_path": self.store_path, "_store": None}

    def _open(self) -> MaskStore:
        if self._store is None:
            self._store = MaskStore.open(self.store_path)
        return self._store

    def get(self, sample_id: str, kind: str) -> np.ndarray:
        store = self._open()
        if not store.has_mask(kind, sample_id):
            raise InputError(
                f"{sample_id}: no {kind} mask in the store {self.store_path} "
                "(failed or not yet made by gen-coarse-hr)"
            )
        return np.asarray(store.read_mask(kind, sample_id), dtype=bool)


def _coarse_source(config: TrainConfig) -> StoreCoarseSource | None:
    if config.data.task == "hr" and config.data.hr.coarse == "store":
        return StoreCoarseSource(config.data.hr.coarse_store)
    return None


def anchored_overrides(config: TrainConfig, overrides: list[str]) -> list[str]:
    """``overrides`` plus the recipe's relative folders (data root, checkpoint folder, HR coarse
    store) made absolute against the working directory, so torchrun workers started elsewhere
    find them. Later overrides win: the resolved folders come after the user's."""

    def absolute(path: str) -> str:
        return str(Path(path).expanduser().resolve())

    extra = []
    if not os.path.isabs(config.data.root):
        extra.append(f"data.root={absolute(config.data.root)}")
    if not os.path.isabs(config.checkpoint.dir):
        extra.append(f"checkpoint.dir={absolute(config.checkpoint.dir)}")
    store = config.data.hr.coarse_store
    if config.data.task == "hr" and store and not os.path.isabs(store):
        extra.append(f"data.hr.coarse_store={absolute(store)}")
    return [*overrides, *extra]


def train_stage(
    config_path: str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    nproc: int | None = None,
    until: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Train as ``config_path`` + ``overrides`` say, in ``nproc`` torchrun processes.

    The config is checked here first (a bad key fails fast, without starting processes). The
    processes' output goes to ``<checkpoint.dir>/train.log``. Returns ``run_dir``,
    ``checkpoint`` (the final inference checkpoint, ``None`` when stopped early by ``until``),
    ``official`` (official-format export), ``latest`` (training checkpoint), ``step``,
    ``finished``, ``metrics`` (last logged record), ``skipped``, ``seconds``, ``nproc``.
    Raises :class:`TrainingFailedError` when training fails.
    """
    overrides = list(overrides)
    config = load_train_config(config_path, overrides)
    if config.data.task == "hr":
        _coarse_source(config)  # a missing store is a config error, not a training failure
    nproc = nproc or default_nproc(config.runtime)
    if config.data.batch_size % nproc:
        raise InputError(
            f"data.batch_size {config.data.batch_size} does not split over {nproc} processes"
        )
    args = ["--config", os.fspath(config_path), *overrides]
    if until is not None:
        args += ["--until", str(until)]
    cmd = torchrun_command(nproc, "pipelines.train", args)
    run_dir = Path(config.checkpoint.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "train.log"
    log.info("train stage: %s (log %s)", " ".join(cmd), log_path)
    with open(log_path, "ab") as out:
        try:
            proc = subprocess.run(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TrainingFailedError(
                f"training did not finish within {timeout} s; log tail:\n{_tail(log_path)}"
            ) from exc
    if proc.returncode != 0:
        raise TrainingFailedError(
            f"training exited with status {proc.returncode}; log tail ({log_path}):\n"
            f"{_tail(log_path)}"
        )
    result = read_result(run_dir)
    return {
        "run_dir": result["run_dir"],
        "checkpoint": result["model"],
        "official": result["official"],
        "latest": result["latest"],
        "step": result["step"],
        "finished": result["finished"],
        "metrics": result["metrics"],
        "skipped": result["skipped"],
        "seconds": result["seconds"],
        "nproc": nproc,
    }


def _tail(path: Path, lines: int = _TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def main(argv: Sequence[str] | None = None) -> int:
    """The per-process entry point torchrun starts (``python -m pipelines.train``)."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.train", description=__doc__)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--until", type=int, default=None)
    args = parser.parse_args(argv)
    rank = env_ranks()[0]
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        config = load_train_config(args.config, list(args.overrides))
        result = train(config, coarse_source=_coarse_source(config), until=args.until)
    except SegRefinerError as exc:
        print(f"pipelines.train: error: {exc}", file=sys.stderr)
        return 2
    if rank == 0:
        print(json.dumps(result.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

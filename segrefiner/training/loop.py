"""The training loop: data -> forward diffusion step -> network -> loss -> AdamW.

::

    from segrefiner.training import load_train_config, train
    result = train(load_train_config("configs/demo_lr.yaml"))
    result.model   # runs/demo_lr/model.pt, loadable by Refiner.from_checkpoint

Each iteration: every crop gets its own step ``t ~ U{0..5}`` and forward-process noise from a
generator seeded by (seed, sample position, crop slot); ``x_t = q_sample(fine, coarse, t)``;
``logits = model(concat(image, x_t), t)`` (bfloat16 autocast on CUDA by default); loss =
BCE + 5 x texture L1 against the fine mask. Under torchrun every process trains its slice of
the global batch and DDP averages the gradients, so the updates equal those of one process
with the same global batch.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from segrefiner.checkpoint import export_official, load_checkpoint, save_checkpoint
from segrefiner.config import flatten
from segrefiner.diffusion import DiscreteDiffusion
from segrefiner.errors import InputError, TrainingError
from segrefiner.io import atomic_path, write_json
from segrefiner.locking import folder_lock
from segrefiner.model import DenoiseUNet, build_unet
from segrefiner.training import distributed
from segrefiner.training.batching import PositionDataset, collate_crops
from segrefiner.training.callbacks import Callback, CallbackList, JsonlCallback, LoggingCallback
from segrefiner.training.config import TrainConfig
from segrefiner.training.data_hr import CoarseSource, HRTrainingSet
from segrefiner.training.data_lr import LRTrainingSet
from segrefiner.training.losses import segrefiner_loss
from segrefiner.training.optim import WeightAverage, build_optimizer, lr_at, set_lr
from segrefiner.training.sampling import PositionBatchSampler, crop_generator, draw_steps
from segrefiner.training.state import (
    LATEST,
    MODEL,
    OFFICIAL,
    checkpoint_meta,
    load_training_checkpoint,
    resume_path,
    save_training_checkpoint,
)

log = logging.getLogger("segrefiner.training")

# Order of the per-iteration sums reduced over processes at each log step.
_SUMS = ("loss", "loss_mask", "loss_texture", "iou", "grad_norm")


@dataclass(frozen=True)
class TrainResult:
    """What a run produced. ``model``/``official`` are set once ``schedule.max_iters`` is
    reached; ``metrics`` is the last logged record."""

    run_dir: str
    step: int
    max_iters: int
    finished: bool
    latest: str | None
    model: str | None
    official: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: int = 0
    seconds: float = 0.0
    world_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_dataset(
    config: TrainConfig, coarse_source: CoarseSource | None = None
) -> PositionDataset:
    """The training set of ``config.data.task`` (``lr``: LVIS-style; ``hr``: DIS + ThinObject)."""
    if config.data.task == "hr":
        return HRTrainingSet.from_config(config.data, config.runtime.seed, coarse_source)
    return LRTrainingSet.from_config(config.data, config.runtime.seed)


def _worker_init(_: int) -> None:
    # Workers run the degradation and resizing; one thread each avoids oversubscribing the
    # cores the training process uses. OpenCV's thread count is already 1 here: it is set in
    # the parent before the workers start (see ``_Run.run``), because reconfiguring OpenCV's
    # thread pool in a forked child deadlocks when the parent had used it.
    torch.set_num_threads(1)


def train(
    config: TrainConfig,
    *,
    callbacks: Sequence[Callback] = (),
    coarse_source: CoarseSource | None = None,
    dataset: PositionDataset | None = None,
    until: int | None = None,
) -> TrainResult:
    """Train (or continue training) as ``config`` says; see the module docstring.

    Args:
        config: the run. ``checkpoint.resume="auto"`` continues from ``<dir>/latest.pt``.
        callbacks: receive the logged values (main process only), besides the built-in
            logging and ``metrics.jsonl`` writer.
        coarse_source: offline HR coarse masks (default: the PNG folders).
        dataset: a ready data set instead of the one ``config.data`` describes.
        until: stop after this iteration (checkpointing there) although ``max_iters`` is not
            reached, e.g. to split a long run over several jobs.

    Under ``torchrun`` this runs in every process; the returned record is the same on all.
    """
    ctx = distributed.setup(config.runtime)
    try:
        return _Run(config, ctx, callbacks, coarse_source, dataset).run(until)
    finally:
        distributed.teardown(ctx)


def training_step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    diffusion: DiscreteDiffusion,
    image: torch.Tensor,
    fine: torch.Tensor,
    coarse: torch.Tensor,
    generators: Sequence[torch.Generator],
    config: TrainConfig,
    *,
    bf16: bool = False,
    weight_average: WeightAverage | None = None,
    exact: torch.Tensor | None = None,
) -> torch.Tensor:
    """One optimiser step on a batch of crops.

    ``exact`` (bool (C,), optional): crops trained as the HR local step infers, at t = 0 with
    their whole coarse mask as the network's mask input instead of a forward-process sample
    (their random draws are still made, so the other crops' draws do not change).

    ``image``: float (C, 3, S, S) normalised; ``fine``/``coarse``: float (C, 1, S, S) in
    {0, 1}; ``generators``: one CPU generator per crop, for its step ``t`` and its
    forward-process noise. Returns float32 (5,) on the batch's device: total loss, loss_mask,
    loss_texture, iou and the gradient norm before clipping (0 without clipping).
    """
    t = draw_steps(list(generators), diffusion.num_steps).to(image.device)
    x_t = diffusion.q_sample(fine, coarse, t, generators)
    if exact is not None and bool(exact.any()):
        exact = exact.to(image.device)
        t = torch.where(exact, torch.zeros_like(t), t)
        x_t = torch.where(exact.view(-1, 1, 1, 1), coarse, x_t)
    autocast = torch.autocast(image.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    with autocast:
        logits = net(torch.cat([image, x_t], dim=1), t)
    parts = segrefiner_loss(logits, fine, config.loss.mask_weight, config.loss.texture_weight)
    optimizer.zero_grad(set_to_none=True)
    parts.total.backward()
    # The global gradient norm (clipped to grad_clip when set; inf leaves the gradients as they
    # are): a non-finite loss or gradient stops training before the optimiser step, so no
    # weight and no checkpoint ever holds a NaN. One device sync per step.
    clip = config.optim.grad_clip if config.optim.grad_clip is not None else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    if not bool(torch.isfinite(parts.total.detach()) & torch.isfinite(grad_norm)):
        raise TrainingError(
            f"non-finite loss {float(parts.total):.4g} (mask {float(parts.loss_mask):.4g}, "
            f"texture {float(parts.loss_texture):.4g}) or gradient norm {float(grad_norm):.4g}; "
            "stopped before the optimiser step (check optim.lr, loss weights, the data)"
        )
    if config.optim.grad_clip is None:
        grad_norm = torch.zeros((), device=image.device)  # reported only with clipping
    optimizer.step()
    if weight_average is not None:
        weight_average.update(getattr(net, "module", net))
    return torch.stack(
        [parts.total.detach(), parts.loss_mask, parts.loss_texture, parts.iou, grad_norm]
    ).float()


class _Run:
    def __init__(
        self,
        config: TrainConfig,
        ctx: distributed.DistContext,
        callbacks: Sequence[Callback],
        coarse_source: CoarseSource | None,
        dataset: PositionDataset | None,
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.run_dir = Path(config.checkpoint.dir)
        builtin: list[Callback] = [LoggingCallback(config.schedule.max_iters)]
        if config.log.jsonl:
            builtin.append(JsonlCallback(self.run_dir / "metrics.jsonl"))
        self.callbacks = CallbackList([*builtin, *callbacks]) if ctx.is_main else CallbackList([])
        self.coarse_source = coarse_source
        self.dataset = dataset
        precision = config.runtime.precision
        self.bf16 = precision == "bf16" or (precision == "auto" and ctx.device.type == "cuda")

    # ------------------------------------------------------------------ setup

    def _build(self) -> None:
        config, ctx = self.config, self.ctx
        if config.data.batch_size % ctx.world_size:
            raise InputError(
                f"data.batch_size {config.data.batch_size} (the global batch) does not split "
                f"over {ctx.world_size} processes"
            )
        # The same initial weights on every rank (DDP would broadcast rank 0's anyway), then
        # per-rank seeds for anything drawing from torch's global generator afterwards (nothing
        # in this loop does: data and noise come from per-sample generators).
        torch.manual_seed(config.runtime.seed)
        self.model: DenoiseUNet = build_unet(config.model.preset).to(ctx.device)
        torch.manual_seed(config.runtime.seed + ctx.rank)
        self.optimizer = build_optimizer(self.model, config.optim)
        self.weight_average = (
            WeightAverage(self.model, config.optim.ema_decay) if config.optim.ema_decay else None
        )
        self.start = 0
        self.metrics: dict[str, float] = {}
        path = resume_path(config)
        if path is None and config.model.init:
            init_model, _ = load_checkpoint(config.model.init)
            if init_model.config != self.model.config:
                raise InputError(
                    f"model.init: {config.model.init} is not a {config.model.preset!r} network"
                )
            self.model.load_state_dict(init_model.state_dict())
            if ctx.is_main:
                log.info("initial weights from %s", config.model.init)
        if path is not None:
            state = load_training_checkpoint(
                path, self.model, self.optimizer, self.weight_average, config
            )
            self.start, self.metrics = state.step, state.metrics
            if ctx.is_main:
                log.info("resuming from %s at iteration %d", path, self.start)
        self.net: torch.nn.Module = self.model
        if ctx.world_size > 1:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.diffusion = DiscreteDiffusion(num_steps=self.model.config.num_timesteps)
        if self.dataset is None:
            self.dataset = build_dataset(config, self.coarse_source)

    def _loader(self, stop: int) -> DataLoader:
        sampler = PositionBatchSampler(
            self.config.data.batch_size, self.start, stop, self.ctx.rank, self.ctx.world_size
        )
        workers = self.config.data.num_workers
        return DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=workers,
            collate_fn=collate_crops,
            pin_memory=self.ctx.device.type == "cuda",
            worker_init_fn=_worker_init if workers else None,
        )

    # ------------------------------------------------------------------ one iteration

    def _step(self, batch: dict[str, Any], iteration: int) -> torch.Tensor:
        config, device = self.config, self.ctx.device
        set_lr(self.optimizer, lr_at(iteration, config.optim.lr, config.schedule))
        seed = config.runtime.seed
        gens = [
            crop_generator(seed, int(p), int(s)) for p, s in zip(batch["positions"], batch["slots"])
        ]
        return training_step(
            self.net,
            self.optimizer,
            self.diffusion,
            batch["image"].to(device, non_blocking=True),
            batch["gt"].to(device, non_blocking=True),
            batch["coarse"].to(device, non_blocking=True),
            gens,
            config,
            bf16=self.bf16,
            weight_average=self.weight_average,
            exact=batch.get("exact"),
        )

    # ------------------------------------------------------------------ the run

    def run(self, until: int | None) -> TrainResult:
        started = time.perf_counter()
        ctx = self.ctx
        # One training per checkpoint.dir: a second one would interleave metrics and overwrite
        # the model. Held by the main process for the whole run.
        lock = folder_lock(self.run_dir, "training into it") if ctx.is_main else nullcontext()
        with lock:
            return self._locked_run(until, started)

    def _locked_run(self, until: int | None, started: float) -> TrainResult:
        config, ctx = self.config, self.ctx
        if ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.run_dir / "config.yaml") as tmp:
                tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
        # Forked data-loader workers inherit OpenCV's thread pool, which is not fork-safe: with
        # one thread there is no pool to inherit. Restored when training ends.
        cv2_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            return self._run(until, started)
        finally:
            cv2.setNumThreads(cv2_threads)

    def _run(self, until: int | None, started: float) -> TrainResult:
        config, ctx = self.config, self.ctx
        self._build()
        max_iters = config.schedule.max_iters
        stop = max_iters if until is None else max(self.start, min(until, max_iters))
        if ctx.is_main:
            self.callbacks.on_train_start(
                {
                    "config": flatten(config.to_dict()),
                    "start_step": self.start,
                    "max_iters": max_iters,
                    "stop_step": stop,
                    "world_size": ctx.world_size,
                    "run_dir": str(self.run_dir),
                    "dataset_size": len(self.dataset),
                    "device": str(ctx.device),
                }
            )
        skipped = self._train_range(stop)
        finished = stop >= max_iters
        result = self._finish(finished, stop, skipped, time.perf_counter() - started)
        distributed.barrier(ctx)
        return result

    def _train_range(self, stop: int) -> int:
        """Iterations ``start .. stop - 1``; returns the number of skipped samples (all ranks)."""
        config, ctx = self.config, self.ctx
        crops_per_image = self.dataset.crops_per_sample
        sums = torch.zeros(len(_SUMS), device=ctx.device)
        count = 0
        local_skipped = 0
        data_wait = 0.0
        skipped_total = int(self.metrics.get("skipped", 0))
        window_start = time.perf_counter()
        self.net.train()
        step = self.start
        loader = iter(self._loader(stop)) if stop > self.start else iter(())
        for iteration in range(self.start, stop):
            t0 = time.perf_counter()
            batch = next(loader)
            data_wait += time.perf_counter() - t0
            for reason in batch["skipped"]:
                log.warning("rank %d: skipped a sample: %s", ctx.rank, reason)
            for note in batch["notes"]:
                log.info("rank %d: %s", ctx.rank, note)
            local_skipped += len(batch["skipped"])
            try:
                sums += self._step(batch, iteration)
            except TrainingError as exc:
                last = self.run_dir / LATEST
                kept = f"; the last good checkpoint is {last}" if last.is_file() else ""
                raise TrainingError(f"iteration {iteration + 1}: {exc}{kept}") from exc
            count += 1
            step = iteration + 1
            if step % config.log.interval == 0 or step == stop:
                # One collective per record: sums, counts and skipped samples of all ranks.
                packed = torch.cat(
                    [sums, torch.tensor([count, local_skipped, data_wait], device=ctx.device)]
                )
                distributed.all_reduce_sum(packed, ctx)
                n = float(packed[len(_SUMS)]) or 1.0
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                skipped_total += int(packed[len(_SUMS) + 1])
                metrics = {k: float(v) / n for k, v in zip(_SUMS, packed[: len(_SUMS)].tolist())}
                if config.optim.grad_clip is None:
                    metrics.pop("grad_norm")
                metrics.update(
                    lr=lr_at(iteration, config.optim.lr, config.schedule),
                    iters_per_s=count / elapsed,
                    samples_per_s=count * config.data.batch_size / elapsed,
                    crops_per_s=count * config.data.batch_size * crops_per_image / elapsed,
                    data_wait=float(packed[len(_SUMS) + 2]) / ctx.world_size / elapsed,
                    skipped=float(skipped_total),
                )
                if not all(math.isfinite(v) for v in metrics.values()):
                    log.warning("iteration %d: non-finite metrics %s", step, metrics)
                self.metrics = metrics
                if ctx.is_main:
                    self.callbacks.on_log(step, metrics)
                sums.zero_()
                count = local_skipped = 0
                data_wait = 0.0
                window_start = time.perf_counter()
            if step % config.checkpoint.interval == 0 or step == stop:
                self._save(step)
        return skipped_total

    def _save(self, step: int) -> None:
        if self.ctx.is_main:
            path = save_training_checkpoint(
                self.run_dir,
                self.model,
                self.optimizer,
                self.weight_average,
                self.config,
                step,
                self.metrics,
            )
            self.callbacks.on_checkpoint(step, str(path))
        distributed.barrier(self.ctx)

    def _finish(self, finished: bool, step: int, skipped: int, seconds: float) -> TrainResult:
        config = self.config
        model_path = official_path = None
        if finished:
            model_path, official_path = self.run_dir / MODEL, self.run_dir / OFFICIAL
            if self.ctx.is_main:
                final = self.model
                if self.weight_average is not None:
                    final = copy.deepcopy(self.model)
                    self.weight_average.copy_to(final)
                save_checkpoint(model_path, final, meta=checkpoint_meta(config, step, self.metrics))
                if config.checkpoint.export_official:
                    export_official(official_path, final)
            if not config.checkpoint.export_official:
                official_path = None
        latest = self.run_dir / LATEST
        result = TrainResult(
            run_dir=str(self.run_dir),
            step=step,
            max_iters=config.schedule.max_iters,
            finished=finished,
            latest=str(latest) if latest.is_file() else None,
            model=str(model_path) if model_path else None,
            official=str(official_path) if official_path else None,
            metrics=dict(self.metrics),
            skipped=skipped,
            seconds=round(seconds, 3),
            world_size=self.ctx.world_size,
        )
        if self.ctx.is_main:
            write_json(self.run_dir / "result.json", result.to_dict(), indent=2)
            self.callbacks.on_train_end(result.to_dict())
        return result


def read_result(run_dir: str | Path) -> dict[str, Any]:
    """The ``result.json`` a finished (or stopped) run left in its directory."""
    return json.loads((Path(run_dir) / "result.json").read_text(encoding="utf-8"))

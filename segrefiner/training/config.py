"""Training configuration: nested frozen dataclasses whose defaults are the official LR recipe.

``configs/segrefiner_lr.yaml`` and ``configs/segrefiner_hr.yaml`` spell the official values out
(spec §4.2, §7); ``configs/demo_*.yaml`` are small CPU recipes on the demo data set. Load with
:func:`load_train_config` (strict: unknown keys are errors) and override with dotted keys::

    config = load_train_config("configs/segrefiner_lr.yaml", ["optim.lr=2e-4"])

``data.batch_size`` is the *global* batch (images per iteration over all processes), so the
data order, the noise and the loss curve do not depend on how many processes share the work.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from segrefiner.config import load_config, to_dict
from segrefiner.data.coarse_kinds import COARSE_KINDS
from segrefiner.errors import InputError
from segrefiner.inference.config import InferenceConfig
from segrefiner.model import PRESETS


@dataclass(frozen=True)
class LRDataConfig:
    """LVIS-style instance data (spec §4.3). Paths are relative to ``data.root``."""

    annotations: str = "lvis/annotations/lvis_v1_train.json"  # LVIS v1 or COCO instances JSON
    image_root: str = "coco"  # LVIS file names carry the split folder (train2017/...)
    min_area: float = 512.0  # annotations with area <= min_area are never chosen
    min_image_side: int = 32  # images with min(H, W) below this are dropped (mmdet filter)
    pad: int = 40  # total random margin around the object box, per axis, before resizing
    # How training coarse masks are made: kinds of segrefiner.data.coarse_kinds, drawn per
    # sample with the weights (empty: equal weights). The official recipe is ("official",).
    coarse_kinds: tuple[str, ...] = ("official",)
    coarse_weights: tuple[float, ...] = ()


@dataclass(frozen=True)
class HRDataConfig:
    """ThinObject-5K train + DIS-TR with offline coarse masks (spec §4.4)."""

    # Where the offline coarse masks come from: "folders" = the official PNG layout
    # (dis/DIS-TR/coarse{,_expand}/, thin_object/coarse{,_expand}/); "store" = the zarr mask
    # store of the gen-coarse-hr stage (``coarse_store``; read by ``pipelines/train.py``).
    coarse: Literal["folders", "store"] = "folders"
    coarse_store: str = ""
    expand_prob: float = 0.5  # probability of using coarse_expand instead of coarse
    online_patch_prob: float = 0.5  # probability of a fresh online coarse mask for the patch
    patch_size: int = 256  # native-resolution patch side (halved min side for small images)
    patch_tries: int = 100  # random draws for a mixed patch before the exact search
    # Not in the official recipe: with this probability the patch's coarse mask is what the
    # global pass hands the local step at inference, a whole-image mask resampled (nearest)
    # to ``global_size`` and back: the ground truth or the offline coarse mask (even odds).
    # Such a patch is trained exactly as the local step infers (t = 0, the whole resampled
    # mask as the network's mask input), so the local step learns to undo the global pass's
    # staircase (see benchmarks/hr_diagnosis.py). 0 keeps the official recipe and its draws.
    global_patch_prob: float = 0.0
    global_size: int = 256
    # Not in the official recipe: with this probability the object crop is the whole image
    # resized to crop_size exactly as the global pass resizes it (legacy nearest, image and
    # masks, aspect not kept) instead of a box around the object resized bilinearly; the
    # global pass then meets at inference what it was trained on. 0 keeps the official draws.
    # Measured not to help so far (checkpoints/README.md, the HR section).
    global_object_prob: float = 0.0
    # Not in the official recipe: with this probability (drawn after global_patch_prob) the
    # patch's coarse mask is a whole-image coarse mask at native resolution, cropped: the
    # offline one ("offline") or a segmentor-like one made from the ground truth (a kind of
    # segrefiner.data.coarse_kinds), a kind of ``native_kinds`` drawn with equal odds. Such a
    # patch is trained as the local step infers with InferenceConfig.local_mask="coarse"
    # (t = 0, that mask as the network's input). 0 keeps the draws as they were.
    native_patch_prob: float = 0.0
    native_kinds: tuple[str, ...] = ("offline", "maskrcnn", "lowres", "official")


@dataclass(frozen=True)
class DataConfig:
    task: Literal["lr", "hr"] = "lr"
    root: str = "data"
    crop_size: int = 256  # side of the network input (multiple of the model's size multiple)
    flip_prob: float = 0.5
    batch_size: int = 8  # global: images per iteration over all processes (HR: 2 crops each)
    num_workers: int = 1  # DataLoader worker processes per training process
    max_retries: int = 20  # replacement samples tried before an unusable sample is an error
    lr: LRDataConfig = field(default_factory=LRDataConfig)
    hr: HRDataConfig = field(default_factory=HRDataConfig)


@dataclass(frozen=True)
class ModelConfig:
    preset: str = "official"
    # Initial weights (a checkpoint of the same preset, e.g. a model trained at another crop
    # size) instead of a random initialisation; "" for random. A resumed run ignores it.
    init: str = ""


@dataclass(frozen=True)
class OptimConfig:
    """AdamW as the official recipe. ``grad_clip`` (max global L2 norm) and ``ema_decay`` are
    off by default, as in the paper; users who saw the lr 4e-4 collapse (IoU -> 0,
    loss_mask ~ 0.65, spec §8.9) report that clipping, a lower lr or averaging weights helps."""

    lr: float = 4e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float | None = None
    ema_decay: float | None = None


@dataclass(frozen=True)
class ScheduleConfig:
    """Iteration-based step schedule: lr x gamma at each milestone (LR: 120k, 80k/100k)."""

    max_iters: int = 120_000
    milestones: tuple[int, ...] = (80_000, 100_000)
    gamma: float = 0.5
    warmup_iters: int = 0  # linear warm-up from 0; the official 10 iters at ratio 1.0 is none


@dataclass(frozen=True)
class LossConfig:
    mask_weight: float = 1.0  # BCE-with-logits
    texture_weight: float = 5.0  # L1 of smoothed Sobel magnitudes


@dataclass(frozen=True)
class CheckpointConfig:
    dir: str = "runs/segrefiner_lr"
    interval: int = 5_000  # iterations between training checkpoints
    keep: int = 20  # training checkpoints kept (oldest removed first); 0 keeps all
    resume: str = "auto"  # "auto": continue from <dir>/latest.pt if present; "never"; a path
    export_official: bool = True  # also write the official released format at the end


@dataclass(frozen=True)
class LogConfig:
    interval: int = 50  # iterations per logged record (values are means over the interval)
    jsonl: bool = True  # append records to <checkpoint.dir>/metrics.jsonl


@dataclass(frozen=True)
class RuntimeConfig:
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # fp32 as the official training; bf16 (autocast) and auto (bf16 on CUDA only) are opt-in
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    nproc: int = 0  # processes per node for torchrun; 0: one per GPU (1 without GPUs)
    backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on CUDA, gloo on CPU
    threads: int = 0  # torch intra-op threads per process; 0 leaves torch's default


@dataclass(frozen=True)
class TrainConfig:
    name: str = "segrefiner_lr"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    # Saved into every checkpoint's meta["inference"]: how a model trained here should infer.
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def __post_init__(self) -> None:
        validate(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def _check_numbers(config: TrainConfig) -> None:
    """Optimiser, schedule and loss numbers: finite and in range (NaN fails every check)."""
    optim, loss = config.optim, config.loss
    betas = tuple(optim.betas)
    checks: list[tuple[str, Any, bool, str]] = [
        ("optim.lr", optim.lr, optim.lr > 0, "a finite number > 0"),
        ("optim.eps", optim.eps, optim.eps > 0, "a finite number > 0"),
        ("optim.weight_decay", optim.weight_decay, optim.weight_decay >= 0, "finite and >= 0"),
        (
            "optim.betas",
            list(betas),
            len(betas) == 2 and all(0 <= b < 1 for b in betas),
            "two numbers in [0, 1)",
        ),
        ("schedule.gamma", config.schedule.gamma, 0 < config.schedule.gamma <= 1, "in (0, 1]"),
        ("loss.mask_weight", loss.mask_weight, loss.mask_weight >= 0, "finite and >= 0"),
        ("loss.texture_weight", loss.texture_weight, loss.texture_weight >= 0, "finite and >= 0"),
    ]
    if optim.grad_clip is not None:
        checks.append(("optim.grad_clip", optim.grad_clip, optim.grad_clip > 0, "> 0 or null"))
    for key, value, ok, rule in checks:
        numbers = value if isinstance(value, list) else [value]
        if not ok or not all(math.isfinite(v) for v in numbers):
            raise InputError(f"{key}: must be {rule}, got {value}")
    if loss.mask_weight + loss.texture_weight <= 0:
        raise InputError("loss: mask_weight and texture_weight are both 0; nothing to train")


def _check_kinds(key: str, kinds: tuple[str, ...], known: list[str]) -> None:
    """:class:`InputError` when ``kinds`` is empty or names a kind not in ``known``."""
    unknown = [k for k in kinds if k not in known]
    if not kinds or unknown:
        raise InputError(f"{key}: unknown or no kinds {list(unknown or kinds)}; known: {known}")


def validate(config: TrainConfig) -> None:
    """Cross-field checks; :class:`InputError` names the key."""
    if config.model.preset not in PRESETS:
        raise InputError(f"model.preset: unknown preset {config.model.preset!r}; {sorted(PRESETS)}")
    multiple = PRESETS[config.model.preset].size_multiple
    for key, value in (
        ("data.crop_size", config.data.crop_size),
        ("inference.model_size", config.inference.model_size),
    ):
        if value <= 0 or value % multiple:
            raise InputError(f"{key}: {value} is not a positive multiple of {multiple}")
    positive = {
        "data.batch_size": config.data.batch_size,
        "schedule.max_iters": config.schedule.max_iters,
        "checkpoint.interval": config.checkpoint.interval,
        "log.interval": config.log.interval,
        "data.hr.patch_size": config.data.hr.patch_size,
        "data.hr.patch_tries": config.data.hr.patch_tries,
        "data.hr.global_size": config.data.hr.global_size,
    }
    for key, value in positive.items():
        if value <= 0:
            raise InputError(f"{key}: must be positive, got {value}")
    for key, value in (
        ("data.num_workers", config.data.num_workers),
        ("data.max_retries", config.data.max_retries),
        ("data.lr.pad", config.data.lr.pad),
        ("checkpoint.keep", config.checkpoint.keep),
        ("runtime.nproc", config.runtime.nproc),
        ("runtime.threads", config.runtime.threads),
        ("schedule.warmup_iters", config.schedule.warmup_iters),
        ("runtime.seed", config.runtime.seed),
    ):
        if value < 0:
            raise InputError(f"{key}: must not be negative, got {value}")
    for key, value in (
        ("data.flip_prob", config.data.flip_prob),
        ("data.hr.expand_prob", config.data.hr.expand_prob),
        ("data.hr.online_patch_prob", config.data.hr.online_patch_prob),
        ("data.hr.global_patch_prob", config.data.hr.global_patch_prob),
        ("data.hr.global_object_prob", config.data.hr.global_object_prob),
        ("data.hr.native_patch_prob", config.data.hr.native_patch_prob),
    ):
        if not 0.0 <= value <= 1.0:
            raise InputError(f"{key}: a probability must be in [0, 1], got {value}")
    _check_numbers(config)
    if config.optim.ema_decay is not None and not 0.0 < config.optim.ema_decay < 1.0:
        raise InputError(
            f"optim.ema_decay: must be in (0, 1) or null, got {config.optim.ema_decay}"
        )
    lr = config.data.lr
    _check_kinds("data.lr.coarse_kinds", lr.coarse_kinds, sorted(COARSE_KINDS))
    _check_kinds("data.hr.native_kinds", config.data.hr.native_kinds,
                 ["offline", *sorted(COARSE_KINDS)])  # fmt: skip
    if lr.coarse_weights and (
        len(lr.coarse_weights) != len(lr.coarse_kinds)
        or any(w < 0 for w in lr.coarse_weights)
        or sum(lr.coarse_weights) <= 0
    ):
        raise InputError(
            f"data.lr.coarse_weights: {list(lr.coarse_weights)} must be one non-negative weight "
            f"per kind of data.lr.coarse_kinds {list(lr.coarse_kinds)}, not all zero"
        )
    if list(config.schedule.milestones) != sorted(config.schedule.milestones):
        raise InputError(
            f"schedule.milestones: must be ascending, got {config.schedule.milestones}"
        )
    if (
        config.data.task == "hr"
        and config.data.hr.coarse == "store"
        and not config.data.hr.coarse_store
    ):
        raise InputError(
            "data.hr.coarse_store: a store path is needed when data.hr.coarse is 'store'"
        )


def load_train_config(
    path: str | os.PathLike | None = None, overrides: list[str] | None = None
) -> TrainConfig:
    """Read a training YAML (optional), apply ``key.sub=value`` overrides, check strictly."""
    return load_config(TrainConfig, path, overrides)

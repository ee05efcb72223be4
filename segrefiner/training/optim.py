"""Optimiser, learning-rate schedule and the optional weight average (spec §4.2)."""

from __future__ import annotations

import bisect

import torch
from torch import nn

from segrefiner.training.config import OptimConfig, ScheduleConfig


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW over all parameters (official: lr 4e-4, betas (0.9, 0.999), eps 1e-8, wd 0)."""
    return torch.optim.AdamW(
        model.parameters(),
        lr=config.lr,
        betas=tuple(config.betas),
        eps=config.eps,
        weight_decay=config.weight_decay,
    )


def lr_at(iteration: int, base_lr: float, schedule: ScheduleConfig) -> float:
    """Learning rate of 0-based ``iteration`` (the ``iteration + 1``-th optimiser step).

    The step policy of the official runner: ``base_lr x gamma ** k`` with ``k`` the number of
    milestones ``<= iteration``; LR-SegRefiner: 4e-4 up to iteration 79,999, 2e-4 from 80,000,
    1e-4 from 100,000. An optional linear warm-up scales the first ``warmup_iters``
    iterations by ``(iteration + 1) / warmup_iters``.
    """
    lr = base_lr * schedule.gamma ** bisect.bisect_right(list(schedule.milestones), iteration)
    if iteration < schedule.warmup_iters:
        lr *= (iteration + 1) / schedule.warmup_iters
    return lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class WeightAverage:
    """Exponential moving average of a model's floating-point state (off by default).

    ``shadow = decay * shadow + (1 - decay) * value`` after every optimiser step, in float32.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                self.shadow[key].mul_(self.decay).add_(value.float(), alpha=1.0 - self.decay)
            else:
                self.shadow[key].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"weight average misses {sorted(missing)[:5]}")
        for key, value in state.items():
            self.shadow[key].copy_(value)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (cast to its dtypes)."""
        current = model.state_dict()
        model.load_state_dict({k: v.to(current[k].dtype) for k, v in self.shadow.items()})

"""Network configurations and the registry of named presets.

``official`` is the network of the released LR/HR checkpoints (118,604,673 parameters).
``small`` and ``tiny`` keep the same topology (encoder levels, ResBlocks, attention at the two
coarsest levels and in the middle, learned step embedding) with fewer channels, for CPU
training, demos and tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from segrefiner.config import from_dict as strict_from_dict
from segrefiner.errors import CheckpointError, InputError


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of :class:`segrefiner.model.DenoiseUNet` (defaults: the official network)."""

    in_channels: int = 4  # normalized RGB + the current mask in {0, 1}
    out_channels: int = 1  # logit of "pixel is foreground" of the predicted fine mask
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 2  # per encoder level; the decoder has one more per level
    attention_strides: tuple[int, ...] = (16, 32)  # downsampling factors with self-attention
    num_heads: int = 4
    num_timesteps: int = 6  # rows of the learned step embedding
    norm_groups: int = 32
    dropout: float = 0.0

    def __post_init__(self) -> None:
        widths = [self.model_channels * m for m in self.channel_mult]
        for width in widths:
            if width % self.norm_groups:
                raise ValueError(
                    f"width {width} is not divisible by norm_groups {self.norm_groups}"
                )
        for stride in self.attention_strides:
            if stride <= 0 or stride & (stride - 1):
                raise ValueError(f"attention stride {stride} must be a power of two")

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (one halving per extra level)."""
        return 2 ** (len(self.channel_mult) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> UNetConfig:
        """Strictly (:func:`segrefiner.config.from_dict`: unknown keys and wrong types are
        errors naming the key; lists become tuples), as a :class:`CheckpointError`."""
        try:
            return strict_from_dict(cls, values, "UNet config")
        except InputError as exc:
            raise CheckpointError(str(exc)) from exc


PRESETS: dict[str, UNetConfig] = {
    # The released checkpoints' network (spec §2.1).
    "official": UNetConfig(),
    # Same topology at a quarter of the width: 7.4 M parameters, 1/16 of the FLOPs.
    "small": UNetConfig(model_channels=32, norm_groups=32),
    # Same levels with one ResBlock per encoder level and width 16: for tests and CPU demos.
    "tiny": UNetConfig(model_channels=16, num_res_blocks=1, num_heads=2, norm_groups=8),
}


def get_preset(name: str) -> UNetConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise CheckpointError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


# Presets loaded as models (``Refiner.from_checkpoint("tiny")``, ``load_model``, the stages) get
# weights drawn from this seed: the same random network in every process and every call.
PRESET_SEED = 0

"""The denoising UNet of SegRefiner (spec §2), with the released checkpoints' parameter names.

An improved-DDPM style UNet: ResBlocks with additive step conditioning, self-attention at the
two coarsest levels and in the middle, a learned step embedding, no zero-initialisation.
``forward(x, t)``: ``x`` float (B, 4, H, W) = normalized RGB + current mask in {0, 1};
``t`` long (B,) step indices in [0, num_timesteps); returns logits (B, 1, H, W).
H and W must be multiples of ``config.size_multiple`` (32 for the official network).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segrefiner.model.presets import UNetConfig


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back (stable under bfloat16 autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps).type(
            x.dtype
        )


class TimestepBlock(nn.Module):
    """A module whose forward also takes the step embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential):
    """Sequential that hands the step embedding to the children that take it."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class ResBlock(TimestepBlock):
    def __init__(self, channels: int, out_channels: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(
            GroupNorm32(groups, channels),
            nn.SiLU(),
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(groups, out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection = (
            nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Spatial self-attention with the checkpoints' heads-major qkv channel layout.

    The qkv conv's 3C output channels are ordered ``[head0: q, k, v, head1: q, k, v, ...]``
    (improved-diffusion's legacy layout); scaling 1/sqrt(C / heads).
    """

    def __init__(self, channels: int, num_heads: int, groups: int):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = GroupNorm32(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat))  # (B, 3C, T)
        head_ch = c // self.num_heads
        # (B*heads, 3*head_ch, T) -> q, k, v each (B*heads, head_ch, T)
        q, k, v = qkv.reshape(b * self.num_heads, 3 * head_ch, -1).split(head_ch, dim=1)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        )  # (B*heads, T, head_ch)
        out = out.transpose(1, 2).reshape(b, c, -1)
        return (flat + self.proj_out(out)).reshape(b, c, *spatial)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class DenoiseUNet(nn.Module):
    """SegRefiner's denoiser: ``(x (B,4,H,W), t (B,)) -> logits (B,1,H,W)``."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        cfg = config or UNetConfig()
        self.config = cfg
        ch = cfg.model_channels
        emb_dim = cfg.time_embed_dim
        groups = cfg.norm_groups

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, groups, cfg.dropout)

        def attn(c: int) -> AttentionBlock:
            return AttentionBlock(c, cfg.num_heads, groups)

        self.time_embed = nn.Embedding(cfg.num_timesteps, emb_dim)

        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))]
        )
        skip_channels = [ch]
        stride = 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * cfg.model_channels)]
                ch = mult * cfg.model_channels
                if stride in cfg.attention_strides:
                    layers.append(attn(ch))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                skip_channels.append(ch)
                stride *= 2

        self.middle_block = TimestepEmbedSequential(res(ch, ch), attn(ch), res(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), mult * cfg.model_channels)]
                ch = mult * cfg.model_channels
                if stride in cfg.attention_strides:
                    layers.append(attn(ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    stride //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            GroupNorm32(groups, ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        multiple = self.config.size_multiple
        if x.shape[-1] % multiple or x.shape[-2] % multiple:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not a multiple of {multiple}")
        emb = self.time_embed(t)
        h = x
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


def build_unet(config: UNetConfig | str = "official", seed: int | None = None) -> DenoiseUNet:
    """Build a randomly initialised network from a config or a preset name.

    ``seed``: the weights are drawn from a generator seeded with it (the global torch RNG is
    left as it was), so every process builds the same network; ``None`` draws from the global
    RNG (training seeds that itself)."""
    from segrefiner.model.presets import get_preset

    cfg = get_preset(config) if isinstance(config, str) else config
    if seed is None:
        return DenoiseUNet(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DenoiseUNet(cfg)

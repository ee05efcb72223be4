"""The denoising network and its named presets."""

from segrefiner.model.presets import PRESET_SEED, PRESETS, UNetConfig, get_preset
from segrefiner.model.unet import DenoiseUNet, build_unet

__all__ = ["PRESETS", "PRESET_SEED", "DenoiseUNet", "UNetConfig", "build_unet", "get_preset"]

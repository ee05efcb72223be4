"""The denoising network and its named presets."""

from segrefiner.model.presets import PRESETS, UNetConfig, get_preset
from segrefiner.model.unet import DenoiseUNet, build_unet

__all__ = ["PRESETS", "DenoiseUNet", "UNetConfig", "build_unet", "get_preset"]

"""Inference: instance (LR) and semantic (HR) refinement on top of the diffusion loop."""

from segrefiner.inference.config import IMAGE_MEAN, IMAGE_STD, InferenceConfig
from segrefiner.inference.instance import refine_instances
from segrefiner.inference.seeding import item_generator, item_seed
from segrefiner.inference.semantic import refine_semantic

__all__ = [
    "IMAGE_MEAN",
    "IMAGE_STD",
    "InferenceConfig",
    "item_generator",
    "item_seed",
    "refine_instances",
    "refine_semantic",
]

"""SegRefiner: segmentation refinement with a discrete diffusion model.

Three lines to refine a mask::

    from segrefiner import Refiner
    refiner = Refiner.from_checkpoint("segrefiner_hr_latest.pth", device="cuda", seed=0)
    fine = refiner.refine(image, coarse)   # H x W x 3 uint8 RGB, H x W {0,1} -> H x W bool
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Refiner", "__version__", "load_model"]


def __getattr__(name: str):
    # Lazy so that `import segrefiner` (e.g. for the version) does not import torch.
    if name == "Refiner":
        from segrefiner.refiner import Refiner

        return Refiner
    if name == "load_model":
        from segrefiner.checkpoint import load_model

        return load_model
    raise AttributeError(name)

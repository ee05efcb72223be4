"""Shared fixtures: real photographs, synthetic masks, the official network built once."""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ASSETS = Path(__file__).parent / "assets"

# Tests run small tensors, where a second intra-op thread buys little and, on a shared or busy
# machine, OpenMP's spinning threads slow everything several-fold. One thread keeps the suite's
# time predictable.
torch.set_num_threads(1)

# The suite starts many Python processes (test workers, CLI runs, Dask workers, torchrun): let
# them cache compiled modules (in the ignored __pycache__ folders) even where the environment
# turns that off, instead of each compiling the whole project again.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep tests that share an expensive session fixture on one xdist worker (``make test``
    runs ``-n 2 --dist loadgroup``), so it is built once.

    The tests that run flows share one temporary Prefect server per worker (seconds to start)
    and a migrated MLflow database template (seconds to migrate); grouped, only one worker makes
    them. The other tests under ``tests/flows`` need neither and go wherever the load is lowest.
    The tests of the official network share its 118.6 M golden weights (seconds to draw).
    Without xdist the marks do nothing.
    """
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if {"prefect_server", "mlflow_template"} & fixtures:
            item.add_marker(pytest.mark.xdist_group("flows"))
        elif {"official_model", "golden_weights"} & fixtures:
            item.add_marker(pytest.mark.xdist_group("official"))


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photograph shipped with scikit-image: (384, 384, 3) uint8 RGB."""
    from skimage import data

    return cv2.resize(data.astronaut(), (384, 384), interpolation=cv2.INTER_AREA)


def blob_mask(
    shape: tuple[int, int], center: tuple[int, int], radius: int, seed: int = 0
) -> np.ndarray:
    """A star-like blob with a concavity: (H, W) bool."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    radii = radius * (
        1 + 0.25 * np.sin(3 * angles + rng.uniform(0, 6)) + 0.05 * rng.standard_normal(48)
    )
    pts = np.stack([center[0] + radii * np.cos(angles), center[1] + radii * np.sin(angles)], 1)
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [pts.round().astype(np.int32)], 1)
    return mask.astype(bool)


@pytest.fixture(scope="session")
def golden_weights() -> dict[str, torch.Tensor]:
    """The official network's parameters filled as GOLDEN.md describes (names without prefix)."""
    from segrefiner.model import DenoiseUNet, get_preset

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in DenoiseUNet(get_preset("official")).state_dict().items()}
    state = {}
    for key, shape in shapes.items():
        name = "denoise_model." + key
        gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        draw = torch.randn(shape, generator=gen, dtype=torch.float64)
        # in place (the same operations in the same order as GOLDEN.md's): no second
        # float64 copy of 118.6 M values
        if name.endswith("weight") and len(shape) == 1:
            value = draw.mul_(0.1).add_(1.0)
        elif len(shape) == 1:
            value = draw.mul_(0.05)
        elif name.endswith("time_embed.weight"):
            value = draw
        else:
            value = draw.div_(draw[0].numel() ** 0.5)
        state[key] = value.float()
    return state


@pytest.fixture(scope="session")
def official_model(golden_weights):
    """The official preset with the golden weights, built once per session (118.6 M params)."""
    from segrefiner.checkpoint import load_weights
    from segrefiner.model import DenoiseUNet, get_preset

    with torch.device("meta"):  # no random initialisation: every weight is a golden one
        model = DenoiseUNet(get_preset("official"))
    # copies: a test that changes a weight in place leaves golden_weights as they are
    copies = {k: v.clone() for k, v in golden_weights.items()}
    load_weights(model, copies, "golden weights", assign=True)
    return model.eval()


@pytest.fixture(scope="session")
def demo_ci(tmp_path_factory) -> Path:
    """The demo data set at its smallest scale, generated once per session."""
    from segrefiner.data.demo import generate_demo

    out = tmp_path_factory.mktemp("demo") / "demo"
    generate_demo(out, seed=0, scale="ci")
    return out

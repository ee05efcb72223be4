from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from segrefiner.config import flatten, load_config, to_dict
from segrefiner.errors import InputError


@dataclass(frozen=True)
class Optim:
    lr: float = 4e-4
    steps: tuple[int, ...] = (80_000, 100_000)


@dataclass(frozen=True)
class Train:
    name: str = "lr"
    iters: int = 120_000
    ema: bool = False
    clip: float | None = None
    optim: Optim = field(default_factory=Optim)


def test_yaml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("iters: 10\noptim:\n  lr: 1.0e-3\n  steps: [5, 8]\n")
    cfg = load_config(Train, path, ["optim.lr=2e-4", "clip=1.5", "ema=true"])
    assert cfg == Train(iters=10, ema=True, clip=1.5, optim=Optim(lr=2e-4, steps=(5, 8)))
    assert flatten(to_dict(cfg))["optim.steps"] == [5, 8]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("iterz: 3\n", "unknown keys \\['iterz'\\]"),
        ("optim:\n  momentum: 0.9\n", "optim: unknown keys"),
        ("iters: ten\n", "iters: expected an integer"),
        ("ema: 1\n", "ema: expected true/false"),
        ("optim: [1]\n", "expected a mapping"),
        ("- a\n", "top level must be a mapping"),
        ("iters: [\n", "malformed YAML"),
    ],
)
def test_strict_errors(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        load_config(Train, path)


def test_bad_override() -> None:
    with pytest.raises(InputError, match="KEY=VALUE"):
        load_config(Train, None, ["iters"])


RECIPES = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_loads(recipe: Path) -> None:
    """A recipe named in checkpoints/README.md must stay loadable as the code changes."""
    from segrefiner.training.config import load_train_config

    config = load_train_config(recipe)
    assert config.name == recipe.stem
    assert config.checkpoint.dir == f"runs/{recipe.stem}"

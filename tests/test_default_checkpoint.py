"""default_checkpoint: the shipped model of each refinement path, from one registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segrefiner.checkpoint import (
    CHECKPOINTS_ENV,
    DEFAULT_CHECKPOINTS,
    REPO_CHECKPOINTS,
    default_checkpoint,
    default_checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from segrefiner.errors import CheckpointError, InputError
from segrefiner.model import build_unet


def test_registry_names_the_shipped_files() -> None:
    assert DEFAULT_CHECKPOINTS == {"lr": "segrefiner_lr_real.pt", "hr": "segrefiner_hr_real.pt"}
    assert REPO_CHECKPOINTS == Path(__file__).resolve().parents[1] / "checkpoints"


def test_default_location_is_the_repository_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CHECKPOINTS_ENV, raising=False)
    assert default_checkpoint_path("lr") == REPO_CHECKPOINTS / "segrefiner_lr_real.pt"
    monkeypatch.setenv(CHECKPOINTS_ENV, "")  # empty counts as unset
    assert default_checkpoint_path("hr") == REPO_CHECKPOINTS / "segrefiner_hr_real.pt"


def test_present_file_from_the_env_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_unet("tiny")
    save_checkpoint(tmp_path / "segrefiner_lr_real.pt", model, meta={"step": 7})
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path))
    path = default_checkpoint("lr")
    assert path == tmp_path / "segrefiner_lr_real.pt"
    loaded, meta = load_checkpoint(path)
    assert meta["preset"] == "tiny" and meta["step"] == 7
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("kind", "name", "official"),
    [
        ("lr", "segrefiner_lr_real.pt", "segrefiner_lr_latest.pth"),
        ("hr", "segrefiner_hr_real.pt", "segrefiner_hr_latest.pth"),
    ],
)
def test_missing_file_says_what_to_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, name: str, official: str
) -> None:
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path))
    with pytest.raises(CheckpointError) as info:
        default_checkpoint(kind)
    message = str(info.value)
    assert str(tmp_path / name) in message
    assert f"no shipped {kind.upper()} model exists yet" in message
    assert "not installed" in message
    assert "--checkpoint PATH" in message and official in message
    assert CHECKPOINTS_ENV in message  # says where the folder came from
    assert len(message.splitlines()) == 1


def test_missing_file_in_the_repository_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CHECKPOINTS_ENV, raising=False)
    if default_checkpoint_path("hr").is_file():
        pytest.skip("the shipped HR model is installed")
    with pytest.raises(CheckpointError, match=r"segrefiner_hr_real\.pt: file not found") as info:
        default_checkpoint("hr")
    assert CHECKPOINTS_ENV not in str(info.value)


@pytest.mark.parametrize("kind", ["LR", "sr", ""])
def test_unknown_kind_names_the_known_ones(kind: str) -> None:
    with pytest.raises(InputError, match=r"unknown refinement path.*known: lr, hr"):
        default_checkpoint(kind)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        default_checkpoint_path(kind)  # type: ignore[arg-type]

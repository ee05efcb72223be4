"""segrefiner refine without --checkpoint: the shipped model of the mode, or a one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segrefiner.checkpoint import CHECKPOINTS_ENV, save_checkpoint
from segrefiner.cli import main
from segrefiner.io import read_mask
from segrefiner.model import build_unet

SHIPPED = {"semantic": "segrefiner_hr_real.pt", "instance": "segrefiner_lr_real.pt"}


def _argv(pair: tuple[Path, Path], out: Path, mode: str) -> list[str]:
    image, mask = pair
    files = ["--image", str(image), "--mask", str(mask), "-o", str(out)]
    return ["refine", *files, "--mode", mode, "--device", "cpu"]


@pytest.mark.parametrize("mode", ["semantic", "instance"])
def test_refines_with_the_shipped_model_of_the_mode(
    pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, capsys
) -> None:
    shipped = tmp_path / "shipped"
    # Only the mode's own file is there: the other one would fail with "file not found".
    save_checkpoint(
        shipped / SHIPPED[mode], build_unet("tiny"), meta={"inference": {"model_size": 32}}
    )
    monkeypatch.setenv(CHECKPOINTS_ENV, str(shipped))
    out = tmp_path / "out" / "refined.png"
    assert main(_argv(pair, out, mode)) == 0
    assert read_mask(out).shape == (384, 384)
    assert set(np.unique(np.asarray(Image.open(out)))) <= {0, 255}
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("mode", "kind", "official"),
    [
        ("semantic", "HR", "segrefiner_hr_latest.pth"),
        ("instance", "LR", "segrefiner_lr_latest.pth"),
    ],
)
def test_missing_shipped_model_is_a_one_line_error(
    pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode, kind, official, capsys
) -> None:
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path / "empty"))
    out = tmp_path / "o.png"
    assert main(_argv(pair, out, mode)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("segrefiner refine: error: ")
    assert str(tmp_path / "empty" / SHIPPED[mode]) in err
    assert f"no shipped {kind} model exists yet" in err
    assert "--checkpoint PATH" in err and official in err
    assert not out.exists()


def test_an_explicit_checkpoint_wins(pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path / "empty"))  # no shipped model at all
    out = tmp_path / "o.png"
    argv = [*_argv(pair, out, "instance"), "--checkpoint", "tiny", "--model-size", "64"]
    assert main(argv) == 0 and out.is_file()


def test_help_names_the_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["refine", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "segrefiner_hr_real.pt" in help_text and "segrefiner_lr_real.pt" in help_text

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segrefiner.checkpoint import save_checkpoint
from segrefiner.cli import main
from segrefiner.io import read_mask, write_mask
from segrefiner.model import build_unet
from tests.conftest import blob_mask


@pytest.mark.parametrize("mode", ["semantic", "instance"])
def test_refine_one_photo_with_a_preset(pair, tmp_path: Path, mode: str, capsys) -> None:
    image, mask = pair
    out = tmp_path / "out" / "refined.png"
    args = ["refine", "--checkpoint", "tiny", "--image", str(image), "--mask", str(mask)]
    opts = ["--mode", mode, "--device", "cpu", "--seed", "3", "--model-size", "64"]
    assert main([*args, "-o", str(out), *opts]) == 0
    refined = read_mask(out)
    assert refined.shape == (384, 384)
    assert set(np.unique(np.asarray(Image.open(out)))) <= {0, 255}
    assert "wrote" in capsys.readouterr().out


def test_refine_with_a_checkpoint_file(pair, tmp_path: Path) -> None:
    image, mask = pair
    ckpt = tmp_path / "demo_tiny.pt"
    save_checkpoint(ckpt, build_unet("tiny"), meta={"inference": {"model_size": 32}})
    out1, out2 = tmp_path / "a.png", tmp_path / "b.png"
    base = ["refine", "--checkpoint", str(ckpt), "--image", str(image), "--mask", str(mask)]
    assert main([*base, "-o", str(out1)]) == 0
    assert main([*base, "-o", str(out2)]) == 0
    assert np.array_equal(read_mask(out1), read_mask(out2))  # seeded by default


def test_folder_form_reports_bad_items_and_resumes(tmp_path: Path, photo, capsys) -> None:
    images, masks, out = tmp_path / "im", tmp_path / "gt", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(photo).save(images / f"{name}.jpg")
    write_mask(masks / "a.png", blob_mask(photo.shape[:2], (200, 190), 90))
    write_mask(masks / "b.png", np.zeros((10, 10), bool))  # wrong size
    # c has no mask
    args = [
        "refine",
        "--checkpoint",
        "tiny",
        "--images",
        str(images),
        "--masks",
        str(masks),
        "-o",
        str(out),
    ]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "refined 1, kept 0 existing, failed 2" in captured.out
    assert "b.png: mask size 10x10" in captured.err
    assert "no mask with stem 'c'" in captured.err
    assert sorted(p.name for p in out.iterdir()) == [
        ".segrefiner-run.json",
        ".segrefiner.lock",
        "a.png",
        "refine_scores.json",
    ]
    scores = json.loads((out / "refine_scores.json").read_text())
    assert list(scores) == ["a"] and isinstance(scores["a"]["score"], float)
    assert main(args) == 1
    assert "refined 0, kept 1 existing, failed 2" in capsys.readouterr().out
    assert json.loads((out / "refine_scores.json").read_text()) == scores  # kept on resume


def test_guard_on_the_command_line_matches_the_api(pair, tmp_path: Path, capsys) -> None:
    """The printed score is the API's; a guard above it writes the coarse mask, one below it
    the API's refined mask; the guard is part of a folder's settings."""
    from segrefiner import Refiner
    from segrefiner.inference import InferenceConfig
    from segrefiner.io import read_image

    image, mask = pair
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, build_unet("tiny"), meta={"inference": {"model_size": 32}})
    api = Refiner.from_checkpoint(ckpt, seed=0, config=InferenceConfig(model_size=32))
    coarse = read_mask(mask)
    want, score = api.refine_instances(read_image(image), coarse[None], return_scores=True)
    base = ["refine", "--checkpoint", str(ckpt), "--image", str(image), "--mask", str(mask)]
    base += ["--mode", "instance", "--device", "cpu"]
    out = tmp_path / "free.png"
    assert main([*base, "-o", str(out)]) == 0
    assert f"refinement score {score[0] * 100:+.2f}" in capsys.readouterr().out
    assert np.array_equal(read_mask(out), want[0])
    assert (want[0] != coarse).any()  # the guard's choice below is visible
    held = tmp_path / "held.png"
    assert main([*base, "-o", str(held), "--guard", f"{score[0] + 0.001:.6f}"]) == 0
    assert "the guard kept the coarse mask" in capsys.readouterr().out
    assert np.array_equal(read_mask(held), coarse)
    below = tmp_path / "below.png"
    assert main([*base, "-o", str(below), "--guard", f"{score[0] - 0.001:.6f}"]) == 0
    assert np.array_equal(read_mask(below), want[0])
    assert main([*base, "-o", str(below), "--guard", "7"]) == 2  # out of range: one line


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--checkpoint", "missing.pth", "--image", "IMG", "--mask", "MASK"],
            "checkpoint file not found",
        ),
        (
            ["--checkpoint", "tiny", "--image", "nope.jpg", "--mask", "MASK"],
            "nope.jpg: image file not found",
        ),
        (
            ["--checkpoint", "tiny", "--image", "IMG", "--mask", "SMALL"],
            "differs from the image size",
        ),
        (["--checkpoint", "tiny", "--image", "IMG"], "--image and --mask go together"),
        (["--checkpoint", "tiny", "--images", "EMPTY", "--masks", "EMPTY"], "no images found"),
    ],
)
def test_errors_print_one_line_and_exit_non_zero(
    pair, tmp_path: Path, extra, message, capsys
) -> None:
    image, mask = pair
    small = tmp_path / "small.png"
    write_mask(small, np.ones((20, 20), bool))
    (tmp_path / "empty").mkdir()
    subst = {
        "IMG": str(image),
        "MASK": str(mask),
        "SMALL": str(small),
        "EMPTY": str(tmp_path / "empty"),
    }
    argv = ["refine", *[subst.get(a, a) for a in extra], "-o", str(tmp_path / "o.png")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_unreadable_image(tmp_path: Path, pair, capsys) -> None:
    _, mask = pair
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    argv = [
        "refine",
        "--checkpoint",
        "tiny",
        "--image",
        str(bad),
        "--mask",
        str(mask),
        "-o",
        str(tmp_path / "o.png"),
    ]
    assert main(argv) == 2
    assert "bad.jpg: unreadable image" in capsys.readouterr().err


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "segrefiner", "refine", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    assert "--checkpoint" in proc.stdout

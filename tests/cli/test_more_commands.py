"""Commands that only had library-level tests: refine-dataset --kind big / thin, data
cocofy-lvis and refine --overwrite, each through the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from segrefiner.cli import main
from segrefiner.io import read_mask, write_mask


def test_refine_dataset_big_through_the_cli(demo_ci: Path, tmp_path: Path, capsys) -> None:
    from pipelines.config import RefineConfig
    from pipelines.refine_hr import list_samples, refine_hr

    out = tmp_path / "big"
    argv = ["refine-dataset", "--kind", "big", "--data-root", str(demo_ci), "--folder",
            "big/test", "--checkpoint", "tiny", "--model-size", "32", "--seed", "4"]  # fmt: skip
    assert main([*argv, "-o", str(out)]) == 0
    records = list_samples("big", demo_ci, folder="big/test")
    assert f"refined {len(records)} of {len(records)} images" in capsys.readouterr().out
    api = tmp_path / "api"
    refine_hr(records, api, RefineConfig("tiny", model_size=32, seed=4))
    for rec in records:  # the command line is the stage, byte for byte
        name = f"{rec.name}_refine.png"
        assert (out / name).read_bytes() == (api / name).read_bytes(), name


def test_refine_dataset_thin_through_the_cli(demo_ci: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    shutil.copytree(demo_ci / "thin_object", root / "thin_object")
    names = (root / "thin_object" / "list" / "test.txt").read_text().split()
    assert names
    for name in names:  # coarse masks: the ground truth eroded
        gt = read_mask(root / "thin_object" / "masks" / name)
        coarse = cv2.erode(gt.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        write_mask(root / "thin_coarse" / Path(name).with_suffix(".png").name, coarse)
    out = tmp_path / "thin"
    argv = ["refine-dataset", "--kind", "thin", "--data-root", str(root), "--coarse-dir",
            "thin_coarse", "--checkpoint", "tiny", "--model-size", "64"]  # fmt: skip
    assert main([*argv, "-o", str(out)]) == 0
    assert f"refined {len(names)} of {len(names)} images" in capsys.readouterr().out
    written = sorted(p.name for p in out.rglob("*.png"))
    assert written == sorted(Path(n).with_suffix(".png").name for n in names)


def test_cocofy_lvis_through_the_cli(tmp_path: Path, capsys) -> None:
    from lvis import LVIS

    from tests.data.test_lvis import _coco_val, _lvis_val

    lvis_path, coco_path = tmp_path / "lvis_v1_val.json", tmp_path / "instances_val2017.json"
    lvis_path.write_text(json.dumps(_lvis_val()))
    coco_path.write_text(json.dumps(_coco_val()))
    out = tmp_path / "lvis" / "annotations" / "lvis_v1_val_cocofied.json"
    argv = ["data", "cocofy-lvis", "--lvis", str(lvis_path), "--coco", str(coco_path)]
    assert main([*argv, "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    api = LVIS(str(out))
    assert sorted(api.get_img_ids()) == [2, 5] and sorted(api.get_cat_ids()) == [1, 2, 62]
    missing = ["data", "cocofy-lvis", "--lvis", str(tmp_path / "missing.json")]
    assert main([*missing, "--coco", str(coco_path), "--out", str(out)]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_refine_overwrite_redoes_the_folder(pair, tmp_path: Path, capsys) -> None:
    image, mask = pair
    images, masks = tmp_path / "im", tmp_path / "gt"
    images.mkdir()
    masks.mkdir()
    shutil.copy(image, images / "a.jpg")
    shutil.copy(mask, masks / "a.png")
    out = tmp_path / "out"
    base = ["refine", "--checkpoint", "tiny", "--images", str(images), "--masks", str(masks),
            "--model-size", "64", "-o", str(out)]  # fmt: skip
    assert main([*base, "--seed", "1"]) == 0
    first = (out / "a.png").read_bytes()
    # another seed over the same folder: refused (the outputs were made with other settings)
    assert main([*base, "--seed", "2"]) == 2
    assert "another seed" in capsys.readouterr().err
    assert (out / "a.png").read_bytes() == first
    # --overwrite redoes them with the new settings: the same bytes as a fresh folder
    assert main([*base, "--seed", "2", "--overwrite"]) == 0
    fresh = tmp_path / "fresh"
    assert main([*base[:-1], str(fresh), "--seed", "2"]) == 0
    assert (out / "a.png").read_bytes() == (fresh / "a.png").read_bytes() != first
    assert "refined 1, kept 0 existing" in capsys.readouterr().out

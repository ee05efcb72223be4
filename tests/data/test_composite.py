"""Training composites on a tiny real-photo root: layout, masks, determinism, reuse."""

from __future__ import annotations

import dataclasses
import filecmp
import shutil

import numpy as np
import pytest

from segrefiner.data.coco import load_coco_instances
from segrefiner.data.composite import CompositeConfig, generate_composites
from segrefiner.errors import InputError
from tests.data.real_root import write_real_root

CONFIG = CompositeConfig(count=8, long_side=(96, 128), min_area=40, min_cutout_area=100)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    root = write_real_root(tmp_path_factory.mktemp("real") / "real")
    summary = generate_composites(root, seed=0, config=CONFIG)
    return root, summary


def test_train_mix_holds_the_real_training_photos_and_the_composites(built) -> None:
    root, summary = built
    mix = load_coco_instances(root / "annotations" / "train_mix.json", root / "images")
    names = [info.file_name for info in mix.images.values()]
    assert [n for n in names if n.startswith("train/")] == ["train/p101.jpg", "train/p102.jpg"]
    assert not any(n.startswith("eval/") for n in names)  # the eval split is never used
    composites = [i for i, info in mix.images.items() if info.file_name.startswith("composite/")]
    assert len(composites) == summary.composites > 0
    assert summary.cutouts == 5  # 4 training instances away from the border + 1 RGBA matte
    assert "cutout" in {c.name for c in mix.categories.values()}
    for image_id in composites:
        image = mix.read_image(image_id)
        masks = [mix.annotation_mask(a) for a in mix.annotations_of(image_id)]
        assert image.shape[:2] == masks[0].shape and max(image.shape[:2]) <= 128
        assert all(m.sum() >= CONFIG.min_area for m in masks)
        # A later paste occludes earlier instances: no pixel belongs to two of them.
        assert np.sum(masks, axis=0).max() == 1


def test_same_seed_same_bytes_and_reuse(built, tmp_path) -> None:
    root, summary = built
    again = generate_composites(root, seed=0, config=CONFIG)
    assert again.reused and again.composites == summary.composites
    copy = write_real_root(tmp_path / "copy")
    generate_composites(copy, seed=0, config=CONFIG)
    for path in sorted((root / "images" / "composite").iterdir()):
        assert filecmp.cmp(path, copy / "images" / "composite" / path.name, shallow=False)
    other = generate_composites(copy, seed=1, config=CONFIG)  # settings changed: made again
    assert not other.reused
    changed = dataclasses.replace(CONFIG, count=3)
    assert generate_composites(copy, seed=1, config=changed).composites <= 3


def test_a_root_without_the_real_set_is_named(tmp_path) -> None:
    with pytest.raises(InputError, match="segrefiner data real"):
        generate_composites(tmp_path / "nothing")


def test_cli_composites(built, tmp_path, capsys) -> None:
    from segrefiner.cli import main

    root = tmp_path / "cli"
    shutil.copytree(built[0], root)
    (root / "COMPOSITES.json").unlink()
    assert main(["data", "composites", "--root", str(root), "--count", "2"]) == 0
    assert "train_mix.json" in capsys.readouterr().out
    assert main(["data", "composites", "--root", str(root), "--count", "0"]) == 2


def test_replace_dir_swaps_a_whole_folder(tmp_path) -> None:
    from segrefiner.io import replace_dir

    dst, new = tmp_path / "set", tmp_path / "new"
    dst.mkdir()
    (dst / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    replace_dir(new, dst)
    assert sorted(p.name for p in dst.iterdir()) == ["new.txt"] and not new.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["set"]  # the old folder is gone too
    again = tmp_path / "again"
    again.mkdir()
    replace_dir(again, tmp_path / "fresh")  # no old folder: a plain rename
    assert (tmp_path / "fresh").is_dir()

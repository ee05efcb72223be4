"""Every stage's fingerprint (the content key the flows cache on and name run folders by):
contents count, paths do not; the checkpoint, the settings and the shard count do."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from pipelines.coarse import COARSE_HR, CoarseHRConfig
from pipelines.config import RefineConfig
from pipelines.evaluate_stage import EVALUATE_COCO, EVALUATE_HR
from pipelines.refine_coco import REFINE_COCO
from pipelines.refine_hr import REFINE_HR, list_samples
from pipelines.stage import Stage

CONFIG = RefineConfig("tiny", model_size=64)


def test_every_stage_declares_a_fingerprint() -> None:
    stages = [REFINE_COCO, REFINE_HR, COARSE_HR, EVALUATE_COCO, EVALUATE_HR]
    assert all(isinstance(s, Stage) and callable(s.fingerprint) for s in stages)


def test_refine_coco_key_follows_contents_not_paths(demo_ci: Path, tmp_path: Path) -> None:
    inputs = {
        "results": demo_ci / "results/segmentor_val.segm.json",
        "annotations": demo_ci / "coco/annotations/instances_val2017.json",
        "image_root": demo_ci / "coco/val2017",
    }
    key = REFINE_COCO.fingerprint(CONFIG, 2, **inputs)
    moved = tmp_path / "renamed.json"
    shutil.copyfile(inputs["results"], moved)
    assert REFINE_COCO.fingerprint(CONFIG, 2, **{**inputs, "results": moved}) == key
    moved.write_text("[]")
    assert REFINE_COCO.fingerprint(CONFIG, 2, **{**inputs, "results": moved}) != key
    assert REFINE_COCO.fingerprint(CONFIG, 3, **inputs) != key
    assert REFINE_COCO.fingerprint(dataclasses.replace(CONFIG, seed=1), 2, **inputs) != key
    assert (
        REFINE_COCO.fingerprint(dataclasses.replace(CONFIG, checkpoint="small"), 2, **inputs) != key
    )


def test_refine_hr_key_ignores_the_output_folder(demo_ci: Path) -> None:
    records = list_samples("dis", demo_ci)
    key = REFINE_HR.fingerprint(CONFIG, 1, records=records, out_dir="a")
    assert REFINE_HR.fingerprint(CONFIG, 1, records=records, out_dir="b") == key
    assert REFINE_HR.fingerprint(CONFIG, 1, records=records[:1], out_dir="a") != key


def test_coarse_hr_key_ignores_where_the_data_root_is(demo_ci: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(demo_ci / "dis/DIS-TR", copy / "dis/DIS-TR")
    shutil.copytree(demo_ci / "thin_object", copy / "thin_object")
    here = COARSE_HR.fingerprint(CoarseHRConfig(data_root=str(demo_ci)), None)
    there = COARSE_HR.fingerprint(CoarseHRConfig(data_root=str(copy)), None)
    assert here == there
    other_seed = CoarseHRConfig(data_root=str(copy), seed=1)
    assert COARSE_HR.fingerprint(other_seed, None) != here

"""``segrefiner eval`` end to end: printed tables, output files, errors and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segrefiner.cli import main
from segrefiner.io import write_mask
from segrefiner.metrics import evaluate_mask_folders, instance_ap
from tests.metrics.toy import make_toy_set


@pytest.fixture(scope="module")
def coco_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    gt, results = make_toy_set(seed=0, num_images=6)
    (root / "gt.json").write_text(json.dumps(gt))
    (root / "res.json").write_text(json.dumps(results))
    return root, gt, results


def test_eval_coco_prints_the_table_and_writes_json(coco_files, capsys, tmp_path):
    root, gt, results = coco_files
    out = tmp_path / "ap.json"
    code = main(
        [
            "eval", "coco", "--gt", str(root / "gt.json"), "--results", str(root / "res.json"),
            "--iou-type", "segm", "boundary", "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    segm = instance_ap(gt, results, "segm")
    boundary = instance_ap(gt, results, "boundary")
    lines = printed.splitlines()
    assert lines[0] == f"COCO protocol: 6 images, {len(results)} detections"
    assert lines[1].split() == ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert lines[2].split() == ["mask"] + [
        "n/a" if v is None else f"{100 * v:.1f}" for v in segm.values()
    ]
    assert lines[3].split()[:2] == ["boundary", f"{100 * boundary['AP']:.1f}"]
    saved = json.loads(out.read_text())
    assert saved["segm"]["metrics"] == segm
    assert saved["boundary"]["metrics"]["AP"] == boundary["AP"]


def test_eval_coco_lvis_and_lenient(coco_files, capsys, tmp_path):
    root, _, results = coco_files
    bad = [*results, {**results[0], "image_id": 777}]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    args = ["eval", "coco", "--gt", str(root / "gt.json"), "--results", str(tmp_path / "bad.json")]
    assert main([*args, "--lvis"]) == 2
    err = capsys.readouterr().err
    assert "segrefiner eval: error:" in err and f"bad.json[{len(results)}]: image_id 777" in err
    assert main([*args, "--lvis", "--lenient"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1].split()[-3:] == ["APr", "APc", "APf"]
    assert "skipped 1 results: unknown_image_id 1" in captured.err


def test_eval_masks_with_coarse_and_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for sub in ("gt", "pred", "coarse"):
        (tmp_path / sub).mkdir()
    for k in range(3):
        gt = np.zeros((60, 80), bool)
        gt[10 + k : 40, 15 : 50 + k] = True
        write_mask(tmp_path / "gt" / f"m{k}.png", gt)
        write_mask(tmp_path / "coarse" / f"m{k}.png", np.roll(gt, 4, axis=1))
        write_mask(tmp_path / "pred" / f"m{k}.png", gt ^ (rng.random(gt.shape) < 0.02))
    args = ["eval", "masks", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]
    code = main([*args, "--coarse", str(tmp_path / "coarse"), "--csv", str(tmp_path / "r.csv"),
                 "--json", str(tmp_path / "r.json")])  # fmt: skip
    assert code == 0
    report = evaluate_mask_folders(tmp_path / "gt", tmp_path / "pred", tmp_path / "coarse")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("images: 3 evaluated of 3 ground truths")
    assert lines[1] == f"New IoU  : {100 * report.refined.iou:.2f}"
    assert lines[2] == f"Old IoU  : {100 * report.coarse.iou:.2f}"
    assert lines[3] == f"IoU Delta: {100 * report.delta_iou:+.2f}"
    assert lines[6] == f"mBA Delta: {100 * report.delta_mba:+.2f}"
    assert (tmp_path / "r.csv").read_text().splitlines()[0].startswith("name,height,width,iou,ba")
    assert json.loads((tmp_path / "r.json").read_text())["refined"]["iou"] == report.refined.iou

    (tmp_path / "pred" / "m1.png").unlink()
    assert main(args) == 2
    assert "no prediction for 1 of 3 ground truths (e.g. m1.png)" in capsys.readouterr().err
    assert main([*args, "--lenient"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("images: 2 evaluated of 3 ground truths")
    assert "1 ground truths without a prediction, left out: m1.png" in captured.err


def test_eval_without_kind_shows_help(capsys):
    assert main(["eval"]) == 2
    assert "segrefiner eval coco" in capsys.readouterr().out


def test_eval_dis_one_block_per_split(tmp_path, capsys):
    for split in ("DIS-VD", "DIS-TE1"):
        (tmp_path / "dis" / split / "gt").mkdir(parents=True)
        (tmp_path / "out" / split).mkdir(parents=True)
        gt = np.zeros((40, 50), bool)
        gt[5:30, 10:40] = True
        write_mask(tmp_path / "dis" / split / "gt" / "a.png", gt)
        write_mask(
            tmp_path / "out" / split / "a.png", gt if split == "DIS-VD" else np.roll(gt, 2, 1)
        )
    args = ["eval", "dis", "--gt-root", str(tmp_path / "dis"), "--pred-root", str(tmp_path / "out")]
    assert main([*args, "--splits", "DIS-VD", "DIS-TE1", "--json", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[DIS-VD]" and out[2] == "IoU      : 100.00" and out[3] == "mBA      : 100.00"
    assert out[4] == "[DIS-TE1]" and out[6] != "IoU      : 100.00"
    assert set(json.loads((tmp_path / "d.json").read_text())) == {"DIS-VD", "DIS-TE1"}

"""Folder evaluation (BIG / DIS / ThinObject layouts): totals, naming, missing and bad files."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from segrefiner.errors import InputError
from segrefiner.io import write_mask
from segrefiner.metrics import (
    boundary_accuracy,
    evaluate_dis,
    evaluate_mask_folders,
    evaluate_thin_object,
    pooled_iou,
)


def _masks(seed: int, n: int = 4, size=(90, 120)):
    """``[(name, gt, coarse, refined)]`` with refined closer to gt than coarse."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        gt = np.zeros(size, np.uint8)
        cv2.circle(
            gt,
            (int(rng.integers(30, 90)), int(rng.integers(30, 60))),
            int(rng.integers(8, 30)),
            1,
            -1,
        )
        coarse = cv2.dilate(gt, np.ones((5, 5), np.uint8))
        refined = gt.copy()
        refined[rng.random(size) < 0.01] ^= 1
        out.append((f"img{k}", gt.astype(bool), coarse.astype(bool), refined.astype(bool)))
    return out


def _write(folder, name, mask):
    write_mask(folder / name, mask)


def _write_set(root, data, gt: str, coarse: str, refined: str) -> None:
    """Write ``data``'s masks under ``root`` at the paths ``gt``, ``coarse``, ``refined``
    (``{}`` stands for the name)."""
    for name, *masks in data:
        for pattern, mask in zip((gt, coarse, refined), masks, strict=True):
            path = root / pattern.format(name)
            path.parent.mkdir(exist_ok=True)
            write_mask(path, mask)


@pytest.fixture
def plain(tmp_path):
    data = _masks(0)
    _write_set(tmp_path, data, "gt/{}.png", "coarse/{}.png", "pred/{}.png")
    return tmp_path, data


def test_totals_match_the_metric_functions(plain):
    root, data = plain
    report = evaluate_mask_folders(root / "gt", root / "pred", root / "coarse")
    gts = [d[1] for d in data]
    coarse = [d[2] for d in data]
    refined = [d[3] for d in data]
    assert report.refined.iou == pooled_iou(refined, gts)
    assert report.coarse.iou == pooled_iou(coarse, gts)
    mba = sum(boundary_accuracy(p, g) for p, g in zip(refined, gts)) / len(gts)
    assert report.refined.mba == pytest.approx(mba, abs=1e-15)
    assert report.delta_iou == report.refined.iou - report.coarse.iou > 0
    assert report.delta_mba > 0
    assert [r.name for r in report.rows] == [f"img{k}.png" for k in range(4)]
    assert report.rows[1].refined.boundary_accuracy == boundary_accuracy(refined[1], gts[1])
    assert report.num_ground_truths == 4 and not report.missing_predictions


def test_binarised_at_128(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    gt = np.zeros((20, 20), np.uint8)
    gt[5:15, 5:15] = 255
    pred = np.zeros((20, 20), np.uint8)
    pred[5:15, 5:15] = 128  # foreground (>= 128)
    pred[0, 0] = 127  # background
    Image.fromarray(gt).save(tmp_path / "gt" / "a.png")
    Image.fromarray(pred).save(tmp_path / "pred" / "a.png")
    assert evaluate_mask_folders(tmp_path / "gt", tmp_path / "pred").refined.iou == 1.0


def test_big_naming(tmp_path):
    data = _masks(1, n=3)
    _write_set(tmp_path, data, "test/{}_gt.png", "seg/{}_seg.png", "refine/{}_refine.png")
    for name, gt, _, _ in data:
        _write(tmp_path / "refine", f"{name}_gt.png", gt)  # ignored: not a prediction name
    report = evaluate_mask_folders(tmp_path / "test", tmp_path / "refine", tmp_path / "seg", "big")
    assert report.refined.num_images == 3
    assert report.refined.iou == pooled_iou([d[3] for d in data], [d[1] for d in data])
    assert report.coarse.iou == pooled_iou([d[2] for d in data], [d[1] for d in data])


def test_missing_predictions_strict_and_lenient(plain):
    root, data = plain
    (root / "pred" / "img2.png").unlink()
    (root / "coarse" / "img3.png").unlink()
    with pytest.raises(
        InputError, match=r"no prediction for 1 of 4 ground truths \(e\.g\. img2\.png\)"
    ):
        evaluate_mask_folders(root / "gt", root / "pred", root / "coarse")
    report = evaluate_mask_folders(root / "gt", root / "pred", root / "coarse", strict=False)
    assert report.missing_predictions == ["img2.png"]
    assert report.missing_coarse == ["img3.png"]
    assert report.refined.num_images == report.coarse.num_images == 2
    assert report.num_ground_truths == 4
    kept = [d for d in data if d[0] in ("img0", "img1")]
    assert report.refined.iou == pooled_iou([d[3] for d in kept], [d[1] for d in kept])


def test_size_mismatch_names_the_file(plain):
    root, _ = plain
    write_mask(root / "pred" / "img1.png", np.ones((45, 60), bool))
    with pytest.raises(
        InputError, match=r"pred/img1\.png: size 60x45 \(WxH\) differs from the ground truth"
    ):
        evaluate_mask_folders(root / "gt", root / "pred")
    lenient = evaluate_mask_folders(root / "gt", root / "pred", strict=False)
    assert len(lenient.unreadable) == 1 and "img1.png: size 60x45" in lenient.unreadable[0]


def test_empty_band_counted(plain):
    root, _ = plain
    write_mask(root / "gt" / "img9.png", np.zeros((90, 120), bool))
    write_mask(root / "pred" / "img9.png", np.zeros((90, 120), bool))
    report = evaluate_mask_folders(root / "gt", root / "pred")
    assert report.refined.num_images == 5
    assert report.refined.empty_band == 1
    assert report.rows[-1].refined.boundary_accuracy is None
    assert report.rows[-1].refined.iou is None


def test_thin_object_list_and_dis_splits(tmp_path):
    data = _masks(2, n=3)
    thin = tmp_path / "thin_object"
    (thin / "masks").mkdir(parents=True)
    (thin / "list").mkdir()
    (tmp_path / "out").mkdir()
    for name, gt, _, refined in data:
        _write(thin / "masks", f"{name}.png", gt)
        _write(tmp_path / "out", f"{name}.png", refined)
    (thin / "list" / "test.txt").write_text("img0.png\nimg2\n\n")
    report = evaluate_thin_object(thin, tmp_path / "out")
    assert [r.name for r in report.rows] == ["img0.png", "img2.png"]
    assert report.extra_predictions == ["img1.png"]

    for split in ("DIS-VD", "DIS-TE1"):
        (tmp_path / "dis" / split / "gt").mkdir(parents=True)
        (tmp_path / "pred" / split).mkdir(parents=True)
        for name, gt, _, refined in data:
            _write(tmp_path / "dis" / split / "gt", f"{name}.png", gt)
            _write(tmp_path / "pred" / split, f"{name}.png", refined if split == "DIS-VD" else gt)
    reports = evaluate_dis(tmp_path / "dis", tmp_path / "pred", splits=("DIS-VD", "DIS-TE1"))
    assert reports["DIS-TE1"].refined.iou == 1.0 and reports["DIS-TE1"].refined.mba == 1.0
    assert reports["DIS-VD"].refined.iou < 1.0
    with pytest.raises(InputError, match="DIS-TE2/gt: ground-truth folder not found"):
        evaluate_dis(tmp_path / "dis", tmp_path / "pred", splits=("DIS-TE2",))


def test_outputs_and_parallel(plain, tmp_path):
    root, _ = plain
    report = evaluate_mask_folders(root / "gt", root / "pred", root / "coarse")
    report.write_json(tmp_path / "out" / "r.json")
    report.write_csv(tmp_path / "out" / "r.csv")
    saved = json.loads((tmp_path / "out" / "r.json").read_text())
    assert saved["refined"]["iou"] == report.refined.iou
    assert len(saved["images"]) == 4
    rows = list(csv.DictReader((tmp_path / "out" / "r.csv").open()))
    assert rows[0]["name"] == "img0.png"
    assert float(rows[0]["delta_iou"]) == pytest.approx(
        report.rows[0].refined.iou - report.rows[0].coarse.iou
    )
    assert not list((tmp_path / "out").glob(".*tmp*"))  # atomic writes leave no temporaries
    parallel = evaluate_mask_folders(root / "gt", root / "pred", root / "coarse", workers=2)
    assert parallel.as_dict() == report.as_dict()


def test_lenient_leaves_out_unreadable_and_wrong_size_predictions(plain, tmp_path):
    root, data = plain
    names = [name for name, *_ in data]
    (root / "pred" / f"{names[0]}.png").write_bytes(b"not a png")
    _write(root / "pred", f"{names[1]}.png", np.zeros((10, 10), bool))
    with pytest.raises(InputError, match="unreadable mask"):
        evaluate_mask_folders(root / "gt", root / "pred", root / "coarse")
    report = evaluate_mask_folders(root / "gt", root / "pred", root / "coarse", strict=False)
    assert [row.name for row in report.rows] == [f"{n}.png" for n in names[2:]]
    assert (
        report.unreadable[0].startswith(f"{names[0]}.png: ")
        and "unreadable" in report.unreadable[0]
    )
    assert "differs from the ground truth" in report.unreadable[1]
    good = evaluate_mask_folders(
        root / "gt", root / "pred", root / "coarse", names=[f"{n}.png" for n in names[2:]]
    )
    assert report.refined == good.refined and report.coarse == good.coarse
    assert report.as_dict()["unreadable"] == report.unreadable


def test_dis_uses_the_splits_present(tmp_path):
    gt = np.zeros((20, 20), bool)
    gt[5:15, 5:15] = True
    _write(tmp_path / "dis" / "DIS-TE2" / "gt", "a.png", gt)
    _write(tmp_path / "pred" / "DIS-TE2", "a.png", gt)
    reports = evaluate_dis(tmp_path / "dis", tmp_path / "pred")
    assert list(reports) == ["DIS-TE2"] and reports["DIS-TE2"].refined.iou == 1.0
    with pytest.raises(InputError, match="no DIS split with ground truths"):
        evaluate_dis(tmp_path / "nothing", tmp_path / "pred")

"""Mask AP and boundary AP: agreement with plain pycocotools, COCO vs LVIS paths, the direct
boundary computation, and the input checks."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segrefiner.errors import InputError
from segrefiner.metrics import BandCache, evaluate_instances, instance_ap
from segrefiner.metrics._reference import reference_boundary_cocoeval
from segrefiner.metrics.evaluators import BoundaryCOCOeval, lvis_evaluator_class
from segrefiner.rle import encode
from tests.metrics.toy import make_toy_set

KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@pytest.fixture(scope="module")
def toy():
    return make_toy_set(seed=0, num_images=6)


def _plain_coco(gt, results, evaluator=None):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = evaluator(coco_gt, coco_dt) if evaluator else COCOeval(coco_gt, coco_dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _as_stats(metrics):
    return [-1.0 if metrics[k] is None else metrics[k] for k in KEYS]


def test_segm_equals_plain_pycocotools(toy, tmp_path):
    gt, results = toy
    expected = _plain_coco(gt, results).stats[:6]
    assert _as_stats(instance_ap(gt, results, "segm")) == expected.tolist()
    # from files too, and the inputs are not modified
    import json

    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    before = copy.deepcopy((gt, results))
    assert (
        _as_stats(instance_ap(str(tmp_path / "gt.json"), tmp_path / "res.json"))
        == expected.tolist()
    )
    assert (gt, results) == before


def test_boundary_equals_direct_per_pair_computation(toy):
    gt, results = toy
    expected = _plain_coco(gt, results, reference_boundary_cocoeval)
    ours = _plain_coco(gt, results, BoundaryCOCOeval)
    for key, matrix in expected.ious.items():
        got = ours.ious[key]
        assert np.array_equal(np.asarray(got), np.asarray(matrix)), key
    assert _as_stats(instance_ap(gt, results, "boundary")) == expected.stats[:6].tolist()


def test_boundary_ap_not_above_mask_ap_and_lower_here(toy):
    gt, results = toy
    segm = instance_ap(gt, results, "segm")
    boundary = instance_ap(gt, results, "boundary")
    assert boundary["AP"] <= segm["AP"]
    assert boundary["AP75"] < segm["AP75"]  # shifted/grown copies lose boundary overlap


def test_boundary_equals_mask_ap_when_bands_cover_objects():
    # Objects thinner than twice the band width: every band is the whole mask.
    gt, results = make_toy_set(seed=3, num_images=4)
    segm = instance_ap(gt, results, "segm")
    assert instance_ap(gt, results, "boundary", dilation_ratio=0.5) == segm


def test_coco_and_lvis_paths_agree(toy):
    gt, results = toy  # every detection's category is annotated in its image
    for iou_type in ("segm", "boundary"):
        coco = instance_ap(gt, results, iou_type, "coco")
        lvis = instance_ap(gt, results, iou_type, "lvis")
        assert {k: lvis[k] for k in KEYS} == coco, iou_type
        assert set(lvis) == {*KEYS, "APr", "APc", "APf"}


def test_lvis_federated_rule_ignores_unannotated_categories(toy):
    gt, results = toy
    base = instance_ap(gt, results, "segm", "lvis")
    img = gt["images"][0]
    present = {a["category_id"] for a in gt["annotations"] if a["image_id"] == img["id"]}
    absent = next(c["id"] for c in gt["categories"] if c["id"] not in present)
    fp = {
        "image_id": img["id"],
        "category_id": absent,
        "segmentation": encode(np.ones((img["height"], img["width"]), bool)),
        "score": 0.99,
    }
    assert instance_ap(gt, [*results, fp], "segm", "lvis") == base  # not penalised
    gt_neg = copy.deepcopy(gt)
    gt_neg["images"][0]["neg_category_ids"] = [absent]
    assert instance_ap(gt_neg, [*results, fp], "segm", "lvis") != base  # now a false positive
    assert instance_ap(gt, [*results, fp], "segm", "coco") != instance_ap(gt, results)


def test_lvis_runs_without_touching_numpy(toy):
    gt, results = toy
    instance_ap(gt, results, "segm", "lvis")
    assert not hasattr(np, "float")
    assert issubclass(lvis_evaluator_class(), __import__("lvis").LVISEval)


def test_crowd_ground_truth_keeps_mask_iou():
    gt, results = make_toy_set(seed=5, num_images=4, crowd=True)
    assert any(a["iscrowd"] for a in gt["annotations"])
    ours = _plain_coco(gt, results, BoundaryCOCOeval)
    plain = _plain_coco(gt, results)
    crowd_cols = 0
    for (img, cat), matrix in ours.ious.items():
        if len(matrix) == 0:
            continue
        cells = ours._gts[img, cat]
        for j, g in enumerate(cells):
            if g["iscrowd"]:
                crowd_cols += 1
                assert np.array_equal(matrix[:, j], plain.ious[img, cat][:, j])
    assert crowd_cols > 0
    expected = _plain_coco(gt, results, reference_boundary_cocoeval)
    assert ours.stats.tolist() == expected.stats.tolist()


def test_ground_truth_bands_are_cached_and_reused(toy, monkeypatch):
    gt, results = toy
    cache = BandCache()
    first = instance_ap(gt, results, "boundary", band_cache=cache)
    filled = len(cache)
    assert filled > 0
    import segrefiner.metrics.evaluators as ev

    new_bands = []
    real = ev._job_ious

    def spy(job):
        out = real(job)
        new_bands.append(len(out[1]))
        return out

    monkeypatch.setattr(ev, "_job_ious", spy)
    second = instance_ap(gt, results, "boundary", "lvis", band_cache=cache)
    assert {k: second[k] for k in KEYS} == first
    assert new_bands == [0]  # every ground-truth band came from the cache
    assert len(cache) == filled
    with pytest.raises(InputError, match="dilation ratio"):
        instance_ap(gt, results, "boundary", band_cache=cache, dilation_ratio=0.05)


def test_parallel_paths_give_the_same_numbers(toy):
    from distributed import Client, LocalCluster, get_task_stream

    gt, results = toy
    serial = instance_ap(gt, results, "boundary")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                     dashboard_address=None) as cluster,
        Client(cluster) as client,
        get_task_stream(client) as stream,
    ):  # fmt: skip
        assert instance_ap(gt, results, "boundary", client=client) == serial
    assert len(stream.data) >= 2  # the work ran as tasks on the cluster's workers
    assert instance_ap(gt, results, "boundary", workers=2) == serial
    with pytest.raises(TypeError, match="Dask client"):
        instance_ap(gt, results, "boundary", client=object())


@pytest.mark.parametrize(
    ("change", "reason", "message"),
    [
        ({"image_id": 999}, "unknown_image_id", "results\\[0\\]: image_id 999 is not in"),
        ({"category_id": 42}, "unknown_category_id", "results\\[0\\]: category_id 42 is not in"),
        (
            {"segmentation": {"size": [120, 160], "counts": "0o"}},
            "malformed_segmentation",
            "results\\[0\\]: malformed RLE",
        ),
        (
            {"segmentation": {"size": [10, 10], "counts": "0"}},
            "malformed_segmentation",
            "differs from the image size",
        ),
        ({"score": float("nan")}, "bad_score", "results\\[0\\]: score"),
    ],
)
def test_bad_results_strict_and_lenient(toy, change, reason, message):
    gt, results = toy
    bad = [{**results[0], **change}, *results[1:]]
    with pytest.raises(InputError, match=message):
        instance_ap(gt, bad)
    report = evaluate_instances(gt, bad, strict=False)
    assert report.skipped == {reason: 1}
    assert report.num_detections == len(results) - 1
    assert report.metrics == instance_ap(gt, results[1:])


def test_empty_results(toy):
    gt, _ = toy
    with pytest.raises(InputError, match="no detections"):
        instance_ap(gt, [])
    for api in ("coco", "lvis"):
        report = evaluate_instances(gt, [], "boundary", api, strict=False)
        assert report.num_detections == 0
        assert report.metrics["AP"] == 0.0


def test_annotation_and_format_errors(toy, tmp_path):
    gt, results = toy
    no_lvis = copy.deepcopy(gt)
    del no_lvis["images"][2]["neg_category_ids"]
    with pytest.raises(InputError, match=r"images\[2\].*neg_category_ids"):
        instance_ap(no_lvis, results, api="lvis")
    bad_gt = copy.deepcopy(gt)
    bad_gt["annotations"][1]["image_id"] = 12345
    with pytest.raises(InputError, match=r"annotations\[1\].*unknown image_id 12345"):
        instance_ap(bad_gt, results)
    mixed = [dict(results[0], bbox=[0, 0, 5, 5]), *results[1:]]
    with pytest.raises(InputError, match="have a 'bbox'"):
        instance_ap(gt, mixed)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match=r"bad\.json: malformed JSON"):
        instance_ap(gt, tmp_path / "bad.json")
    with pytest.raises(InputError, match="iou_type"):
        instance_ap(gt, results, "bbox")

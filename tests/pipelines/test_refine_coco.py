from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines.refine_coco import (
    RefineConfig,
    finalize_refine_coco,
    prepare_refine_coco,
    refine_coco,
    run_refine_coco_shard,
)
from pipelines.stores import MaskStore
from segrefiner import rle
from segrefiner.errors import InputError

CONFIG = RefineConfig(checkpoint="tiny", seed=5, model_size=32, batch_size=8)


def _inputs(demo: Path) -> tuple[Path, Path, Path]:
    return (
        demo / "results" / "segmentor_val.segm.json",
        demo / "coco" / "annotations" / "instances_val2017.json",
        demo / "coco" / "val2017",
    )


@pytest.fixture(scope="module")
def one_shard(demo_ci: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("one") / "refined.segm.json"
    summary = refine_coco(*_inputs(demo_ci), out, CONFIG, num_shards=1)
    return out, summary


def test_output_keeps_everything_but_the_masks(demo_ci: Path, one_shard) -> None:
    out, summary = one_shard
    coarse = json.loads(_inputs(demo_ci)[0].read_text())
    refined = json.loads(out.read_text())
    assert len(refined) == len(coarse) == summary["detections"]
    for a, b in zip(coarse, refined, strict=True):
        assert (a["image_id"], a["category_id"], a["bbox"], a["score"]) == (
            b["image_id"],
            b["category_id"],
            b["bbox"],
            b["score"],
        )
        assert b["segmentation"]["size"] == a["segmentation"]["size"]
    # small instances pass through, larger ones were refined (and changed)
    areas = [rle.area(d["segmentation"], *d["segmentation"]["size"]) for d in coarse]
    same = [
        a["segmentation"]["counts"] == b["segmentation"]["counts"]
        for a, b in zip(coarse, refined, strict=True)
    ]
    assert all(s for s, area in zip(same, areas, strict=True) if area < 512)
    assert not all(same)
    assert summary["refined"] == sum(area >= 512 for area in areas)
    assert summary["failed_images"] == 0 and summary["rejected_entries"] == 0
    # the store holds the same masks as the JSON
    store = MaskStore.open(out.with_name("refined.segm.work") / "refined.zarr")
    first = refined[0]
    masks = store.read_mask("refined", str(first["image_id"]))
    h, w = first["segmentation"]["size"]
    assert np.array_equal(masks[0], rle.decode(first["segmentation"], h, w))


def test_shard_count_and_dask_do_not_change_results(
    demo_ci: Path, one_shard, tmp_path: Path
) -> None:
    out1, _ = one_shard
    out3 = tmp_path / "three.json"
    refine_coco(*_inputs(demo_ci), out3, CONFIG, num_shards=3)
    assert out3.read_bytes() == out1.read_bytes()
    outd = tmp_path / "dask.json"
    from pipelines import sharding

    ran: list[bool] = []  # the Dask path: a LocalCluster of 2 threads in this process ran them

    def check(shard: sharding.Shard, record: dict, error: str | None) -> None:
        from distributed import get_client  # raises ValueError when no Dask client is running

        cluster = get_client().cluster
        assert not cluster.processes and len(cluster.workers) == 2 and error is None
        ran.append(record["skipped"])

    on_dask = {"num_shards": 2, "n_workers": 2, "dask_threads": True}
    refine_coco(*_inputs(demo_ci), outd, CONFIG, **on_dask, progress=check)
    assert ran == [False, False]  # both shards computed on Dask; the call below resumes them
    summary = refine_coco(
        *_inputs(demo_ci), outd, CONFIG, num_shards=2, n_workers=2, dask_threads=True
    )
    assert summary["shards"] == 2
    assert outd.read_bytes() == out1.read_bytes()


def test_resume_after_a_kill_skips_finished_shards(
    demo_ci: Path, one_shard, tmp_path: Path
) -> None:
    out1, _ = one_shard
    out = tmp_path / "resumed.json"
    work = tmp_path / "resumed.work"
    shards = prepare_refine_coco(*_inputs(demo_ci), work, CONFIG, num_shards=3)
    first = run_refine_coco_shard(work, CONFIG, shards[0])  # then the process "dies"
    with pytest.raises(InputError, match="not complete"):
        finalize_refine_coco(work, out)
    summary = refine_coco(*_inputs(demo_ci), out, CONFIG, num_shards=3)
    store = MaskStore.open(work / "refined.zarr")
    assert store.completion_record(shards[0].name)["seconds"] == first["seconds"]  # not redone
    assert out.read_bytes() == out1.read_bytes()
    assert summary["detections"] == len(json.loads(out1.read_text()))


def test_other_settings_need_a_new_work_dir(demo_ci: Path, one_shard) -> None:
    out1, _ = one_shard
    other = RefineConfig(checkpoint="tiny", seed=6, model_size=32)
    with pytest.raises(InputError, match="other inputs or settings"):
        prepare_refine_coco(*_inputs(demo_ci), out1.with_name("refined.segm.work"), other)


def test_bad_items_are_reported_and_set_aside(demo_ci: Path, tmp_path: Path) -> None:
    results, annotations, images = _inputs(demo_ci)
    local_images = tmp_path / "val2017"
    shutil.copytree(images, local_images)
    entries = json.loads(results.read_text())
    broken_id = entries[0]["image_id"]
    info = next(i for i in json.loads(annotations.read_text())["images"] if i["id"] == broken_id)
    (local_images / info["file_name"]).write_bytes(b"truncated")
    # a PNG header declaring 100000 x 100000 pixels: set aside like any unreadable image,
    # never a shard failure (it used to fail its shard on every re-run)
    from tests.cli.test_bad_input import _png_declaring

    bomb_id = next(e["image_id"] for e in entries if e["image_id"] != broken_id)
    bomb = next(i for i in json.loads(annotations.read_text())["images"] if i["id"] == bomb_id)
    _png_declaring(local_images / bomb["file_name"], 100_000, 100_000)
    entries.append({**entries[1], "segmentation": {"size": [3, 3], "counts": "garbage"}})
    bad_results = tmp_path / "results.json"
    bad_results.write_text(json.dumps(entries))
    out = tmp_path / "out.json"
    summary = refine_coco(bad_results, annotations, local_images, out, CONFIG)
    assert summary["failed_images"] == 2
    assert summary["rejected_entries"] == 1
    refined = json.loads(out.read_text())
    assert len(refined) == len(entries) - 1
    manifest = json.loads((tmp_path / "out.work" / "manifest.json").read_text())
    failed = [r for r in manifest["images"] if r["status"] == "failed"]
    reasons = {r["image_id"]: r["reason"] for r in failed}
    assert "unreadable image" in reasons[broken_id]
    assert "too large to decode safely" in reasons[bomb_id]
    assert manifest["rejected"][0]["index"] == len(entries) - 1
    # the unreadable image's detections pass through unchanged
    for a, b in zip(entries, refined, strict=False):
        if a["image_id"] == broken_id:
            assert a["segmentation"] == b["segmentation"]


def test_stage_matches_the_public_api(demo_ci: Path, one_shard) -> None:
    """The packed, sharded stage and Refiner.refine_instances give the same masks for the same
    seed and item identity."""
    import torch

    from segrefiner import Refiner
    from segrefiner.data.coco import load_coco_instances, load_segmentor_results
    from segrefiner.inference import InferenceConfig
    from segrefiner.model import DenoiseUNet, get_preset

    out, _ = one_shard
    refined = json.loads(out.read_text())
    results, annotations, images = _inputs(demo_ci)
    res = load_segmentor_results(results, load_coco_instances(annotations, images))
    torch.manual_seed(0)  # the stage builds preset weights under seed 0
    refiner = Refiner(
        DenoiseUNet(get_preset("tiny")), seed=CONFIG.seed, config=InferenceConfig(model_size=32)
    )
    for group in res:
        masks = np.stack([d.mask() for d in group.detections])
        keys = [("coco", group.image.id, d.index) for d in group.detections]
        api = refiner.refine_instances(res.read_image(group.image.id), masks, keys=keys)
        for det, mask in zip(group.detections, api, strict=True):
            seg = refined[det.index]["segmentation"]
            assert np.array_equal(rle.decode(seg, *seg["size"]), mask)


def test_a_wrong_declared_size_is_caught_before_any_mask_is_decoded(
    demo_ci: Path, tmp_path: Path, monkeypatch
) -> None:
    import pipelines.refine_coco as stage

    results, annotations, images = _inputs(demo_ci)
    entries = json.loads(results.read_text())
    gt = json.loads(annotations.read_text())
    liar = entries[0]["image_id"]
    info = next(i for i in gt["images"] if i["id"] == liar)
    big_h, big_w = info["height"] * 8, info["width"] * 8
    info["height"], info["width"] = big_h, big_w  # the file itself is 8x smaller
    for e in entries:
        if e["image_id"] == liar:
            e["segmentation"] = rle.encode(np.zeros((big_h, big_w), bool))
    (tmp_path / "ann.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(entries))
    decoded = []
    real_decode = stage.rle.decode

    def spy(segmentation, height, width, where):
        decoded.append((height, width))
        return real_decode(segmentation, height, width, where)

    monkeypatch.setattr(stage.rle, "decode", spy)
    out = tmp_path / "out.json"
    summary = refine_coco(tmp_path / "res.json", tmp_path / "ann.json", images, out, CONFIG)
    assert summary["failed_images"] == 1
    assert (big_h, big_w) not in decoded  # never decoded at the declared size
    manifest = json.loads((tmp_path / "out.work" / "manifest.json").read_text())
    (row,) = [r for r in manifest["images"] if r["status"] == "failed"]
    assert row["image_id"] == liar and "but the annotations say" in row["reason"]
    refined = json.loads(out.read_text())
    assert len(refined) == len(entries)
    for a, b in zip(entries, refined, strict=True):
        if a["image_id"] == liar:  # passed through exactly as they came
            assert b["segmentation"] == a["segmentation"]


def test_refined_entries_carry_their_score_and_the_guard_holds_back_low_ones(
    demo_ci: Path, one_shard, tmp_path: Path
) -> None:
    out, summary = one_shard
    coarse = json.loads(_inputs(demo_ci)[0].read_text())
    refined = json.loads(out.read_text())
    areas = [rle.area(d["segmentation"], *d["segmentation"]["size"]) for d in coarse]
    # every detection that went through the network has a score; passed-through ones none
    assert [("refine_score" in e) for e in refined] == [a >= 512 for a in areas]
    scores = np.array([e["refine_score"] for e in refined if "refine_score" in e])
    assert summary["scores"]["count"] == len(scores) and summary["guarded"] == 0
    assert summary["scores"]["mean"] == pytest.approx(scores.mean(), abs=1e-6)
    # the guard at the median: the detections scored below it keep their coarse masks exactly,
    # the others are the unguarded run's masks, and the counts say so
    threshold = float(np.median(scores))
    guarded_out = tmp_path / "guarded.json"
    import dataclasses

    config = dataclasses.replace(CONFIG, guard=threshold)
    guarded_summary = refine_coco(*_inputs(demo_ci), guarded_out, config, num_shards=2)
    guarded = json.loads(guarded_out.read_text())
    held = 0
    for c, r, g in zip(coarse, refined, guarded, strict=True):
        assert g.get("refine_score") == r.get("refine_score")
        if r.get("refine_score") is not None and r["refine_score"] < threshold:
            held += 1
            h, w = c["segmentation"]["size"]
            assert np.array_equal(
                rle.decode(g["segmentation"], h, w), rle.decode(c["segmentation"], h, w)
            )
        else:
            assert g["segmentation"] == r["segmentation"]
    assert held == guarded_summary["guarded"] > 0
    assert guarded_summary["guard"] == threshold
    assert guarded_summary["refined"] == summary["refined"] - held
    with pytest.raises(InputError, match="guard"):
        dataclasses.replace(CONFIG, guard=3.0)

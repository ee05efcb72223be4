"""The demo data set: layout, formats the official tools read, sizes, segmentor realism,
determinism, reuse."""

from __future__ import annotations

import contextlib
import io as stdio
import json
from pathlib import Path

import numpy as np
import pytest

from segrefiner import io, rle
from segrefiner.cli import main
from segrefiner.data.coco import load_coco_instances, load_segmentor_results
from segrefiner.data.demo import FILES, SCALES, coarse_instance_mask, generate_demo, shapes
from segrefiner.data.demo.common import _segmentation
from segrefiner.data.lvis import load_lvis
from segrefiner.errors import InputError

# pycocotools 2.0.11 trips numpy 2's __array__(copy=...) deprecation on every decode.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo"
    summary = generate_demo(out, seed=0, scale="ci")
    print(f"\ndemo (scale ci) generated in {summary.seconds:.2f} s")
    assert not summary.reused
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _quiet():
    return contextlib.redirect_stdout(stdio.StringIO())


def test_layout(demo: Path) -> None:
    meta = json.loads((demo / "DEMO.json").read_text())
    assert meta["seed"] == 0 and meta["scale"] == "ci" and meta["generator_version"] >= 1
    for rel in FILES.values():
        assert (demo / rel).exists(), rel
    scale = SCALES["ci"]
    assert len(list((demo / "coco/train2017").glob("*.jpg"))) == scale.coco_train
    assert len(list((demo / "coco/val2017").glob("*.jpg"))) == scale.coco_val
    names = [p.name for p in (demo / "coco/val2017").glob("*.jpg")]
    assert all(len(n) == 16 and n[:12].isdigit() for n in names)
    big = sorted((demo / "big/test").glob("*_im.jpg"))
    assert len(big) == scale.big
    for im in big:
        for suffix in ("_gt.png", "_seg.png"):
            assert im.with_name(im.name.replace("_im.jpg", suffix)).is_file()
    for split, n in (
        ("DIS-TR", scale.dis_tr),
        ("DIS-VD", scale.dis_vd),
        ("DIS-TE1", scale.dis_te1),
    ):
        ims = sorted((demo / "dis" / split / "im").glob("*.jpg"))
        assert len(ims) == n
        for im in ims:
            assert (demo / "dis" / split / "gt" / f"{im.stem}.png").is_file()
            coarse = demo / "dis/coarse/isnet" / split / f"{im.stem}.png"
            assert coarse.is_file() == (split != "DIS-TR")
    for split, n in (("train", scale.thin_train), ("test", scale.thin_test)):
        listed = (demo / f"thin_object/list/{split}.txt").read_text().split()
        assert len(listed) == n
        for mask_name in listed:
            assert (demo / "thin_object/masks" / mask_name).is_file()
            assert (demo / "thin_object/images" / mask_name.replace(".png", ".jpg")).is_file()


def test_official_tools_read_the_annotations(demo: Path) -> None:
    from lvis import LVIS
    from pycocotools.coco import COCO

    with _quiet():
        for split in ("train2017", "val2017"):
            coco = COCO(str(demo / f"coco/annotations/instances_{split}.json"))
            for ann in coco.loadAnns(coco.getAnnIds()):
                m = coco.annToMask(ann)
                assert m.sum() == ann["area"] > 0
        dets = coco.loadRes(str(demo / FILES["segmentor_results"]))
        assert len(dets.getAnnIds()) > 0
    for name in ("lvis_train", "lvis_val", "lvis_val_cocofied"):
        api = LVIS(str(demo / FILES[name]))
        assert api.get_ann_ids() and api.get_img_ids()


def test_our_readers_accept_everything_and_images_match(demo: Path) -> None:
    val = load_coco_instances(demo / FILES["coco_val"], demo / "coco/val2017")
    train = load_coco_instances(demo / FILES["coco_train"], demo / "coco/train2017")
    assert not set(val.images) & set(train.images)
    for inst in (train, val):
        for image_id in inst.images:
            inst.read_image(image_id)  # checks the size against the entry
    assert {c.id for c in val.categories.values()} <= {2, 5, 31, 52, 56, 62}
    areas = [a.area for a in train.annotations + val.annotations]
    assert min(areas) < 512 < max(areas)  # tiny instances exist (training drops them)
    assert any(isinstance(a.segmentation, dict) for a in train.annotations)  # RLE for holes
    assert any(isinstance(a.segmentation, list) for a in train.annotations)  # polygons

    lvis_train = load_lvis(demo / FILES["lvis_train"], demo / "coco")
    lvis_val = load_lvis(demo / FILES["lvis_val"], demo / "coco")
    cocofied = load_lvis(demo / FILES["lvis_val_cocofied"], demo / "coco")
    assert not set(lvis_train.images) & set(lvis_val.images)
    assert set(lvis_train.images) | set(lvis_val.images) == set(train.images) | set(val.images)
    # LVIS val annotates some COCO train images; the cocofied version keeps only COCO val.
    assert set(lvis_val.images) - set(val.images)
    assert set(cocofied.images) == set(val.images)
    assert len(cocofied.annotations) == len(val.annotations)
    assert {c.frequency for c in cocofied.categories.values()} <= {"r", "c", "f"}
    for image_id in lvis_train.images:
        lvis_train.read_image(image_id)  # file names from coco_url resolve under data/coco
    for image_id, info in lvis_val.images.items():
        present = {a.category_id for a in lvis_val.annotations_of(image_id)}
        assert info.neg_category_ids and not present & set(info.neg_category_ids)
        assert set(info.not_exhaustive_category_ids) <= present

    results = load_segmentor_results(demo / FILES["segmentor_results"], val)
    assert not results.rejected and set(g.image.id for g in results) <= set(val.images)


def test_segmentor_results_are_worse_than_gt_but_overlap(demo: Path) -> None:
    val = load_coco_instances(demo / FILES["coco_val"], demo / "coco/val2017")
    results = load_segmentor_results(demo / FILES["segmentor_results"], val)
    matched, unmatched = [], 0
    for group in results:
        gts = [(a.category_id, val.annotation_mask(a)) for a in val.annotations_of(group.image.id)]
        for det in group.detections:
            mask = det.mask()
            x, y, w, h = det.bbox  # the box is the coarse mask's tight box
            ys, xs = np.nonzero(mask)
            assert (x, y, w, h) == (
                xs.min(),
                ys.min(),
                xs.max() + 1 - xs.min(),
                ys.max() + 1 - ys.min(),
            )
            ious = [_iou(mask, g) for c, g in gts if c == det.category_id]
            best = max(ious, default=0.0)
            if best >= 0.5:
                matched.append((best, det.score))
            else:
                unmatched += 1
    ious = np.array([m[0] for m in matched])
    assert len(matched) >= 8 and unmatched >= 1  # some false positives
    assert 0.6 < ious.mean() < 0.92 and ious.max() < 0.99  # worse than GT, but overlapping
    assert len(matched) < len(val.annotations)  # some objects are missed


def test_segmentor_process_loses_thin_parts_and_fills_holes() -> None:
    rng = np.random.default_rng(0)
    ious, thin_lost = [], []
    for k in range(12):
        kind = ("bicycle", "chair", "ring", "broccoli")[k % 4]
        m = shapes.object_mask(kind, rng, 160)
        gt = np.zeros((240, 240), bool)
        gt[20 : 20 + m.shape[0], 20 : 20 + m.shape[1]] = m
        coarse = coarse_instance_mask(gt, rng)
        ious.append(_iou(coarse, gt))
        thin_lost.append(np.count_nonzero(gt & ~coarse) / np.count_nonzero(gt))
    assert 0.45 < np.mean(ious) < 0.92
    assert max(thin_lost) > 0.15  # thin frames/legs partly missed


def test_polygons_decode_exactly() -> None:
    rng = np.random.default_rng(1)
    for kind in shapes.KINDS:
        m = shapes.object_mask(kind, rng, 90)
        seg, decoded = _segmentation(m)
        assert np.array_equal(decoded, m)
        assert np.array_equal(rle.decode(seg, *m.shape), m), kind


def test_sizes(demo: Path) -> None:
    for im in (demo / "big/test").glob("*_im.jpg"):
        image = io.read_image(im)
        assert max(image.shape[:2]) >= 2048
        gt = io.read_mask(im.with_name(im.name.replace("_im.jpg", "_gt.png")), image.shape[:2])
        seg = io.read_mask(im.with_name(im.name.replace("_im.jpg", "_seg.png")), image.shape[:2])
        assert 0.3 < _iou(gt, seg) < 0.99
    for im in (demo / "dis").glob("DIS-*/im/*.jpg"):
        image = io.read_image(im)
        io.read_mask(im.parent.parent / "gt" / f"{im.stem}.png", image.shape[:2])
    for im in (demo / "thin_object/images").glob("*.jpg"):
        image = io.read_image(im)
        assert io.read_mask(demo / "thin_object/masks" / f"{im.stem}.png", image.shape[:2]).any()


def test_same_seed_same_bytes_other_seed_differs(demo: Path, tmp_path: Path) -> None:
    again = generate_demo(tmp_path / "again", seed=0, scale="ci")
    assert _files(demo) == _files(Path(again.out_dir))
    other = generate_demo(tmp_path / "other", seed=1, scale="ci")
    a = (demo / FILES["coco_val"]).read_bytes()
    assert a != (Path(other.out_dir) / FILES["coco_val"]).read_bytes()


def test_reuse_force_and_refusal(demo: Path, tmp_path: Path) -> None:
    before = (demo / "DEMO.json").stat().st_mtime_ns
    assert generate_demo(demo, seed=0, scale="ci").reused
    assert (demo / "DEMO.json").stat().st_mtime_ns == before
    with _quiet() as out:
        assert main(["data", "demo", "--out", str(demo), "--scale", "ci"]) == 0
    assert "reused" in out.getvalue()

    target = tmp_path / "d"
    generate_demo(target, seed=0, scale="ci")
    (target / "stale.txt").write_text("left over")
    summary = generate_demo(target, seed=0, scale="ci", force=True)
    assert not summary.reused and not (target / "stale.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("...")
    with pytest.raises(InputError, match=r"precious: not empty and not a demo data set"):
        generate_demo(precious, scale="ci")
    with pytest.raises(InputError, match=r"unknown demo scale 'huge'"):
        generate_demo(tmp_path / "x", scale="huge")


def test_check_results_cli(demo: Path, tmp_path: Path) -> None:
    ann, res = demo / FILES["coco_val"], demo / FILES["segmentor_results"]
    with _quiet():
        assert (
            main(
                [
                    "data",
                    "check-results",
                    str(res),
                    "--ann",
                    str(ann),
                    "--images",
                    str(demo / "coco/val2017"),
                ]
            )
            == 0
        )
    entries = json.loads(res.read_text())
    entries[0]["score"] = 7
    bad = tmp_path / "bad.segm.json"
    bad.write_text(json.dumps(entries))
    with _quiet():
        assert main(["data", "check-results", str(bad), "--ann", str(ann)]) == 1
    cocofied = demo / FILES["lvis_val_cocofied"]
    args = [
        "data",
        "check-results",
        str(res),
        "--ann",
        str(cocofied),
        "--lvis",
        "--coco-categories",
    ]
    with _quiet():
        assert main(args) == 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0

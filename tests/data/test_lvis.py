"""LVIS v1 reader and the cocofied LVIS val builder (what scripts/lvis2coco.py does)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from segrefiner.data.coco import COCO_CATEGORY_IDS
from segrefiner.data.lvis import (
    COCO_SYNSET_CATEGORIES,
    COCO_SYNSET_TO_CATEGORY_ID,
    LvisCategory,
    LvisImageInfo,
    build_cocofied_lvis,
    load_lvis,
    parse_lvis,
    write_cocofied_lvis,
)
from segrefiner.errors import InputError

URL = "http://images.cocodataset.org/"
SQUARE = [[1.0, 1.0, 9.0, 1.0, 9.0, 9.0, 1.0, 9.0]]


def _cat(cat_id: int, synset: str, frequency: str = "f") -> dict[str, Any]:
    name = synset.split(".")[0]
    return {"id": cat_id, "name": name, "synset": synset, "frequency": frequency,
            "synonyms": [name], "def": f"a {name}", "image_count": 1, "instance_count": 2}  # fmt: skip


def _img(image_id: int, split: str, neg: list[int], not_exhaustive: list[int]) -> dict[str, Any]:
    return {"id": image_id, "coco_url": f"{URL}{split}/{image_id:012d}.jpg", "height": 20,
            "width": 30, "license": 1, "flickr_url": "", "date_captured": "",
            "neg_category_ids": neg, "not_exhaustive_category_ids": not_exhaustive}  # fmt: skip


def _ann(ann_id: int, image_id: int, cat: int) -> dict[str, Any]:
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "area": 64.0,
            "bbox": [1.0, 1.0, 8.0, 8.0], "segmentation": SQUARE}  # fmt: skip


def _lvis_val() -> dict[str, Any]:
    """LVIS ids: 10 person, 20 bicycle, 30 pretzel (not COCO), 40 chair (only in a neg list),
    50 dog (nowhere), 60 doughnut (only in a list of an image that COCO val lacks).
    Images 5 and 2 are COCO val images; 9 is a COCO train image (LVIS val has those too)."""
    return {
        "info": {"description": "LVIS v1 val (tiny)"},
        "licenses": [{"id": 1, "name": "CC", "url": ""}],
        "categories": [_cat(10, "person.n.01"), _cat(20, "bicycle.n.01", "c"), _cat(30, "pretzel.n.01"),
                       _cat(40, "chair.n.01"), _cat(50, "dog.n.01", "r"), _cat(60, "doughnut.n.02")],
        "images": [_img(5, "val2017", [40, 30], [20]), _img(9, "train2017", [60], []),
                   _img(2, "val2017", [], [30, 10])],
        "annotations": [_ann(101, 5, 10), _ann(102, 9, 10), _ann(103, 5, 30), _ann(104, 2, 20),
                        _ann(105, 5, 20), _ann(106, 9, 60)],
    }  # fmt: skip


def _coco_val() -> dict[str, Any]:
    return {
        "images": [
            {"id": i, "file_name": f"{i:012d}.jpg", "height": 20, "width": 30} for i in (2, 5, 7)
        ],
        "annotations": [],
        "categories": [{"id": 1, "name": "person"}],
    }


def test_synset_table_is_the_official_80_entries() -> None:
    assert len(COCO_SYNSET_CATEGORIES) == 80 == len(COCO_SYNSET_TO_CATEGORY_ID)
    ids = [cid for _, cid in COCO_SYNSET_CATEGORIES]
    assert len(set(ids)) == 80 and ids == sorted(ids) and ids[0] == 1 and ids[-1] == 90
    # The COCO ids that do not exist (12, 26, 29, 30, 45, 66, 68, 69, 71, 83) are absent.
    assert not {12, 26, 29, 30, 45, 66, 68, 69, 71, 83} & set(ids)
    assert tuple(ids) == COCO_CATEGORY_IDS
    table = COCO_SYNSET_TO_CATEGORY_ID
    assert table["person.n.01"] == 1 and table["fireplug.n.01"] == 11
    assert table["bag.n.04"] == 31 and table["bag.n.06"] == 33  # handbag, suitcase
    assert (
        table["frank.n.02"] == 58 and table["teddy.n.01"] == 88 and table["toothbrush.n.01"] == 90
    )


def test_cocofied_keeps_coco_val_images_and_coco_synsets() -> None:
    lvis, coco = _lvis_val(), _coco_val()
    before = copy.deepcopy((lvis, coco))
    out = build_cocofied_lvis(lvis, coco)
    assert (lvis, coco) == before  # inputs untouched

    assert [img["id"] for img in out["images"]] == [5, 2]  # LVIS order, train image 9 dropped
    assert [(a["id"], a["image_id"], a["category_id"]) for a in out["annotations"]] == [
        (1, 5, 1),  # person
        (2, 2, 2),  # bicycle (the pretzel of image 5 is dropped: not a COCO synset)
        (3, 5, 2),
    ]
    assert out["annotations"][0]["segmentation"] == SQUARE and out["annotations"][0]["area"] == 64.0
    img5, img2 = out["images"]
    assert img5["neg_category_ids"] == [62] and img5["not_exhaustive_category_ids"] == [2]
    assert img2["neg_category_ids"] == [] and img2["not_exhaustive_category_ids"] == [1]
    assert img5["coco_url"].endswith("val2017/000000000005.jpg") and img5["height"] == 20
    # person, bicycle (annotated) and chair (a neg id of a kept image); not dog (nowhere) nor
    # doughnut (only on the dropped train image); LVIS fields kept, id set to the COCO id.
    cats = {c["id"]: c for c in out["categories"]}
    assert list(cats) == [1, 2, 62]
    assert cats[2]["synset"] == "bicycle.n.01" and cats[2]["frequency"] == "c"
    assert cats[62]["name"] == "chair" and cats[62]["instance_count"] == 2
    assert out["info"] == lvis["info"] and out["licenses"] == lvis["licenses"]


def test_cocofied_with_another_synset_map_and_bad_inputs() -> None:
    out = build_cocofied_lvis(_lvis_val(), _coco_val(), {"pretzel.n.01": 500})
    assert [a["category_id"] for a in out["annotations"]] == [500]
    assert [c["id"] for c in out["categories"]] == [500]
    assert out["images"][1]["not_exhaustive_category_ids"] == [500]

    lvis = _lvis_val()
    lvis["annotations"][3]["category_id"] = 77
    with pytest.raises(
        InputError, match=r"lvis_val: annotations\[3\]: unknown LVIS category id 77"
    ):
        build_cocofied_lvis(lvis, _coco_val())
    lvis = _lvis_val()
    lvis["annotations"][1]["category_id"] = 77  # on the train image: skipped before the lookup
    assert len(build_cocofied_lvis(lvis, _coco_val())["annotations"]) == 3
    lvis = _lvis_val()
    lvis["images"][0]["neg_category_ids"] = [40, 99]
    with pytest.raises(
        InputError, match=r"images\[0\] \(id 5\) neg_category_ids: unknown LVIS category id 99"
    ):
        build_cocofied_lvis(lvis, _coco_val())
    lvis = _lvis_val()
    del lvis["images"][2]["not_exhaustive_category_ids"]
    with pytest.raises(InputError, match=r"not_exhaustive_category_ids: missing or not a list"):
        build_cocofied_lvis(lvis, _coco_val())
    lvis = _lvis_val()
    del lvis["categories"][0]["synset"]
    with pytest.raises(InputError, match=r"categories\[0\]: category without a synset"):
        build_cocofied_lvis(lvis, _coco_val())
    with pytest.raises(InputError, match=r"coco_val: not an annotation file"):
        build_cocofied_lvis(_lvis_val(), {"annotations": []})


def test_write_cocofied_and_read_it_back(tmp_path: Path) -> None:
    lvis_path, coco_path = tmp_path / "lvis_v1_val.json", tmp_path / "instances_val2017.json"
    lvis_path.write_text(json.dumps(_lvis_val()))
    coco_path.write_text(json.dumps(_coco_val()))
    out = tmp_path / "annotations" / "lvis_v1_val_cocofied.json"
    counts = write_cocofied_lvis(lvis_path, coco_path, out)
    assert counts == {"images": 2, "annotations": 3, "categories": 3, "lvis_annotations": 6}
    inst = load_lvis(out, tmp_path / "coco")
    assert list(inst.categories) == [1, 2, 62] and len(inst.annotations) == 3
    assert inst.image_path(5) == (tmp_path / "coco" / "val2017" / "000000000005.jpg").resolve()

    from lvis import LVIS  # the official loader reads it too

    api = LVIS(str(out))
    assert sorted(api.get_img_ids()) == [2, 5] and sorted(api.get_cat_ids()) == [1, 2, 62]


def test_lvis_reader_records() -> None:
    inst = parse_lvis(_lvis_val(), source="lvis_v1_val.json", image_root="/data/coco")
    img = inst.images[9]
    assert isinstance(img, LvisImageInfo)
    assert img.file_name == "train2017/000000000009.jpg"  # from coco_url, as the official loader
    assert img.neg_category_ids == (60,) and img.not_exhaustive_category_ids == ()
    cat = inst.categories[20]
    assert isinstance(cat, LvisCategory)
    assert (cat.synset, cat.frequency, cat.synonyms, cat.instance_count) == (
        "bicycle.n.01",
        "c",
        ("bicycle",),
        2,
    )
    assert [a.iscrowd for a in inst.annotations] == [False] * 6
    assert [a.id for a in inst.annotations_of(5)] == [101, 103, 105]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["images"][0].pop("coco_url"), r"images\[0\] \(id 5\): LVIS image has no coco_url"),
        (lambda d: d["images"][0].update(coco_url="file:///etc/passwd"), r"does not start with"),
        (lambda d: d["images"][1].update(neg_category_ids=[70]), r"image id 9: neg_category_ids has unknown category ids \[70\]"),
        (lambda d: d["images"][1].pop("not_exhaustive_category_ids"), r"not_exhaustive_category_ids must be a list"),
        (lambda d: d["categories"][1].update(frequency="x"), r"categories\[1\] \(id 20\): frequency must be one of"),
        (lambda d: d["categories"][1].pop("synset"), r"categories\[1\] \(id 20\): category has no synset"),
        (lambda d: d["images"].append(copy.deepcopy(d["images"][0])), r"images\[3\]: duplicate image id 5"),
        (lambda d: d["annotations"][0].update(category_id=70), r"annotations\[0\] \(id 101\): unknown category_id 70"),
    ],
)  # fmt: skip
def test_lvis_reader_refusals(edit: Any, message: str, tmp_path: Path) -> None:
    data = _lvis_val()
    edit(data)
    path = tmp_path / "lvis_v1_val.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message) as err:
        load_lvis(path)
    assert str(path) in str(err.value)

"""COCO instances and segmentor results readers: valid files, and every refusal naming its cause."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segrefiner import rle
from segrefiner.data.coco import (
    COCO_CATEGORY_IDS,
    InstanceSet,
    file_name_from_coco_url,
    load_coco_instances,
    load_segmentor_results,
    parse_instances,
    parse_segmentor_results,
)
from segrefiner.errors import InputError

# pycocotools 2.0.11 trips numpy 2's __array__(copy=...) deprecation on every decode.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W = 20, 30


def _mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def _instances() -> dict[str, Any]:
    """Two images, two categories, a polygon annotation and an RLE one (with a hole)."""
    ring = _mask(2, 2, 12, 12) & ~_mask(5, 5, 8, 8)
    return {
        "info": {"description": "tiny"},
        "images": [
            {"id": 7, "file_name": "000000000007.jpg", "height": H, "width": W},
            {"id": 3, "file_name": "000000000003.jpg", "height": H, "width": W},
        ],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}, {"id": 62, "name": "chair"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0, "area": 40.0,
             "bbox": [10, 2, 8, 5], "segmentation": [[10, 2, 18, 2, 18, 7, 10, 7]]},
            {"id": 2, "image_id": 7, "category_id": 62, "iscrowd": 0, "area": 91.0,
             "bbox": [2, 2, 10, 10], "segmentation": rle.encode(ring)},
        ],
    }  # fmt: skip


@pytest.fixture()
def coco_files(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "val2017"
    root.mkdir()
    for image_id in (7, 3):
        Image.fromarray(np.full((H, W, 3), 100, np.uint8)).save(root / f"{image_id:012d}.jpg")
    ann = tmp_path / "instances_val2017.json"
    ann.write_text(json.dumps(_instances()))
    return ann, root


def test_reads_a_valid_file_without_touching_pixels(coco_files: tuple[Path, Path]) -> None:
    ann, root = coco_files
    (root / "000000000003.jpg").unlink()  # pixels are only read when asked
    inst = load_coco_instances(ann, root)
    assert list(inst.images) == [7, 3]  # file order
    assert inst.images[7].file_name == "000000000007.jpg"
    assert [c.name for c in inst.categories.values()] == ["person", "chair"]
    anns = inst.annotations_of(7)
    assert [a.id for a in anns] == [1, 2] and inst.annotations_of(3) == []
    assert anns[0].bbox == (10.0, 2.0, 8.0, 5.0) and anns[0].iscrowd is False
    poly = inst.annotation_mask(anns[0])
    assert poly.shape == (H, W) and poly.dtype == bool and poly[3:7, 11:17].all()
    ring = inst.annotation_mask(anns[1])
    assert ring.sum() == 91 and not ring[6, 6]  # the hole survives RLE
    assert inst.read_image(7).shape == (H, W, 3)
    assert inst.missing_images() == [
        (3, f"{root.resolve() / '000000000003.jpg'}: image file not found")
    ]
    with pytest.raises(InputError, match=r"000000000003\.jpg: image file not found"):
        inst.read_image(3)


def _mutate(path: str, value: Any) -> dict[str, Any]:
    data = _instances()
    *keys, last = path.split(".")
    node: Any = data
    for k in keys:
        node = node[int(k)] if k.isdigit() else node[k]
    if value is _DELETE:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("images.1.id", 7, r"images\[1\]: duplicate image id 7"),
        ("categories.1.id", 1, r"categories\[1\]: duplicate category id 1"),
        ("annotations.1.id", 1, r"annotations\[1\] \(id 1\): duplicate annotation id 1"),
        ("annotations.0.image_id", 99, r"annotations\[0\] \(id 1\): unknown image_id 99"),
        ("annotations.0.category_id", 5, r"annotations\[0\] \(id 1\): unknown category_id 5"),
        ("annotations.0.bbox", [1, 2, -3, 4], r"negative size"),
        ("annotations.0.bbox", [1, 2, 3], r"bbox must be \[x, y, w, h\]"),
        ("annotations.0.area", float("nan"), r"area must be a finite number"),
        ("annotations.0.segmentation", "x", r"segmentation must be polygons or RLE"),
        ("annotations.0.iscrowd", 2, r"iscrowd must be 0 or 1"),
        ("images.0.file_name", _DELETE, r"images\[0\]: image id 7 has no file_name"),
        ("images.0.height", 2.5, r"height must be a positive integer"),
        ("images.0.id", "7", r"images\[0\]: id must be an integer"),
        ("images.0.id", True, r"images\[0\]: id must be an integer"),
        ("categories.0.name", "", r"categories\[0\]: category id 1 has no name"),
        ("images", {}, r"'images' must be a list of objects"),
    ],
)
def test_refuses_bad_annotation_files(path: str, value: Any, message: str, tmp_path: Path) -> None:
    ann = tmp_path / "bad.json"
    ann.write_text(json.dumps(_mutate(path, value)))
    with pytest.raises(InputError, match=message) as err:
        load_coco_instances(ann)
    assert str(ann) in str(err.value)


def test_refuses_malformed_json_and_non_objects(tmp_path: Path) -> None:
    bad = tmp_path / "truncated.json"
    bad.write_text('{"images": [')
    with pytest.raises(InputError, match=r"truncated\.json: malformed JSON"):
        load_coco_instances(bad)
    with pytest.raises(InputError, match=r"missing\.json: JSON file not found"):
        load_coco_instances(tmp_path / "missing.json")
    with pytest.raises(InputError, match=r"must be a JSON object"):
        parse_instances([], source="list.json")


def test_refuses_file_names_leaving_the_root_and_wrong_sizes(coco_files: tuple[Path, Path]) -> None:
    _, root = coco_files
    data = _instances()
    data["images"][1]["file_name"] = "../../etc/passwd"
    inst = parse_instances(data, source="a.json", image_root=root)
    with pytest.raises(
        InputError, match=r"\.\./\.\./etc/passwd: path resolves outside the data root"
    ):
        inst.read_image(3)
    assert "outside the data root" in inst.missing_images([3])[0][1]
    with pytest.raises(InputError, match=r"no image root given"):
        parse_instances(_instances(), source="a.json").image_path(7)
    data = _instances()
    data["images"][0]["height"] = H + 1
    with pytest.raises(
        InputError, match=r"image is 30x20 \(WxH\) but a\.json says 30x21 for image id 7"
    ):
        parse_instances(data, source="a.json", image_root=root).read_image(7)
    (root / "000000000003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=r"000000000003\.jpg: unreadable image"):
        parse_instances(_instances(), image_root=root).read_image(3)


def test_malformed_segmentation_is_reported_on_decode() -> None:
    data = _instances()
    data["annotations"][0]["segmentation"] = [[1, 2, 3, "x", 5, 6]]
    inst = parse_instances(data, source="a.json")  # the structure is fine; the values are not
    with pytest.raises(InputError, match=r"a\.json: annotation id 1: malformed"):
        inst.annotation_mask(inst.annotations[0])


def test_file_name_from_coco_url() -> None:
    url = "http://images.cocodataset.org/train2017/000000391895.jpg"
    assert file_name_from_coco_url(url) == "train2017/000000391895.jpg"
    with pytest.raises(InputError, match=r"does not start with"):
        file_name_from_coco_url("http://example.org/train2017/1.jpg", "images[0]")
    # A COCO file without file_name but with coco_url (LVIS style) still loads.
    data = _instances()
    del data["images"][0]["file_name"]
    data["images"][0]["coco_url"] = "http://images.cocodataset.org/val2017/000000000007.jpg"
    assert parse_instances(data).images[7].file_name == "val2017/000000000007.jpg"


# --------------------------------------------------------------------------------------------
# Segmentor results


def _results() -> list[dict[str, Any]]:
    a = _mask(10, 2, 18, 7)
    return [
        {"image_id": 3, "category_id": 1, "bbox": [10, 2, 8, 5], "score": 0.9, "segmentation": rle.encode(a)},
        {"image_id": 7, "category_id": 62, "bbox": [1, 1, 4, 8], "score": 0.5,
         "segmentation": [[1, 1, 5, 1, 5, 9, 1, 9]]},
        {"image_id": 3, "category_id": 62, "bbox": [1, 1, 4, 8], "score": 0.2,
         "segmentation": {"size": [H, W], "counts": [W + 1, 8, H * W - W - 9]}},
    ]  # fmt: skip


@pytest.fixture()
def inst() -> InstanceSet:
    return parse_instances(_instances(), source="instances.json")


def test_results_are_grouped_by_image_in_first_appearance_order(inst: InstanceSet) -> None:
    res = parse_segmentor_results(_results(), inst, source="r.json")
    assert [g.image.id for g in res] == [3, 7]
    assert [[d.index for d in g.detections] for g in res] == [[0, 2], [1]]
    assert res.num_entries == 3 and res.num_detections == 3 and res.rejected == ()
    first = res.groups[0].detections[0]
    assert first.bbox == (10.0, 2.0, 8.0, 5.0) and first.score == 0.9
    assert np.array_equal(first.mask(), _mask(10, 2, 18, 7)) and first.area == 40
    # Polygons and uncompressed RLE come out as compressed RLE with str counts.
    for det in (res.groups[1].detections[0], res.groups[0].detections[1]):
        assert det.segmentation["size"] == [H, W] and isinstance(det.segmentation["counts"], str)
    assert res.groups[0].detections[1].mask().sum() == 8


@pytest.mark.parametrize(
    ("index", "key", "value", "message"),
    [
        (1, "image_id", 99, r"\[1\]: unknown image_id 99 \(not in instances\.json\)"),
        (1, "category_id", 5, r"\[1\]: unknown category_id 5"),
        (0, "score", float("nan"), r"\[0\]: score must be a finite number"),
        (0, "score", float("inf"), r"\[0\]: score must be a finite number"),
        (0, "score", 1.5, r"\[0\]: score 1\.5 is outside \[0, 1\]"),
        (0, "score", "high", r"\[0\]: score must be a finite number"),
        (2, "bbox", [1, 2, 3], r"\[2\]: bbox must be \[x, y, w, h\]"),
        (2, "bbox", [1, 2, float("nan"), 3], r"\[2\]: bbox value must be a finite number"),
        (0, "segmentation", {"size": [H, W], "counts": "!!!"}, r"\[0\]: malformed RLE"),
        (0, "segmentation", {"size": [H, W], "counts": "0"}, r"\[0\]: malformed RLE"),
        (0, "segmentation", {"counts": "PX1"}, r"\[0\]: malformed RLE"),
        (0, "segmentation", rle.encode(np.zeros((H + 1, W), bool)), r"\[0\]: RLE size 21x30 \(HxW\) differs from the image size 20x30"),
        (1, "segmentation", [[1, 1, "a", 1, 5, 9]], r"\[1\]: malformed"),
        (1, "segmentation", 42, r"\[1\]: unsupported segmentation type"),
        (0, "image_id", None, r"\[0\]: image_id must be an integer"),
    ],
)  # fmt: skip
def test_bad_results_entries(
    index: int, key: str, value: Any, message: str, inst: InstanceSet
) -> None:
    entries = _results()
    entries[index][key] = value
    with pytest.raises(InputError, match=message):
        parse_segmentor_results(copy.deepcopy(entries), inst, source="r.json")
    # Lenient: the bad entry is set aside with its reason, the others are kept in order.
    res = parse_segmentor_results(entries, inst, source="r.json", strict=False)
    assert [(r.index, r.image_id) for r in res.rejected] == [(index, entries[index]["image_id"])]
    assert f"r.json[{index}]" in res.rejected[0].reason
    kept = [d.index for g in res for d in g.detections]
    assert sorted(kept) == [i for i in range(3) if i != index]


def test_results_category_ids_can_be_widened(inst: InstanceSet) -> None:
    entries = _results()
    entries[0]["category_id"] = 90  # toothbrush: a COCO category the image list does not hold
    with pytest.raises(InputError, match=r"unknown category_id 90"):
        parse_segmentor_results(entries, inst)
    res = parse_segmentor_results(entries, inst, category_ids=COCO_CATEGORY_IDS)
    assert res.groups[0].detections[0].category_id == 90
    assert len(COCO_CATEGORY_IDS) == 80 and len(set(COCO_CATEGORY_IDS)) == 80


def test_results_structure_errors(inst: InstanceSet, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"r\.json: a results file must be a JSON list"):
        parse_segmentor_results({"image_id": 3}, inst, source="r.json")
    entries: list[Any] = _results()
    del entries[1]["score"]
    entries.append("not an object")
    res = parse_segmentor_results(entries, inst, source="r.json", strict=False)
    assert [r.reason for r in res.rejected] == [
        "r.json[1]: missing 'score'",
        "r.json[3]: a result must be a JSON object, got str",
    ]
    # NaN tokens in the file itself (json.dump writes them) are caught too.
    path = tmp_path / "nan.segm.json"
    entries = _results()
    entries[2]["score"] = float("nan")
    path.write_text(json.dumps(entries))
    with pytest.raises(InputError, match=r"nan\.segm\.json\[2\]: score must be a finite number"):
        load_segmentor_results(path, inst)
    path.write_text("[{")
    with pytest.raises(InputError, match=r"malformed JSON"):
        load_segmentor_results(path, inst)


def test_results_read_pixels_from_the_annotation_root(coco_files: tuple[Path, Path]) -> None:
    ann, root = coco_files
    inst = load_coco_instances(ann, root)
    res = parse_segmentor_results(_results(), inst)
    assert res.read_image(7).shape == (H, W, 3)
    (root / "000000000003.jpg").unlink()
    with pytest.raises(InputError, match=r"000000000003\.jpg: image file not found"):
        res.read_image(3)

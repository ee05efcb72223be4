"""The real-photo data set builder, run offline on tiny fake sdists with the real member paths."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from segrefiner.data import fetch, real
from segrefiner.data.coco import load_coco_instances
from segrefiner.data.labelme import parse_labelme, rasterise_instances
from segrefiner.errors import InputError

H, W = 30, 40
APC_DIR = "amazon-picking-challenge-2016"


def _jpg(seed: int, h: int = H, w: int = W) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def _square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _shape(label: str, points: list, group_id: int | None = None) -> dict[str, Any]:
    return {"label": label, "points": points, "group_id": group_id}


def _labelme(shapes: list[dict], image_path: str | None, image_data: bytes | None = None) -> bytes:
    doc = {
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": base64.b64encode(image_data).decode() if image_data else None,
        "imageHeight": H,
        "imageWidth": W,
    }
    return json.dumps(doc).encode()


# An occlusion case: "box" drawn first, "ball" drawn later over its right part, an ignore region
# over its bottom rows, and a "cup" fully covered by a later container (dropped).
OCCLUSION = [
    _shape("box", _square(2, 2, 20, 20)),
    _shape("ball", _square(15, 5, 30, 15)),
    _shape("__ignore__", _square(0, 18, 39, 29)),
    _shape("cup", _square(32, 2, 36, 6)),
    _shape("_container_", _square(30, 0, 39, 10)),
]
# A group: two polygons of one "person" (group_id 0), a second person without a group.
GROUP = [
    _shape("person", _square(1, 1, 5, 5), 0),
    _shape("person", _square(10, 10, 14, 14), 0),
    _shape("person", _square(20, 20, 24, 24)),
]


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{APC_DIR}/", b"")
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _apc_members(extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    members = {}
    for i, stem in enumerate(("300", "100", "200")):  # listed unsorted on purpose
        members[f"{APC_DIR}/{stem}.json"] = _labelme(
            [_shape("_container_", _square(0, 0, 39, 29)), _shape("widget", _square(5, 5, 15, 15))],
            f"{stem}.jpg",
        )
        members[f"{APC_DIR}/{stem}.jpg"] = _jpg(100 + i)
    members.update(extra or {})
    return members


def _archives(folder: Path, *, apc: dict[str, bytes] | None = None, voc25: bytes | None = None):
    """Fake sdists with the real member paths; returns {source name: archive path}."""
    folder.mkdir(parents=True, exist_ok=True)
    dogs_png = _png(np.random.default_rng(7).integers(0, 255, (H, W, 3), dtype=np.uint8))
    toolkit = {
        real.APC_ZIP: _zip(apc if apc is not None else _apc_members()),
        real.DOGS_JSON: _labelme([_shape("dog", _square(3, 3, 12, 25))], "dogs.jpeg", dogs_png),
    }
    labelme = {}
    for k, (prefix, json_member, image_member) in enumerate(real.LABELME_ITEMS):
        shapes = {0: OCCLUSION, 1: GROUP}.get(k, [_shape(prefix, _square(4, 4, 12, 12))])
        labelme[json_member] = _labelme(shapes, image_member.rsplit("/", 1)[-1])
        labelme[image_member] = _jpg(k)
    if voc25 is not None:
        labelme[real.LABELME_ITEMS[2][1]] = voc25
    colour = np.random.default_rng(3).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    by_source: dict[str, dict[str, bytes]] = {
        "realesrgan": {},
        "scikit-image": {},
        "scikit-learn": {},
    }
    for source, member, _ in real.BACKGROUNDS:
        by_source[source][member] = (
            _png(colour) if member.endswith(".png") else cv2.imencode(".jpg", colour)[1].tobytes()
        )
    rgba16 = np.full((8, 8, 4), 65535, np.uint16)
    rgba16[..., 3] = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    by_source["realesrgan"][real.CUTOUTS[0][1]] = _png(np.full((8, 8, 4), 200, np.uint8))
    by_source["realesrgan"][real.CUTOUTS[1][1]] = _png(rgba16)
    return {
        "labelme-toolkit": _tar(folder / "labelme_toolkit-1.3.3.tar.gz", toolkit),
        "labelme": _tar(folder / "labelme-6.3.1.tar.gz", labelme),
        **{s: _tar(folder / f"{s}.tar.gz", m) for s, m in by_source.items()},
    }


def _pin(monkeypatch: pytest.MonkeyPatch, archives: dict[str, Path]) -> None:
    sources = {
        name: fetch.Source(
            name,
            fetch.SOURCES[name].version,
            path.resolve().as_uri(),
            hashlib.sha256(path.read_bytes()).hexdigest(),
            fetch.SOURCES[name].licence,
        )
        for name, path in archives.items()
    }
    monkeypatch.setattr(fetch, "SOURCES", sources)
    monkeypatch.setattr(real, "APC_EVAL_COUNT", 2)
    monkeypatch.setattr(real, "MIN_BACKGROUND_SIDE", 8)
    monkeypatch.delenv(fetch.CACHE_ENV, raising=False)


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _archives(tmp_path_factory.mktemp("remote"))


@pytest.fixture
def built(
    remote: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, real.RealSummary]:
    _pin(monkeypatch, remote)
    out = tmp_path / "real"
    return out, real.build_real(out, cache=tmp_path / "cache")


def _file_names(root: Path, split: str) -> set[str]:
    return {i.file_name for i in real.load_real(root, split).images.values()}


def test_split_rule_and_layout(built: tuple[Path, real.RealSummary]) -> None:
    out, summary = built
    eval_names, train_names = _file_names(out, "eval"), _file_names(out, "train")
    assert not eval_names & train_names
    assert train_names == {"train/apc_300.jpg"}  # sorted by name: 100, 200 eval; 300 train
    assert {"eval/apc_100.jpg", "eval/apc_200.jpg", "eval/dogs.png"} <= eval_names
    assert {"eval/voc_2011_000003.jpg", "eval/tutorial_apc2016_obj3.jpg"} <= eval_names
    assert len(eval_names) == 2 + len(real.LABELME_ITEMS) + 1
    assert summary.counts["eval_images"] == len(eval_names)
    assert summary.counts["train_images"] == 1
    assert summary.counts["dropped_empty_instances"] == 1  # the covered cup
    assert summary.counts["cutouts"] == 2 and summary.counts["backgrounds"] == len(real.BACKGROUNDS)
    meta = json.loads((out / "REAL.json").read_text())
    assert meta["builder_version"] == real.BUILDER_VERSION
    assert meta["fingerprint"] == real.fingerprint(out) == summary.fingerprint
    assert {s["name"] for s in meta["sources"]} == set(fetch.SOURCES)
    assert "first 2 are eval" in meta["split_rule"]
    # Images byte for byte; the embedded dog PNG written as .png.
    assert (out / "images/eval/voc_2011_000003.jpg").read_bytes() == _jpg(0)
    assert (out / "images/eval/dogs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cutout = cv2.imread(str(out / "cutouts/tree-alpha.png"), cv2.IMREAD_UNCHANGED)
    assert cutout.dtype == np.uint8 and cutout.shape == (8, 8, 4)
    assets = real.real_assets(out)
    assert len(assets.cutouts) == 2 and len(assets.backgrounds) == len(real.BACKGROUNDS)
    assert not list(out.parent.glob(".real.*"))  # no temporary folder left


def test_coco_files_load(built: tuple[Path, real.RealSummary]) -> None:
    out, _ = built
    sets = {split: real.load_real(out, split) for split in real.SPLITS}
    assert sets["eval"].categories == sets["train"].categories
    names = [c.name for c in sets["eval"].categories.values()]
    assert names == sorted(names) and "__ignore__" not in names and "_container_" not in names
    ids = [a.id for s in sets.values() for a in s.annotations]
    assert len(ids) == len(set(ids))
    for split, instances in sets.items():
        path = out / real.ANNOTATIONS[split]
        coco = COCO(str(path))
        assert load_coco_instances(path).images.keys() == instances.images.keys()
        for ann in instances.annotations:
            mask = instances.annotation_mask(ann)
            assert mask.sum() == ann.area > 0
            assert np.array_equal(mask, coco.annToMask(coco.anns[ann.id]).astype(bool))
            assert isinstance(ann.segmentation["counts"], str)
            ys, xs = np.nonzero(mask)
            assert ann.bbox == (
                xs.min(),
                ys.min(),
                xs.max() + 1 - xs.min(),
                ys.max() + 1 - ys.min(),
            )
        assert not instances.missing_images()


def _masks(root: Path, file_name: str) -> dict[str, list[np.ndarray]]:
    instances = real.load_real(root, "eval")
    image_id = next(i.id for i in instances.images.values() if i.file_name == file_name)
    cats = instances.categories
    out: dict[str, list[np.ndarray]] = {}
    for ann in instances.annotations:
        if ann.image_id == image_id:
            out.setdefault(cats[ann.category_id].name, []).append(instances.annotation_mask(ann))
    return out


def test_paint_order_occlusion(built: tuple[Path, real.RealSummary]) -> None:
    out, _ = built
    masks = _masks(out, "eval/voc_2011_000003.jpg")
    assert set(masks) == {"box", "ball"}  # cup fully covered: dropped
    (box,), (ball,) = masks["box"], masks["ball"]
    expected_box = np.zeros((H, W), bool)
    expected_box[2:18, 2:21] = True  # its square, minus the ignore region drawn later (y >= 18)
    expected_box[5:16, 15:21] = False  # and minus the ball drawn later
    assert np.array_equal(box, expected_box)
    # The container drawn later covers the ball's right column (x = 30) on rows 5..10.
    assert ball[5:16, 15:30].all() and ball[11:16, 30].all() and not ball[5:11, 30].any()
    assert ball.sum() == 11 * 16 - 6
    assert not (box & ball).any()


def test_group_is_one_instance(built: tuple[Path, real.RealSummary]) -> None:
    out, _ = built
    persons = _masks(out, "eval/voc_2011_000006.jpg")["person"]
    assert sorted(int(m.sum()) for m in persons) == [25, 50]  # group of two 5x5 squares + one


def test_rasterise_convention() -> None:
    doc = parse_labelme(_labelme(OCCLUSION, None), "mem.json")
    instances, dropped = rasterise_instances(doc)
    assert [i.label for i in instances] == ["box", "ball"] and dropped == 1
    assert instances[1].mask.sum() == 11 * 16 - 6  # boundary pixels included, minus container
    half = parse_labelme(_labelme([_shape("a", _square(1.4, 1.6, 3.5, 3.5))], None), "m.json")
    (inst,), _ = rasterise_instances(half)
    ys, xs = np.nonzero(inst.mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (1, 4, 2, 4)  # rint: 1.4->1, 1.6->2, 3.5->4


def test_reuse_and_force(built: tuple[Path, real.RealSummary], tmp_path: Path) -> None:
    out, first = built
    again = real.build_real(out, cache=tmp_path / "cache", offline=True)
    assert again.reused and again.counts == first.counts
    forced = real.build_real(out, cache=tmp_path / "cache", offline=True, force=True)
    assert not forced.reused and forced.fingerprint == first.fingerprint
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x")
    with pytest.raises(InputError, match=r"no REAL\.json"):
        real.build_real(other, cache=tmp_path / "cache", offline=True)


def test_hash_mismatch_and_offline(tmp_path: Path, remote: dict[str, Path]) -> None:
    path = remote["labelme"]
    bad = fetch.Source("labelme", "6.3.1", path.resolve().as_uri(), "0" * 64, "GPL-3.0")
    with pytest.raises(InputError, match=r"sha256 mismatch.*by hand") as exc:
        fetch.fetch(bad, tmp_path)
    assert "labelme-6.3.1.tar.gz" in str(exc.value)
    assert not list(tmp_path.iterdir())  # nothing kept
    (tmp_path / path.name).write_bytes(b"not the archive")
    with pytest.raises(InputError, match=r"labelme-6.3.1.tar.gz: sha256 mismatch.*delete it"):
        fetch.fetch(bad, tmp_path)
    with pytest.raises(InputError, match="not cached"):
        fetch.fetch(bad, tmp_path / "empty", offline=True)
    missing = fetch.Source("x", "1", (tmp_path / "gone.tar.gz").as_uri(), "0" * 64, "MIT")
    with pytest.raises(InputError, match=r"download of x 1 failed.*by hand"):
        fetch.fetch(missing, tmp_path / "c")


def test_cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path / "env"))
    assert fetch.cache_dir() == tmp_path / "env"
    assert fetch.cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_malformed_json_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pin(monkeypatch, _archives(tmp_path / "remote", voc25=b"{not json"))
    with pytest.raises(InputError, match=r"2011_000025\.json: malformed JSON"):
        real.build_real(tmp_path / "real", cache=tmp_path / "cache")
    assert not (tmp_path / "real").exists()
    assert not list(tmp_path.glob(".real.*"))


def test_member_traversal_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    evil = _apc_members({f"{APC_DIR}/../../evil.json": b"{}"})
    _pin(monkeypatch, _archives(tmp_path / "remote", apc=evil))
    with pytest.raises(InputError, match="leaves the output folder"):
        real.build_real(tmp_path / "real", cache=tmp_path / "cache")
    for name in ("/etc/passwd", "a/../../b", "..", "c:/x", "a\\..\\b"):
        with pytest.raises(InputError, match="leaves the output folder"):
            fetch.check_member_name(name, "archive.tar.gz")
    assert fetch.check_member_name("a/./b.json", "x") == "a/b.json"


def test_image_path_traversal_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    apc = _apc_members()
    apc[f"{APC_DIR}/100.json"] = _labelme([_shape("w", _square(1, 1, 5, 5))], "../../x.jpg")
    _pin(monkeypatch, _archives(tmp_path / "remote", apc=apc))
    with pytest.raises(InputError, match="leaves the output folder"):
        real.build_real(tmp_path / "real", cache=tmp_path / "cache")


def test_tar_link_member_refused(tmp_path: Path) -> None:
    path = tmp_path / "links.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("pkg/data.json")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(InputError, match="not a regular file"):
        fetch.read_members(path, ["pkg/data.json"])
    with pytest.raises(InputError, match="missing member"):
        fetch.read_members(path, ["pkg/other.json"])


def test_load_real_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown split"):
        real.load_real(tmp_path, "val")
    with pytest.raises(InputError, match="segrefiner data real"):
        real.load_real(tmp_path, "eval")

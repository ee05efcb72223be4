"""The HR training set builder and the Debian package reader (offline: a fake .deb)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from segrefiner.data import fetch, hr_train
from segrefiner.data.folders import read_hr_training
from segrefiner.errors import InputError
from tests.data.real_root import write_real_root


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = [b"!<arch>\n"]
    for name, body in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
        assert len(header) == 60
        out += [header, body, b"\n" if len(body) % 2 else b""]
    return b"".join(out)


def _deb(files: dict[str, bytes], compression: str = "xz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return _ar(
        [
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", b""),
            (f"data.tar.{compression}", buf.getvalue()),
        ]
    )


def _photo_bytes(seed: int, size=(320, 480)) -> bytes:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 255, (*size, 3), dtype=np.uint8), (0, 0), 3)
    return cv2.imencode(".jpg", image)[1].tobytes()


@pytest.fixture
def pinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    prefix = "./" + hr_train.PHOTO_PREFIX
    data = _deb({f"{prefix}/a.jpg": _photo_bytes(1), f"{prefix}/b.jpg": _photo_bytes(2),
                 "./usr/share/doc/readme.txt": b"x"})  # fmt: skip
    cache = tmp_path / "cache"
    cache.mkdir()
    src = fetch.HR_SOURCES["mate-backgrounds"]
    (cache / src.filename).write_bytes(data)
    digest = fetch.sha256_file(cache / src.filename)
    fake = fetch.Source(src.name, src.version, src.url, digest, src.licence)
    monkeypatch.setattr(fetch, "HR_SOURCES", {src.name: fake})
    return cache


def test_deb_members_reads_the_data_archive(tmp_path: Path) -> None:
    path = tmp_path / "p.deb"
    path.write_bytes(
        _deb({"./usr/x/a.JPG": b"1", "./usr/x/b.png": b"2", "./usr/y/c.jpg": b"3"}, "gz")
    )
    assert fetch.deb_members(path, "usr/x", (".jpg",)) == {"usr/x/a.JPG": b"1"}
    with pytest.raises(InputError, match=r"no \.png files under usr/z/"):
        fetch.deb_members(path, "usr/z", (".png",))
    (tmp_path / "bad.deb").write_bytes(b"PK\x03\x04 not a deb")
    with pytest.raises(InputError, match=r"bad\.deb: not a Debian package"):
        fetch.deb_members(tmp_path / "bad.deb", "usr", (".jpg",))
    evil = tmp_path / "evil.deb"
    evil.write_bytes(_deb({"./usr/x/../../etc/a.jpg": b"1"}))
    with pytest.raises(InputError, match="leaves the output folder"):
        fetch.deb_members(evil, "usr/x", (".jpg",))


def test_build_writes_the_dis_layout_and_reuses(pinned: Path, tmp_path: Path) -> None:
    real = write_real_root(tmp_path / "real")
    config = hr_train.HRTrainConfig(count=4, long_side=(200, 260), min_area=200, real_min_area=100)
    out = tmp_path / "hr"
    summary = hr_train.build_hr_train(real, out, config=config, cache=pinned, offline=True)
    assert summary.photos == 2 and summary.real == 4 and 1 <= summary.composites <= 4
    records = read_hr_training(out)
    assert len(records) == summary.composites + summary.real
    for record in records:
        image = cv2.imread(str(record.image))
        gt = cv2.imread(str(record.gt), cv2.IMREAD_GRAYSCALE)
        assert image.shape[:2] == gt.shape and set(np.unique(gt)) <= {0, 255} and gt.any()
        if record.name.startswith("h"):
            assert 200 <= max(gt.shape) <= 260
    first = {p.name: p.read_bytes() for p in (out / "dis/DIS-TR/im").iterdir()}
    again = hr_train.build_hr_train(real, out, config=config, cache=pinned, offline=True)
    assert again.reused
    rebuilt = hr_train.build_hr_train(
        real, tmp_path / "hr2", config=config, cache=pinned, offline=True
    )
    assert not rebuilt.reused
    second = {p.name: p.read_bytes() for p in (tmp_path / "hr2/dis/DIS-TR/im").iterdir()}
    assert first == second  # same seed, same bytes
    assert not (tmp_path / ".hr.tmp").exists()


def test_build_needs_the_real_set(tmp_path: Path, pinned: Path) -> None:
    with pytest.raises(InputError, match="real training annotations not found"):
        hr_train.build_hr_train(tmp_path / "nothing", tmp_path / "hr", cache=pinned, offline=True)

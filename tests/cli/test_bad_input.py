"""Bad input at the command line and the API: one clear line and a non-zero exit, never a
traceback; a value that would be silently ignored or blow up memory is refused up front."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segrefiner.cli import main
from segrefiner.errors import InputError
from segrefiner.io import write_mask


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width`` x ``height`` RGB pixels (with almost no data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    image = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(image)
    mask = np.zeros((48, 64), bool)
    mask[10:40, 16:50] = True
    write_mask(tmp_path / "mask.png", mask)
    write_mask(tmp_path / "small.png", mask[:20, :20])
    (tmp_path / "afile").write_text("x")
    (tmp_path / "outdir").mkdir()
    _png_declaring(tmp_path / "bomb.png", 100_000, 100_000)
    (tmp_path / "bad.json").write_text("not json")
    (tmp_path / "notlist.json").write_text('{"a": 1}')
    (tmp_path / "corrupt.pt").write_bytes(bytes(range(256)) * 4)
    gt = {
        "images": [{"id": 1, "file_name": "img.png", "height": 48, "width": 64}],
        "annotations": [],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "badrle.json").write_text(
        json.dumps(
            [
                {
                    "image_id": 1,
                    "category_id": 1,
                    "score": 1.0,
                    "segmentation": {"size": [48, 64], "counts": 17},
                }
            ]
        )
    )
    return {
        "img": image,
        "mask": tmp_path / "mask.png",
        "small": tmp_path / "small.png",
        "bomb": tmp_path / "bomb.png",
        "afile": tmp_path / "afile",
        "outdir": tmp_path / "outdir",
        "tmp": tmp_path,
    }


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse refuses a value: exit 2 with a usage line
        return int(exc.code)


# (name, argv with {placeholders}, exit code, a fragment of the one error line)
CASES = [
    ("bomb image", "refine --checkpoint tiny --image {bomb} --mask {mask} -o {tmp}/o.png", 2,
     "too large to decode safely"),
    ("missing image", "refine --checkpoint tiny --image {tmp}/none.png --mask {mask} -o {tmp}/o.png",
     2, "image file not found"),
    ("mask of another size", "refine --checkpoint tiny --image {img} --mask {small} -o {tmp}/o.png",
     2, "differs from the image size"),
    ("output is a folder", "refine --checkpoint tiny --image {img} --mask {mask} -o {outdir}", 2,
     "is a folder"),
    ("output under a file", "refine --checkpoint tiny --image {img} --mask {mask} -o {afile}/o.png",
     2, "a part of its folder is a file"),
    ("device tpu", "refine --checkpoint tiny --image {img} --mask {mask} -o {tmp}/o.png --device tpu",
     2, "device 'tpu': unknown"),
    ("huge model size", "refine --checkpoint tiny --image {img} --mask {mask} -o {tmp}/o.png "
     "--model-size 100000", 2, "model_size: 100000 is out of range"),
    ("model size 0", "refine --checkpoint tiny --image {img} --mask {mask} -o {tmp}/o.png "
     "--model-size 0", 2, "--model-size: must be >= 1"),
    ("negative seed", "refine --checkpoint tiny --image {img} --mask {mask} -o {tmp}/o.png --seed -1",
     2, "--seed: must be >= 0"),
    ("shards 0", "refine-coco --results {tmp}/r.json --images {tmp} --checkpoint tiny -o {tmp}/x.json "
     "--shards 0", 2, "--shards: must be >= 1"),
    ("shards -3", "refine-coco --results {tmp}/r.json --images {tmp} --checkpoint tiny "
     "-o {tmp}/x.json --shards -3", 2, "--shards: must be >= 1"),
    ("batch size 0", "refine-coco --results {tmp}/r.json --images {tmp} --checkpoint tiny "
     "-o {tmp}/x.json --batch-size 0", 2, "--batch-size: must be >= 1"),
    ("workers -1", "refine-dataset --kind dis --data-root {tmp} --checkpoint tiny -o {tmp}/o "
     "--workers -1", 2, "--workers: must be >= 0"),
    ("eval workers 0", "eval masks --gt {tmp} --pred {tmp} --workers 0", 2,
     "--workers: must be >= 1"),
    ("eval threads 0", "eval real --coarse-only --data {tmp} --threads 0", 2,
     "--threads: must be >= 1"),
    ("demo seed -1", "data demo --out {tmp}/demo --seed -1", 2, "--seed: must be >= 0"),
    ("composites count -5", "data composites --root {tmp} --count -5", 2, "--count: must be >= 0"),
    ("train lr nan", "train --config {cfg} optim.lr=.nan", 2, "optim.lr: must be"),
    ("train betas", "train --config {cfg} optim.betas=[2,3]", 2, "optim.betas: must be"),
    ("train texture weight nan", "train --config {cfg} loss.texture_weight=.nan", 2,
     "loss.texture_weight: must be"),
    ("train gamma 0", "train --config {cfg} schedule.gamma=0", 2, "schedule.gamma: must be"),
    ("train nproc 0", "train --config {cfg} --nproc 0", 2, "--nproc: must be >= 1"),
    ("train unknown key", "train --config {cfg} optim.learning_rate=1", 2, "unknown keys"),
    ("train milestones descending", "train --config {cfg} schedule.milestones=[3,2]", 2,
     "schedule.milestones: must be ascending"),
    ("train crop size", "train --config {cfg} data.crop_size=100", 2,
     "data.crop_size: 100 is not a positive multiple"),
    ("train flip prob 2", "train --config {cfg} data.flip_prob=2", 2,
     "data.flip_prob: a probability must be in [0, 1]"),
    ("train hr store missing", "train --config {cfg} data.task=hr data.hr.coarse=store", 2,
     "coarse_store"),
    ("train missing config", "train --config {tmp}/none.yaml", 2, "config file not found"),
    ("eval malformed results", "eval coco --gt {tmp}/gt.json --results {tmp}/bad.json", 2,
     "bad.json: malformed JSON"),
    ("eval results not a list", "eval coco --gt {tmp}/gt.json --results {tmp}/notlist.json", 2,
     "expected a JSON list of detections"),
    ("eval malformed RLE", "eval coco --gt {tmp}/gt.json --results {tmp}/badrle.json", 2,
     "badrle.json[0]"),
    ("eval missing gt", "eval coco --gt {tmp}/none.json --results {tmp}/notlist.json", 2,
     "none.json: JSON file not found"),
    ("eval iou type", "eval coco --gt {tmp}/gt.json --results {tmp}/bad.json --iou-type bbox", 2,
     "--iou-type: invalid choice"),
    ("eval masks missing gt", "eval masks --gt {tmp}/none --pred {tmp}", 2,
     "ground-truth folder not found"),
    ("eval dis no splits", "eval dis --gt-root {tmp} --pred-root {tmp}", 2,
     "no DIS split with ground truths"),
    ("eval real missing set", "eval real --coarse-only --data {tmp}/none", 2,
     "real evaluation annotations not found"),
    ("eval real unknown kind", "eval real --coarse-only --data {tmp} --kinds sam", 2,
     "unknown coarse kind"),
    ("eval real both", "eval real --coarse-only --checkpoint tiny --data {tmp}", 2,
     "not both"),
    ("eval hr-demo unknown set", "eval hr-demo --checkpoint tiny --data {tmp} --sets COCO", 2,
     "sets: unknown ['COCO']"),
    ("refine-coco malformed results", "refine-coco --results {tmp}/bad.json --images {tmp} "
     "--annotations {tmp}/gt.json --checkpoint tiny -o {tmp}/x.json", 2, "malformed JSON"),
    ("refine corrupt checkpoint", "refine --checkpoint {tmp}/corrupt.pt --image {img} --mask "
     "{mask} -o {tmp}/o.png", 2, "corrupt.pt: not a readable PyTorch checkpoint"),
    ("refine missing checkpoint", "refine --checkpoint {tmp}/none.pt --image {img} --mask {mask} "
     "-o {tmp}/o.png", 2, "checkpoint file not found"),
    ("refine image without mask", "refine --checkpoint tiny --image {img} -o {tmp}/o.png", 2,
     "--image and --mask go together"),
    ("refine images without masks", "refine --checkpoint tiny --images {tmp} -o {tmp}/od", 2,
     "--images and --masks go together"),
    ("refine both forms", "refine --checkpoint tiny --image {img} --mask {mask} --images {tmp} "
     "--masks {tmp} -o {tmp}/o", 2, "give either --image and --mask, or --images and --masks"),
    ("refine missing images folder", "refine --checkpoint tiny --images {tmp}/none --masks {tmp} "
     "-o {tmp}/od", 2, "images folder not found"),
    ("refine unknown mode", "refine --checkpoint tiny --mode bogus --image {img} --mask {mask} "
     "-o {tmp}/o.png", 2, "--mode: invalid choice"),
    ("refine-dataset unknown kind", "refine-dataset --kind coco --data-root {tmp} "
     "--checkpoint tiny -o {tmp}/o", 2, "--kind: invalid choice"),
    ("hr-train count -1", "data hr-train --real {tmp} --out {tmp}/hr --count -1", 2,
     "--count: must be >= 0"),
    ("real offline empty cache", "data real --out {tmp}/r --offline --cache {tmp}/cache", 2,
     "is not cached (offline)"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "argv", "code", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_line(files, capsys, name, argv, code, message) -> None:
    cfg = files["tmp"] / "train.yaml"
    cfg.write_text("model:\n  preset: tiny\n")
    args = argv.format(cfg=cfg, **files).split()
    assert _run(args) == code
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err


def test_unreachable_dask_scheduler_is_named(files, capsys, monkeypatch, demo_ci) -> None:
    import pipelines.cluster

    monkeypatch.setattr(pipelines.cluster, "CONNECT_TIMEOUT_S", 1)
    results = demo_ci / "results" / "segmentor_val.segm.json"
    argv = ["refine-coco", "--results", str(results), "--images", str(demo_ci / "coco/val2017")]
    argv += ["--checkpoint", "tiny", "-o", str(files["tmp"] / "r.json")]
    assert _run([*argv, "--dask-address", "tcp://127.0.0.1:9"]) == 2
    assert "dask scheduler tcp://127.0.0.1:9: unreachable after 1 s" in capsys.readouterr().err


def test_an_unforeseen_error_is_one_line_unless_the_traceback_is_asked_for(
    files, capsys, monkeypatch
) -> None:
    import segrefiner.cli.refine

    def broken(args):
        raise RuntimeError("something odd")

    monkeypatch.setattr(segrefiner.cli.refine, "run", broken)
    from segrefiner.cli import build_parser

    parser = build_parser()
    args = ["refine", "--checkpoint", "tiny", "--image", str(files["img"]), "--mask"]
    args += [str(files["mask"]), "-o", str(files["tmp"] / "o.png")]
    assert parser.parse_args(args).func is broken
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "error: RuntimeError: something odd (unexpected; SEGREFINER_TRACEBACK=1" in err
    monkeypatch.setenv("SEGREFINER_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="something odd"):
        main(args)


def test_api_bad_input() -> None:
    from segrefiner import Refiner
    from segrefiner.checkpoint import load_model
    from segrefiner.inference.config import InferenceConfig

    refiner = Refiner.from_checkpoint("tiny", seed=0)
    empty = refiner.refine_instances(np.zeros((8, 9, 3), np.uint8), np.zeros((0, 8, 9), bool))
    assert empty.shape == (0, 8, 9) and empty.dtype == bool
    with pytest.raises(InputError, match="differs from the image size"):
        refiner.refine_instances(np.zeros((8, 9, 3), np.uint8), np.zeros((0, 7, 9), bool))
    with pytest.raises(InputError, match="load_model: expected a checkpoint path"):
        load_model(None)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="device 'tpu'"):
        Refiner.from_checkpoint("tiny", device="tpu")
    with pytest.raises(InputError, match="device 'tpu'"):
        load_model("tiny", device="tpu")
    for bad in ({"model_size": 0}, {"batch_size": 0}, {"fine_prob_thr": 1.5}, {"area_thr": -1}):
        with pytest.raises(InputError, match=next(iter(bad))):
            InferenceConfig(**bad)


def test_api_errors_name_the_argument() -> None:
    from segrefiner import Refiner

    refiner = Refiner.from_checkpoint("tiny", seed=0)
    rgb, mask = np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), bool)
    cases = [
        (lambda: refiner.refine(rgb[..., 0], mask), "^image: expected an H x W x 3"),
        (lambda: refiner.refine(rgb.astype(np.float32), mask), "^image: expected dtype uint8"),
        (lambda: refiner.refine(rgb, np.zeros((64, 64, 3), bool)), "^coarse: expected an H x W"),
        (lambda: refiner.refine(rgb, mask[:32]), "^coarse: mask size 64x32"),
        (lambda: refiner.refine_instances(rgb[..., 0], mask[None]), "^image: expected"),
        (lambda: refiner.refine_instances(rgb, mask), "^coarses: expected N x H x W"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message):
            call()


def test_a_bomb_in_the_folder_form_is_set_aside_and_the_rest_refined(files, capsys) -> None:
    images, masks = files["tmp"] / "images", files["tmp"] / "masks"
    images.mkdir(), masks.mkdir()
    for stem in ("a", "c"):
        (images / f"{stem}.png").write_bytes(files["img"].read_bytes())
        (masks / f"{stem}.png").write_bytes(files["mask"].read_bytes())
    _png_declaring(images / "b.png", 100_000, 100_000)
    (masks / "b.png").write_bytes(files["mask"].read_bytes())
    out = files["tmp"] / "out"
    argv = ["refine", "--checkpoint", "tiny", "--model-size", "32", "--images", str(images)]
    assert main([*argv, "--masks", str(masks), "-o", str(out)]) == 1  # one item failed
    captured = capsys.readouterr()
    assert "refined 2, kept 0 existing, failed 1" in captured.out
    assert "b.png: unreadable image (too large to decode safely" in captured.err
    assert (out / "a.png").is_file() and (out / "c.png").is_file() and not (out / "b.png").exists()


def test_an_unwritable_output_folder_is_one_line(files, capsys, monkeypatch) -> None:
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(
        tempfile, "mkstemp", refuse
    )  # as for a read-only folder (tests run as root)
    argv = ["refine", "--checkpoint", "tiny", "--model-size", "32", "--image", str(files["img"])]
    assert main([*argv, "--mask", str(files["mask"]), "-o", str(files["tmp"] / "o.png")]) == 2
    assert "o.png: cannot be written, no permission in" in capsys.readouterr().err

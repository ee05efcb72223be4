from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.stores import MaskStore
from segrefiner.cli import main


def test_refine_coco_cli(demo_ci: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "refined.json"
    argv = [
        "refine-coco",
        "--results", str(demo_ci / "results" / "segmentor_val.segm.json"),
        "--images", str(demo_ci / "coco" / "val2017"),
        "--checkpoint", "tiny",
        "--model-size", "64",
        "--shards", "2",
        "-o", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "detections in 4 images" in first
    assert len(json.loads(out.read_text())) == 21
    output = out.read_bytes()
    work = tmp_path / "refined.work"  # the default work directory beside the output
    store = MaskStore.open(work / "refined.zarr")
    records = {name: store.completion_record(name) for name in ("00000", "00001")}
    assert all(r is not None and r["detections"] > 0 for r in records.values())
    parts = {p.name: p.stat().st_mtime_ns for p in (work / "parts").glob("*.json")}
    assert sorted(parts) == ["00000.json", "00001.json"]

    assert main(argv) == 0  # resumes: both shards already complete
    assert capsys.readouterr().out == first  # the same summary
    assert out.read_bytes() == output
    # neither shard ran again: records and part files are the first run's, untouched
    store = MaskStore.open(work / "refined.zarr")
    assert {name: store.completion_record(name) for name in records} == records
    assert {p.name: p.stat().st_mtime_ns for p in (work / "parts").glob("*.json")} == parts


def test_refine_dataset_cli(demo_ci: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "dis"
    argv = ["refine-dataset", "--kind", "dis", "--data-root", str(demo_ci), "--checkpoint", "tiny"]
    assert main([*argv, "--model-size", "64", "-o", str(out)]) == 0
    assert "refined 2 of 2 images" in capsys.readouterr().out
    assert sorted(p.parent.name for p in out.rglob("*.png")) == ["DIS-TE1", "DIS-VD"]


def test_pipeline_cli_errors(demo_ci: Path, tmp_path: Path, capsys) -> None:
    argv = ["refine-coco", "--results", "r.json", "--images", str(tmp_path), "--checkpoint", "tiny"]
    assert main([*argv, "-o", str(tmp_path / "o.json")]) == 2
    assert "annotation file not found" in capsys.readouterr().err
    argv = [
        "refine-dataset",
        "--kind",
        "dis",
        "--data-root",
        str(demo_ci),
        "--checkpoint",
        "nope.pth",
    ]
    assert main([*argv, "-o", str(tmp_path / "o")]) == 2
    assert "nope.pth: checkpoint file not found" in capsys.readouterr().err
    argv[-1] = "tiny"
    with pytest.raises(SystemExit) as refused:  # argparse: usage and one error line
        main([*argv, "--pack-images", "0", "-o", str(tmp_path / "o")])
    assert refused.value.code == 2
    assert "argument --pack-images: must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # the mode is its own option now
        main([*argv, "--compile", "--compile-mode", "fastest", "-o", str(tmp_path / "o")])
    assert refused.value.code == 2
    assert "argument --compile-mode: must be one of [" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --compile is a flag: no mode after it
        main([*argv, "--compile", "fastest", "-o", str(tmp_path / "o")])
    assert "unrecognized arguments: fastest" in capsys.readouterr().err


def test_compile_modes_agree_between_the_stage_and_the_flows() -> None:
    import argparse
    import typing

    from flows.params import RefineParams
    from pipelines.cli import _common
    from pipelines.config import COMPILE_MODES

    (literal, _none) = typing.get_args(RefineParams.model_fields["compile_mode"].annotation)
    assert typing.get_args(literal) == COMPILE_MODES
    parser = argparse.ArgumentParser()
    _common(parser, "output", run=None)
    (option,) = [a for a in parser._actions if a.dest == "compile_mode"]
    assert tuple(option.choices) == COMPILE_MODES

"""One writer per output folder / checkpoint dir, and outputs that carry the settings that made them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from segrefiner.cli import main
from segrefiner.errors import InputError
from segrefiner.io import write_mask
from segrefiner.locking import FolderBusyError, folder_lock


def test_a_held_folder_refuses_a_second_holder_until_released(tmp_path) -> None:
    with folder_lock(tmp_path / "out", "first") as lock:
        assert lock.read_text().startswith(f"pid {os.getpid()} on ")
        with pytest.raises(FolderBusyError, match=rf"out: in use by pid {os.getpid()} .*second"):
            with folder_lock(tmp_path / "out", "second"):
                pass
    with folder_lock(tmp_path / "out", "third"):  # released: free again
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path) -> None:
    code = textwrap.dedent(
        f"""
        import sys, time
        from segrefiner.locking import folder_lock
        with folder_lock({str(tmp_path / "out")!r}):
            print("held", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"  # readiness line, not a sleep
        with pytest.raises(FolderBusyError, match=f"pid {proc.pid} "):
            with folder_lock(tmp_path / "out"):
                pass
    finally:
        proc.kill()
        proc.wait()
    with folder_lock(tmp_path / "out"):
        pass


def _folder(tmp_path, stems):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    from PIL import Image

    rng = np.random.default_rng(0)
    for stem, suffix in stems:
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            images / f"{stem}{suffix}"
        )
        mask = np.zeros((32, 32), bool)
        mask[8:24, 8:24] = True
        write_mask(masks / f"{stem}.png", mask)
    return images, masks


def test_refine_folder_form_refuses_a_busy_output_and_unsafe_folders(tmp_path, capsys) -> None:
    images, masks = _folder(tmp_path, [("a", ".png"), ("b", ".jpg")])
    out = tmp_path / "out"
    argv = ["refine", "--checkpoint", "tiny", "--model-size", "32", "--images", str(images)]
    argv += ["--masks", str(masks)]
    with folder_lock(out, "another refine"):
        assert main([*argv, "-o", str(out)]) == 2
    assert "out: in use by pid" in capsys.readouterr().err
    assert not (out / "a.png").exists()
    assert main([*argv, "-o", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {
        "a.png",
        "b.png",
        ".segrefiner.lock",
        ".segrefiner-run.json",
        "refine_scores.json",
    }
    assert main([*argv, "-o", str(masks), "--overwrite"]) == 2
    assert "the same folder as --masks" in capsys.readouterr().err


def test_two_images_of_one_stem_are_an_error(tmp_path) -> None:
    from segrefiner.cli.refine import match_folder

    images, masks = _folder(tmp_path, [("a", ".png"), ("a", ".jpg")])
    with pytest.raises(InputError, match=r"two images share the stem 'a' \(a\.jpg, a\.png\)"):
        match_folder(images, masks)


def test_refine_coco_refuses_a_busy_work_dir(demo_ci, tmp_path) -> None:
    from pipelines.config import RefineConfig
    from pipelines.refine_coco import refine_coco

    output = tmp_path / "r.segm.json"
    with folder_lock(tmp_path / "r.segm.work", "another refine-coco"):
        with pytest.raises(FolderBusyError, match="refining into"):
            refine_coco(
                demo_ci / "results" / "segmentor_val.segm.json",
                None,
                demo_ci / "coco" / "val2017",
                output,
                RefineConfig(checkpoint="tiny"),
            )
    assert not output.exists()


def test_taking_the_lock_removes_what_a_killed_writer_left(tmp_path) -> None:
    out = tmp_path / "out"
    (out / "DIS-VD").mkdir(parents=True)
    left = [out / ".a.k3j_9x0q.tmp.png", out / "DIS-VD" / ".b.zz11aa22.tmp.png"]
    for path in left:
        path.write_bytes(b"")  # a 0-byte temporary file: the writer was killed before writing
    kept = [out / "a.png", out / ".hidden.tmp.notes", out / "DIS-VD" / "b.png"]
    for path in kept:
        path.write_bytes(b"x")
    with folder_lock(out):
        assert not any(p.exists() for p in left)
        assert all(p.exists() for p in kept)


def test_refine_folder_outputs_carry_their_settings(tmp_path, capsys) -> None:
    images, masks = _folder(tmp_path, [("a", ".png"), ("b", ".png")])
    out = tmp_path / "out"
    argv = ["refine", "--checkpoint", "tiny", "--model-size", "32", "--images", str(images)]
    argv += ["--masks", str(masks), "-o", str(out)]
    assert main(argv) == 0
    first = (out / "a.png").read_bytes()
    capsys.readouterr()
    assert main(argv) == 0  # same settings: a resume keeps them
    assert "refined 0, kept 2 existing" in capsys.readouterr().out
    assert main([*argv, "--seed", "1"]) == 2  # other settings: never kept as this run's
    assert "(made with another seed); --overwrite redoes them" in capsys.readouterr().err
    assert (out / "a.png").read_bytes() == first
    assert main([*argv, "--seed", "1", "--overwrite"]) == 0
    assert main([*argv, "--seed", "1"]) == 0
    assert "kept 2 existing" in capsys.readouterr().out

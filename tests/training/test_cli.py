"""``segrefiner train`` with overrides on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from segrefiner.cli import main
from tests.training.conftest import tiny_overrides


def _write_config(path, lvis_root, run_dir) -> None:
    # The YAML holds part of the recipe; the rest comes as overrides on the command line.
    path.write_text(yaml.safe_dump({"name": "cli_test", "model": {"preset": "tiny"}}))


def test_train_command_with_overrides(lvis_root, tmp_path, capsys) -> None:
    config = tmp_path / "train.yaml"
    run = tmp_path / "run"
    _write_config(config, lvis_root, run)
    overrides = tiny_overrides(lvis_root, run, **{"schedule.max_iters": 2, "optim.lr": "2e-4"})
    code = main(["train", "--config", str(config), *overrides])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["finished"] and result["step"] == 2 and result["model"].endswith("model.pt")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["name"] == "cli_test" and saved["optim"]["lr"] == 2e-4
    assert saved["data"]["crop_size"] == 32 and saved["schedule"]["max_iters"] == 2
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records] == [2e-4, 2e-4]


def test_print_config_and_bad_override(tmp_path, capsys) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("model:\n  preset: tiny\n")
    assert main(["train", "--config", str(config), "--print-config", "optim.lr=1e-3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 1e-3 and printed["model"]["preset"] == "tiny"
    assert main(["train", "--config", str(config), "optim.learning_rate=1"]) == 2
    assert "unknown keys ['learning_rate']" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_anchored_overrides_make_the_recipes_folders_absolute(tmp_path, monkeypatch) -> None:
    from pipelines.train import anchored_overrides
    from segrefiner.training.config import load_train_config

    monkeypatch.chdir(tmp_path)
    recipe = Path(__file__).resolve().parents[2] / "configs/segrefiner_hr.yaml"
    hr = load_train_config(
        recipe,
        ["data.root=d", "checkpoint.dir=runs/x", "data.hr.coarse_store=d/c.zarr"],
    )
    got = anchored_overrides(hr, ["optim.lr=1e-4"])
    assert got == [
        "optim.lr=1e-4",
        f"data.root={tmp_path / 'd'}",
        f"checkpoint.dir={tmp_path / 'runs/x'}",
        f"data.hr.coarse_store={tmp_path / 'd/c.zarr'}",
    ]
    absolute = load_train_config(
        recipe,
        [f"data.root={tmp_path}", f"checkpoint.dir={tmp_path}", f"data.hr.coarse_store={tmp_path}"],
    )
    assert anchored_overrides(absolute, []) == []

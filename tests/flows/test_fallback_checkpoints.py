"""fallback_lr / fallback_hr: official release, else the shipped default, else the last resort."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.params import (
    DEMO_CHECKPOINT,
    OFFICIAL_HR,
    OFFICIAL_LR,
    ReevaluateParams,
    RefineCocoParams,
    fallback_hr,
    fallback_lr,
)
from segrefiner.checkpoint import CHECKPOINTS_ENV


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project root as the working directory, shipped models looked up in it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path / "checkpoints"))
    (tmp_path / "checkpoints").mkdir()
    return tmp_path


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")


@pytest.mark.parametrize(
    ("choose", "kind", "official", "last_resort"),
    [
        (fallback_lr, "lr", OFFICIAL_LR, DEMO_CHECKPOINT),
        (fallback_hr, "hr", OFFICIAL_HR, OFFICIAL_HR),
    ],
)
def test_order_official_then_shipped_then_last_resort(
    project: Path, choose, kind: str, official: str, last_resort: str
) -> None:
    assert choose() == last_resort  # nothing there: as before this change
    shipped = f"checkpoints/segrefiner_{kind}_real.pt"
    _touch(project / shipped)
    assert choose() == shipped  # relative to the working directory, like the other parameters
    _touch(project / official)
    assert choose() == official


def test_shipped_outside_the_working_directory_is_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path / "elsewhere"))
    _touch(tmp_path / "elsewhere" / "segrefiner_lr_real.pt")
    assert fallback_lr() == str((tmp_path / "elsewhere" / "segrefiner_lr_real.pt").resolve())
    assert fallback_hr() == OFFICIAL_HR


def test_param_defaults_consult_the_fallbacks(project: Path) -> None:
    assert RefineCocoParams().refine.fallback_checkpoint == DEMO_CHECKPOINT
    reevaluate = ReevaluateParams()
    assert reevaluate.fallback_lr_checkpoint == DEMO_CHECKPOINT
    assert reevaluate.fallback_hr_checkpoint == OFFICIAL_HR
    _touch(project / "checkpoints/segrefiner_lr_real.pt")
    _touch(project / "checkpoints/segrefiner_hr_real.pt")
    assert RefineCocoParams().refine.fallback_checkpoint == "checkpoints/segrefiner_lr_real.pt"
    reevaluate = ReevaluateParams()
    assert reevaluate.fallback_lr_checkpoint == "checkpoints/segrefiner_lr_real.pt"
    assert reevaluate.fallback_hr_checkpoint == "checkpoints/segrefiner_hr_real.pt"


def test_deployments_use_the_fallbacks_and_the_demo_keeps_its_checkpoint(project: Path) -> None:
    from flows.deployments import build_deployments

    _touch(project / "checkpoints/segrefiner_lr_real.pt")
    by_flow = {
        (d.flow_name, d.name): d.parameters["params"] for d in build_deployments("data", 3600)
    }
    demo = by_flow[("refine-coco", "demo")]["refine"]
    assert demo["checkpoint"] == DEMO_CHECKPOINT and demo["fallback_checkpoint"] is None
    coco = by_flow[("refine-coco", "default")]["refine"]
    assert coco["fallback_checkpoint"] == "checkpoints/segrefiner_lr_real.pt"
    assert by_flow[("refine-big", "default")]["refine"]["fallback_checkpoint"] == OFFICIAL_HR
    scheduled = by_flow[("reevaluate", "scheduled")]
    assert scheduled["fallback_lr_checkpoint"] == "checkpoints/segrefiner_lr_real.pt"
    assert scheduled["fallback_hr_checkpoint"] == OFFICIAL_HR


def test_demo_hr_deployments_use_the_shipped_hr_model(project: Path) -> None:
    from flows.deployments import DEMO_ROOT, build_deployments

    by_flow = {
        (d.flow_name, d.name): d.parameters["params"] for d in build_deployments("data", 3600)
    }
    for flow in ("refine-big", "refine-dis"):
        params = by_flow[(flow, "demo")]
        # the shipped file's path even before it exists: the run then names it as missing
        assert params["refine"]["checkpoint"] == "checkpoints/segrefiner_hr_real.pt"
        assert params["data_root"] == DEMO_ROOT and params["output_dir"].endswith("/demo")


def test_deployments_move_every_default_data_path_under_the_data_root(project: Path) -> None:
    from flows.deployments import build_deployments
    from flows.params import CoarseHRParams, RefineCocoParams

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict | list):
            for v in value.values() if isinstance(value, dict) else value:
                yield from strings(v)

    by_flow = {
        (d.flow_name, d.name): d.parameters["params"] for d in build_deployments("/srv/d", 60)
    }
    # the demo deployments always refine the demo data (data/demo)
    found = [s for (_, name), params in by_flow.items() if name != "demo" for s in strings(params)]
    assert found and not [s for s in found if s == "data" or s.startswith("data/")]
    coco = by_flow[("refine-coco", "default")]
    # the models' defaults, moved: nothing but the root differs
    default = RefineCocoParams()
    assert coco["results"] == "/srv/d" + default.results.removeprefix("data")
    assert [g["annotations"] for g in coco["ground_truths"]] == [
        "/srv/d" + g.annotations.removeprefix("data") for g in default.ground_truths
    ]
    assert by_flow[("gen-coarse-hr", "default")]["store"] == "/srv/d/coarse_hr.zarr"
    assert CoarseHRParams().store == "data/coarse_hr.zarr"
    assert by_flow[("reevaluate", "scheduled")]["inbox"] == "/srv/d/inbox"
    demo = by_flow[("refine-coco", "demo")]
    assert demo["results"] == "data/demo/results/segmentor_val.segm.json"

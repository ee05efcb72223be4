"""Coarse vs refined on a real-photo-like evaluation split, per coarse kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segrefiner import Refiner
from segrefiner.cli import main
from segrefiner.data.coco import load_coco_instances
from segrefiner.errors import InputError
from segrefiner.evaluation import evaluate_real, evaluate_refinement
from tests.data.real_root import write_real_root

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory):
    return write_real_root(tmp_path_factory.mktemp("real") / "real")


class _Oracle:
    """A "refiner" that returns the ground truth, or the coarse mask with every other column cleared."""

    def __init__(self, root, harm: bool = False) -> None:
        self.instances = load_coco_instances(root / "annotations" / "real_eval.json")
        self.harm = harm
        self.calls: list[list] = []

    def refine_instances(self, image, coarses, keys):
        self.calls.append(list(keys))
        if self.harm:
            out = coarses.copy()
            out[:, :, ::2] = False  # every other column: about half of every mask
            return out
        by_id = {a.id: a for a in self.instances.annotations}
        return np.stack([self.instances.annotation_mask(by_id[k[1]]) for k in keys])


def test_coarse_only_reports_each_kind(root) -> None:
    report = evaluate_real(None, root)
    assert set(report.kinds) == {"maskrcnn", "lowres", "official"}
    assert len(report.rows) == 3 * 4
    for summary in report.kinds.values():
        assert summary.instances == 4 and summary.refined == {} and summary.harmed is None
        assert 0.3 < summary.coarse["iou"] < 1.0
        assert 0.0 <= summary.coarse["segm_ap"] <= 1.0
        p = summary.coarse_iou_percentiles
        assert p["10"] <= p["50"] <= p["90"]
    assert "official: 4 instances" in report.table()


def test_a_perfect_refiner_helps_everything_and_harms_nothing(root) -> None:
    oracle = _Oracle(root)
    ann = root / "annotations" / "real_eval.json"
    report = evaluate_refinement(ann, root / "images", oracle, kinds=("official",))
    s = report.kinds["official"]
    assert s.refined["iou"] == pytest.approx(1.0) and s.refined["segm_ap"] == pytest.approx(1.0)
    assert s.harmed == 0.0 and s.helped == 1.0
    # keys are (kind, annotation id): the same item gets the same noise in any batch
    assert oracle.calls[0] == [("official", 1), ("official", 2)]


def test_a_harmful_refiner_is_counted_as_harm(root) -> None:
    ann = root / "annotations" / "real_eval.json"
    report = evaluate_refinement(
        ann, root / "images", _Oracle(root, harm=True), kinds=("maskrcnn",)
    )
    s = report.kinds["maskrcnn"]
    assert s.harmed == 1.0 and s.refined["iou"] < s.coarse["iou"]


def test_same_seed_same_coarse_masks(root) -> None:
    a = evaluate_real(None, root, kinds=("lowres",), with_ap=False)
    b = evaluate_real(None, root, kinds=("lowres",), with_ap=False, seed=0)
    c = evaluate_real(None, root, kinds=("lowres",), with_ap=False, seed=1)
    assert [r.coarse for r in a.rows] == [r.coarse for r in b.rows]
    assert [r.coarse for r in a.rows] != [r.coarse for r in c.rows]


def test_a_network_end_to_end_and_the_csv(root, tmp_path) -> None:
    report = evaluate_real("tiny", root, kinds=("maskrcnn",), with_ap=False)
    s = report.kinds["maskrcnn"]
    assert s.harmed is not None and 0.0 <= s.refined["iou"] <= 1.0
    report.write_csv(tmp_path / "rows.csv")
    lines = (tmp_path / "rows.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 and lines[0].startswith("kind,image_id,file_name")


def test_missing_set_and_unknown_kind_are_named(root, tmp_path) -> None:
    with pytest.raises(InputError, match="segrefiner data real"):
        evaluate_real(None, tmp_path / "none")
    with pytest.raises(InputError, match="unknown coarse kind"):
        evaluate_real(None, root, kinds=("sam",))


def test_cli_eval_real(root, tmp_path, capsys) -> None:
    out = tmp_path / "report.json"
    args = ["eval", "real", "--coarse-only", "--data", str(root), "--kinds", "maskrcnn"]
    assert main([*args, "--json", str(out), "--no-ap"]) == 0
    assert "maskrcnn: 4 instances" in capsys.readouterr().out
    assert json.loads(out.read_text())["kinds"]["maskrcnn"]["instances"] == 4
    assert main(["eval", "real", "--coarse-only", "--checkpoint", "tiny", "--data", str(root)]) == 2


class _SemanticOracle(_Oracle):
    """Whole-image refinement: the ground truth of the instance the key names."""

    def refine(self, image, coarse, key):
        self.calls.append([key])
        by_id = {a.id: a for a in self.instances.annotations}
        return self.instances.annotation_mask(by_id[key[1]])


def test_semantic_mode_refines_each_whole_image_mask_and_pools_iou(root) -> None:
    oracle = _SemanticOracle(root)
    ann = root / "annotations" / "real_eval.json"
    report = evaluate_refinement(
        ann, root / "images", oracle, kinds=("lowres",), mode="semantic", with_ap=False
    )
    s = report.kinds["lowres"]
    # one call per instance (not per image), keyed (kind, annotation id)
    assert [c[0] for c in oracle.calls] == [("lowres", r.annotation_id) for r in report.rows]
    assert s.refined["pooled_iou"] == pytest.approx(1.0) and s.helped == 1.0
    # the pooled IoU weighs instances by their union: not the mean of per-instance IoUs
    inter = union = 0
    instances = load_coco_instances(ann, root / "images")
    from segrefiner.data.coarse_kinds import coarse_mask
    from segrefiner.evaluation import coarse_rng

    for a in instances.annotations:
        gt = instances.annotation_mask(a)
        info = instances.images[a.image_id]
        c = coarse_mask("lowres", gt, coarse_rng(0, "lowres", info.file_name, a.id))
        inter += int((c & gt).sum())
        union += int((c | gt).sum())
    assert s.coarse["pooled_iou"] == pytest.approx(inter / union)
    assert report.mode == "semantic" and "pooled_iou" in report.table()
    with pytest.raises(InputError, match="mode"):
        evaluate_refinement(ann, root / "images", oracle, mode="panoptic")


def test_semantic_mode_with_a_network(root) -> None:
    report = evaluate_real("tiny", root, kinds=("maskrcnn",), with_ap=False, mode="semantic")
    s = report.kinds["maskrcnn"]
    assert 0.0 <= s.refined["pooled_iou"] <= 1.0 and s.harmed is not None
    assert report.as_dict()["mode"] == "semantic" and report.refine_seconds > 0


def test_cli_eval_hr_demo(demo_ci, tmp_path, capsys) -> None:
    from segrefiner.checkpoint import save_checkpoint
    from segrefiner.data.folders import load_sample, read_big
    from segrefiner.metrics import pooled_iou
    from segrefiner.model import build_unet

    # the tiny network with a 32 px global pass: its 256 px patches run resized to 32
    ckpt = tmp_path / "tiny32.pt"
    save_checkpoint(ckpt, build_unet("tiny", seed=0), {"inference": {"model_size": 32}})
    out = tmp_path / "hr.json"
    args = ["eval", "hr-demo", "--checkpoint", str(ckpt), "--data", str(demo_ci)]
    assert main([*args, "--sets", "DIS-VD", "BIG", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "BIG" in printed and "DIS-VD" in printed and "s/image" in printed
    report = json.loads(out.read_text())
    assert set(report) == {"DIS-VD", "BIG", "all"}
    assert report["all"]["images"] == report["DIS-VD"]["images"] + report["BIG"]["images"]
    samples = [load_sample(r) for r in read_big(demo_ci, "big/test", require_coarse=True)]
    expected = pooled_iou([s.coarse for s in samples], [s.gt for s in samples])
    assert report["BIG"]["coarse_iou"] == pytest.approx(expected)
    assert report["BIG"]["seconds_per_image"] > 0
    assert main([*args, "--sets", "COCO"]) == 2


class _ScoredOracle(_Oracle):
    """Half harm, half help, and says so: an instance with an odd annotation id gets every
    other column cleared (score -0.5), one with an even id its ground truth (score +0.5)."""

    def refine_instances_detailed(self, image, coarses, keys):
        from segrefiner.inference.instance import FinishedInstances
        from segrefiner.inference.score import FEATURES

        by_id = {a.id: a for a in self.instances.annotations}
        masks, scores = [], []
        for coarse, key in zip(coarses, keys, strict=True):
            if key[1] % 2:
                harmed = coarse.copy()
                harmed[:, ::2] = False
                masks.append(harmed)
                scores.append(-0.5)
            else:
                masks.append(self.instances.annotation_mask(by_id[key[1]]))
                scores.append(0.5)
        n = len(masks)
        features = np.tile(np.arange(len(FEATURES), dtype=float), (n, 1))
        return FinishedInstances(np.stack(masks), np.array(scores), np.zeros(n, bool), features)


def test_guard_table_from_the_scores(root, tmp_path) -> None:
    ann = root / "annotations" / "real_eval.json"
    report = evaluate_refinement(
        ann, root / "images", _ScoredOracle(root), kinds=("official",), guards=(0.0, 0.9)
    )
    s = report.kinds["official"]
    odd = [r for r in report.rows if r.annotation_id % 2]
    assert 0 < len(odd) < len(report.rows)
    assert s.harmed == pytest.approx(len(odd) / len(report.rows))  # the harmed ones are the odd
    assert s.score_spearman is not None and s.score_spearman > 0.5  # score sorts them apart
    guarded = s.guarded["0"]
    assert guarded["harmed"] == 0.0 and guarded["kept_coarse"] == pytest.approx(s.harmed)
    # the guarded mean IoU is computed with the coarse mask for every guarded row
    want = np.mean([r.coarse["iou"] if r.annotation_id % 2 else r.refined["iou"]
                    for r in report.rows])  # fmt: skip
    assert guarded["iou"] == pytest.approx(want)
    assert guarded["gain_kept"] > 1.0  # the gain without the harm is larger than with it
    assert guarded["segm_ap"] >= s.refined["segm_ap"]
    everything = s.guarded["0.9"]  # every score is below 0.9: coarse everywhere
    assert everything["kept_coarse"] == 1.0 and everything["iou"] == pytest.approx(s.coarse["iou"])
    assert everything["segm_ap"] == pytest.approx(s.coarse["segm_ap"])
    assert "guard" in report.table() and "Spearman" in report.table()
    report.write_csv(tmp_path / "rows.csv")
    header, first = (tmp_path / "rows.csv").read_text().splitlines()[:2]
    assert "refine_score" in header.split(",") and "feature_uncertain" in header.split(",")
    assert first.split(",")[header.split(",").index("refine_score")] in ("0.500000", "-0.500000")


def test_calibration_fits_on_the_training_split_and_embeds(root, tmp_path, capsys) -> None:
    from segrefiner.checkpoint import save_checkpoint
    from segrefiner.inference.score import ScoreCalibration
    from segrefiner.model import DenoiseUNet, get_preset

    ckpt = tmp_path / "model.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        save_checkpoint(ckpt, DenoiseUNet(get_preset("tiny")), {"inference": {"model_size": 32}})
    out, embedded = tmp_path / "cal.json", tmp_path / "calibrated.pt"
    args = ["eval", "calibrate", "--checkpoint", str(ckpt), "--data", str(root)]
    args += ["--annotations", str(root / "annotations" / "real_eval.json"), "--seeds", "0", "1"]
    assert main([*args, "--out", str(out), "--embed", str(embedded)]) == 0
    printed = capsys.readouterr().out
    cal = ScoreCalibration.from_dict(json.loads(out.read_text()))
    # 4 instances x 3 kinds x 2 seeds, less the coarse masks too small to refine (no score)
    assert 12 < cal.fitted_on["rows"] <= 24 and cal.fitted_on["seeds"] == [0, 1]
    assert f"instance score calibration from {cal.fitted_on['rows']} instances" in printed
    refiner = Refiner.from_checkpoint(embedded)
    assert refiner.calibrations["instance"] == cal
    assert refiner.config.model_size == 32  # the other saved settings travel with it


def test_calibration_with_nothing_refined_is_a_clear_error(root, tmp_path) -> None:
    from segrefiner.checkpoint import save_checkpoint
    from segrefiner.evaluation import calibrate_score
    from segrefiner.model import build_unet

    ckpt = tmp_path / "passes_everything_through.pt"
    meta = {"inference": {"model_size": 32, "area_thr": 10**9}}  # every instance too small
    save_checkpoint(ckpt, build_unet("tiny", seed=0), meta)
    ann = root / "annotations" / "real_eval.json"
    with pytest.raises(InputError, match="no instance was refined; nothing to calibrate on"):
        calibrate_score(ckpt, root, seeds=(0,), kinds=("maskrcnn",), annotations=ann)

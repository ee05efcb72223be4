"""The main job: ``make demo`` (``python -m flows.demo``).

1. the demo data set under ``data/demo`` (generated once, reused after);
2. the demo checkpoint ``checkpoints/demo_lr_tiny.pt`` (trained first if it is missing);
3. the Prefect server, the MLflow server and the deployment runner on 127.0.0.1 (reused when
   they already run), with the deployments' data root set to the demo;
4. ``prefect deployment run refine-coco/demo --watch``: the demo segmentor's results refined
   with the demo checkpoint on a Dask LocalCluster, evaluated, logged to MLflow;
5. with the shipped HR model (``checkpoints/segrefiner_hr_real.pt``) present,
   ``refine-big/demo`` and ``refine-dis/demo`` the same way: the demo's BIG and DIS sets on the
   HR path (global pass + local patches);
6. the coarse vs refined tables (COCO, BIG, DIS) and the addresses of both UIs.

A second run reuses the data, the checkpoint, the services and the cached stage results.
``make stop`` (``python -m services down``) stops the services.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from flows.deployments import DEMO_ROOT
from flows.params import DEMO_CHECKPOINT, shipped_checkpoint
from pipelines.reports import format_table, metric_rows
from segrefiner.checkpoint import default_checkpoint_path
from segrefiner.io import read_json
from services.settings import load_settings
from services.supervisor import ServiceError, up

DEMO_DEPLOYMENT = "refine-coco/demo"
DEMO_REPORT = Path("runs/refine-coco/demo/latest/report/metrics.json")
# The HR demo deployments and their reports, run when the shipped HR model is there.
HR_DEMOS = {
    "refine-big/demo": Path("runs/refine-big/demo/latest/report/metrics.json"),
    "refine-dis/demo": Path("runs/refine-dis/demo/latest/report/metrics.json"),
}


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def prepare_inputs(root: Path) -> None:
    """The demo data set and checkpoint, made when missing."""
    from segrefiner.data.demo import generate_demo

    started = time.perf_counter()
    summary = generate_demo(root / DEMO_ROOT, seed=0)
    state = "reused" if summary.reused else f"generated in {time.perf_counter() - started:.0f} s"
    _say(f"demo data {root / DEMO_ROOT}: {state}")
    checkpoint = root / DEMO_CHECKPOINT
    if not checkpoint.is_file():
        from segrefiner.training.demo import ensure_demo_checkpoint

        _say(f"{checkpoint} is missing: training it on the demo data (a few minutes on a CPU)")
        ensure_demo_checkpoint(checkpoint, data_root=root / DEMO_ROOT)
    _say(f"demo checkpoint {checkpoint}")


def print_hr_outcome(report: Path) -> None:
    """The table of one HR demo deployment (pooled IoU and mBA per set)."""
    data = read_json(report)
    rows = metric_rows(data["table"])
    print()
    print(format_table(rows, f"{data['title']} (x100; delta = refined - coarse)"))
    summary = data["summary"]
    print(f"{summary['ok']} of {summary['samples']} images refined; report: {report.parent}")


def print_outcome(report: Path) -> None:
    data = read_json(report)
    rows = metric_rows(data["table"])
    headline = [r for r in rows if r.key.endswith(("_AP", "_APs", "_APm", "_APl"))] or rows
    print()
    print(format_table(headline, f"{data['title']} (x100; delta = refined - coarse)"))
    summary = data["summary"]
    print(
        f"\n{summary['detections']} detections on {summary['images']} images: "
        f"{summary['refined']} refined, {summary['passed_through']} passed through"
    )
    ap = next((r for r in rows if r.key.endswith("mask_AP")), None)
    if ap is not None and ap.delta is not None:
        verdict = "improved" if ap.delta > 0 else "did not improve"
        print(f"Refinement {verdict} {ap.label} by {100 * ap.delta:+.1f} points.")
    print(f"\nFull table and pictures: {report.parent}")


def print_services(report: Path, mlflow_url: str, prefect_url: str) -> None:
    """The UIs, with the COCO run named in MLflow."""
    data = read_json(report)
    print(f"\nPrefect UI: {prefect_url}")
    run_id = data.get("mlflow_run_id")
    print(f"MLflow UI:  {mlflow_url}" + (f"  (run {run_id})" if run_id else ""))


def main() -> int:
    os.environ.setdefault("SEGREFINER_DATA_ROOT", DEMO_ROOT)
    settings = load_settings()
    started = time.perf_counter()
    prepare_inputs(settings.root)
    try:
        up(settings, say=_say)
    except ServiceError as exc:
        print(f"[demo] error: {exc}", file=sys.stderr)
        return 1
    report = run_deployment(settings, DEMO_DEPLOYMENT, DEMO_REPORT)
    if report is None:
        return 1
    print_outcome(report)
    if not default_checkpoint_path("hr").is_file():
        print(f"\n[demo] BIG and DIS skipped: no HR model at {shipped_checkpoint('hr')}")
    else:
        for deployment, path in HR_DEMOS.items():
            hr_report = run_deployment(settings, deployment, path)
            if hr_report is None:
                return 1
            print_hr_outcome(hr_report)
    print_services(report, settings.mlflow_url, settings.prefect_url)
    _say(f"done in {time.perf_counter() - started:.0f} s; `make stop` stops the services")
    return 0


def run_deployment(settings, deployment: str, report: Path) -> Path | None:
    """``prefect deployment run <deployment> --watch``; the fresh report, or None (said why)."""
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "deployment", "run", deployment, "--watch"]
    _say(" ".join(["prefect", *command[1:]]))
    env = {**os.environ, **settings.env()}
    run_started = time.time()
    code = subprocess.call(command, cwd=settings.root, env=env)
    report = settings.root / report
    if code != 0 or not report.is_file() or report.stat().st_mtime < run_started:
        print(
            f"[demo] the {deployment} run did not finish (status {code}); logs: "
            f"{settings.log_dir / 'runner.log'} and the Prefect UI {settings.prefect_url}",
            file=sys.stderr,
        )
        return None
    return report


if __name__ == "__main__":
    sys.exit(main())

"""The main job: ``make demo`` (``python -m flows.demo``).

1. the demo data set under ``data/demo`` (generated once, reused after);
2. the demo checkpoint ``checkpoints/demo_lr_tiny.pt`` (trained first if it is missing);
3. the Prefect server, the MLflow server and the deployment runner on 127.0.0.1 (reused when
   they already run), with the deployments' data root set to the demo;
4. ``prefect deployment run refine-coco/demo --watch``: the demo segmentor's results refined
   with the demo checkpoint on a Dask LocalCluster, evaluated, logged to MLflow;
5. the coarse vs refined table and the addresses of both UIs.

A second run reuses the data, the checkpoint, the services and the cached stage results.
``make stop`` (``python -m flows.services down``) stops the services.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from flows.deployments import DEMO_ROOT
from flows.params import DEMO_CHECKPOINT
from flows.reports import MetricRow, format_table
from flows.services import ServiceError, up
from flows.settings import load_settings
from segrefiner.io import read_json

DEMO_DEPLOYMENT = "refine-coco/demo"
DEMO_REPORT = Path("runs/refine-coco/demo/latest/report/metrics.json")


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


def print_outcome(report: Path, mlflow_url: str, prefect_url: str) -> None:
    data = read_json(report)
    rows = [MetricRow(r["key"], r["metric"], r["coarse"], r["refined"]) for r in data["table"]]
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
    print(f"Prefect UI: {prefect_url}")
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
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "deployment", "run", DEMO_DEPLOYMENT, "--watch"]
    _say(" ".join(["prefect", *command[1:]]))
    env = {**os.environ, **settings.env()}
    run_started = time.time()
    code = subprocess.call(command, cwd=settings.root, env=env)
    report = settings.root / DEMO_REPORT
    if code != 0 or not report.is_file() or report.stat().st_mtime < run_started:
        print(
            f"[demo] the flow run did not finish (status {code}); logs: "
            f"{settings.log_dir / 'runner.log'} and the Prefect UI {settings.prefect_url}",
            file=sys.stderr,
        )
        return 1
    print_outcome(report, settings.mlflow_url, settings.prefect_url)
    _say(f"done in {time.perf_counter() - started:.0f} s; `make stop` stops the services")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The MLflow adapter: runs, params, metrics and artifacts, in one place.

Flows talk to MLflow only through this module and its two neighbours, :mod:`flows.checkpoints`
(checkpoints in the model registry: registering, the champion, specs such as
``models:/<name>@<alias>`` made concrete) and :mod:`flows.training_log` (the
training loop's :class:`segrefiner.training.callbacks.Callback` logging here). Everything goes
through an explicit :class:`mlflow.MlflowClient` and run ids, never MLflow's global "active
run", so several runs can be open in one process (the re-evaluation flow logs one run per item).

Conventions:

- experiments per task: ``refine-coco``, ``refine-big``, ``refine-dis``, ``train``;
- run names ``<dataset>/<segmentor>@<checkpoint short hash>`` so that MLflow's compare view
  lines up segmentors and checkpoints;
- tags: ``prefect.flow_run_id`` (and name, deployment), ``dataset``, ``segmentor``,
  ``checkpoint.sha256``, ``checkpoint.source``; a failed item has status FAILED and ``error``;
- metrics ``coarse/<name>``, ``refined/<name>``, ``delta/<name>`` (fractions, as the library
  reports them), training curves ``train/<name>`` per step;
- registered models ``segrefiner-lr`` / ``segrefiner-hr`` with the alias ``champion``.

The tracking URI is ``MLFLOW_TRACKING_URI`` (set for every spawned process by
:mod:`services.settings`), else the local server's address.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from segrefiner.config import flatten

log = logging.getLogger(__name__)

__all__ = [
    "CHAMPION",
    "NullRun",
    "TrackedRun",
    "Tracker",
    "prefect_tags",
    "run_name",
    "short_checkpoint",
    "tracked_run",
    "tracking_uri",
]

CHAMPION = "champion"
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"
_MAX_PARAM = 6000  # MLflow's limit on a param value
_PARAM_BATCH = 100
_METRIC_BATCH = 1000


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else the local tracking server of :mod:`services.settings`."""
    from services.settings import load_settings

    return os.environ.get("MLFLOW_TRACKING_URI") or load_settings().mlflow_url


def run_name(dataset: str, segmentor: str, checkpoint_sha: str | None) -> str:
    """``<dataset>/<segmentor>@<12 hex of the checkpoint hash>`` (or the preset's name)."""
    short = short_checkpoint(checkpoint_sha)
    return f"{dataset}/{segmentor}@{short}"


def short_checkpoint(checkpoint_sha: str | None) -> str:
    if not checkpoint_sha:
        return "unknown"
    kind, _, value = checkpoint_sha.partition(":")
    return value[:12] if kind == "sha256" else value or kind


def prefect_tags() -> dict[str, str]:
    """The current Prefect flow run's id, name and deployment (empty outside a flow run)."""
    try:
        from prefect.context import FlowRunContext
    except ImportError:  # pragma: no cover - flows always have prefect
        return {}
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return {}
    run = context.flow_run
    tags = {
        "prefect.flow_run_id": str(run.id),
        "prefect.flow_run_name": str(run.name),
        "prefect.flow_name": context.flow.name if context.flow else "",
    }
    if run.deployment_id:
        tags["prefect.deployment_id"] = str(run.deployment_id)
    return tags


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN is "undefined": left out


class TrackedRun:
    """An open MLflow run (see :meth:`Tracker.run`)."""

    def __init__(self, client: Any, run_id: str, experiment: str, name: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment = experiment
        self.name = name

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Flattened (``a.b``) params; values as text, cut to MLflow's limit."""
        from mlflow.entities import Param

        flat = flatten(dict(params))
        items = [Param(str(k), str(v)[:_MAX_PARAM]) for k, v in sorted(flat.items())]
        for start in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + _PARAM_BATCH])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numeric values (``None``/NaN/non-numbers left out)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(key, value, now, step or 0)
            for key, raw in sorted(metrics.items())
            if (value := _number(raw)) is not None
        ]
        for start in range(0, len(items), _METRIC_BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + _METRIC_BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(k), str(v)[:_MAX_PARAM]) for k, v in tags.items() if v is not None]
        if items:
            self.client.log_batch(self.run_id, tags=items)

    def note(self, markdown: str) -> None:
        """The run's description in the MLflow UI."""
        self.client.set_tag(self.run_id, "mlflow.note.content", markdown)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)


class Tracker:
    """Opens runs in per-task experiments; its client also reaches the model registry
    (:mod:`flows.checkpoints`).

    ``artifact_root`` is used for experiments created against a database URI (tests, a
    server-less setup); against a tracking server the server decides where artifacts go.
    """

    def __init__(self, uri: str | None = None, artifact_root: str | None = None) -> None:
        from mlflow import MlflowClient

        self.uri = uri or tracking_uri()
        self.artifact_root = artifact_root or os.environ.get("SEGREFINER_MLFLOW_ARTIFACT_ROOT")
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def experiment_id(self, name: str) -> str:
        """The experiment's id, created when missing, marked as model development so that the
        MLflow UI opens it on the runs table (metrics, compare) rather than the GenAI views."""
        found = self.client.get_experiment_by_name(name)
        if found is None:
            location = None
            if self.artifact_root and not self.uri.startswith(("http://", "https://")):
                location = Path(self.artifact_root, name).resolve().as_uri()
            try:
                self.client.create_experiment(name, artifact_location=location)
            except Exception:  # created meanwhile by a concurrent flow run
                pass
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise RuntimeError(f"MLflow experiment {name!r} could not be created")
        if found.tags.get(EXPERIMENT_KIND) != MODEL_DEVELOPMENT:
            self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND, MODEL_DEVELOPMENT)
        return found.experiment_id

    @contextmanager
    def run(
        self,
        experiment: str,
        name: str,
        *,
        tags: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Iterator[TrackedRun]:
        """An MLflow run: FINISHED when the block ends, FAILED (tag ``error``) when it raises."""
        all_tags = {**prefect_tags(), **(tags or {})}
        created = self.client.create_run(
            self.experiment_id(experiment),
            run_name=name,
            tags={k: str(v) for k, v in all_tags.items() if v is not None},
        )
        run = TrackedRun(self.client, created.info.run_id, experiment, name)
        if params:
            run.log_params(params)
        try:
            yield run
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
            try:
                run.set_tags({"error": message})
                self.client.set_terminated(run.run_id, "FAILED")
            except Exception:  # the original error matters more than a tracking hiccup
                log.exception("could not mark MLflow run %s failed", run.run_id)
            raise
        self.client.set_terminated(run.run_id, "FINISHED")


class NullRun:
    """Stands in for :class:`TrackedRun` when tracking is off: every call does nothing."""

    run_id: str | None = None
    experiment = name = ""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@contextmanager
def tracked_run(
    enabled: bool,
    experiment: str,
    name: str,
    *,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    tracker: Tracker | None = None,
) -> Iterator[TrackedRun | NullRun]:
    """:meth:`Tracker.run` when ``enabled``, else a :class:`NullRun`."""
    if not enabled:
        yield NullRun()
        return
    with (tracker or Tracker()).run(experiment, name, tags=tags, params=params) as run:
        yield run

"""What every flow shares: mapping a stage's shard task over the Dask cluster with progress in
the Prefect UI, publishing the final table, and resolving paths.

A stage's shard task is one Prefect task per (stage x shard); its progress artifact goes from 0
to 100 when the shard ends, and the flow keeps one progress artifact for the whole stage that
moves as shards complete (in completion order, not submission order).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task, unmapped
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.logging import get_run_logger

from flows.caching import keyed
from flows.cluster import gpu_annotation, map_tasks
from pipelines.reports import MetricRow, markdown_table
from pipelines.sharding import Shard, ShardsFailedError
from pipelines.stage import Stage

__all__ = [
    "StageTasks",
    "absolute",
    "artifact_key",
    "map_shards",
    "publish_metrics",
    "shard_progress",
    "stage_tasks",
]

log = logging.getLogger(__name__)


def absolute(path: str | os.PathLike) -> str:
    """``path`` resolved against the working directory (Dask workers get absolute paths)."""
    return str(Path(path).expanduser().resolve())


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only)."""
    text = "-".join(parts).lower()
    cleaned = "".join(c if c.isalnum() and c.isascii() else "-" for c in text)
    return "-".join(p for p in cleaned.split("-") if p)


@contextlib.contextmanager
def shard_progress(stage: str, index: int, size: int) -> Iterator[None]:
    """Inside a shard task: a progress artifact at 0 %, 100 % when the shard succeeds."""
    artifact = create_progress_artifact(0.0, description=f"{stage}: shard {index} ({size} items)")
    yield
    update_progress_artifact(artifact, 100.0, description=f"{stage}: shard {index} done")


def _completion_order(futures: Sequence[Any]) -> Iterator[Any]:
    wrapped = [getattr(f, "wrapped_future", None) for f in futures]
    if all(w is not None for w in wrapped):  # Dask futures: as they finish
        from distributed import as_completed

        by_key = {w.key: f for w, f in zip(wrapped, futures)}
        # prefect-dask's client is not the default one: name its event loop.
        for done in as_completed(wrapped, loop=wrapped[0].client.loop):
            yield by_key[done.key]
        return
    for future in futures:  # other runners: in order
        future.wait()
        yield future


def map_shards(
    task: Any,
    shards: Sequence[Any],
    common: dict[str, Any],
    *,
    stage: str,
    device: str = "cpu",
) -> list[Any]:
    """Run ``task(shard=s, **common)`` for every shard on the flow run's cluster
    (:func:`flows.cluster.on_cluster`; the flow's own runner outside it).

    GPU stages (``device`` CUDA) ask Dask for a ``GPU`` resource per shard. Returns the shard
    records in shard order. Raises :class:`ShardsFailedError` after every shard has ended when
    some failed (the others' work is kept; a re-run does only the failed ones).
    """
    logger = get_run_logger()
    if not shards:
        return []
    with gpu_annotation(device):
        futures = map_tasks(task, shard=list(shards), **{k: unmapped(v) for k, v in common.items()})
    progress = create_progress_artifact(
        0.0,
        key=artifact_key(stage, "progress"),
        description=f"{stage}: 0/{len(shards)} shards",
    )
    records: dict[int, Any] = {}
    failures: dict[int, str] = {}
    index_of = {id(f): i for i, f in enumerate(futures)}
    for done, future in enumerate(_completion_order(futures), start=1):
        i = index_of[id(future)]
        future.wait()  # already done: this only takes its final state
        state = future.state
        if state.is_completed():
            records[i] = future.result()
        else:
            try:
                future.result()
                message = f"shard ended in state {state.name}"
            except BaseException as exc:  # the shard's own error, reported with the others
                message = f"{type(exc).__name__}: {exc}"
            failures[getattr(shards[i], "index", i)] = message
            logger.error("%s: shard %d failed: %s", stage, i, message)
        update_progress_artifact(
            progress,
            100.0 * done / len(shards),
            description=f"{stage}: {done}/{len(shards)} shards ({len(failures)} failed)",
        )
    if failures:
        raise ShardsFailedError(failures)
    return [records[i] for i in range(len(shards))]


@dataclass(frozen=True)
class StageTasks:
    """The Prefect tasks of one :class:`~pipelines.stage.Stage` (see :func:`stage_tasks`)."""

    stage: Stage
    prepare: Any  # (work_dir, config, num_shards, content_key, inputs) -> list[Shard]
    shard: Any  # (work_dir, config, shard, content_key) -> record; mapped by map_shards
    finalize: Any  # (work_dir, content_key, outputs) -> summary

    def key(self, config: Any, num_shards: int | None, inputs: dict[str, Any]) -> str:
        """The run's content key (the stage's fingerprint), which the tasks are cached on."""
        return self.stage.fingerprint(config, num_shards, **inputs)  # type: ignore[misc]

    def run_prepare(
        self, work_dir: str, config: Any, num_shards: int | None, content_key: str,
        inputs: dict[str, Any], refresh: bool = False,
    ) -> list[Shard]:  # fmt: skip
        """``prepare`` from the cache while the work folder is planned; otherwise (or with
        ``refresh``) it runs and its result is cached for the next run."""
        fresh = refresh or not self.stage.planned(work_dir)
        task = self.prepare.with_options(refresh_cache=True) if fresh else self.prepare
        return task(work_dir, config, num_shards, content_key, inputs)

    def run_shards(
        self, shards: Sequence[Shard], work_dir: str, config: Any, content_key: str,
        refresh: bool = False, *, stage: str, device: str = "cpu",
    ) -> list[Any]:  # fmt: skip
        """The shard task over every shard (:func:`map_shards`); ``refresh`` ignores the cache."""
        task = self.shard.with_options(refresh_cache=True) if refresh else self.shard
        common = {"work_dir": work_dir, "config": config, "content_key": content_key}
        return map_shards(task, shards, common, stage=stage, device=device)

    def run_finalize(
        self, work_dir: str, content_key: str, outputs: dict[str, Any], refresh: bool = False
    ) -> dict[str, Any]:
        """``finalize`` from the cache while its product is there; otherwise (or with
        ``refresh``) it runs and its result is cached for the next run."""
        finalized = self.stage.finalized
        fresh = refresh or finalized is None or not finalized(work_dir, **outputs)
        task = self.finalize.with_options(refresh_cache=True) if fresh else self.finalize
        return task(work_dir, content_key, outputs)


def stage_tasks(stage: Stage) -> StageTasks:
    """The three tasks of any stage, ``prepare-<name>``, ``<name>-shard`` (one retry) and
    ``finalize-<name>``, cached on the run's ``content_key`` (:mod:`flows.caching`). A cached
    result is used only while its product is on disk: :meth:`StageTasks.run_prepare` and
    :meth:`StageTasks.run_finalize` refresh the cache when the planned work folder or the
    finalized product is missing, and a shard's key is given only while its completion record
    is there (a shard the stage finds complete returns at once; the next run takes it from the
    cache). A stage without ``finalized`` finalizes every time."""

    def prepare(
        work_dir: str, config: Any, num_shards: int | None, content_key: str, inputs: dict
    ) -> list[Shard]:
        return stage.prepare(work_dir=work_dir, config=config, num_shards=num_shards, **inputs)

    def shard(work_dir: str, config: Any, shard: Shard, content_key: str) -> Any:
        with shard_progress(stage.name, shard.index, len(shard)):
            return stage.run_shard(work_dir, config, shard)

    def finalize(work_dir: str, content_key: str, outputs: dict) -> dict[str, Any]:
        return stage.finalize(work_dir, **outputs)

    return StageTasks(
        stage,
        task(
            prepare,
            name=f"prepare-{stage.name}",
            persist_result=True,
            cache_key_fn=keyed("work_dir", "num_shards"),
        ),
        task(
            shard,
            name=f"{stage.name}-shard",
            persist_result=True,
            retries=1,
            cache_key_fn=keyed(
                "work_dir", "shard", exists=lambda p: stage.shard_done(p["work_dir"], p["shard"])
            ),
        ),
        task(
            finalize,
            name=f"finalize-{stage.name}",
            persist_result=True,
            cache_key_fn=None if stage.finalized is None else keyed("work_dir", "outputs"),
        ),
    )


def publish_metrics(rows: Sequence[MetricRow], *, stage: str, title: str) -> None:
    """The coarse-vs-refined table as a Prefect table artifact and a Markdown artifact."""
    if not rows:
        return
    create_table_artifact(
        [r.as_dict() for r in rows],
        key=artifact_key(stage, "metrics"),
        description=title,
    )
    create_markdown_artifact(
        f"## {title}\n\nValues x100 (AP, IoU, mBA); delta = refined - coarse.\n\n"
        + markdown_table(rows),
        key=artifact_key(stage, "report"),
        description=title,
    )


ARTIFACT_FILE_LIMIT = 64 * 1024 * 1024  # larger refined outputs are referenced, not uploaded


def log_outcome(
    run: Any,
    table: Sequence[MetricRow],
    *,
    report_dir: str | os.PathLike,
    output: str | os.PathLike,
    summary: dict[str, Any],
    title: str,
) -> None:
    """Metrics, the report folder and the refined output (or its path) to the MLflow run; the
    table to the run's description."""
    from pipelines.reports import metrics_for_tracking

    run.log_metrics(metrics_for_tracking(table))
    run.log_metrics({f"stage/{k}": v for k, v in summary.items() if isinstance(v, int | float)})
    for entry in sorted(Path(report_dir).iterdir()):  # not the stages' hidden state
        if not entry.name.startswith("."):
            run.log_artifact(entry, "report" if entry.is_file() else f"report/{entry.name}")
    output = Path(output)
    run.set_tags({"output": str(output)})
    if output.is_file() and output.stat().st_size <= ARTIFACT_FILE_LIMIT:
        run.log_artifact(output, "refined")
    run.note(f"### {title}\n\nValues x100; delta = refined - coarse.\n\n{markdown_table(table)}")

"""BIG and DIS-5K, the Prefect wiring: the HR refinement stage (:mod:`pipelines.refine_hr`)
and the evaluate-hr stage (pooled IoU and mBA per DIS set, and the report:
:mod:`pipelines.evaluate_stage`) as cached tasks.

Output folder of one run (``<output_dir>/<content key>/``, ``<output_dir>/latest`` links to
the most recent)::

    masks/                     refined masks, official names (BIG <name>_refine.png,
                               DIS <set>/<name>.png)
    work/                      the stage's work directory
    report/metrics.json, per_image.csv, gallery.png, before_after.png
    report/.evaluate/          the evaluate-hr stage's plan and shard records
"""

from __future__ import annotations

from typing import Any

from prefect import task

from flows.tasks import stage_tasks
from pipelines.evaluate_stage import EVALUATE_HR
from pipelines.refine_hr import REFINE_HR, list_samples
from segrefiner.data.folders import SampleRecord

__all__ = ["EVAL_TASKS", "TASKS", "list_records"]


@task(name="list-samples")
def list_records(params: Any, data_root: str) -> list[SampleRecord]:
    """The dataset's samples: BIG ``params.folder``, DIS ``params.sets`` with coarse masks of
    ``params.segmentor``."""
    if params.dataset_kind == "big":
        return list_samples("big", data_root, folder=params.folder)
    sets = tuple(params.sets) if params.sets else None
    return list_samples("dis", data_root, sets=sets, segmentor=params.segmentor)


# prepare-refine-hr, refine-hr-shard, finalize-refine-hr
TASKS = stage_tasks(REFINE_HR)
# prepare-evaluate-hr, evaluate-hr-shard (one per BIG folder / DIS set), finalize-evaluate-hr
EVAL_TASKS = stage_tasks(EVALUATE_HR)

"""COCO-format instance results, the Prefect wiring: the refine-coco stage
(:mod:`pipelines.refine_coco`) and the evaluate-coco stage (mask AP and boundary AP, coarse vs
refined, and the report: :mod:`pipelines.evaluate_stage`) as cached tasks.

Output folder of one run (``<output_dir>/<content key>/``, ``<output_dir>/latest`` links to
the most recent)::

    refined.segm.json          the refined results (input order, same fields, refined masks)
    work/                      the stage's work directory (zarr store, shard inputs and parts)
    report/metrics.json        the table, the summary, the checkpoint and where it came from
    report/.evaluate/          the evaluate-coco stage's plan and shard records
    report/per_instance.csv    per detection: matched ground truth, coarse/refined IoU, boundary IoU
    report/gallery.png         the most changed detections: coarse / refined / ground truth
    report/before_after.png    metric bars and per-detection coarse vs refined IoU
"""

from __future__ import annotations

from flows.tasks import stage_tasks
from pipelines.evaluate_stage import EVALUATE_COCO
from pipelines.refine_coco import REFINE_COCO

__all__ = ["EVAL_TASKS", "TASKS"]


# prepare-refine-coco, refine-coco-shard, finalize-refine-coco
TASKS = stage_tasks(REFINE_COCO)
# prepare-evaluate-coco, evaluate-coco-shard (one per ground truth, one for the per-detection
# rows), finalize-evaluate-coco (the CSV and pictures)
EVAL_TASKS = stage_tasks(EVALUATE_COCO)

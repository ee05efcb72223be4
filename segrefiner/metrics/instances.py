"""Mask AP and boundary AP of instance segmentation results (COCO or LVIS protocol).

``instance_ap(gt, results, iou_type, api)`` returns a dict of AP values as **fractions** in
[0, 1], as pycocotools reports them (the paper's tables print them x100; the CLI does too). A
value is ``None`` where it is undefined (pycocotools' -1: no ground truth in that area range or
frequency group), so it cannot be averaged by mistake.

- ``api="coco"``: pycocotools ``COCOeval`` (100 detections per image and category, areas
  small < 32² <= medium < 96² <= large). Keys ``AP AP50 AP75 APs APm APl``.
- ``api="lvis"``: the ``lvis`` package's ``LVISEval`` with its federated rules: at most 300
  detections per image (highest scores), detections of a category neither annotated nor listed
  in the image's ``neg_category_ids`` are ignored, unmatched detections of a category in
  ``not_exhaustive_category_ids`` are not false positives. Adds ``APr APc APf``. The annotation
  file needs LVIS' fields (``neg_category_ids``, ``not_exhaustive_category_ids`` on images,
  ``frequency`` on categories).
- ``iou_type="boundary"``: boundary AP (see :mod:`segrefiner.metrics.evaluators`).

Inputs are checked before evaluation. A result with an unknown image or category id, a
malformed RLE/polygon, a bad score or box is an :class:`InputError` naming it; with
``strict=False`` such results are skipped instead and counted in the report. (The official
``eval_json.py`` silently drops detections whose image or category is not in the annotation
file, e.g. COCO categories absent from the cocofied LVIS val; ``strict=False`` does the same
but says how many.) An empty result set is an error when strict; otherwise it is evaluated as
"no detections" (AP 0).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from segrefiner.errors import InputError
from segrefiner.io import read_json
from segrefiner.metrics._parallel import TaskRunner, chunked
from segrefiner.metrics.boundary import DILATION_RATIO
from segrefiner.metrics.evaluators import BandCache, BoundaryCOCOeval, lvis_evaluator_class
from segrefiner.rle import to_rle

IouType = Literal["segm", "boundary"]
Api = Literal["coco", "lvis"]

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
LVIS_KEYS = (*COCO_KEYS, "APr", "APc", "APf")
LVIS_MAX_DETS = 300
_EXAMPLES = 5

log = logging.getLogger(__name__)


@dataclass
class InstanceEvalReport:
    """What :func:`evaluate_instances` measured and what it left out.

    ``metrics``: AP values (fractions in [0, 1], ``None`` if undefined). ``num_detections``:
    detections evaluated (LVIS may further drop all but the 300 best per image).
    ``skipped``: reason -> number of results left out (``strict=False`` only), with up to five
    ``skipped_examples`` messages.
    """

    iou_type: str
    api: str
    metrics: dict[str, float | None]
    num_images: int
    num_detections: int
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "iou_type": self.iou_type,
            "api": self.api,
            "metrics": dict(self.metrics),
            "num_images": self.num_images,
            "num_detections": self.num_detections,
            "skipped": dict(self.skipped),
            "skipped_examples": list(self.skipped_examples),
        }


def instance_ap(
    gt: str | os.PathLike | dict[str, Any],
    results: str | os.PathLike | list[dict[str, Any]],
    iou_type: IouType = "segm",
    api: Api = "coco",
    **options: Any,
) -> dict[str, float | None]:
    """AP values of ``results`` against ``gt`` (see the module docstring).

    ``gt``: annotation file path or loaded dict. ``results``: results file path or list of
    ``{"image_id", "category_id", "score", "segmentation"[, "bbox" XYWH]}``. ``options`` go to
    :func:`evaluate_instances` (``strict``, ``workers``, ``client``, ``band_cache``,
    ``dilation_ratio``). Skipped results (``strict=False``) are logged as a warning; use
    :func:`evaluate_instances` to get them in the report.
    """
    report = evaluate_instances(gt, results, iou_type, api, **options)
    if report.skipped:
        log.warning("skipped results: %s", report.skipped)
    return report.metrics


def evaluate_instances(
    gt: str | os.PathLike | dict[str, Any],
    results: str | os.PathLike | list[dict[str, Any]],
    iou_type: IouType = "segm",
    api: Api = "coco",
    *,
    strict: bool = True,
    workers: int = 1,
    client: Any = None,
    band_cache: BandCache | None = None,
    dilation_ratio: float = DILATION_RATIO,
) -> InstanceEvalReport:
    """Evaluate instance masks; see the module docstring for the protocol and the checks.

    ``workers`` local processes (or a Dask ``client``) share the boundary-band work;
    ``band_cache`` keeps ground-truth bands between calls on the same annotations.
    """
    if iou_type not in ("segm", "boundary"):
        raise InputError(f"iou_type must be 'segm' or 'boundary', got {iou_type!r}")
    if api not in ("coco", "lvis"):
        raise InputError(f"api must be 'coco' or 'lvis', got {api!r}")
    if band_cache is None:
        band_cache = BandCache(dilation_ratio)
    elif band_cache.dilation_ratio != float(dilation_ratio):
        raise InputError(
            f"band_cache was built for dilation ratio {band_cache.dilation_ratio}, "
            f"not {dilation_ratio}"
        )

    with TaskRunner(workers, client) as runner:
        dataset = load_annotations(gt, lvis=api == "lvis")
        detections, skipped, examples = check_results(results, dataset, strict, runner)
        if not detections and strict:
            raise InputError(f"{_name(results)}: no detections to evaluate")
        run = _run_coco if api == "coco" else _run_lvis
        metrics = run(dataset, detections, iou_type, band_cache, runner)
    return InstanceEvalReport(
        iou_type=iou_type,
        api=api,
        metrics=metrics,
        num_images=len(dataset["images"]),
        num_detections=len(detections),
        skipped=dict(skipped),
        skipped_examples=examples,
    )


# --- loading and checking ---------------------------------------------------------------------


def _name(source: Any) -> str:
    return str(source) if isinstance(source, str | os.PathLike) else "results"


def load_annotations(gt: str | os.PathLike | dict[str, Any], lvis: bool = False) -> dict[str, Any]:
    """Read and check a COCO/LVIS annotation file (or a loaded dict, which is copied).

    Errors name the file and the entry. Annotations without ``iscrowd`` are taken as non-crowd.
    """
    name = str(gt) if isinstance(gt, str | os.PathLike) else "annotations"
    dataset = read_json(gt) if isinstance(gt, str | os.PathLike) else copy.deepcopy(gt)
    if not isinstance(dataset, dict):
        raise InputError(f"{name}: expected a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise InputError(f"{name}: missing list '{key}'")
    images: dict[Any, tuple[int, int]] = {}
    for k, img in enumerate(dataset["images"]):
        where = f"{name}: images[{k}]"
        if not isinstance(img, dict) or "id" not in img:
            raise InputError(f"{where}: needs an 'id'")
        h, w = img.get("height"), img.get("width")
        if not (_is_int(h) and _is_int(w) and h > 0 and w > 0):
            raise InputError(f"{where} (id {img['id']}): needs positive integer height and width")
        if img["id"] in images:
            raise InputError(f"{where}: duplicate image id {img['id']}")
        images[img["id"]] = (int(h), int(w))
        if lvis:
            for key in ("neg_category_ids", "not_exhaustive_category_ids"):
                if not isinstance(img.get(key), list):
                    raise InputError(
                        f"{where} (id {img['id']}): LVIS evaluation needs '{key}' on every image"
                    )
    categories = set()
    for k, cat in enumerate(dataset["categories"]):
        if not isinstance(cat, dict) or "id" not in cat:
            raise InputError(f"{name}: categories[{k}] needs an 'id'")
        if cat["id"] in categories:
            raise InputError(f"{name}: categories[{k}]: duplicate category id {cat['id']}")
        categories.add(cat["id"])
        if lvis and cat.get("frequency") not in ("r", "c", "f"):
            raise InputError(
                f"{name}: categories[{k}] (id {cat['id']}): LVIS evaluation needs 'frequency' "
                "r, c or f"
            )
    ann_ids = set()
    for k, ann in enumerate(dataset["annotations"]):
        where = f"{name}: annotations[{k}]"
        if not isinstance(ann, dict):
            raise InputError(f"{where}: not an object")
        for key in ("id", "image_id", "category_id", "segmentation", "area"):
            if key not in ann:
                raise InputError(f"{where}: missing '{key}'")
        if ann["id"] in ann_ids:
            raise InputError(f"{where}: duplicate annotation id {ann['id']}")
        ann_ids.add(ann["id"])
        if ann["image_id"] not in images:
            raise InputError(f"{where} (id {ann['id']}): unknown image_id {ann['image_id']}")
        if ann["category_id"] not in categories:
            raise InputError(f"{where} (id {ann['id']}): unknown category_id {ann['category_id']}")
        if not _is_number(ann["area"]):
            raise InputError(f"{where} (id {ann['id']}): 'area' must be a number")
        _check_gt_segmentation(
            ann["segmentation"], *images[ann["image_id"]], f"{where} (id {ann['id']})"
        )
        ann.setdefault("iscrowd", 0)
    return dataset


def _check_gt_segmentation(segm: Any, height: int, width: int, where: str) -> None:
    if isinstance(segm, dict):
        to_rle(segm, height, width, where)  # validates size and counts
        return
    # Polygons: only the structure is checked; the official annotations contain a few
    # degenerate ones that pycocotools rasterises without complaint.
    if not (isinstance(segm, list) and segm and all(isinstance(p, list) for p in segm)):
        raise InputError(f"{where}: segmentation must be an RLE object or a list of polygons")
    for poly in segm:
        if len(poly) % 2 or not all(_is_number(v) for v in poly):
            raise InputError(f"{where}: a polygon must be a flat list of x, y numbers")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_results(
    results: str | os.PathLike | list[dict[str, Any]],
    dataset: dict[str, Any],
    strict: bool = True,
    runner: TaskRunner | None = None,
) -> tuple[list[dict[str, Any]], Counter, list[str]]:
    """Check results against the annotations and return normalised copies.

    Each kept result has ``image_id``, ``category_id``, a float ``score``, ``segmentation`` as
    compressed RLE (``counts`` str) and, if it had one, ``bbox`` (XYWH, 4 numbers). Returns
    ``(kept, skipped counts by reason, example messages)``; with ``strict`` the first problem
    (in file order) raises :class:`InputError` instead. ``runner`` may spread the checks, which
    decode every RLE, over processes.
    """
    name = _name(results)
    items = read_json(results) if isinstance(results, str | os.PathLike) else results
    if not isinstance(items, list):
        raise InputError(f"{name}: expected a JSON list of detections")
    with_box = sum(1 for it in items if isinstance(it, dict) and "bbox" in it)
    if 0 < with_box < len(items):
        # pycocotools and lvis decide box vs mask areas from the first result only.
        raise InputError(
            f"{name}: {with_box} of {len(items)} detections have a 'bbox' and the others do "
            "not; give it for all of them or for none"
        )
    sizes = {img["id"]: (int(img["height"]), int(img["width"])) for img in dataset["images"]}
    categories = {cat["id"] for cat in dataset["categories"]}
    runner = runner if runner is not None else TaskRunner()
    parts = chunked(range(len(items)), 4 * runner.slots if runner.parallel else 1)
    tasks = [(name, p[0], items[p[0] : p[-1] + 1], sizes, categories) for p in parts]
    kept: list[dict[str, Any]] = []
    skipped: Counter = Counter()
    examples: list[str] = []
    for checked in runner.map(_check_chunk, tasks):
        for entry in checked:
            if isinstance(entry, dict):
                kept.append(entry)
                continue
            reason, message = entry
            if strict:
                raise InputError(message)  # chunks come back in order: this is the first
            skipped[reason] += 1
            if len(examples) < _EXAMPLES:
                examples.append(message)
    return kept, skipped, examples


def _check_chunk(task: tuple) -> list[dict[str, Any] | tuple[str, str]]:
    """Check ``items[offset:]``: a normalised result, or ``(reason, message)``, per item."""
    name, offset, items, sizes, categories = task
    out: list[dict[str, Any] | tuple[str, str]] = []
    for k, item in enumerate(items, start=offset):
        try:
            out.append(_check_result(item, f"{name}[{k}]", sizes, categories))
        except _Skip as skip:
            out.append((skip.reason, str(skip)))
    return out


class _Skip(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _check_result(
    item: Any, where: str, sizes: dict[Any, tuple[int, int]], categories: set[Any]
) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _Skip("malformed", f"{where}: a detection must be an object")
    for key in ("image_id", "category_id", "score", "segmentation"):
        if key not in item:
            raise _Skip("malformed", f"{where}: missing '{key}'")
    image_id, category_id = item["image_id"], item["category_id"]
    if image_id not in sizes:
        raise _Skip("unknown_image_id", f"{where}: image_id {image_id} is not in the annotations")
    if category_id not in categories:
        raise _Skip(
            "unknown_category_id", f"{where}: category_id {category_id} is not in the annotations"
        )
    if not _is_number(item["score"]):
        raise _Skip("bad_score", f"{where}: score must be a finite number, got {item['score']!r}")
    height, width = sizes[image_id]
    try:
        rle = to_rle(item["segmentation"], height, width, where)
    except InputError as exc:
        raise _Skip("malformed_segmentation", str(exc)) from None
    out = {
        "image_id": image_id,
        "category_id": category_id,
        "score": float(item["score"]),
        "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
    }
    if "bbox" in item:
        box = item["bbox"]
        if not (
            isinstance(box, list | tuple) and len(box) == 4 and all(_is_number(v) for v in box)
        ):
            raise _Skip("bad_bbox", f"{where}: bbox must be 4 numbers [x, y, w, h]")
        out["bbox"] = [float(v) for v in box]
    return out


# --- running the evaluators -------------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    """Silence the libraries' progress prints, lvis' "assuming results are correct" warning
    (they were checked above) and their deprecated ``logger.warn`` calls."""
    loggers = [logging.getLogger(name) for name in ("lvis.lvis", "lvis.results", "lvis.eval")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _fraction(value: float) -> float | None:
    value = float(value)
    return None if value < 0 else value


def _run_coco(
    dataset: dict[str, Any],
    detections: list[dict[str, Any]],
    iou_type: str,
    band_cache: BandCache,
    runner: TaskRunner,
) -> dict[str, float | None]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with _quiet():
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        if detections:
            coco_dt = coco_gt.loadRes(detections)
        else:
            coco_dt = COCO()
            coco_dt.dataset = {
                "images": list(dataset["images"]),
                "categories": copy.deepcopy(dataset["categories"]),
                "annotations": [],
            }
            coco_dt.createIndex()
        if iou_type == "boundary":
            evaluator = BoundaryCOCOeval(coco_gt, coco_dt, band_cache, runner)
        else:
            evaluator = COCOeval(coco_gt, coco_dt, iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {key: _fraction(v) for key, v in zip(COCO_KEYS, evaluator.stats[:6])}


def _run_lvis(
    dataset: dict[str, Any],
    detections: list[dict[str, Any]],
    iou_type: str,
    band_cache: BandCache,
    runner: TaskRunner,
) -> dict[str, float | None]:
    try:
        from lvis.lvis import LVIS
        from lvis.results import LVISResults
    except ImportError as exc:  # optional dependency
        raise InputError(f"LVIS evaluation needs the 'lvis' package ({exc})") from None

    with _quiet():
        lvis_gt = LVIS.__new__(LVIS)  # LVIS() only reads files; fill it from the checked dict
        lvis_gt.logger = logging.getLogger("lvis.lvis")
        lvis_gt.dataset = dataset
        lvis_gt._create_index()
        if detections:
            lvis_dt = LVISResults(lvis_gt, detections, max_dets=LVIS_MAX_DETS)
        else:
            lvis_dt = LVISResults.__new__(LVISResults)
            lvis_dt.logger = logging.getLogger("lvis.results")
            lvis_dt.dataset = {**copy.deepcopy(dataset), "annotations": []}
            lvis_dt._create_index()
        evaluator = lvis_evaluator_class()(lvis_gt, lvis_dt, iou_type, band_cache, runner)
        evaluator.run()
    return {key: _fraction(evaluator.results[key]) for key in LVIS_KEYS}

"""``segrefiner eval``: mask AP / boundary AP of instance results, IoU / mBA of mask folders.

  segrefiner eval coco --gt ANN.json --results RES.json [--iou-type segm boundary] [--lvis]
  segrefiner eval masks --gt DIR --pred DIR [--coarse DIR] [--naming plain|big] [--list FILE]
  segrefiner eval dis --gt-root data/dis --pred-root OUT [--coarse-root data/dis/coarse/isnet]
  segrefiner eval real [--checkpoint CKPT | --coarse-only] [--mode instance|semantic] [--kinds ...]
  segrefiner eval hr-demo [--checkpoint CKPT] [--data data/demo] [--sets DIS-VD DIS-TE1 BIG]
  segrefiner eval calibrate --checkpoint CKPT [--mode instance|semantic] [--out CAL.json]
                            [--embed OUT.pt]

Tables print values x100 (AP with one decimal, IoU/mBA with two, as the papers do); the
--json/--csv files keep fractions in [0, 1] and are written atomically. n/a marks a value that
is undefined (e.g. no ground truth in an area range).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from segrefiner.cli.argtypes import add_command_group, non_negative_int, positive_int
from segrefiner.io import write_json


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_command_group(
        subparsers,
        "eval",
        __doc__,
        "evaluate results: COCO/LVIS mask and boundary AP, or IoU/mBA of mask folders",
        dest="eval_command",
        metavar="KIND",
    )

    coco = sub.add_parser("coco", help="mask AP / boundary AP of instance results (COCO or LVIS)")
    coco.add_argument("--gt", type=Path, required=True, help="annotation file (COCO/LVIS JSON)")
    coco.add_argument("--results", type=Path, required=True, help="results file (JSON list)")
    coco.add_argument(
        "--iou-type",
        nargs="+",
        choices=["segm", "boundary"],
        default=["segm"],
        help="segm (mask AP) and/or boundary (boundary AP); default segm",
    )
    coco.add_argument(
        "--lvis", action="store_true", help="LVIS protocol (federated, 300 detections per image)"
    )
    _common(coco)
    coco.set_defaults(func=run_coco)

    masks = sub.add_parser("masks", help="pooled IoU and mBA of a folder of masks")
    masks.add_argument("--gt", type=Path, required=True, help="ground-truth mask folder")
    masks.add_argument("--pred", type=Path, required=True, help="refined (predicted) mask folder")
    masks.add_argument("--coarse", type=Path, help="coarse mask folder, to report deltas")
    masks.add_argument(
        "--naming",
        choices=["plain", "big"],
        default="plain",
        help="plain: same file names; big: *_gt.png / *_refine.png / *_seg.png",
    )
    masks.add_argument("--list", type=Path, help="file listing the ground-truth names to use")
    masks.add_argument("--csv", type=Path, help="write per-image rows to this CSV file")
    _common(masks)
    masks.set_defaults(func=run_masks)

    dis = sub.add_parser("dis", help="IoU and mBA of DIS-5K, one block per split")
    dis.add_argument("--gt-root", type=Path, required=True, help="folder with <split>/gt")
    dis.add_argument("--pred-root", type=Path, required=True, help="folder with <split>/*.png")
    dis.add_argument("--coarse-root", type=Path, help="folder with <split>/*.png coarse masks")
    dis.add_argument(
        "--splits", nargs="+", help="splits (default: those of DIS-VD, DIS-TE1..TE4 present)"
    )
    _common(dis)
    dis.set_defaults(func=run_dis)

    real = sub.add_parser(
        "real",
        help="coarse vs refined on the real-photo evaluation split, per coarse kind",
        description="Refine segmentor-like coarse masks (maskrcnn, lowres, official) of every "
        "instance of the real-photo evaluation split (`segrefiner data real`) on the instance "
        "path and report, per kind, mean IoU, boundary IoU and boundary accuracy (mBA term), "
        "mask AP and boundary AP, coarse vs refined, and the fraction of instances harmed / "
        "helped by more than 2 IoU points. --mode semantic refines each instance's whole-image "
        "mask on the HR path (global pass + local patches) instead, and adds the pooled IoU. "
        "Without --checkpoint the shipped default model of the mode is used (LR for instance, "
        "HR for semantic).",
    )
    real.add_argument("--checkpoint", help="checkpoint file or preset (default: the shipped LR)")
    real.add_argument(
        "--coarse-only", action="store_true", help="measure the coarse masks alone (no model)"
    )
    real.add_argument("--data", type=Path, default=Path("data/real"), help="real-photo data root")
    real.add_argument(
        "--annotations",
        type=Path,
        help="COCO file to use instead of <data>/annotations/real_eval.json",
    )
    real.add_argument(
        "--kinds", nargs="+", default=None, help="coarse kinds (default: all of them)"
    )
    real.add_argument(
        "--mode",
        choices=["instance", "semantic"],
        default="instance",
        help="instance: LR path, one crop per instance (default); semantic: HR path",
    )
    real.add_argument(
        "--seed", type=non_negative_int, default=0, help="coarse-mask and sampling seed"
    )
    real.add_argument("--device", default="cpu", help="cpu or cuda")
    real.add_argument(
        "--threads", type=positive_int, default=1, help="torch CPU threads (default 1)"
    )
    real.add_argument("--no-ap", action="store_true", help="skip mask AP and boundary AP")
    real.add_argument(
        "--guards",
        nargs="+",
        type=float,
        default=[],
        metavar="THRESHOLD",
        help="also report the metrics with the guard at each threshold (a predicted IoU "
        "change, e.g. 0 or -0.005): instances scored below it keep their coarse mask",
    )
    real.add_argument("--json", type=Path, help="write the report to this JSON file")
    real.add_argument("--csv", type=Path, help="write per-instance rows to this CSV file")
    real.set_defaults(func=run_real)

    cal = sub.add_parser(
        "calibrate",
        help="fit a checkpoint's refinement-score calibration on the real-photo training split",
        description="Refine coarse masks of every instance of the real-photo training split "
        "(`segrefiner data real`; each coarse kind, each seed) and fit the linear model that "
        "turns the score features into the predicted IoU change. Prints the fit's Spearman "
        "correlations; --out writes the calibration as JSON, --embed a copy of the checkpoint "
        "that carries it (used by every command that loads that copy).",
    )
    cal.add_argument("--checkpoint", required=True, help="checkpoint file")
    cal.add_argument("--data", type=Path, default=Path("data/real"), help="real-photo data root")
    cal.add_argument(
        "--annotations",
        type=Path,
        help="COCO file to use instead of <data>/annotations/real_train.json",
    )
    cal.add_argument(
        "--mode", choices=["instance", "semantic"], default="instance", help="refinement path"
    )
    cal.add_argument(
        "--seeds", nargs="+", type=non_negative_int, default=[0, 1], help="coarse-mask seeds"
    )
    cal.add_argument("--kinds", nargs="+", default=None, help="coarse kinds (default: all)")
    cal.add_argument("--device", default="cpu", help="cpu or cuda")
    cal.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    cal.add_argument("--out", type=Path, help="write the calibration to this JSON file")
    cal.add_argument("--embed", type=Path, help="write a copy of the checkpoint carrying it")
    cal.set_defaults(func=run_calibrate)

    hr_demo = sub.add_parser(
        "hr-demo",
        help="coarse vs refined on the demo DIS and BIG sets (semantic / HR path)",
        description="Refine the demo data set's coarse masks of DIS-VD, DIS-TE1 (the isnet "
        "masks) and BIG (the *_seg.png masks, 2048-3072 px) over the whole image and report "
        "pooled IoU and mBA per set, coarse vs refined, with seconds per image. Without "
        "--checkpoint the shipped default HR model is used.",
    )
    hr_demo.add_argument("--checkpoint", help="checkpoint file (default: the shipped HR model)")
    hr_demo.add_argument("--data", type=Path, default=Path("data/demo"), help="demo data root")
    hr_demo.add_argument(
        "--sets",
        nargs="+",
        default=["DIS-VD", "DIS-TE1", "BIG"],
        help="sets (default DIS-VD DIS-TE1 BIG)",
    )
    hr_demo.add_argument("--device", default="cpu", help="cpu or cuda")
    hr_demo.add_argument(
        "--threads", type=positive_int, default=1, help="torch CPU threads (default 1)"
    )
    hr_demo.add_argument("--json", type=Path, help="write the report to this JSON file")
    hr_demo.set_defaults(func=run_hr_demo)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, help="write the full report to this JSON file")
    p.add_argument(
        "--lenient",
        action="store_true",
        help="skip bad results (e.g. unknown image or category ids, as the official "
        "eval_json.py drops them) or missing files and report them, instead of stopping",
    )
    p.add_argument(
        "--workers", type=positive_int, default=1, help="local worker processes (default 1)"
    )


def _pct(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.2f}"


def run_coco(args: argparse.Namespace) -> int:
    from segrefiner.metrics import BandCache, evaluate_instances

    api = "lvis" if args.lvis else "coco"
    cache = BandCache()  # ground-truth bands are shared by the evaluations of this run
    reports = {}
    for iou_type in dict.fromkeys(args.iou_type):
        reports[iou_type] = evaluate_instances(
            args.gt,
            args.results,
            iou_type,
            api,
            strict=not args.lenient,
            workers=args.workers,
            band_cache=cache,
        )
    first = next(iter(reports.values()))
    print(f"{api.upper()} protocol: {first.num_images} images, {first.num_detections} detections")
    keys = list(first.metrics)
    print(f"{'':10}" + "".join(f"{k:>7}" for k in keys))
    for iou_type, report in reports.items():
        label = "mask" if iou_type == "segm" else "boundary"
        print(f"{label:10}" + "".join(f"{_pct(report.metrics[k], 1):>7}" for k in keys))
    if first.skipped:
        counts = ", ".join(f"{reason} {n}" for reason, n in sorted(first.skipped.items()))
        print(f"skipped {sum(first.skipped.values())} results: {counts}", file=sys.stderr)
        for example in first.skipped_examples:
            print(f"  {example}", file=sys.stderr)
    if args.json:
        write_json(args.json, {k: r.as_dict() for k, r in reports.items()}, indent=2)
    return 0


def _print_folder(report: Any, title: str | None = None) -> None:
    if title:
        print(f"[{title}]")
    print(
        f"images: {report.refined.num_images} evaluated of {report.num_ground_truths} ground "
        f"truths (empty band, left out of mBA: {report.refined.empty_band})"
    )
    if report.coarse is None:
        print(f"IoU      : {_pct(report.refined.iou, 2)}")
        print(f"mBA      : {_pct(report.refined.mba, 2)}")
    else:
        print(f"New IoU  : {_pct(report.refined.iou, 2)}")
        print(f"Old IoU  : {_pct(report.coarse.iou, 2)}")
        print(f"IoU Delta: {_signed(report.delta_iou)}")
        print(f"New mBA  : {_pct(report.refined.mba, 2)}")
        print(f"Old mBA  : {_pct(report.coarse.mba, 2)}")
        print(f"mBA Delta: {_signed(report.delta_mba)}")
    for names, what in (
        (report.missing_predictions, "without a prediction"),
        (report.missing_coarse, "without a coarse mask"),
        (report.unreadable, "with an unreadable or wrong-size file"),
    ):
        if names:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            print(f"{len(names)} ground truths {what}, left out: {shown}", file=sys.stderr)


def run_masks(args: argparse.Namespace) -> int:
    from segrefiner.metrics import evaluate_mask_folders, read_name_list

    names = read_name_list(args.list) if args.list else None
    report = evaluate_mask_folders(
        args.gt,
        args.pred,
        args.coarse,
        args.naming,
        names=names,
        strict=not args.lenient,
        workers=args.workers,
    )
    _print_folder(report)
    if args.json:
        report.write_json(args.json)
    if args.csv:
        report.write_csv(args.csv)
    return 0


def run_dis(args: argparse.Namespace) -> int:
    from segrefiner.metrics import evaluate_dis

    reports = evaluate_dis(
        args.gt_root,
        args.pred_root,
        args.coarse_root,
        splits=args.splits,
        strict=not args.lenient,
        workers=args.workers,
    )
    for split, report in reports.items():
        _print_folder(report, split)
    if args.json:
        write_json(args.json, {s: r.as_dict() for s, r in reports.items()}, indent=2)
    return 0


def run_real(args: argparse.Namespace) -> int:
    from segrefiner.data.coarse_kinds import COARSE_KINDS
    from segrefiner.errors import InputError
    from segrefiner.evaluation import evaluate_real

    if args.coarse_only and args.checkpoint:
        raise InputError("give --checkpoint or --coarse-only, not both")
    checkpoint = args.checkpoint
    if not args.coarse_only and checkpoint is None:
        from segrefiner.checkpoint import default_checkpoint

        checkpoint = str(default_checkpoint("lr" if args.mode == "instance" else "hr"))
    report = evaluate_real(
        None if args.coarse_only else checkpoint,
        args.data,
        kinds=tuple(args.kinds or COARSE_KINDS),
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        with_ap=not args.no_ap,
        annotations=args.annotations,
        mode=args.mode,
        guards=tuple(args.guards),
    )
    print(
        f"{report.source}: checkpoint {report.checkpoint or '(coarse only)'}, {args.mode} "
        f"path, seed {args.seed}"
    )
    print(report.table())
    print(f"{report.seconds:.1f} s ({report.refine_seconds:.1f} s refining)")
    if args.json:
        write_json(args.json, report.as_dict(), indent=2)
    if args.csv:
        report.write_csv(args.csv)
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from segrefiner.checkpoint import save_with_calibration
    from segrefiner.data.coarse_kinds import COARSE_KINDS
    from segrefiner.evaluation import calibrate_score

    calibration = calibrate_score(
        args.checkpoint,
        args.data,
        seeds=tuple(args.seeds),
        mode=args.mode,
        kinds=tuple(args.kinds or COARSE_KINDS),
        device=args.device,
        threads=args.threads,
        annotations=args.annotations,
    )
    print(
        f"{args.checkpoint}: {args.mode} score calibration from "
        f"{calibration.fitted_on['rows']} instances (seeds {list(args.seeds)})"
    )
    print(f"  intercept {calibration.intercept:+.5f}")
    for name, weight in calibration.weights.items():
        print(f"  {name:20s} {weight:+.5f}")
    for name, value in calibration.quality.items():
        print(f"  {name:20s} " + ("n/a" if value is None else f"{value:+.3f}"))
    if args.out:
        write_json(args.out, calibration.as_dict(), indent=2)
    if args.embed:
        save_with_calibration(args.checkpoint, args.embed, calibration)
        print(f"wrote {args.embed}")
    return 0


def run_hr_demo(args: argparse.Namespace) -> int:
    from segrefiner.training.demo import evaluate_hr_demo

    checkpoint = args.checkpoint
    if checkpoint is None:
        from segrefiner.checkpoint import default_checkpoint

        checkpoint = str(default_checkpoint("hr"))
    report = evaluate_hr_demo(
        checkpoint, args.data, sets=tuple(args.sets), device=args.device, threads=args.threads
    )
    print(f"{args.data}: checkpoint {checkpoint}, semantic path")
    print(f"{'set':8} {'images':>6} {'IoU':>15} {'mBA':>15} {'s/image':>8}")
    for name, row in report.items():
        iou = f"{_pct(row['coarse_iou'], 2)} -> {_pct(row['refined_iou'], 2)}"
        mba = f"{_pct(row['coarse_mba'], 2)} -> {_pct(row['refined_mba'], 2)}"
        print(f"{name:8} {row['images']:>6} {iou:>15} {mba:>15} {row['seconds_per_image']:>8.2f}")
    if args.json:
        write_json(args.json, report, indent=2)
    return 0

"""``segrefiner data ...``: prepare and check data.

segrefiner data demo --out data/demo [--seed N] [--scale default|ci] [--force]
segrefiner data real --out data/real [--cache DIR] [--offline] [--force]
segrefiner data composites --root data/real [--count N] [--seed N] [--force]
segrefiner data hr-train --real data/real --out data/hr [--demo data/demo] [--count N] [--force]
segrefiner data cocofy-lvis [--lvis LVIS_VAL] [--coco COCO_VAL] [--out OUT]
segrefiner data check-results RESULTS --ann ANNOTATIONS [--images IMAGE_ROOT]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segrefiner.cli.argtypes import add_command_group, non_negative_int

DEFAULT_LVIS_VAL = Path("data/lvis/annotations/lvis_v1_val.json")
DEFAULT_COCO_VAL = Path("data/coco/annotations/instances_val2017.json")
DEFAULT_COCOFIED = Path("data/lvis/annotations/lvis_v1_val_cocofied.json")


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_command_group(
        subparsers,
        "data",
        __doc__,
        "generate the demo data set, build the cocofied LVIS val, check results files",
        dest="data_command",
        metavar="DATA_COMMAND",
    )

    demo = sub.add_parser(
        "demo",
        help="generate the demo data set (COCO/LVIS, BIG, DIS, ThinObject layouts)",
        description="Generate the demo data set: real photographs with synthetic objects, in "
        "the layouts and formats of the real data sets. An existing demo made with the same "
        "seed and scale is reused unless --force.",
    )
    demo.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder")
    demo.add_argument("--seed", type=non_negative_int, default=0, help="seed (default 0)")
    demo.add_argument("--scale", default="default", help="default, or ci (a very small set)")
    demo.add_argument("--force", action="store_true", help="regenerate even if present")
    demo.set_defaults(func=run_demo)

    real = sub.add_parser(
        "real",
        help="build the real-photo data set (labelme photos + polygon masks, COCO format)",
        description="Build the real-photo data set from pinned PyPI sdists (labelme-toolkit, "
        "labelme, realesrgan, scikit-image, scikit-learn; sha256-checked, cached): real "
        "photographs with human-made instance masks as COCO eval/train files, plus RGBA "
        "cut-outs and background photographs. An existing one of the same builder version is "
        "reused unless --force.",
    )
    real.add_argument("--out", type=Path, default=Path("data/real"), help="output folder")
    real.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="downloads folder (default $SEGREFINER_CACHE, else ~/.cache/segrefiner/downloads)",
    )
    real.add_argument(
        "--offline", action="store_true", help="use the downloads folder only, no network"
    )
    real.add_argument("--force", action="store_true", help="rebuild even if present")
    real.set_defaults(func=run_real)

    comp = sub.add_parser(
        "composites",
        help="training composites: the real training split's cut-outs on real photographs",
        description="Paste real object cut-outs (the training split's instances, RGBA mattes) "
        "onto real photographs with feathered edges, colour matching, blur, noise and JPEG, and "
        "write annotations/train_mix.json (the real training photos + the composites) under "
        "the real-photo data root. Reused when made with the same settings unless --force.",
    )
    comp.add_argument("--root", type=Path, default=Path("data/real"), help="real-photo data root")
    comp.add_argument(
        "--count", type=non_negative_int, default=1200, help="composites to make (default 1200)"
    )
    comp.add_argument("--seed", type=non_negative_int, default=0, help="seed (default 0)")
    comp.add_argument("--force", action="store_true", help="regenerate even if present")
    comp.set_defaults(func=run_composites)

    hr = sub.add_parser(
        "hr-train",
        help="the HR training set: high-resolution composites with real edges (DIS-TR layout)",
        description="Paste the real training split's cut-outs, scaled up, onto high-resolution "
        "photographs (Debian's mate-backgrounds, pinned and sha256-checked, cached), add the "
        "real training instances at native resolution and, with --demo, the demo DIS-TR and "
        "ThinObject training images; written as dis/DIS-TR/{im,gt} under --out, ready for "
        "the gen-coarse-hr stage. Reused when made with the same settings unless --force.",
    )
    hr.add_argument("--real", type=Path, default=Path("data/real"), help="real-photo data root")
    hr.add_argument("--out", type=Path, default=Path("data/hr"), help="output folder")
    hr.add_argument("--demo", type=Path, default=None, help="demo data root to include")
    hr.add_argument(
        "--count", type=non_negative_int, default=300, help="composites to make (default 300)"
    )
    hr.add_argument("--seed", type=non_negative_int, default=0, help="seed (default 0)")
    hr.add_argument("--cache", type=Path, default=None, help="downloads folder (as data real)")
    hr.add_argument("--offline", action="store_true", help="use the downloads folder only")
    hr.add_argument("--force", action="store_true", help="rebuild even if present")
    hr.set_defaults(func=run_hr_train)

    cocofy = sub.add_parser(
        "cocofy-lvis",
        help="build the cocofied LVIS val annotation (COCO ids, COCO val images)",
        description="Keep the LVIS v1 val images that are in COCO val2017 and the annotations "
        "of the 80 COCO synsets, with COCO category ids (what scripts/lvis2coco.py does).",
    )
    cocofy.add_argument("--lvis", type=Path, default=DEFAULT_LVIS_VAL, help="LVIS v1 val JSON")
    cocofy.add_argument("--coco", type=Path, default=DEFAULT_COCO_VAL, help="COCO val JSON")
    cocofy.add_argument("--out", type=Path, default=DEFAULT_COCOFIED, help="output JSON")
    cocofy.set_defaults(func=run_cocofy)

    check = sub.add_parser(
        "check-results",
        help="check a segmentor's COCO results file against an annotation file",
        description="Check every entry of a COCO results file (image and category ids, box, "
        "score, mask) against an annotation file; exit status 1 if any entry is bad.",
    )
    check.add_argument("results", type=Path, help="COCO results JSON (*.segm.json)")
    check.add_argument("--ann", type=Path, required=True, help="COCO or LVIS annotation JSON")
    check.add_argument(
        "--images", type=Path, default=None, help="image root: also check the image files exist"
    )
    check.add_argument("--lvis", action="store_true", help="the annotation file is LVIS format")
    check.add_argument(
        "--coco-categories",
        action="store_true",
        help="accept any of the 80 COCO category ids (e.g. against the cocofied LVIS val)",
    )
    check.set_defaults(func=run_check)


def run_demo(args: argparse.Namespace) -> int:
    from segrefiner.data.demo import generate_demo

    summary = generate_demo(args.out, args.seed, scale=args.scale, force=args.force)
    if summary.reused:
        print(f"{summary.out_dir}: demo data set present (seed {summary.seed}), reused")
    else:
        print(
            f"{summary.out_dir}: demo data set generated in {summary.seconds:.1f} s "
            f"(seed {summary.seed}, scale {summary.scale})"
        )
    for key, value in summary.counts.items():
        print(f"  {key}: {value}")
    return 0


def run_real(args: argparse.Namespace) -> int:
    from segrefiner.data.real import build_real

    summary = build_real(args.out, cache=args.cache, offline=args.offline, force=args.force)
    if summary.reused:
        print(f"{summary.out_dir}: real-photo data set present, reused (--force to rebuild)")
    else:
        print(f"{summary.out_dir}: real-photo data set built in {summary.seconds:.1f} s")
    counts = summary.counts
    for split in ("eval", "train"):
        print(
            f"  {split}: {counts.get(f'{split}_images', 0)} images, "
            f"{counts.get(f'{split}_instances', 0)} instances "
            f"(annotations/real_{split}.json, images under images/{split}/)"
        )
    for key in ("categories", "dropped_empty_instances", "cutouts", "backgrounds"):
        print(f"  {key}: {counts.get(key, 0)}")
    for source, c in summary.per_source.items():
        print(f"  source {source}: {c['images']} images, {c['instances']} instances")
    print(f"  fingerprint: {summary.fingerprint}")
    return 0


def run_composites(args: argparse.Namespace) -> int:
    from segrefiner.data.composite import CompositeConfig, generate_composites
    from segrefiner.errors import InputError

    if args.count <= 0:
        raise InputError(f"--count: must be positive, got {args.count}")
    summary = generate_composites(
        args.root, seed=args.seed, config=CompositeConfig(count=args.count), force=args.force
    )
    verb = "present, reused" if summary.reused else f"made in {summary.seconds:.1f} s"
    print(
        f"{args.root}: {summary.composites} composites {verb} ({summary.instances} instances "
        f"from {summary.cutouts} cut-outs on {summary.backgrounds} photographs) + "
        f"{summary.real_images} real training photos ({summary.real_instances} instances) "
        f"-> annotations/train_mix.json"
    )
    return 0


def run_hr_train(args: argparse.Namespace) -> int:
    from segrefiner.data.hr_train import HRTrainConfig, build_hr_train
    from segrefiner.errors import InputError

    if args.count < 0:
        raise InputError(f"--count: must not be negative, got {args.count}")
    summary = build_hr_train(
        args.real,
        args.out,
        seed=args.seed,
        config=HRTrainConfig(count=args.count),
        demo_root=args.demo,
        cache=args.cache,
        offline=args.offline,
        force=args.force,
    )
    verb = "present, reused" if summary.reused else f"built in {summary.seconds:.1f} s"
    print(
        f"{args.out}: HR training set {verb}: {summary.composites} composites on "
        f"{summary.photos} photographs, {summary.real} real instances, {summary.demo} demo "
        "images (dis/DIS-TR/{im,gt})"
    )
    return 0


def run_cocofy(args: argparse.Namespace) -> int:
    from segrefiner.data.lvis import write_cocofied_lvis

    counts = write_cocofied_lvis(args.lvis, args.coco, args.out)
    print(
        f"{args.out}: {counts['images']} images, {counts['annotations']} of "
        f"{counts['lvis_annotations']} annotations, {counts['categories']} categories"
    )
    return 0


def run_check(args: argparse.Namespace) -> int:
    from segrefiner.data.coco import (
        COCO_CATEGORY_IDS,
        load_coco_instances,
        load_segmentor_results,
    )
    from segrefiner.data.lvis import load_lvis

    loader = load_lvis if args.lvis else load_coco_instances
    annotations = loader(args.ann, args.images)
    category_ids = COCO_CATEGORY_IDS if args.coco_categories else None
    results = load_segmentor_results(
        args.results, annotations, strict=False, category_ids=category_ids
    )
    print(
        f"{args.results}: {results.num_entries} entries, {results.num_detections} good on "
        f"{len(results)} images, {len(results.rejected)} bad"
    )
    for bad in results.rejected:
        print(f"  bad: {bad.reason}", file=sys.stderr)
    missing = []
    if args.images is not None:
        missing = annotations.missing_images([g.image.id for g in results])
        for _, reason in missing:
            print(f"  missing: {reason}", file=sys.stderr)
    return 1 if results.rejected or missing else 0

"""``segrefiner refine``: refine one image + mask, or a folder of them.

Single:  segrefiner refine [--checkpoint CKPT_OR_PRESET] --image IMG --mask MASK -o OUT.png
Folder:  segrefiner refine [--checkpoint CKPT_OR_PRESET] --images DIR --masks DIR -o OUT_DIR
Without --checkpoint the shipped model of the mode is used: checkpoints/segrefiner_hr_real.pt
(semantic, the default) or checkpoints/segrefiner_lr_real.pt (--mode instance); the folder can be
moved with $SEGREFINER_CHECKPOINTS. Until a shipped file exists the command says so.
Masks are matched to images by file stem; outputs are 0/255 PNGs written atomically. In the
folder form, outputs that already exist are kept (re-running resumes) unless --overwrite, and
bad items are reported and set aside while the others are refined.
Every refined mask gets a refinement score (the predicted IoU change): printed for one image,
kept in <OUT_DIR>/refine_scores.json for a folder. --guard THRESHOLD (not official, off by
default) keeps the coarse mask where the score is below THRESHOLD.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from segrefiner.cli.argtypes import add_command, non_negative_int, positive_int
from segrefiner.errors import InputError, SegRefinerError
from segrefiner.io import read_image, read_mask, write_mask
from segrefiner.locking import folder_lock

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers, "refine", __doc__, "refine an image + coarse mask (or folders of them)"
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint file or preset name (default: the shipped model of the mode, "
        "checkpoints/segrefiner_hr_real.pt for semantic, checkpoints/segrefiner_lr_real.pt "
        "for instance)",
    )
    single = p.add_argument_group("one image")
    single.add_argument("--image", type=Path, help="image file (any format PIL reads)")
    single.add_argument(
        "--mask", type=Path, help="coarse mask file (grayscale >= 128 is foreground)"
    )
    folder = p.add_argument_group("folders")
    folder.add_argument("--images", type=Path, help="folder of images")
    folder.add_argument("--masks", type=Path, help="folder of coarse masks, matched by file stem")
    p.add_argument("-o", "--output", type=Path, required=True, help="output PNG, or folder")
    p.add_argument(
        "--mode",
        choices=["semantic", "instance"],
        default="semantic",
        help="semantic: global + local patches (HR model, default); instance: one object crop (LR model)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed for the sampling noise (default 0)"
    )
    p.add_argument(
        "--model-size",
        type=positive_int,
        default=None,
        help="network input side (default: the checkpoint's, 256 for official models)",
    )
    p.add_argument(
        "--guard",
        type=float,
        default=None,
        metavar="THRESHOLD",
        help="not official: keep the coarse mask when the refinement score (the predicted IoU "
        "change, e.g. -0.004) is below THRESHOLD (e.g. 0); default off",
    )
    p.add_argument("--overwrite", action="store_true", help="folder form: redo existing outputs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    single = args.image is not None or args.mask is not None
    many = args.images is not None or args.masks is not None
    if single == many:
        raise InputError("give either --image and --mask, or --images and --masks")
    if single and (args.image is None or args.mask is None):
        raise InputError("--image and --mask go together")
    if many and (args.images is None or args.masks is None):
        raise InputError("--images and --masks go together")
    if many:
        out = args.output.resolve()
        for folder, what in ((args.images, "--images"), (args.masks, "--masks")):
            if out == folder.resolve():
                raise InputError(
                    f"-o {args.output}: the same folder as {what}; the outputs would replace "
                    "the inputs"
                )
        pairs = match_folder(args.images, args.masks)  # fail fast, before loading a model
    refiner = _build_refiner(args)
    if single:
        record = _refine_one(refiner, args.image, args.mask, args.output, args.mode)
        print(f"wrote {args.output} ({_describe(record)})")
        return 0
    return _refine_folder(refiner, pairs, args.output, args.mode, args.overwrite)


def _build_refiner(args: argparse.Namespace):
    # torch is imported here, not at module level, so `segrefiner --help` stays fast.
    import torch

    from segrefiner.checkpoint import resolve_checkpoint
    from segrefiner.refiner import Refiner

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # No --checkpoint: the mode's shipped model (CheckpointError when there is none yet).
    source = resolve_checkpoint(args.checkpoint, "lr" if args.mode == "instance" else "hr")
    refiner = Refiner.from_checkpoint(source, device=device, seed=args.seed)
    changes = {"guard": args.guard}
    if args.model_size is not None:
        changes["model_size"] = args.model_size
    refiner = Refiner(
        refiner.model,
        device=device,
        seed=args.seed,
        config=refiner.config.replace(**changes),  # validated here (e.g. the guard's range)
        calibrations=refiner.calibrations,
    )
    refiner.source = source  # for the folder form's fingerprint
    return refiner


def match_folder(images: Path, masks: Path) -> list[tuple[Path, Path | None]]:
    """Pair every image in ``images`` with the mask of the same stem in ``masks``.

    Images without a mask are kept with ``None`` (reported as bad items later).
    """
    for folder, what in ((images, "images"), (masks, "masks")):
        if not folder.is_dir():
            raise InputError(f"{folder}: {what} folder not found")
    image_files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not image_files:
        raise InputError(f"{images}: no images found")
    seen: dict[str, Path] = {}
    for p in image_files:  # one output per stem: two images of one stem would collide
        if p.stem in seen:
            raise InputError(
                f"{images}: two images share the stem {p.stem!r} ({seen[p.stem].name}, "
                f"{p.name}); their outputs would collide"
            )
        seen[p.stem] = p
    mask_files = {}
    for p in sorted(masks.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            if p.stem in mask_files:
                raise InputError(f"{masks}: two masks share the stem {p.stem!r}")
            mask_files[p.stem] = p
    if not mask_files:
        raise InputError(f"{masks}: no masks found")
    return [(img, mask_files.get(img.stem)) for img in image_files]


def _refine_one(
    refiner, image_path: Path, mask_path: Path, out: Path, mode: str, key: object = 0
) -> dict:
    """Refine one pair into ``out``; returns its score record ``{"score", "guarded"}``
    (score ``None`` when the mask was not refined)."""
    image = read_image(image_path)
    coarse = read_mask(mask_path, shape=image.shape[:2])
    if mode == "instance":
        done = refiner.refine_instances_detailed(image, coarse[None], keys=[key])
        fine, score, guarded = done.masks[0], float(done.scores[0]), bool(done.guarded[0])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the empty-mask case is reported below instead
            result = refiner.refine_detailed(image, coarse, key=key)
        fine, score, guarded = result.mask, result.score, result.guarded
        if coarse.sum() <= refiner.config.min_foreground:
            print(
                f"{mask_path}: coarse mask has <= {refiner.config.min_foreground} pixels; wrote an empty mask",
                file=sys.stderr,
            )
    write_mask(out, fine)
    return {"score": None if score != score else round(score, 6), "guarded": guarded}


def _describe(record: dict) -> str:
    if record["score"] is None:
        return "not refined"
    text = f"refinement score {record['score'] * 100:+.2f} (predicted IoU change, points)"
    return text + ("; the guard kept the coarse mask" if record["guarded"] else "")


def _refine_folder(refiner, pairs, out_dir: Path, mode: str, overwrite: bool) -> int:
    from tqdm import tqdm

    with folder_lock(out_dir, "refining into it"):
        _check_fingerprint(out_dir, _fingerprint(refiner, mode), overwrite)
        return _refine_pairs(refiner, pairs, out_dir, mode, overwrite, tqdm)


FINGERPRINT = ".segrefiner-run.json"


def _fingerprint(refiner, mode: str) -> dict:
    """What the folder's outputs depend on besides their inputs."""
    import dataclasses

    model = refiner.source.ident  # set by _build_refiner
    inference = dataclasses.asdict(refiner.config)
    if inference["guard"] is None:  # absent when off: folders from before the guard still match
        del inference["guard"]
    return {"checkpoint": model, "mode": mode, "seed": refiner.seed, "inference": inference}


def _check_fingerprint(out_dir: Path, wanted: dict, overwrite: bool) -> None:
    """Outputs made with another checkpoint or settings are never kept as if they were this
    run's: refused unless --overwrite (which redoes them all)."""
    from segrefiner.io import read_json, write_json

    path = out_dir / FINGERPRINT
    outputs = any(out_dir.glob("*.png"))
    if not overwrite and outputs:
        found = read_json(path) if path.is_file() else None
        if found != wanted:
            if found is None:
                why = "no record of the settings that made them"
            else:
                keys = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
                why = "made with another " + ", ".join(keys)
            raise InputError(
                f"{out_dir}: holds refined masks from another run ({why}); --overwrite redoes "
                "them, or write to another folder"
            )
    write_json(path, wanted, indent=1)


SCORES = "refine_scores.json"  # folder form: {stem: {"score", "guarded"}} of every output


def _refine_pairs(refiner, pairs, out_dir: Path, mode: str, overwrite: bool, tqdm) -> int:
    from segrefiner.io import read_json, write_json

    failed: list[str] = []
    skipped = done = 0
    scores_path = out_dir / SCORES
    scores = read_json(scores_path) if scores_path.is_file() and not overwrite else {}
    for image_path, mask_path in tqdm(pairs, desc="refine", unit="img", file=sys.stderr):
        out = out_dir / f"{image_path.stem}.png"
        if mask_path is None:
            failed.append(f"{image_path}: no mask with stem {image_path.stem!r}")
            continue
        if out.exists() and not overwrite:
            skipped += 1
            continue
        try:
            record = _refine_one(refiner, image_path, mask_path, out, mode, key=image_path.stem)
            scores[image_path.stem] = record
            done += 1
        except SegRefinerError as exc:
            failed.append(str(exc))
        if done and done % 50 == 0:  # an interrupted run keeps most of its scores
            write_json(scores_path, scores, indent=1)
    if done:
        write_json(scores_path, dict(sorted(scores.items())), indent=1)
    guarded = sum(bool(r.get("guarded")) for r in scores.values())
    print(
        f"refined {done}, kept {skipped} existing, failed {len(failed)} -> {out_dir}"
        + (f" ({guarded} kept coarse by the guard)" if refiner.config.guard is not None else "")
    )
    for line in failed:
        print(f"  failed: {line}", file=sys.stderr)
    return 1 if failed else 0


__all__ = ["match_folder", "register", "run"]

"""``segrefiner refine``: refine one image + mask, or a folder of them.

Single:  segrefiner refine [--checkpoint CKPT_OR_PRESET] --image IMG --mask MASK -o OUT.png
Folder:  segrefiner refine [--checkpoint CKPT_OR_PRESET] --images DIR --masks DIR -o OUT_DIR
Without --checkpoint the shipped model of the mode is used: checkpoints/segrefiner_hr_real.pt
(semantic, the default) or checkpoints/segrefiner_lr_real.pt (--mode instance); the folder can be
moved with $SEGREFINER_CHECKPOINTS. Until a shipped file exists the command says so.
Masks are matched to images by file stem; outputs are 0/255 PNGs written atomically. In the
folder form, outputs that already exist are kept (re-running resumes) unless --overwrite, and
bad items are reported and set aside while the others are refined.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from segrefiner.cli.argtypes import non_negative_int, positive_int
from segrefiner.errors import InputError, SegRefinerError
from segrefiner.io import read_image, read_mask, write_mask
from segrefiner.locking import folder_lock

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "refine",
        help="refine an image + coarse mask (or folders of them)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        _refine_one(refiner, args.image, args.mask, args.output, args.mode)
        print(f"wrote {args.output}")
        return 0
    return _refine_folder(refiner, pairs, args.output, args.mode, args.overwrite)


def _build_refiner(args: argparse.Namespace):
    # torch is imported here, not at module level, so `segrefiner --help` stays fast.
    import torch

    from segrefiner.checkpoint import default_checkpoint
    from segrefiner.model import PRESETS
    from segrefiner.refiner import Refiner

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    checkpoint = args.checkpoint
    if checkpoint is None:  # CheckpointError when the mode has no shipped model yet
        checkpoint = str(default_checkpoint("lr" if args.mode == "instance" else "hr"))
    if checkpoint not in PRESETS and not Path(checkpoint).is_file():
        raise InputError(
            f"{checkpoint}: checkpoint file not found (nor a preset: {sorted(PRESETS)})"
        )
    refiner = Refiner.from_checkpoint(checkpoint, device=device, seed=args.seed)
    if args.model_size is not None:
        refiner = Refiner(
            refiner.model,
            device=device,
            seed=args.seed,
            config=refiner.config.replace(model_size=args.model_size),
        )
    refiner.checkpoint = checkpoint  # for the folder form's fingerprint
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
) -> None:
    image = read_image(image_path)
    coarse = read_mask(mask_path, shape=image.shape[:2])
    if mode == "instance":
        fine = refiner.refine_instances(image, coarse[None], keys=[key])[0]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the empty-mask case is reported below instead
            fine = refiner.refine(image, coarse, key=key)
        if coarse.sum() <= refiner.config.min_foreground:
            print(
                f"{mask_path}: coarse mask has <= {refiner.config.min_foreground} pixels; wrote an empty mask",
                file=sys.stderr,
            )
    write_mask(out, fine)


def _refine_folder(refiner, pairs, out_dir: Path, mode: str, overwrite: bool) -> int:
    from tqdm import tqdm

    with folder_lock(out_dir, "refining into it"):
        _check_fingerprint(out_dir, _fingerprint(refiner, mode), overwrite)
        return _refine_pairs(refiner, pairs, out_dir, mode, overwrite, tqdm)


FINGERPRINT = ".segrefiner-run.json"


def _fingerprint(refiner, mode: str) -> dict:
    """What the folder's outputs depend on besides their inputs."""
    import dataclasses

    from segrefiner.io import file_sha256

    checkpoint = getattr(refiner, "checkpoint", None)
    model = (
        f"sha256:{file_sha256(checkpoint)}"
        if checkpoint is not None and Path(checkpoint).is_file()
        else f"preset:{checkpoint}"
    )
    return {
        "checkpoint": model,
        "mode": mode,
        "seed": refiner.seed,
        "inference": dataclasses.asdict(refiner.config),
    }


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


def _refine_pairs(refiner, pairs, out_dir: Path, mode: str, overwrite: bool, tqdm) -> int:
    failed: list[str] = []
    skipped = done = 0
    for image_path, mask_path in tqdm(pairs, desc="refine", unit="img", file=sys.stderr):
        out = out_dir / f"{image_path.stem}.png"
        if mask_path is None:
            failed.append(f"{image_path}: no mask with stem {image_path.stem!r}")
            continue
        if out.exists() and not overwrite:
            skipped += 1
            continue
        try:
            _refine_one(refiner, image_path, mask_path, out, mode, key=image_path.stem)
            done += 1
        except SegRefinerError as exc:
            failed.append(str(exc))
    print(f"refined {done}, kept {skipped} existing, failed {len(failed)} -> {out_dir}")
    for line in failed:
        print(f"  failed: {line}", file=sys.stderr)
    return 1 if failed else 0


__all__ = ["match_folder", "register", "run"]

"""Fit and check the refinement score's calibration on the real-photo splits.

For each checkpoint: refine every instance of the real-photo *training* split (each coarse
kind, each seed), fit its calibration (``segrefiner eval calibrate`` does the same for one
checkpoint), and print it. ``--default`` also fits one calibration on the pooled rows of all
the checkpoints given: the library's built-in default (``segrefiner.inference.score``), used
for checkpoints that carry none. Rows are cached in ``--cache`` so a re-run only fits.

    python benchmarks/score_calibration.py --checkpoints checkpoints/segrefiner_lr_real.pt \\
        checkpoints/demo_lr_tiny.pt --default

The evaluation split is never used here: ``segrefiner eval real --guards ...`` measures the
score and the guard on it.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segrefiner import io
from segrefiner.data.coarse_kinds import COARSE_KINDS
from segrefiner.evaluation import (
    REAL_TRAIN,
    calibration_provenance,
    calibration_rows,
    fit_quality,
)
from segrefiner.inference.score import fit_calibration


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="+", required=True)
    parser.add_argument("--data", type=Path, default=Path("data/real"))
    parser.add_argument("--mode", choices=["instance", "semantic"], default="instance")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path("runs/score_calibration"))
    parser.add_argument("--default", action="store_true", help="also fit the pooled default")
    parser.add_argument(
        "--embed",
        action="store_true",
        help="write each checkpoint's own calibration into it (weights unchanged)",
    )
    args = parser.parse_args()
    kinds = tuple(COARSE_KINDS)
    args.cache.mkdir(parents=True, exist_ok=True)
    pooled = []
    for checkpoint in args.checkpoints:
        digest = _weights_digest(checkpoint)
        seeds = "-".join(map(str, args.seeds))
        cached = args.cache / f"{Path(checkpoint).stem}-{digest}-{args.mode}-{seeds}.pkl"
        if cached.is_file():
            rows = pickle.loads(cached.read_bytes())
        else:
            rows = calibration_rows(
                checkpoint,
                args.data,
                seeds=args.seeds,
                mode=args.mode,
                kinds=kinds,
                device="cpu",
                threads=args.threads,
                annotations=args.data / REAL_TRAIN,
                progress=lambda line: print(line, file=sys.stderr, flush=True),
            )
            with io.atomic_path(cached) as tmp:
                Path(tmp).write_bytes(pickle.dumps(rows))
        pooled += rows
        cal = _report(checkpoint, rows, args.mode, kinds)
        if args.embed:
            _embed(checkpoint, cal, rows, args, kinds)
    if args.default:
        _report("pooled default", pooled, args.mode, kinds)
    return 0


def _weights_digest(checkpoint) -> str:
    """A digest of the network weights and the saved inference settings (the rows depend on
    both, e.g. on ``paste``), not of the rest of the meta: embedding a calibration keeps the
    cache valid."""
    import hashlib

    from segrefiner.checkpoint import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    h = hashlib.blake2b(digest_size=8)
    h.update(json.dumps(meta.get("inference") or {}, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _embed(checkpoint, cal, rows, args, kinds) -> None:
    """``segrefiner eval calibrate --embed`` from the cached rows, into the file itself."""
    import dataclasses

    from segrefiner.checkpoint import save_with_calibration

    fitted_on = calibration_provenance(
        checkpoint, args.data / REAL_TRAIN, args.seeds, kinds, len(rows)
    )
    save_with_calibration(checkpoint, checkpoint, dataclasses.replace(cal, fitted_on=fitted_on))
    print(f"   embedded into {checkpoint} (now sha256 {io.file_sha256(checkpoint)})")


def _report(name, rows, mode, kinds):
    import numpy as np

    features = np.array([r.features for r in rows])
    deltas = np.array([r.delta("iou") for r in rows])
    cal = fit_calibration(features, deltas, mode=mode, fitted_on={"rows": len(rows)})
    quality = fit_quality(cal, rows, kinds)
    print(f"== {name}: {len(rows)} rows, mean IoU change {deltas.mean() * 100:+.2f} pts")
    print("   " + ", ".join(f"{k} {v:+.3f}" for k, v in quality.items() if v is not None))
    values = cal.as_dict()
    print(json.dumps({k: values[k] for k in ("intercept", "weights")}, indent=1))
    import dataclasses

    return dataclasses.replace(cal, quality=quality)


if __name__ == "__main__":
    raise SystemExit(main())

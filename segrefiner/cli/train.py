"""``segrefiner train``: train a SegRefiner model from a YAML recipe.

segrefiner train --config configs/segrefiner_lr.yaml [KEY=VALUE ...] [--nproc N] [--until ITER]

Overrides use dotted keys (``optim.lr=2e-4 checkpoint.dir=runs/lr2``). A run continues from
``<checkpoint.dir>/latest.pt`` when present (``checkpoint.resume=never`` starts afresh).
With ``--nproc N`` (or ``runtime.nproc``) above 1 the command re-launches itself under
``torchrun --standalone``; for several nodes run torchrun yourself, e.g.::

    torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:29400 --rdzv-id=lr -m segrefiner train --config ...
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from segrefiner.cli.argtypes import add_command, non_negative_int, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "train",
        __doc__,
        "train a model from a YAML recipe (single process, or DDP under torchrun)",
    )
    p.add_argument("--config", type=Path, required=True, help="training YAML (configs/*.yaml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument(
        "--nproc",
        type=positive_int,
        default=None,
        help="processes on this node (default runtime.nproc, else one per GPU, else 1)",
    )
    p.add_argument(
        "--until",
        type=non_negative_int,
        default=None,
        help="stop after this iteration (checkpointed)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # torch is imported lazily so that `segrefiner --help` stays fast.
    import yaml

    from segrefiner.training.config import load_train_config
    from segrefiner.training.distributed import default_nproc, torchrun_command

    config = load_train_config(args.config, list(args.overrides))
    if args.print_config:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    nproc = args.nproc if args.nproc is not None else default_nproc(config.runtime)
    under_torchrun = "WORLD_SIZE" in os.environ
    if nproc > 1 and not under_torchrun:
        forwarded = ["train", "--config", str(args.config), *args.overrides]
        if args.until is not None:
            forwarded += ["--until", str(args.until)]
        cmd = torchrun_command(nproc, "segrefiner", forwarded)
        print("launching: " + " ".join(cmd), file=sys.stderr)
        return subprocess.call(cmd)
    return _train_here(config, args.until)


def _train_here(config, until: int | None) -> int:
    from segrefiner.training.distributed import env_ranks
    from segrefiner.training.loop import train

    rank = env_ranks()[0]
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    result = train(config, until=until)
    if rank == 0:
        print(json.dumps(result.to_dict(), indent=2))
        if result.model:
            print(f"model: {result.model}", file=sys.stderr)
    return 0

"""The test suite's time against a baseline revision, measured in the same session.

The two trees run alternately (baseline, current, baseline, current, ...) so that a shared
machine's changing load falls on both; the ratios are what to read, not the seconds. The
baseline is checked out into a temporary git worktree and runs with this checkout's virtual
environment (``PYTHONPATH`` puts each tree's packages first, also for the processes the tests
start).

    python benchmarks/suite_time.py --baseline 1ec713a --rounds 2
    python benchmarks/suite_time.py --baseline HEAD~3 -- tests/pipelines   # a part only

Prints, per run, the wall time and the CPU time of pytest and everything it started, then the
medians and current / baseline ratios.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTEST = ["-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider"]


def tree_env(tree: Path) -> dict[str, str]:
    """The environment that imports ``tree``'s packages first (also in the tests' processes)."""
    return {**os.environ, "PYTHONPATH": str(tree)}


def run_suite(tree: Path, extra: list[str]) -> tuple[float, float, str]:
    """``(wall seconds, CPU seconds of pytest and its children, pytest's last line)``."""
    env = tree_env(tree)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *PYTEST, *extra], cwd=tree, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = proc.stdout.strip().splitlines()
    last = lines[-1] if lines else proc.stderr.strip()[-200:]
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: pytest exited with status {proc.returncode}: {last}")
    return wall, cpu, last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each tree (default 2)")
    parser.add_argument("pytest_args", nargs="*", help="after --: paths or options for pytest")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="suite-baseline-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.baseline],
            check=True,
        )
        try:
            # Not measured: compile both trees' modules and pytest's rewritten tests first, or
            # the fresh worktree's first run pays for it.
            for tree in (base, ROOT):
                subprocess.run(
                    [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                     "no:cacheprovider"],
                    cwd=tree, env=tree_env(tree), capture_output=True,
                )  # fmt: skip
            times: dict[str, list[tuple[float, float]]] = {"baseline": [], "current": []}
            for i in range(args.rounds):
                for name, tree in (("baseline", base), ("current", ROOT)):
                    wall, cpu, last = run_suite(tree, args.pytest_args)
                    times[name].append((wall, cpu))
                    print(f"round {i + 1} {name:8s} wall {wall:6.1f} s  cpu {cpu:6.1f} s  {last}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)])

    med = {
        name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for name, runs in times.items()
    }
    for name, (wall, cpu) in med.items():
        print(f"median {name:8s} wall {wall:6.1f} s  cpu {cpu:6.1f} s")
    print(
        f"current / baseline: wall {med['current'][0] / med['baseline'][0]:.2f}, "
        f"cpu {med['current'][1] / med['baseline'][1]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

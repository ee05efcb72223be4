"""Benchmark the offline HR coarse masks: degradation speed, the Dask stage, the zarr store.

Prints figures, asserts nothing. Everything runs on generated data (``--samples`` objects of
1024-2048 px with thin parts and holes, smooth JPEG images) in a temporary folder:

1. degradation only (``coarse`` + ``coarse_expand`` per sample), one process, then a pool of
   ``--workers`` processes, OpenCV single-threaded in each;
2. the ``gen-coarse-hr`` stage on a Dask LocalCluster of 1 and of ``--workers`` single-threaded
   worker processes (read image + GT, degrade, write the zarr store);
3. the baseline: a plain one-process loop doing the same work but writing the official 0/255
   PNGs;
4. the store: size and read throughput of its masks against the PNGs of the baseline, and
   the candidate zarr codecs on the same masks.

Run from the repository root: ``.venv/bin/python -m benchmarks.coarse_masks [--samples 8] [--workers 2]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from distributed import LocalCluster
from PIL import Image

from pipelines.coarse import generate_coarse_hr, sample_rng
from pipelines.stores import MASK_COMPRESSOR, MaskStore
from segrefiner.data.degrade import modify_boundary, modify_boundary_expand
from segrefiner.data.folders import load_sample, read_pairs
from segrefiner.io import read_mask, write_mask


def make_object(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """An object of 2-3 ellipses with 3-6 thin parts (2-6 px) and 2-4 holes: ``h x w`` bool."""
    m = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(2, 4))):
        centre = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
        axes = (int(rng.integers(w // 10, w // 4)), int(rng.integers(h // 10, h // 4)))
        cv2.ellipse(m, centre, axes, float(rng.integers(180)), 0, 360, 1, -1)
    for _ in range(int(rng.integers(3, 7))):
        pts = rng.integers(0, (w, h), size=(4, 2)).astype(np.int32)
        cv2.polylines(m, [pts], False, 1, int(rng.integers(2, 7)))
    for _ in range(int(rng.integers(2, 5))):
        centre = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
        cv2.circle(m, centre, int(rng.integers(10, 60)), 0, -1)
    return m.astype(bool)


def make_data(root: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = int(rng.integers(1024, 2049)), int(rng.integers(1024, 2049))
        mask = make_object(h, w, rng)
        # A smooth image (gradient + blurred mask): JPEG sizes and decode cost like a photo's.
        ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
        shade = cv2.GaussianBlur(mask.astype(np.float32) * 120, (31, 31), 0)
        image = np.clip(np.stack([ramp, shade + 60, 255 - ramp], -1), 0, 255).astype(np.uint8)
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "images" / f"s{i:03d}.jpg", quality=90)
        write_mask(root / "masks" / f"s{i:03d}.png", mask)


def _degrade(args: tuple[str, str]) -> int:
    gt_path, sample_id = args
    cv2.setNumThreads(1)
    gt = read_mask(gt_path)
    modify_boundary(gt, sample_rng(0, sample_id, "coarse"))
    modify_boundary_expand(gt, sample_rng(0, sample_id, "coarse_expand"))
    return 2


def compare_codecs(masks: list[np.ndarray], work: Path) -> None:
    """Ratio and speed of candidate zarr codecs on ``masks`` (bool), stores under ``work``."""
    import warnings

    import zarr
    from zarr.codecs import BloscCodec, ZstdCodec
    from zarr.codecs.numcodecs import PackBits

    def blosc(cname: str, level: int, shuffle: str, blocksize: int = 0) -> BloscCodec:
        return BloscCodec(cname=cname, clevel=level, shuffle=shuffle, blocksize=blocksize)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PackBits warns that it is outside the v3 spec
        candidates = {
            "blosc zstd 5 bitshuffle 1 MiB (used)": ([], [MASK_COMPRESSOR]),
            "blosc zstd 5 bitshuffle auto blocks": ([], [blosc("zstd", 5, "bitshuffle")]),
            "blosc zstd 9 bitshuffle 1 MiB": ([], [blosc("zstd", 9, "bitshuffle", 1 << 20)]),
            "blosc lz4 5 bitshuffle 1 MiB": ([], [blosc("lz4", 5, "bitshuffle", 1 << 20)]),
            "blosc zstd 5 noshuffle 1 MiB": ([], [blosc("zstd", 5, "noshuffle", 1 << 20)]),
            "zstd 5": ([], [ZstdCodec(level=5)]),
            "packbits + zstd 5 (not zarr v3 core)": ([PackBits()], [ZstdCodec(level=5)]),
            "packbits + zstd 9 (not zarr v3 core)": ([PackBits()], [ZstdCodec(level=9)]),
        }
    raw = sum(m.size for m in masks)
    # Warm-up (first array creation pays for zarr's event loop and codec pipelines).
    zarr.create_array(work / "warm.zarr", data=masks[0], chunks=masks[0].shape, overwrite=True)
    print("\ncodecs on the coarse masks (bool, one chunk per mask; ratio of the chunk bytes)")
    for n, (name, (filters, compressors)) in enumerate(candidates.items()):
        store = work / f"codec_{n}.zarr"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PackBits warns that it is outside the v3 spec
            t = time.perf_counter()
            arrays = []
            for i, m in enumerate(masks):
                a = zarr.create_array(
                    store,
                    name=f"m{i}",
                    shape=m.shape,
                    chunks=m.shape,
                    dtype=bool,
                    filters=filters,
                    compressors=compressors,
                )
                a[...] = m
                arrays.append(a)
            write_s = time.perf_counter() - t
            t = time.perf_counter()
            same = all(np.array_equal(a[...], m) for a, m in zip(arrays, masks))
            read_s = time.perf_counter() - t
        size = sum(p.stat().st_size for p in store.glob("*/c/*/*"))
        print(
            f"  {name:38s} ratio {raw / size:7.1f}  write {raw / write_s / 1e6:7.1f} MB/s  "
            f"read {raw / read_s / 1e6:7.1f} MB/s  exact {same}"
        )


def _dir_bytes(path: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", help="folder for the data and outputs (default: a temp dir)")
    args = parser.parse_args()

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_coarse_"))
    data = work / "data"
    t = time.perf_counter()
    make_data(data, args.samples)
    records = read_pairs(data)
    jobs = [(str(r.gt), r.sample_id) for r in records]
    masks_total = 2 * len(records)
    pixels = sum(read_mask(r.gt).size for r in records)
    print(
        f"data: {len(records)} samples, {pixels / len(records) / 1e6:.2f} Mpx per mask on "
        f"average, generated in {time.perf_counter() - t:.1f} s ({os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f})"
    )
    rates: dict[str, float] = {}

    # 1. degradation alone
    t, cpu = time.perf_counter(), time.process_time()
    for job in jobs:
        _degrade(job)
    rates["degrade, 1 process"] = masks_total / (time.perf_counter() - t)
    cpu_rates = {"degrade, 1 process": masks_total / (time.process_time() - cpu)}
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        pool.map(_degrade, jobs[: args.workers])  # start-up outside the timing
        t = time.perf_counter()
        pool.map(_degrade, jobs, chunksize=1)
        rates[f"degrade, {args.workers} processes"] = masks_total / (time.perf_counter() - t)

    # 3. baseline: one process writing official PNGs (same reads and degradation as the stage)
    png_root = work / "png"
    cv2.setNumThreads(1)
    t, cpu = time.perf_counter(), time.process_time()
    for rec in records:
        gt = load_sample(rec).gt
        coarse = modify_boundary(gt, sample_rng(0, rec.sample_id, "coarse"))
        expand = modify_boundary_expand(gt, sample_rng(0, rec.sample_id, "coarse_expand"))
        write_mask(png_root / "coarse" / f"{rec.name}.png", coarse)
        write_mask(png_root / "coarse_expand" / f"{rec.name}.png", expand)
    png_seconds = time.perf_counter() - t
    rates["PNG loop, 1 process"] = masks_total / png_seconds
    cpu_rates["PNG loop, 1 process"] = masks_total / (time.process_time() - cpu)

    # 2. the stage on Dask, on a started cluster (start-up time printed separately)
    stores = {}
    startups = {}
    for workers in sorted({1, args.workers}):
        store = work / f"store_{workers}.zarr"
        shutil.rmtree(store, ignore_errors=True)
        t = time.perf_counter()
        with LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster:
            startups[workers] = time.perf_counter() - t
            t = time.perf_counter()
            summary = generate_coarse_hr(
                data,
                store,
                num_shards=len(records),
                dask_address=cluster.scheduler_address,
                images="images",
                masks="masks",
            )
            rates[f"gen-coarse-hr on Dask, {workers} worker(s)"] = masks_total / (
                time.perf_counter() - t
            )
        assert summary["ok"] == len(records)
        stores[workers] = store

    startup = ", ".join(f"{w} worker(s) {sec:.1f} s" for w, sec in startups.items())
    print(f"\nLocalCluster start-up (not in the rates below): {startup}")
    print("speed (masks per second; one sample = coarse + coarse_expand = 2 masks)")
    base = rates["PNG loop, 1 process"]
    for name, rate in rates.items():
        cpu_note = f"   ({cpu_rates[name]:.2f} per CPU-second)" if name in cpu_rates else ""
        print(f"  {name:38s} {rate:7.2f} masks/s   x{rate / base:5.2f} vs PNG loop{cpu_note}")

    # 4. the store against the PNGs
    store_path = stores[1]
    raw = pixels * 2  # one byte per pixel (uint8 / bool in memory)
    store_mask_bytes = _dir_bytes(store_path / "masks")
    store_bytes = _dir_bytes(store_path)
    png_bytes = _dir_bytes(png_root, "*.png")
    print("\nsize (raw = 1 byte per pixel)")
    print(f"  raw masks            {raw / 1e6:9.2f} MB")
    print(f"  PNG 0/255            {png_bytes / 1e6:9.3f} MB  ratio {raw / png_bytes:7.1f}")
    print(
        f"  zarr masks/ (+json)  {store_mask_bytes / 1e6:9.3f} MB  ratio {raw / store_mask_bytes:7.1f}"
        f"  ({png_bytes / store_mask_bytes:.2f}x smaller than PNG)"
    )
    print(f"  zarr whole store     {store_bytes / 1e6:9.3f} MB  (with metadata, index, records)")

    store = MaskStore.open(store_path)
    ids = store.sample_ids
    t = time.perf_counter()
    for _ in range(3):
        for sid in ids:
            for kind in ("coarse", "coarse_expand"):
                store.read_mask(kind, sid)
    zarr_s = (time.perf_counter() - t) / 3
    pngs = sorted(png_root.rglob("*.png"))
    t = time.perf_counter()
    for _ in range(3):
        for p in pngs:
            read_mask(p)
    png_s = (time.perf_counter() - t) / 3
    print("\nread (all masks, mean of 3 passes)")
    print(f"  zarr   {masks_total / zarr_s:8.1f} masks/s  {raw / zarr_s / 1e6:8.1f} MB/s (decoded)")
    print(f"  PNG    {masks_total / png_s:8.1f} masks/s  {raw / png_s / 1e6:8.1f} MB/s (decoded)")
    print(f"  zarr / PNG read speed: x{png_s / zarr_s:.2f}")
    same = all(
        np.array_equal(store.read_mask(k, r.sample_id), read_mask(png_root / k / f"{r.name}.png"))
        for r in records
        for k in ("coarse", "coarse_expand")
    )
    print(f"\nstore masks equal the PNG loop's masks: {same}")
    coarse_masks = [store.read_mask(k, sid) for sid in ids for k in ("coarse", "coarse_expand")]
    compare_codecs(coarse_masks, work)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

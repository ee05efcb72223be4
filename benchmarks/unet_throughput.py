"""Forward throughput of the denoising UNet per preset, batch size, device and dtype.

Prints samples/s, ms per sample, achieved TFLOP/s and model FLOP utilisation (MFU) against the
device's dense peak. FLOPs are counted by torch's FlopCounterMode (a multiply-add counts 2);
the official network costs 497.6 GFLOP per 256 x 256 sample.

    python benchmarks/unet_throughput.py                       # CPU: tiny/small at 1/8/32, official at 1
    python benchmarks/unet_throughput.py --device cuda         # + float32 and bfloat16 on the GPU
    python benchmarks/unet_throughput.py --presets official --batches 8 32 --device cuda --compile
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from segrefiner.model import PRESETS, build_unet

# Dense peaks in TFLOP/s (no sparsity) for the MFU column; pass --peak-tflops for other devices.
PEAKS = {
    ("H100", torch.bfloat16): 989.0,
    ("H100", torch.float32): 494.7,  # TF32 tensor cores
    ("H200", torch.bfloat16): 989.0,
    ("H200", torch.float32): 494.7,
    ("A100", torch.bfloat16): 312.0,
    ("A100", torch.float32): 156.0,
}


def count_flops(model: torch.nn.Module, size: int) -> float:
    """FLOPs of one forward on one (4, size, size) sample."""
    x = torch.zeros(1, 4, size, size)
    t = torch.zeros(1, dtype=torch.long)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.cpu()(x, t)
    return float(counter.get_total_flops())


def peak_for(device: torch.device, dtype: torch.dtype, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for (k, d), v in PEAKS.items() if k in name and d == dtype), None)


def time_forward(model, batch: int, size: int, device, dtype, min_seconds: float) -> float:
    """Median seconds per forward of a (batch, 4, size, size) input."""
    x = torch.randn(batch, 4, size, size, device=device)
    t = torch.randint(0, 6, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step():
        with torch.no_grad(), autocast:
            model(x, t)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()  # warm-up (and compilation)
    step()
    times = []
    start = time.perf_counter()
    while not times or (time.perf_counter() - start < min_seconds and len(times) < 50):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=None,
        help="float32 bfloat16 (default: fp32 on CPU, both on CUDA)",
    )
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument(
        "--cpu-official-max-batch", type=int, default=1, help="official on CPU is slow"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    parser.add_argument(
        "--compile-mode",
        default=None,
        help="torch.compile mode: default, reduce-overhead (CUDA graphs), max-autotune, ...",
    )
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    dtypes = args.dtypes or (["float32", "bfloat16"] if device.type == "cuda" else ["float32"])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name(device)}")
    else:
        print(f"device: cpu, {torch.get_num_threads()} threads")
    print(f"torch {torch.__version__}")
    print(
        f"{'preset':9} {'dtype':9} {'batch':>5} {'ms/sample':>10} {'samples/s':>10} {'GFLOP/smp':>10} {'TFLOP/s':>8} {'MFU':>6}"
    )
    for preset in args.presets:
        model = build_unet(preset).eval()
        flops = count_flops(model, args.size)
        model = model.to(device)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        runner = torch.compile(model, mode=args.compile_mode) if args.compile else model
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            for batch in args.batches:
                if (
                    device.type == "cpu"
                    and preset == "official"
                    and batch > args.cpu_official_max_batch
                ):
                    continue
                seconds = time_forward(runner, batch, args.size, device, dtype, args.min_seconds)
                per_sample = seconds / batch
                tflops = flops / per_sample / 1e12
                peak = peak_for(device, dtype, args.peak_tflops)
                mfu = f"{100 * tflops / peak:5.1f}%" if peak else "  n/a"
                print(
                    f"{preset:9} {dtype_name:9} {batch:5d} {1e3 * per_sample:10.2f} {1 / per_sample:10.1f} "
                    f"{flops / 1e9:10.1f} {tflops:8.3f} {mfu:>6}",
                    flush=True,
                )


if __name__ == "__main__":
    main()

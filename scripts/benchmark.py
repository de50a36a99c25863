"""Training speed: median time of one training step per model, and the data generator's rate.

    python scripts/benchmark.py                       # gsta, batch 16, on the default device
    python scripts/benchmark.py --models gsta incepu sepcrev --batch-size 16 --steps 5
    python scripts/benchmark.py --precision fp32 --no-channels-last   # the plain baseline
    python scripts/benchmark.py --out reports/benchmarks/cpu.json     # also save the results

A step is forward + loss + backward + Adam on random data of the model's natural input
shape, exactly as the trainer runs it (same autocast and memory format). GFLOP/s counts a
training step as 3x the FLOPs of its forward half (the backward costs about twice the
forward); for recurrent models that forward half is the teacher-forced training rollout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def training_forward_flops(model, shape, criterion) -> int:
    """FLOPs of the forward half of one training step at batch 1 (what the trainer runs:
    ``model(x)`` and the loss, or a recurrent model's teacher-forced ``training_loss``)."""
    from torch.utils.flop_counter import FlopCounterMode

    from vpstudy.train import loss_of

    x = torch.rand(1, *shape)
    y = torch.rand(1, model.out_frames, *shape[1:])
    counter = FlopCounterMode(display=False)
    with counter:
        loss_of(model, x, y, criterion, progress=0.5)
    return int(counter.get_total_flops())


def bench_model(name: str, batch_size: int, steps: int, warmup: int, device: torch.device,
                amp: torch.dtype | None, channels_last: bool, compile_model: bool,
                frame_size: int | None = None) -> dict:
    from vpstudy.losses import VideoPredictionLoss
    from vpstudy.models import build_model, default_input_shape
    from vpstudy.train import autocast, loss_of, memory_format_for

    shape = default_input_shape(name)
    if frame_size:
        shape = (*shape[:2], frame_size, frame_size)
    model = build_model(name, in_shape=shape)
    criterion = VideoPredictionLoss()
    flops = training_forward_flops(model, shape, criterion)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=memory_format_for(model))
    run_model = torch.compile(model) if compile_model else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch_size, *shape, device=device)
    y = torch.rand(batch_size, model.out_frames, *shape[1:], device=device)
    times = []
    for i in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        with autocast(device, amp):
            loss, _ = loss_of(run_model, x, y, criterion, progress=0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"model": name, "batch_size": batch_size, "frame_size": shape[-1],
            "precision": "bf16 autocast" if amp else "fp32", "median_step_s": med, "steps": steps,
            "train_forward_flops_per_sample": flops,
            "train_gflops_per_s": 3 * flops * batch_size / med / 1e9}


def bench_generator(device: torch.device, n: int = 1000, repeats: int = 3) -> dict:
    from vpstudy.data import generate_moving_mnist, load_digits

    digits = torch.from_numpy(load_digits("train")[0]).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    generate_moving_mnist(digits, 16, generator=gen, device=device)
    rates = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        generate_moving_mnist(digits, n, num_digits=2, seq_len=20, size=64, generator=gen, device=device)
        sync(device)
        rates.append(n / (time.perf_counter() - t0))
    return {"sequences": n, "sequences_per_s": statistics.median(rates)}


def bench_matmul(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Dense fp32 matmul GFLOP/s: the hardware's reference speed."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    a @ b
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["gsta"])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--frame-size", type=int, default=None,
                   help="frame side in pixels (default: the model's natural 64; the cpu profile's 32)")
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)

    from vpstudy.config import make_config
    from vpstudy.runs import hardware
    from vpstudy.train import autocast_dtype, resolve_device

    device = resolve_device(args.device)
    def amp_of(name: str):      # the precision the trainer would use for this model
        return autocast_dtype(make_config("smoke", model=name, precision=args.precision), device)

    result = {"hardware": hardware(str(device)), "torch": torch.__version__,
              "precision": args.precision,
              "channels_last": not args.no_channels_last, "compile": args.compile,
              "matmul_fp32_gflops_per_s": bench_matmul(device), "models": []}
    print(f"device: {result['hardware']['name']}; precision {result['precision']}; "
          f"fp32 2048² matmul {result['matmul_fp32_gflops_per_s']:.0f} GFLOP/s", flush=True)
    for name in args.models:
        r = bench_model(name, args.batch_size, args.steps, args.warmup, device, amp_of(name),
                        not args.no_channels_last, args.compile, args.frame_size)
        result["models"].append(r)
        print(f"{name:>12}: {r['median_step_s']:.3f} s/step at batch {r['batch_size']}, "
              f"{r['frame_size']}x{r['frame_size']}, {r['precision']}, "
              f"{r['train_gflops_per_s']:.0f} GFLOP/s", flush=True)
    result["generator"] = bench_generator(device)
    print(f"generator: {result['generator']['sequences_per_s']:.0f} sequences/s "
          f"(2 digits, 20 frames, 64x64)", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

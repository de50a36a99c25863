"""Training speed against the hardware's limit: ``python -m vpstudy bench``.

For each chosen model and batch size, in one process, this measures:

- the training step exactly as the trainer runs it (:func:`vpstudy.precision.autocast_dtype`
  with the model's own config, :func:`vpstudy.precision.memory_format_for`,
  :func:`vpstudy.train.loss_of`, the trainer's Adam), on fixed random data of the model's
  input shape at the chosen frame size;
- its effective GFLOP/s, counting a step as 3x the FLOPs of its forward half (the backward
  costs about twice the forward; for recurrent models the forward half is the
  teacher-forced training rollout);
- the same-run dense matmul peak in the precision the step uses (bf16 under bf16
  autocast, else fp32) and the fraction of it the step reaches;
- the same model's plain-PyTorch fp32 eager step (no autocast, contiguous memory) and the
  ratio of the two step times;
- the evaluation rate: metric frames per second of :func:`vpstudy.evaluate.evaluate` on a
  small fixed batch;
- inference as a user runs it (``inference``: batch 1 and 16, T_in observed -> out_frames
  predicted, ``torch.inference_mode``, the precision the model trains in), eager and through
  its exported ONNX graph with ONNX Runtime (fp32, where onnxruntime is installed);
- once per model, outside the timed rounds, the peak resident memory of its first training
  step in a fresh process (`training_peak_memory`);

and, once, the Moving MNIST generator's rate (sequences per second).

Every measurement runs once per round and the rounds are interleaved (the order rotates
from round to round), so that noise from the machine hits all of them alike; the results
are medians over rounds. Timings depend on what else runs on the machine: compare numbers
taken in the same run.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from vpstudy.config import TrainConfig, make_config

DEFAULT_FRAME_SIZE = make_config("cpu").frame_size    # the cpu profile's 32 (the paper: 64)
DEFAULT_BATCH_SIZE = make_config("cpu").batch_size
GENERATOR_SIZE = 64                                   # Moving MNIST frames as rendered

Timer = Callable[[], float]


# ---------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA is asynchronous; the CPU is not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> Timer:
    """A function that runs ``fn`` once and returns its wall time in seconds."""
    def run() -> float:
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        return time.perf_counter() - t0
    return run


def interleave(timers: dict[str, Timer], rounds: int, warmup: int,
               log: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Run every timer once per round, ``warmup`` untimed rounds first; the seconds per timer.

    The order rotates by one timer each round, so no measurement always follows the same one.
    """
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds must be >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
    names = list(timers)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = timers[name]()
            if r >= warmup:
                times[name].append(seconds)
        if log:
            log(f"round {r + 1}/{warmup + rounds}" + (" (warm-up)" if r < warmup else ""))
    return times


# ---------------------------------------------------------------- what is measured


def bench_config(model: str, batch_size: int, precision: str, device: torch.device) -> TrainConfig:
    """The cpu profile's config of ``model`` at this batch size: what decides precision and loss."""
    return make_config("cpu", model=model, batch_size=batch_size, precision=precision,
                       device=device.type)


def input_shape(model: str, frame_size: int) -> tuple[int, int, int, int]:
    """The model's (T_in, C, H, W) with frames of ``frame_size`` x ``frame_size``."""
    from vpstudy.models import default_input_shape

    t, c = default_input_shape(model)[:2]
    return (t, c, frame_size, frame_size)


def build(model: str, shape: tuple[int, ...], device: torch.device,
          trainer_layout: bool) -> nn.Module:
    """A freshly initialised model (seed 0, so two builds have the same weights) on ``device``,
    in the trainer's memory format if ``trainer_layout``, else contiguous."""
    from vpstudy.models import build_model
    from vpstudy.precision import memory_format_for

    torch.manual_seed(0)
    net = build_model(model, in_shape=tuple(shape)).to(device)
    if not any(p.requires_grad for p in net.parameters()):
        raise ValueError(f"model {model!r} has no trainable parameters; there is no training step to time")
    return net.to(memory_format=memory_format_for(net)) if trainer_layout else net


def training_forward_flops(model: nn.Module, shape: tuple[int, ...], cfg: TrainConfig) -> int:
    """FLOPs of the forward half of one training step at batch 1, on the CPU in fp32 (what the
    trainer runs: ``model(x)`` and the loss, or a recurrent model's ``training_loss``)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    from vpstudy.losses import VideoPredictionLoss
    from vpstudy.train import loss_of

    net = copy.deepcopy(model).float().cpu().train()
    x = torch.rand(1, *shape)
    y = torch.rand(1, net.out_frames, *shape[1:])
    counter = FlopCounterMode(display=False)
    with counter:
        loss_of(net, x, y, VideoPredictionLoss(cfg.lambda1, cfg.lambda2, cfg.tau), progress=0.5)
    return int(counter.get_total_flops())


def training_step(model: nn.Module, cfg: TrainConfig, device: torch.device,
                  amp: torch.dtype | None, batch_size: int, shape: tuple[int, ...]) -> Callable[[], None]:
    """One training step of ``model`` as `vpstudy.train` runs it (autocast ``amp``, the loss,
    zero_grad, backward, the trainer's Adam), on fixed random data."""
    from vpstudy.losses import VideoPredictionLoss
    from vpstudy.precision import autocast
    from vpstudy.train import loss_of, make_optimizer

    optimizer, _ = make_optimizer(cfg, model)
    criterion = VideoPredictionLoss(cfg.lambda1, cfg.lambda2, cfg.tau)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, *shape, generator=gen).to(device)
    y = torch.rand(batch_size, model.out_frames, *shape[1:], generator=gen).to(device)

    def step() -> None:
        model.train()
        with autocast(device, amp):
            loss, _ = loss_of(model, x, y, criterion, progress=0.5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def evaluation(model: nn.Module, cfg: TrainConfig, device: torch.device, amp: torch.dtype | None,
               sequences: int, shape: tuple[int, ...]) -> Callable[[], None]:
    """`vpstudy.evaluate.evaluate` (prediction and `MetricAccumulator`) on a fixed batch of
    ``sequences`` random clips, in one batch."""
    from vpstudy.evaluate import evaluate

    gen = torch.Generator().manual_seed(1)
    clips = torch.rand(sequences, shape[0] + model.out_frames, *shape[1:], generator=gen)
    eval_cfg = make_config("cpu", model=cfg.model, batch_size=cfg.batch_size, precision=cfg.precision,
                           in_frames=shape[0], out_frames=model.out_frames, device=cfg.device)
    return lambda: evaluate(model, clips, eval_cfg, device, amp, batch_size=sequences)


INFERENCE_BATCHES = (1, 16)     # the inference latencies measured: one clip, and a batch


def inference(model: nn.Module, device: torch.device, amp: torch.dtype | None, batch_size: int,
              shape: tuple[int, ...]) -> Callable[[], None]:
    """A user's prediction: ``model(x)`` on ``batch_size`` clips of ``shape`` (T_in observed
    frames -> the model's out_frames), eval mode, ``torch.inference_mode``, autocast ``amp``
    (the precision the model trains in: its best on this device)."""
    from vpstudy.precision import autocast

    x = torch.rand(batch_size, *shape, generator=torch.Generator().manual_seed(3)).to(device)

    def predict() -> None:
        model.eval()
        with torch.inference_mode(), autocast(device, amp):
            model(x)
    return predict


def onnx_sessions(model: nn.Module, shape: tuple[int, ...], folder: str):
    """An ONNX Runtime CPU session (fp32, torch's thread count) of the model's exported graph
    (batch dimension dynamic), or None when onnxruntime is not installed or the export fails."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from pathlib import Path

    from vpstudy.export import export_onnx, onnx_session

    try:
        path = export_onnx(model, Path(folder) / f"{model.name}.onnx", (1, *shape))
    except Exception:            # an op the exporter cannot trace: no ONNX timing for this model
        return None
    return onnx_session(path, threads=torch.get_num_threads())


def onnx_inference(session, batch_size: int, shape: tuple[int, ...]) -> Callable[[], None]:
    """`inference` through an ONNX Runtime session (a CPU float32 batch)."""
    from vpstudy.export import onnx_predict

    x = torch.rand(batch_size, *shape, generator=torch.Generator().manual_seed(3))
    return lambda: onnx_predict(session, x)


_PEAK_SCRIPT = """
import json, sys, torch
from vpstudy import bench
name, bs, frame, precision, device, threads = sys.argv[1:7]
torch.set_num_threads(int(threads))
dev = torch.device(device)
shape = bench.input_shape(name, int(frame))
cfg = bench.bench_config(name, int(bs), precision, dev)
from vpstudy.precision import autocast_dtype
net = bench.build(name, shape, dev, True)
step = bench.training_step(net, cfg, dev, autocast_dtype(cfg, dev), int(bs), shape)
def status_kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
before = status_kb("VmRSS") * 1024
step()
peak = status_kb("VmHWM") * 1024
print(json.dumps({"before_bytes": before, "peak_bytes": peak}))
"""


def training_peak_memory(name: str, batch_size: int, frame_size: int, precision: str,
                         device: torch.device) -> dict[str, float] | None:
    """Peak resident memory of the first training step, in a fresh process (Linux; None
    elsewhere or on CUDA): 'peak_rss_mb', the process's peak RSS (VmHWM: Python, torch, the
    model, its optimizer and data included), and 'step_rss_mb', that peak less the RSS just
    before the step (what the step's activations, gradients and Adam state add). Not
    ``ru_maxrss``: Linux keeps it across fork and exec, so a child started by a large parent
    reports the parent's peak (every model read 2,299 MB in a bench run that way)."""
    import json
    import subprocess
    import sys

    if device.type != "cpu" or not sys.platform.startswith("linux"):
        return None
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, name, str(batch_size), str(frame_size),
                           precision, str(device), str(torch.get_num_threads())],
                          capture_output=True, text=True, timeout=1800, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {"peak_rss_mb": out["peak_bytes"] / 2**20,
            "step_rss_mb": (out["peak_bytes"] - out["before_bytes"]) / 2**20}


def matmul(device: torch.device, dtype: torch.dtype, n: int) -> Callable[[], None]:
    """One dense ``n`` x ``n`` matmul in ``dtype``: the hardware's reference speed."""
    gen = torch.Generator().manual_seed(2)
    a = torch.rand(n, n, generator=gen).to(device, dtype)
    b = torch.rand(n, n, generator=gen).to(device, dtype)
    return lambda: a @ b


def generator(device: torch.device, sequences: int) -> Callable[[], None]:
    """Moving MNIST generation of ``sequences`` 20-frame, 2-digit, 64x64 clips on ``device``."""
    from vpstudy.data import generate_moving_mnist, load_digits

    digits = torch.from_numpy(load_digits("train")[0]).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    return lambda: generate_moving_mnist(digits, sequences, num_digits=2, seq_len=20,
                                         size=GENERATOR_SIZE, generator=gen, device=device)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_name(amp: torch.dtype | None) -> str:
    """'bf16' (or 'fp16') for an autocast dtype, 'fp32' for none: the precision of the matmuls."""
    return "fp32" if amp is None else {v: k for k, v in DTYPES.items()}[amp]


# ---------------------------------------------------------------- the benchmark


def model_timers(name: str, batch_sizes: Sequence[int], frame_size: int, precision: str,
                 device: torch.device, eval_sequences: int, onnx_folder: str | None = None
                 ) -> tuple[dict[str, Timer], list[dict]]:
    """The timers of one model (trainer's step and fp32 eager step per batch size, evaluation,
    inference at INFERENCE_BATCHES, eager and, with ``onnx_folder``, ONNX Runtime on the CPU)
    and what `summarize` needs to know of each batch size ("cases")."""
    from vpstudy.precision import autocast_dtype, memory_format_for

    shape = input_shape(name, frame_size)
    fast, plain = build(name, shape, device, True), build(name, shape, device, False)
    cfg = bench_config(name, batch_sizes[0], precision, device)
    amp = autocast_dtype(cfg, device)                  # decided by the model, not the batch size
    flops = training_forward_flops(fast, shape, cfg)
    timers: dict[str, Timer] = {}
    cases = []
    for bs in batch_sizes:
        cfg = bench_config(name, bs, precision, device)
        key = f"{name}@{bs}"
        timers[f"step {key}"] = timed(training_step(fast, cfg, device, amp, bs, shape), device)
        timers[f"fp32 eager step {key}"] = timed(training_step(plain, cfg, device, None, bs, shape), device)
        cases.append({"key": key, "model": name, "batch_size": bs, "amp": amp, "flops": flops,
                      "shape": shape, "out_frames": fast.out_frames,
                      "memory_format": str(memory_format_for(fast)).removeprefix("torch.")})
    timers[f"eval {name}"] = timed(evaluation(fast, cfg, device, amp, eval_sequences, shape), device)
    session = onnx_sessions(plain, shape, onnx_folder) if onnx_folder else None
    for bs in INFERENCE_BATCHES:
        timers[f"infer {name}@{bs}"] = timed(inference(fast, device, amp, bs, shape), device)
        if session is not None:
            timers[f"onnx {name}@{bs}"] = timed(onnx_inference(session, bs, shape), torch.device("cpu"))
    return timers, cases


def run_bench(models: Sequence[str] = ("gsta",), batch_sizes: Sequence[int] = (DEFAULT_BATCH_SIZE,), *,
              frame_size: int = DEFAULT_FRAME_SIZE, rounds: int = 5, warmup: int = 1,
              device: str = "auto", precision: str = "auto", eval_sequences: int = 16,
              generator_sequences: int = 512, matmul_size: int = 2048, onnx: bool = True,
              memory: bool = True, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every model at every batch size, interleaved in ``rounds``; one JSON-ready dict.

    ``precision`` is the config's (auto: as the trainer decides per model and device).
    ``onnx``: also time ONNX Runtime (where onnxruntime is installed); ``memory``: also measure
    each model's training-step peak memory at the first batch size (`training_peak_memory`).
    Raises ValueError for an unknown model, a model without trainable parameters, or a frame
    size the model does not take, before any timing.
    """
    import tempfile

    from vpstudy import runs
    from vpstudy.precision import resolve_device

    sizes = dict(frame_size=frame_size, rounds=rounds, eval_sequences=eval_sequences,
                 generator_sequences=generator_sequences, matmul_size=matmul_size)
    if min(sizes.values()) < 1 or warmup < 0:
        raise ValueError(f"{', '.join(sizes)} must be >= 1 and warmup >= 0; got {sizes}, warmup={warmup}")
    if not models or not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"give at least one model and batch sizes >= 1; got models {list(models)}, "
                         f"batch sizes {list(batch_sizes)}")
    dev = resolve_device(device)
    timers: dict[str, Timer] = {}
    cases: list[dict[str, Any]] = []
    onnx_dir = tempfile.TemporaryDirectory() if onnx and dev.type == "cpu" else None
    for name in models:
        t, c = model_timers(name, batch_sizes, frame_size, precision, dev, eval_sequences,
                            onnx_dir.name if onnx_dir else None)
        timers.update(t)
        cases += c
    peak_memory = {name: training_peak_memory(name, batch_sizes[0], frame_size, precision, dev)
                   for name in models} if memory else {}
    peaks = sorted({"fp32"} | {precision_name(c["amp"]) for c in cases})
    for p in peaks:
        timers[f"matmul {p}"] = timed(matmul(dev, DTYPES[p], matmul_size), dev)
    timers["generator"] = timed(generator(dev, generator_sequences), dev)

    times = interleave(timers, rounds, warmup, log)
    if onnx_dir:
        onnx_dir.cleanup()
    med = {k: statistics.median(v) for k, v in times.items()}
    peak = {p: {"size": matmul_size, "seconds": med[f"matmul {p}"],
                "gflops_per_s": 2 * matmul_size**3 / med[f"matmul {p}"] / 1e9} for p in peaks}
    return {
        "provenance": {"git_commit": runs.git_commit(), "measured_at": runs.now()},
        "hardware": runs.hardware(str(dev)),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(dev),
        "precision": precision,
        "frame_size": frame_size,
        "rounds": rounds,
        "warmup": warmup,
        "matmul_peak": peak,
        "models": [summarize(c, med, peak, eval_sequences) for c in cases],
        "inference": {c["model"]: inference_summary(c["model"], c["out_frames"], med,
                                                    peak_memory.get(c["model"]), batch_sizes[0])
                      for c in cases},
        "generator": {"sequences": generator_sequences, "seq_len": 20, "size": GENERATOR_SIZE,
                      "seconds": med["generator"],
                      "sequences_per_s": generator_sequences / med["generator"]},
        "times_s": times,
    }


def summarize(case: dict[str, Any], med: dict[str, float], peak: dict[str, dict],
              eval_sequences: int) -> dict[str, Any]:
    """One model and batch size's medians, rates, fractions of peak and fp32-eager ratio."""
    key, bs, flops = case["key"], case["batch_size"], case["flops"]
    step, plain = med[f"step {key}"], med[f"fp32 eager step {key}"]
    gflops, plain_gflops = 3 * flops * bs / step / 1e9, 3 * flops * bs / plain / 1e9
    p = precision_name(case["amp"])
    return {
        "model": case["model"], "batch_size": bs, "frame_size": case["shape"][-1],
        "input_shape": list(case["shape"]),
        "precision": f"{p} autocast" if case["amp"] else "fp32",
        "memory_format": case["memory_format"],
        "step_s": step,
        "train_forward_flops_per_sample": flops,
        "gflops_per_s": gflops,
        "peak_precision": p,
        "peak_gflops_per_s": peak[p]["gflops_per_s"],
        "fraction_of_peak": gflops / peak[p]["gflops_per_s"],
        "fp32_eager_step_s": plain,
        "fp32_eager_gflops_per_s": plain_gflops,
        "fp32_eager_fraction_of_peak": plain_gflops / peak["fp32"]["gflops_per_s"],
        "fp32_eager_over_step": plain / step,
        "eval_sequences": eval_sequences,
        "eval_metric_frames_per_s": eval_sequences * case["out_frames"] / med[f"eval {case['model']}"],
    }


def inference_summary(name: str, out_frames: int, med: dict[str, float],
                      memory: dict[str, float] | None, memory_batch: int) -> dict[str, Any]:
    """One model's inference latencies (seconds per call and ms per predicted frame, eager and
    ONNX Runtime where timed) and its training-step memory."""
    row: dict[str, Any] = {"out_frames": out_frames}
    for bs in INFERENCE_BATCHES:
        for kind in ("infer", "onnx"):
            key = f"{kind} {name}@{bs}"
            if key in med:
                label = "eager" if kind == "infer" else "onnxruntime"
                row[f"{label}_b{bs}_s"] = med[key]
                row[f"{label}_b{bs}_ms_per_frame"] = 1e3 * med[key] / (bs * out_frames)
    if memory:
        row.update(memory, memory_batch_size=memory_batch)
    return row


def format_result(result: dict[str, Any]) -> str:
    """The human-readable lines of a `run_bench` result."""
    lines = [f"device: {result['hardware']['name']}; torch {result['torch']}; "
             f"{result['threads']} threads; medians of {result['rounds']} interleaved rounds"]
    for p, m in result["matmul_peak"].items():
        lines.append(f"{p} {m['size']}² matmul: {m['gflops_per_s']:.0f} GFLOP/s")
    for r in result["models"]:
        lines.append(
            f"{r['model']:>12} batch {r['batch_size']}, {r['frame_size']}x{r['frame_size']}, "
            f"{r['precision']}, {r['memory_format']}: {r['step_s']:.3f} s/step, "
            f"{r['gflops_per_s']:.0f} GFLOP/s = {r['fraction_of_peak']:.0%} of the {r['peak_precision']} "
            f"matmul; fp32 eager {r['fp32_eager_step_s']:.3f} s/step = {r['fp32_eager_over_step']:.2f}x "
            f"as long; eval {r['eval_metric_frames_per_s']:.0f} metric frames/s")
    for name, r in result.get("inference", {}).items():
        parts = [f"{kind} batch {bs}: {r[f'{kind}_b{bs}_ms_per_frame']:.2f}"
                 for kind in ("eager", "onnxruntime") for bs in INFERENCE_BATCHES
                 if f"{kind}_b{bs}_ms_per_frame" in r]
        memory = (f"; training step at batch {r['memory_batch_size']}: peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(+{r['step_rss_mb']:.0f} MB over the RSS before it)") if "peak_rss_mb" in r else ""
        lines.append(f"{name:>12} inference, ms per predicted frame: {', '.join(parts)}{memory}")
    g = result["generator"]
    lines.append(f"generator: {g['sequences_per_s']:.0f} sequences/s "
                 f"(2 digits, {g['seq_len']} frames, {g['size']}x{g['size']})")
    return "\n".join(lines)

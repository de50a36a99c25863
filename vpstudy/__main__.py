"""Command line: ``python -m vpstudy {train,describe,study,report,bench,predict,weights,export} ...``.

The training flags are the config's field names (``--lambda2 0.1``, ``--batch-size 16`` or
``--batch_size 16``): the same names the notebooks take as papermill parameters.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from vpstudy.cli_args import add_config_flags, config_from_args
from vpstudy.config import make_config
from vpstudy.runs import INTERRUPTS, RunError


def cmd_train(args: argparse.Namespace) -> int:
    from vpstudy.distributed import launched_ranks
    from vpstudy.lifeline import exit_with_parent
    from vpstudy.train import baseline_summary, train

    exit_with_parent()                        # started by the study runner: die with it
    cfg = config_from_args(args)
    rec = train(cfg, args.runs, force=args.force, progress=not args.no_progress)
    if not launched_ranks().main:             # under torchrun: rank 0 reports
        return 0
    if not args.no_baselines:
        print(baseline_summary(cfg, rec, args.runs))
    if args.json:
        rec = {k: v for k, v in rec.items() if not k.startswith("_")}
        print(json.dumps(rec, sort_keys=True, default=str))
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from vpstudy.efficiency import describe_model
    from vpstudy.models import build_model, default_input_shape, model_info

    shape = default_input_shape(args.model)
    model = build_model(args.model, in_shape=shape).eval()
    registry = model_info(args.model)            # what it is, and the paper's figures where known
    info = {"model": args.model, "description": registry["description"], "input_shape": list(shape),
            **describe_model(model, (1, *shape), latency=args.latency),
            **{k: registry[k] for k in ("paper_params", "paper_flops", "paper_note") if k in registry}}
    if args.json:
        print(json.dumps(info, sort_keys=True))
    else:
        for k, v in info.items():
            print(f"{k:>12}: {v:,}" if isinstance(v, int) else f"{k:>12}: {v}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from vpstudy.export import export_onnx

    trained = {"model": args.trained, "run": args.run, "checkpoint": args.checkpoint}
    if any(v is not None for v in trained.values()):
        if args.model is not None or args.frame_size:
            raise ValueError("a trained model exports at its run's own frame size: give --trained, --run or "
                             "--checkpoint without a model name or --frame-size")
        from vpstudy.predict import load_predictor

        model, cfg, what = load_predictor(**trained, weights=args.weights)
        shape = cfg.clip_shape
    elif args.model is None:
        raise ValueError("name a registered model (freshly initialised weights), or give --trained NAME, "
                         "--run DIR or --checkpoint PATH")
    else:
        from vpstudy.models import build_model, default_input_shape

        shape = default_input_shape(args.model)
        if args.frame_size:
            shape = (*shape[:2], args.frame_size, args.frame_size)
        model, what = build_model(args.model, in_shape=shape), f"{args.model} (freshly initialised)"
    path = export_onnx(model.float(), args.onnx, (args.batch_size, *shape))
    print(f"wrote {path}: {what}, frames {(args.batch_size, *shape)} -> "
          f"future ({args.batch_size}, {model.out_frames}, {', '.join(map(str, shape[1:]))})")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from vpstudy.study import run_study

    return run_study(args.name, profile=args.profile, seeds=args.seeds, jobs=args.jobs,
                     root=args.runs, only=args.only, executor=args.executor,
                     cluster=args.cluster, threads=args.threads, cluster_security=args.cluster_security)


def cmd_report(args: argparse.Namespace) -> int:
    from vpstudy import runs
    from vpstudy.report import build_report, records_by_id

    readme = build_report(args.runs, args.out)
    out = readme.parent                       # STUDY/PROFILE/*.md and *.png, and the cross-study figure
    tables, figures = len(list(out.glob("*/*/*.md"))), len([*out.glob("*/*/*.png"), *out.glob("*.png")])
    print(f"wrote {readme} ({tables} tables, {figures} figures) "
          f"from {len(records_by_id(args.runs))} completed run records in {runs.runs_root(args.runs)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from vpstudy.bench import format_result, run_bench
    from vpstudy.runs import atomic_write_json

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    log = None if args.json else (lambda s: print(s, file=sys.stderr, flush=True))
    result = run_bench(args.models, args.batch_size, frame_size=args.frame_size, rounds=args.rounds,
                       warmup=args.warmup, device=args.device, precision=args.precision,
                       eval_sequences=args.eval_sequences, generator_sequences=args.generator_sequences,
                       matmul_size=args.matmul_size, onnx=not args.no_onnx, memory=not args.no_memory,
                       log=log)
    if args.out:
        atomic_write_json(args.out, result)
    print(json.dumps(result, sort_keys=True) if args.json else format_result(result))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from vpstudy.predict import run_predict

    run_predict(model=args.model, run=args.run, checkpoint=args.checkpoint, weights=args.weights,
                video=args.video, frames=args.frames, npy=args.npy, test_index=args.test_index,
                digits=args.digits, out=args.out, start=args.start, step=args.step, fps=args.fps,
                mp4=args.mp4, device=args.device, progress=not args.no_progress)
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from vpstudy.weights import check_weights, export_weights

    if args.action == "export":
        export_weights(args.runs or [None], args.out, args.models, args.dtype)
    else:
        print("\n".join(check_weights(args.out)))
    return 0


def runs_folder(value: str) -> str:
    """``--runs``: a folder; an empty value (an unset shell variable) is refused, never read as
    "the default", which for a study is the committed ``runs/``."""
    if not value.strip():
        raise argparse.ArgumentTypeError("is empty (an unset shell variable?); give the runs folder, "
                                         "or leave --runs out for the default")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vpstudy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one model and write its run record")
    add_config_flags(t)
    t.add_argument("--runs", default=None, type=runs_folder,
                   help="runs root (default: $VPSTUDY_RUNS, else ./runs-scratch, which git ignores; "
                   "a config the study recorded in ./runs is loaded from there)")
    t.add_argument("--force", action="store_true", help="re-run even if this config already completed "
                   "(the old run directory is moved aside, not overwritten)")
    t.add_argument("--json", action="store_true", help="print the run record as JSON on the last line")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.add_argument("--no-baselines", action="store_true",
                   help="do not print the last-frame and all-black baselines beside the result")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("describe", help="parameters, size, MACs and FLOPs of a model")
    d.add_argument("model")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.add_argument("--latency", action="store_true", help="also time one forward pass at batch 1 (CPU)")
    d.set_defaults(func=cmd_describe)

    e = sub.add_parser("export", help="write a model's inference graph as ONNX (optional extra 'onnx')")
    e.add_argument("model", nargs="?", default=None,
                   help="registered model name (freshly initialised weights); or one of:")
    trained = e.add_mutually_exclusive_group()
    trained.add_argument("--trained", help="the shipped trained weights of this model (weights/manifest.json)")
    trained.add_argument("--run", help="a run directory with its checkpoint.pt")
    trained.add_argument("--checkpoint", help="a checkpoint.pt (it holds its config)")
    e.add_argument("--weights", default=None, help="shipped weights folder (default $VPSTUDY_WEIGHTS or ./weights)")
    e.add_argument("--onnx", required=True, help="output .onnx file")
    e.add_argument("--batch-size", "--batch_size", type=int, default=1, help="traced batch size (default 1)")
    e.add_argument("--frame-size", "--frame_size", type=int, default=None,
                   help="frame side in pixels (default: the model's own)")
    e.set_defaults(func=cmd_export)

    s = sub.add_parser("study", help="run a whole study through the ablation notebook")
    s.add_argument("name", help="study name, e.g. simvp")
    s.add_argument("--profile", default=None)
    s.add_argument("--seeds", type=int, default=1, help="seeds per run (0..N-1)")
    s.add_argument("--jobs", type=int, default=1, help="runs at once")
    s.add_argument("--threads", type=int, default=None,
                   help="torch threads per run (default: this machine's cores / jobs)")
    s.add_argument("--runs", default=None, type=runs_folder, help="runs root (default: $VPSTUDY_RUNS or ./runs)")
    s.add_argument("--only", default=None, help="only runs whose table matches, e.g. 'Table 1'")
    s.add_argument("--executor", default="notebook", choices=["notebook", "command"],
                   help="notebook: papermill (default); command: `vpstudy train` (no Jupyter needed)")
    s.add_argument("--cluster", default=None,
                   help="run on Dask distributed: local:N (N worker processes here) or a scheduler "
                        "address, e.g. tcp://host:8786 (workers must share the runs root)")
    s.add_argument("--cluster-security", default=None, metavar="CA,CERT,KEY",
                   help="Dask over TLS: the certificate authority, this client's certificate and key "
                        "(PEM files; the scheduler and workers take the same, with a tls:// address)")
    s.set_defaults(func=cmd_study)

    r = sub.add_parser("report", help="regenerate reports/ from the run records")
    r.add_argument("--runs", default=None, type=runs_folder, help="runs root (default: $VPSTUDY_RUNS or ./runs)")
    r.add_argument("--out", default=None, help="output folder (default: $VPSTUDY_REPORTS or ./reports)")
    r.set_defaults(func=cmd_report)

    cpu = make_config("cpu")        # the bench's defaults: the cpu profile's batch and frame size
    b = sub.add_parser("bench", help="training step speed against the same-run matmul peak and fp32 eager",
                       description="Time the training step of each model as the trainer runs it, its "
                       "GFLOP/s and fraction of the same-run matmul peak, the plain fp32 eager step, "
                       "the evaluation and generator rates; interleaved rounds, medians.")
    b.add_argument("--models", nargs="+", default=["gsta"], help="models to time (default: gsta)")
    b.add_argument("--batch-size", "--batch_size", nargs="+", type=int, default=[cpu.batch_size],
                   help=f"batch sizes (default: the cpu profile's {cpu.batch_size})")
    b.add_argument("--frame-size", "--frame_size", type=int, default=cpu.frame_size,
                   help=f"frame side in pixels (default: the cpu profile's {cpu.frame_size}; the paper's 64)")
    b.add_argument("--rounds", type=int, default=5, help="timed rounds; results are medians (default 5)")
    b.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    b.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    b.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="the config's precision (auto: as the trainer decides per model)")
    b.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    b.add_argument("--eval-sequences", type=int, default=16, help="clips in the evaluation batch")
    b.add_argument("--generator-sequences", type=int, default=512, help="clips per generator call")
    b.add_argument("--matmul-size", type=int, default=2048, help="side of the peak matmul")
    b.add_argument("--no-onnx", action="store_true", help="do not time ONNX Runtime inference")
    b.add_argument("--no-memory", action="store_true", help="do not measure training-step memory")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--out", default=None, help="also write the result as JSON to this file")
    b.set_defaults(func=cmd_bench)

    pr = sub.add_parser("predict", help="predict the next frames of a video, frames, an array or a test sequence",
                        description="Predict with a trained model; write a GIF (and an MP4 when ffmpeg is "
                        "there) of observed | predicted | target, and per-frame MSE/SSIM when there is a target.")
    which = pr.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="the shipped weights of this model (weights/manifest.json), e.g. gsta")
    which.add_argument("--run", help="a run directory with its checkpoint.pt")
    which.add_argument("--checkpoint", help="a checkpoint.pt (it holds its config)")
    source = pr.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="a video file (mp4, avi, gif, ...)")
    source.add_argument("--frames", help="a folder of frames (images, in the order of their names)")
    source.add_argument("--npy", help="an .npy array of frames: (T,H,W), (T,H,W,C) or (T,C,H,W)")
    source.add_argument("--test-index", "--test_index", type=int, help="sequence N of the model's fixed test set")
    pr.add_argument("--digits", type=int, default=None, help="with --test-index: the fixed test set with this "
                    "many digits (e.g. 3)")
    pr.add_argument("--out", default="pred.gif", help="the GIF to write (default pred.gif); the MP4 goes beside it")
    pr.add_argument("--no-mp4", dest="mp4", action="store_false", help="write the GIF only")
    pr.add_argument("--start", type=int, default=0, help="first input frame to use (default 0)")
    pr.add_argument("--step", type=int, default=1, help="use every STEP-th input frame (default 1)")
    pr.add_argument("--fps", type=float, default=4.0, help="frames per second of the GIF/MP4 (default 4)")
    pr.add_argument("--weights", default=None, help="shipped weights folder (default $VPSTUDY_WEIGHTS or ./weights)")
    pr.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_predict)

    w = sub.add_parser("weights", help="the shipped trained weights: list (and verify) or export them")
    w.add_argument("action", choices=["list", "export"])
    w.add_argument("--runs", nargs="+", default=None, type=runs_folder,
                   help="export: runs roots with records and checkpoints (default: $VPSTUDY_RUNS or "
                        "./runs; records from the first that has one)")
    w.add_argument("--out", default=None, help="weights folder (default $VPSTUDY_WEIGHTS or ./weights)")
    w.add_argument("--models", nargs="+", default=None, help="export only these models")
    w.add_argument("--dtype", default="auto", choices=["auto", "float16", "float32"],
                   help="auto (default): float16 where the test metrics stay within 0.1%% of float32")
    w.set_defaults(func=cmd_weights)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; a known failure (bad parameter or data, corrupt checkpoint or record, bad
    runs root or study file, run in use or diverged) prints one ``error:`` line and returns 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except INTERRUPTS as e:                   # Ctrl-C or SIGTERM: one line, not a traceback
        how = "Ctrl-C" if isinstance(e, KeyboardInterrupt) else str(e)
        print(f"interrupted ({how}); a run in progress is marked interrupted and resumes from its "
              f"last epoch checkpoint when the same command runs again", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 143


if __name__ == "__main__":
    sys.exit(main())

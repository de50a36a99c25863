"""Shipped trained weights: ``weights/<model>.safetensors`` and ``weights/manifest.json``.

    from vpstudy import load_trained
    model, cfg = load_trained("gsta")      # built through the registry; digest and config checked

    python -m vpstudy weights list                       # what is shipped, digests verified
    python -m vpstudy weights export --runs runs         # re-export from a runs root with checkpoints

**Which run.** Per model trained at the cpu profile: the config with the lowest mean final
validation MSE over its seeds (the report's choice, `vpstudy.report.figures.lowest_validation`),
and of it the seed with the lowest final validation MSE. Checkpoints are not committed, so
that run may have none here; the export then says so and ships the run with the lowest final
validation MSE among those that have one, recording in the manifest that it is the best
*available* and which better run lacks weights. A model none of whose runs has a checkpoint is
skipped with the command that re-trains its best run.

**Which dtype.** fp16 when every test metric of the fp16-rounded weights is within 0.1% of the
fp32 weights' on the first 64 sequences of the fixed test set, under fp32 compute and under the
precision the run was evaluated in; else fp32. The manifest keeps both sets of numbers, the
record's validation and test metrics, the record's test metrics on the same 64 sequences
(`per_sequence.npz`) beside the exported weights', and the metrics of the shipped weights on the
first 8 test sequences in fp32 (what the tests check the shipped files against).

**Checks on load.** The file's SHA-256 must equal the manifest's, and the config stored in the
file must be the manifest's (and give its run id); a mismatch is a `WeightsError` saying what to
do. The tensors go through `vpstudy.checkpoints.load_model_state` (names and shapes checked).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from vpstudy import runs
from vpstudy.config import TrainConfig

WEIGHTS_ENV = "VPSTUDY_WEIGHTS"
MANIFEST = "manifest.json"
FORMAT = "vpstudy-weights-1"
META_KEY = "vpstudy"             # the safetensors metadata entry: {format, model, run_id, config} as JSON
PROFILE = "cpu"                  # the profile whose runs are shipped
BUDGET_BYTES = 60_000_000        # all shipped files together
FP16_TOLERANCE = 1e-3            # largest relative change of a test metric that fp16 may cause
CHECK_SEQUENCES = 64             # test sequences of the dtype and record checks
REPRODUCE_SEQUENCES = 8          # test sequences of the numbers the tests reproduce
METRICS = ("mse", "mae", "ssim", "ssim_strict", "psnr")


class WeightsError(ValueError):
    """Shipped weights that are missing, damaged or do not match their manifest."""


def weights_dir(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$VPSTUDY_WEIGHTS``, else ``weights/`` in the project directory."""
    return Path(path or os.environ.get(WEIGHTS_ENV) or runs.project_dir() / "weights")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: str | os.PathLike | None = None, missing_ok: bool = False) -> dict[str, Any]:
    """The manifest of the weights folder ``path`` (`weights_dir`)."""
    file = weights_dir(path) / MANIFEST
    if not file.is_file():
        if missing_ok:
            return {"format": FORMAT, "models": {}, "skipped": {}}
        raise WeightsError(f"no shipped weights here: {file} is missing; restore weights/ from the "
                           f"repository (git checkout -- weights), or export some with `python -m vpstudy "
                           f"weights export --runs ROOT`, or predict from a run (--run DIR) or a checkpoint")
    try:
        manifest = runs.read_json(file)
    except (OSError, ValueError) as e:
        raise WeightsError(f"{file} cannot be read ({e}); restore it (git checkout -- weights)") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise WeightsError(f"{file} is not a vpstudy weights manifest (format {FORMAT} expected); "
                           f"restore it (git checkout -- weights)")
    return manifest


def manifest_entry(name: str, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest's entry of model ``name``; a model without weights is an error naming why."""
    manifest = read_manifest(path)
    if name in manifest["models"]:
        return manifest["models"][name]
    why = manifest.get("skipped", {}).get(name, {}).get("reason")
    shipped = ", ".join(sorted(manifest["models"])) or "none"
    raise WeightsError(f"no shipped weights for model {name!r} (shipped: {shipped})"
                       + (f"; {why}" if why else "") + ". Use --run DIR or --checkpoint PATH of a trained run")


def load_trained(name: str, weights: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    """The shipped trained model ``name`` (e.g. "gsta") in eval mode on ``device``, and its run's
    config. Raises `WeightsError` when the file is missing, its SHA-256 or its config does not
    match the manifest."""
    from safetensors import SafetensorError, safe_open

    from vpstudy.checkpoints import load_model_state
    from vpstudy.precision import memory_format_for
    from vpstudy.train import build_run_model

    folder = weights_dir(weights)
    entry = manifest_entry(name, folder)
    path = folder / entry["file"]
    if not path.is_file():
        raise WeightsError(f"{path} is missing (named in {folder / MANIFEST}); restore it (git checkout "
                           f"-- weights) or re-export it (python -m vpstudy weights export)")
    if file_sha256(path) != entry["sha256"]:
        raise WeightsError(f"{path} does not match its SHA-256 in {folder / MANIFEST}: the file was "
                           f"damaged or replaced; restore it (git checkout -- weights) or re-export it "
                           f"(python -m vpstudy weights export)")
    cfg = TrainConfig.from_dict(entry["config"])
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = runs.json_loads((f.metadata() or {}).get(META_KEY, "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path} is not a readable vpstudy safetensors file ({e}); re-export it") from e
    stored = meta.get("config") or {}
    if stored != cfg.identity() or meta.get("run_id") != entry["run_id"] \
            or runs.run_id(cfg.identity()) != entry["run_id"]:
        diff = {k: (stored.get(k), v) for k, v in cfg.identity().items() if stored.get(k) != v}
        raise WeightsError(f"{path} was exported from another config than {folder / MANIFEST} names for "
                           f"{name!r} (run {meta.get('run_id')} vs {entry['run_id']}; differing fields "
                           f"(file, manifest): {diff}); re-export the weights (python -m vpstudy weights export)")
    model = build_run_model(cfg)
    load_model_state(model, tensors, f"weights {path}", meta.get("model"))
    model = model.to(device)
    return model.to(memory_format=memory_format_for(model)).eval(), cfg   # as trained and tested


# ---------------------------------------------------------------- choosing the runs


@dataclass
class Choice:
    """One model's runs: its best by validation, and the best with a checkpoint (or None)."""

    model: str
    best: dict
    chosen: dict | None
    checkpoint: Path | None

    @property
    def is_best(self) -> bool:
        return self.chosen is not None and self.chosen["id"] == self.best["id"]


def choose_runs(records: Sequence[dict], checkpoint_of: Callable[[str], Path | None],
                profile: str = PROFILE) -> dict[str, Choice]:
    """Per model trained at ``profile``: the seed with the lowest final validation MSE of the
    config with the lowest mean over its seeds, and the run to ship (that one if it has a
    checkpoint, else the one with the lowest final validation MSE among those that have one)."""
    from vpstudy.report.figures import lowest_validation, seeds_by_config

    trained = [r for r in records if r["config"]["profile"] == profile and r.get("history")]
    out = {}
    for model, seeds in sorted(lowest_validation(seeds_by_config(trained)).items()):
        best = lowest_validation([[r] for r in seeds])[model][0]
        with_checkpoint = [[r] for r in trained if r["config"]["model"] == model and checkpoint_of(r["id"])]
        chosen = lowest_validation(with_checkpoint)[model][0] if with_checkpoint else None
        if checkpoint_of(best["id"]):
            chosen = best
        out[model] = Choice(model, best, chosen, checkpoint_of(chosen["id"]) if chosen else None)
    return out


def regenerate_command(rec: dict, root: str = runs.SCRATCH) -> str:
    """The ``python -m vpstudy train`` command that trains run ``rec`` again into ``root`` (git
    ignores ``runs-scratch/``): the study's own command for it (`vpstudy.study.train_command`)
    when a study has the run, else one option per config field."""
    from vpstudy.cli_args import config_flags, parse_config_flags
    from vpstudy.study import study_names, study_runs, train_command

    seed, profile = rec["config"]["seed"], rec["config"]["profile"]
    threads = ((rec.get("provenance") or {}).get("hardware") or {}).get("cpu_threads")
    env = [f"OMP_NUM_THREADS={threads}"] if threads else []      # the record's thread count: same sums
    for study in study_names():
        for run in study_runs(study, profile, seeds=seed + 1):
            if run.run_id == rec["id"]:
                argv = train_command(run, Path(root))[3:]          # after `python -m vpstudy`
                return shlex.join([*env, "python", "-m", "vpstudy", *(a for a in argv if a != "--no-progress")])
    params = {k: v for k, v in rec["config"].items() if k not in TrainConfig.NOT_IDENTITY and v is not None}
    argv = config_flags({"profile": params.pop("profile"), **params})
    if runs.run_id(parse_config_flags(argv).identity()) != rec["id"]:
        raise RuntimeError(f"the train command for {rec['id']} would run another config: {argv}")
    return shlex.join([*env, "python", "-m", "vpstudy", "train", *argv, "--runs", root])


# ---------------------------------------------------------------- export


def _scores(result: dict) -> dict[str, float]:
    return {k: float(result[k]) for k in METRICS if k in result}


def _relative_change(a: dict, b: dict) -> float:
    return max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-12) for k in a)


def _evaluate(model: nn.Module, cfg: TrainConfig, sequences: torch.Tensor, amp) -> dict[str, float]:
    from vpstudy.evaluate import evaluate

    return _scores(evaluate(model, sequences, cfg, torch.device("cpu"), amp)[0])


def _record_scores(run_dir: Path, n: int) -> dict[str, float] | None:
    """The record's own test MSE and SSIM on its first ``n`` test sequences (per_sequence.npz)."""
    path = run_dir / runs.PER_SEQUENCE
    if not path.is_file():
        return None
    with np.load(path) as f:
        return {k: float(f[k][:n].mean()) for k in ("mse", "ssim") if k in f.files}


def _without_per_frame(d: dict | None) -> dict | None:
    return None if d is None else {k: v for k, v in d.items() if k != "per_frame"}


def export_one(choice: Choice, record_dir: Path, out: Path, dtype: str = "auto",
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Export ``choice``'s checkpoint as ``out/<model>.safetensors``; its manifest entry."""
    from safetensors.torch import save

    from vpstudy.data import fixed_test_set
    from vpstudy.precision import autocast_dtype, memory_format_for
    from vpstudy.train import build_run_model, load_run_model

    rec, name = choice.chosen, choice.model
    model, cfg = load_run_model(choice.checkpoint.parent)      # checkpoint digest and config checked
    if runs.run_id(cfg.identity()) != rec["id"]:
        raise WeightsError(f"{choice.checkpoint} belongs to another config than run {rec['id']}")
    fp32 = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    fp16 = {k: v.half() if v.is_floating_point() else v for k, v in fp32.items()}
    rounded = build_run_model(cfg).eval()
    rounded.load_state_dict(fp16)
    rounded = rounded.to(memory_format=memory_format_for(rounded))
    test = fixed_test_set(cfg)
    check = test[:CHECK_SEQUENCES]
    prov = rec.get("provenance") or {}
    run_precision = prov.get("precision") or ("bf16 autocast" if autocast_dtype(cfg, torch.device("cpu")) else "fp32")
    run_amp = torch.bfloat16 if run_precision == "bf16 autocast" else None    # as the record was tested
    numbers = {prec: {"fp32": _evaluate(model, cfg, check, amp), "fp16": _evaluate(rounded, cfg, check, amp)}
               for prec, amp in (("fp32", None), (run_precision, run_amp))}
    change = max(_relative_change(n["fp32"], n["fp16"]) for n in numbers.values())
    chosen_dtype = dtype if dtype != "auto" else ("float16" if change <= FP16_TOLERANCE else "float32")
    tensors = fp16 if chosen_dtype == "float16" else fp32
    shipped = rounded if chosen_dtype == "float16" else model
    record_check = _record_scores(record_dir, CHECK_SEQUENCES)
    meta = {"format": FORMAT, "model": name, "run_id": rec["id"], "config": cfg.identity()}
    blob = save(tensors, metadata={META_KEY: runs.json_dumps(meta)})     # one key: the same bytes every time
    file = f"{name}.safetensors"
    runs.atomic_write_bytes(out / file, blob)
    entry = {
        "file": file, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob), "dtype": chosen_dtype,
        "params": int(sum(v.numel() for v in fp32.values() if v.is_floating_point())),
        "run_id": rec["id"], "config": rec["config"],
        "record": {"val": _without_per_frame(rec["history"][-1].get("val")),
                   "test": _without_per_frame(rec.get("test")),
                   "extra_tests": {k: _without_per_frame(v) for k, v in (rec.get("extra_tests") or {}).items()},
                   "test_sequences": cfg.test_sequences, "source_commit": prov.get("git_commit"),
                   "precision": prov.get("precision"), "torch": prov.get("torch_version"),
                   "hardware": (prov.get("hardware") or {}).get("name")},
        "selection": selection_text(choice),
        "best_run": {"run_id": choice.best["id"], "val_mse": runs.final_val_mse(choice.best),
                     "has_weights": choice.is_best},
        "dtype_check": {"sequences": CHECK_SEQUENCES, "tolerance": FP16_TOLERANCE,
                        "max_relative_change": change, "by_compute_precision": numbers},
        "record_check": {"sequences": CHECK_SEQUENCES, "precision": run_precision, "record": record_check,
                         "weights_fp32": {k: numbers[run_precision]["fp32"][k] for k in ("mse", "ssim")}},
        "reproduce": {"sequences": REPRODUCE_SEQUENCES, "precision": "fp32",
                      "metrics": _evaluate(shipped, cfg, test[:REPRODUCE_SEQUENCES], None)},
    }
    if record_check:
        off = _relative_change(record_check, entry["record_check"]["weights_fp32"])
        if off > FP16_TOLERANCE:
            raise WeightsError(f"{choice.checkpoint} does not reproduce its record: on the first "
                               f"{CHECK_SEQUENCES} test sequences the record has {record_check}, these "
                               f"weights {entry['record_check']['weights_fp32']} ({off:.2%} apart); it is "
                               f"not the checkpoint of the recorded run")
    changes = "; ".join(
        f"{prec} compute: MSE {n['fp32']['mse']:.4f} -> {n['fp16']['mse']:.4f}, SSIM {n['fp32']['ssim']:.5f} -> "
        f"{n['fp16']['ssim']:.5f}, largest change {_relative_change(n['fp32'], n['fp16']):.3%}"
        for prec, n in numbers.items())
    log(f"{name}: {rec['id']} ({entry['selection']}); {chosen_dtype}, {len(blob) / 1e6:.1f} MB. fp32 -> fp16 "
        f"weights on {CHECK_SEQUENCES} test sequences, {changes} (tolerance {FP16_TOLERANCE:.1%})")
    return entry


def selection_text(choice: Choice) -> str:
    if choice.is_best:
        return (f"the best {choice.model} run at the {choice.best['config']['profile']} profile by final "
                f"validation MSE ({runs.final_val_mse(choice.best):.3f}; best config by mean over seeds, "
                f"then best seed)")
    return (f"the best available: run {choice.best['id']} has the lowest final validation MSE "
            f"({runs.final_val_mse(choice.best):.3f}) but no checkpoint here; this is the run with the lowest "
            f"one ({runs.final_val_mse(choice.chosen):.3f}) among those with a checkpoint")


def export_weights(roots: Sequence[str | os.PathLike | None], out: str | os.PathLike | None = None,
                   models: Sequence[str] | None = None, dtype: str = "auto",
                   log: Callable[[str], None] = print, profile: str = PROFILE) -> dict[str, Any]:
    """Export the chosen run of every model (or of ``models``) from the run records and
    checkpoints under ``roots`` (records: the first root that has one wins; checkpoints: any
    root) into ``out`` (`weights_dir`), and update its manifest. Models without a checkpoint
    are skipped with the command that re-trains their best run; their shipped weights, if any,
    are kept. Returns the manifest."""
    if dtype not in ("auto", "float16", "float32"):
        raise ValueError(f"dtype={dtype!r}: choose auto, float16 or float32")
    named = " ".join(str(r or runs.runs_root()) for r in roots)     # as given: messages, the manifest
    roots = [runs.existing_runs_root(r) for r in roots]
    records: dict[str, dict] = {}
    for root in roots:
        for rec in runs.load_records(root, "completed"):
            records.setdefault(rec["id"], rec)

    def checkpoint_of(rid: str) -> Path | None:
        return next((root / rid / runs.CHECKPOINT for root in roots
                     if (root / rid / runs.CHECKPOINT).is_file()), None)

    folder = weights_dir(out)
    manifest = read_manifest(folder, missing_ok=True)
    choices = choose_runs(list(records.values()), checkpoint_of, profile)
    unknown = sorted(set(models or ()) - set(choices))
    if unknown:
        raise ValueError(f"no completed {profile}-profile runs of {unknown} under {named}; "
                         f"models with runs there: {sorted(choices)}")
    for name, choice in choices.items():
        if models and name not in models:
            continue
        if choice.chosen is None:
            command = regenerate_command(choice.best)
            kept = " (its shipped weights are kept)" if name in manifest["models"] else ""
            reason = (f"no {profile}-profile run of it has a checkpoint under "
                      f"{named}; its best run is {choice.best['id']} (final "
                      f"validation MSE {runs.final_val_mse(choice.best):.3f}); re-train it with: {command}, then "
                      f"export with --runs {named} {runs.SCRATCH}")
            log(f"{name}: skipped{kept}: {reason}")
            if name not in manifest["models"]:
                manifest["skipped"][name] = {"best_run": choice.best["id"], "reason": reason, "command": command}
            continue
        record_dir = Path(records[choice.chosen["id"]]["_dir"])
        _check_retrained(choice, record_dir)
        folder.mkdir(parents=True, exist_ok=True)
        manifest["models"][name] = export_one(choice, record_dir, folder, dtype, log)
        manifest["skipped"].pop(name, None)
    total = sum(e["bytes"] for e in manifest["models"].values())
    if total > BUDGET_BYTES:
        raise WeightsError(f"the shipped weights would take {total / 1e6:.1f} MB, more than the "
                           f"{BUDGET_BYTES / 1e6:.0f} MB budget; export fewer models or in float16")
    manifest["models"] = dict(sorted(manifest["models"].items()))
    manifest["skipped"] = dict(sorted(manifest["skipped"].items()))
    runs.atomic_write_bytes(folder / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    log(f"wrote {folder / MANIFEST}: {len(manifest['models'])} models, {total / 1e6:.1f} MB")
    return manifest


def _check_retrained(choice: Choice, record_dir: Path) -> None:
    """A checkpoint re-trained into another root than the record's: its own record's test MSE
    must be the recorded one (training on the CPU is deterministic for the same thread count)."""
    own_dir = choice.checkpoint.parent
    if own_dir.resolve() == record_dir.resolve():
        return
    theirs, ours = runs.RunDir(own_dir).load()["test"]["mse"], choice.chosen["test"]["mse"]
    if abs(theirs - ours) > FP16_TOLERANCE * abs(ours):
        raise WeightsError(f"{choice.checkpoint}: the re-trained run's test MSE {theirs:.4f} is not the recorded "
                           f"{ours:.4f} ({record_dir}); it did not reproduce the run (another thread count, "
                           f"torch or code version?), so its weights are not the recorded model's")


def check_weights(path: str | os.PathLike | None = None) -> list[str]:
    """One line per shipped model, each loaded (digest, config and tensors checked); raises on
    the first that fails."""
    folder = weights_dir(path)
    manifest = read_manifest(folder)
    lines = []
    for name, e in manifest["models"].items():
        load_trained(name, folder)
        test, best = e["record"]["test"], "best" if e["best_run"]["has_weights"] else "best available"
        lines.append(f"{name:<11} {e['dtype']:<8} {e['bytes'] / 1e6:5.1f} MB  run {e['run_id']} ({best})  "
                     f"test MSE {test['mse']:.2f} SSIM {test['ssim']:.4f}")
    for name, s in manifest.get("skipped", {}).items():
        lines.append(f"{name:<11} no weights: {s['reason']}")
    return lines

"""The logic behind the notebooks' first cells and tables, kept here where it is tested.

``notebooks/ablation.ipynb`` has a papermill ``parameters`` cell whose names are the
training config's fields (None meaning "the profile's default") plus a few runner
settings; :func:`ablation_config` turns them into a validated config and rejects any name
papermill injected that the notebook does not know.

Papermill writes the parameters it is given into a cell of its own as ``name = value`` lines,
the values escaped but the *names* not: ``-p 'x = 1\nimport os\n...' 1`` would run code.
:func:`guard_injected_parameters`, called in the parameters cell, checks papermill's cell
before IPython runs it: only known names set to literal values, else the cell is replaced
by an error and nothing of it runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vpstudy.config import TrainConfig, digit_counts, make_config  # noqa: F401 - digit_counts re-exported

# Parameters of the ablation notebook that are not config fields.
RUNNER_PARAMS = {"runs_root", "force", "threads"}
_PLAIN = (bool, int, float, str, type(None))
CONFIG_PARAMS = {f.name for f in dataclasses.fields(TrainConfig)}
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}


def notebook_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The public names of a notebook's namespace that hold what papermill can inject (a plain
    value, or a list or mapping given with ``-y``): its parameters so far."""
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and k not in _IPYTHON_NAMES
            and isinstance(v, (bool, int, float, str, type(None), list, tuple, dict))}


INJECTED_MARK = "# Parameters"     # the first line of the cell papermill injects


def injected_cell_problems(source: str) -> list[str]:
    """What is wrong with a papermill-injected cell: anything but ``name = literal`` lines
    setting known parameters (empty when the cell is safe to run)."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [f"it is not valid Python ({e.msg}, line {e.lineno}): a parameter name holds code"]
    problems, unknown = [], []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            problems.append(f"line {node.lineno} is not `name = value`: {ast.get_source_segment(source, node)!r} "
                            f"(a parameter name holds code)")
            continue
        name = node.targets[0].id
        if name not in CONFIG_PARAMS | RUNNER_PARAMS:
            unknown.append(name)
        try:
            ast.literal_eval(node.value)
        except (ValueError, SyntaxError):
            problems.append(f"the value of {name} is not a literal")
    return ([f"unknown notebook parameter(s) {sorted(unknown)}"] if unknown else []) + problems


def guard_injected_parameters(shell: Any = None) -> None:
    """Check the cell papermill injects after the parameters cell before it runs (an IPython input
    transformer for cells that start with papermill's ``# Parameters`` line; stateless, since
    ipykernel may transform a cell twice): a cell with `injected_cell_problems` is replaced by a
    ``raise``."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:                             # not in a kernel: nothing will be injected
        return

    def check(lines: list[str]) -> list[str]:
        if not lines or lines[0].rstrip("\n") != INJECTED_MARK:
            return lines
        problems = injected_cell_problems("".join(lines))
        if not problems:
            return lines
        message = (f"papermill's parameters were refused before any of them ran: {'; '.join(problems)}. "
                   f"Allowed names: {sorted(CONFIG_PARAMS | RUNNER_PARAMS)}")
        return [f"raise ValueError({message!r})\n"]

    check.vpstudy_guard = True                     # type: ignore[attr-defined]
    cleanup = shell.input_transformers_cleanup
    cleanup[:] = [t for t in cleanup if not getattr(t, "vpstudy_guard", False)] + [check]   # once per shell


def ablation_config(namespace: Mapping[str, Any]) -> TrainConfig:
    """A validated :class:`TrainConfig` from the ablation notebook's parameters.

    None means "the profile's default". Unknown names (a misspelt ``-p`` to papermill)
    raise ValueError listing the allowed ones.
    """
    params = notebook_parameters(namespace)
    unknown = sorted(set(params) - CONFIG_PARAMS - RUNNER_PARAMS)
    if unknown:
        raise ValueError(f"unknown notebook parameter(s) {unknown}; allowed: "
                         f"{sorted(CONFIG_PARAMS | RUNNER_PARAMS)}")
    _check_value_types(namespace)
    _check_runner_params(params)
    values = {k: v for k, v in params.items() if k in CONFIG_PARAMS and v is not None}
    digits = namespace.get("extra_test_digits")
    if digits is not None:
        values["extra_test_digits"] = digit_counts(digits)
    profile = values.pop("profile", None)
    return make_config(profile, **values)


def _check_value_types(namespace: Mapping[str, Any]) -> None:
    """A parameter given as a list or mapping (papermill ``-y``) is an error, not ignored."""
    for k in sorted(CONFIG_PARAMS | RUNNER_PARAMS):
        v = namespace.get(k)
        if k in namespace and not isinstance(v, _PLAIN) and k != "extra_test_digits":
            raise ValueError(f"notebook parameter {k} must be a single value (bool, int, float or "
                             f"str), got {type(v).__name__} {v!r}")


def _check_runner_params(params: Mapping[str, Any]) -> None:
    """``runs_root`` a path, ``force`` a bool, ``threads`` an integer >= 1 (None: torch's default)."""
    if not isinstance(params.get("runs_root"), (str, type(None))):
        raise ValueError(f"runs_root must be a folder path (str), got {params['runs_root']!r}")
    if not isinstance(params.get("force", False), bool):
        raise ValueError(f"force must be True or False, got {params['force']!r}")
    threads = params.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be an integer >= 1 (None: torch's default), got {threads!r}")


def metrics_table(results: Mapping[str, Mapping[str, Any]]):
    """A DataFrame of test metrics, one row per label."""
    import pandas as pd

    cols = ["mse", "mae", "ssim", "ssim_strict", "psnr"]
    return pd.DataFrame({label: {c: res[c] for c in cols} for label, res in results.items()}).T


def load_samples(record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The inputs, targets and predictions kept in a run's ``samples.npz``."""
    with np.load(Path(record["_dir"]) / "samples.npz") as f:
        return {k: f[k] for k in f.files}

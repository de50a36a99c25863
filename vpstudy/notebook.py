"""The logic behind the notebooks' first cells and tables, kept here where it is tested.

``notebooks/ablation.ipynb`` has a papermill ``parameters`` cell whose names are the
training config's fields (0 or "" meaning "the profile's default") plus a few runner
settings; :func:`ablation_config` turns them into a validated config and rejects any name
papermill injected that the notebook does not know.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vpstudy.config import TrainConfig, make_config

# Parameters of the ablation notebook that are not config fields.
RUNNER_PARAMS = {"runs_root", "force", "threads"}
CONFIG_PARAMS = {f.name for f in dataclasses.fields(TrainConfig)} - {"extra"}
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}


def notebook_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The plain-valued, public names of a notebook's namespace (its parameters so far)."""
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and k not in _IPYTHON_NAMES
            and isinstance(v, (bool, int, float, str, type(None)))}


def ablation_config(namespace: Mapping[str, Any]) -> TrainConfig:
    """A validated :class:`TrainConfig` from the ablation notebook's parameters.

    0 and "" mean "the profile's default". Unknown names (a misspelt ``-p`` to papermill)
    raise ValueError listing the allowed ones.
    """
    params = notebook_parameters(namespace)
    unknown = sorted(set(params) - CONFIG_PARAMS - RUNNER_PARAMS)
    if unknown:
        raise ValueError(f"unknown notebook parameter(s) {unknown}; allowed: "
                         f"{sorted(CONFIG_PARAMS | RUNNER_PARAMS)}")
    values = {}
    for k, v in params.items():
        zero_is_real = k in ("seed", "lambda1", "lambda2") or isinstance(v, bool)
        if k in CONFIG_PARAMS and (zero_is_real or v not in (0, "", None)):
            values[k] = v
    if isinstance(values.get("extra_test_digits"), str):
        values["extra_test_digits"] = tuple(int(s) for s in values["extra_test_digits"].split(",") if s.strip())
    if isinstance(values.get("extra_test_digits"), int):
        values["extra_test_digits"] = (values["extra_test_digits"],)
    profile = values.pop("profile", None)
    return make_config(profile, **values)


def metrics_table(results: Mapping[str, Mapping[str, Any]]):
    """A DataFrame of test metrics, one row per label."""
    import pandas as pd

    cols = ["mse", "mae", "ssim", "ssim_strict", "psnr"]
    return pd.DataFrame({label: {c: res[c] for c in cols} for label, res in results.items()}).T


def load_samples(record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The inputs, targets and predictions kept in a run's ``samples.npz``."""
    with np.load(Path(record["_dir"]) / "samples.npz") as f:
        return {k: f[k] for k in f.files}

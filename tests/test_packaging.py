"""environment.yml and pyproject.toml name the same dependencies; the README's commands are real."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
# conda-forge's name -> PyPI's, where they differ
CONDA_NAMES = {"pytorch": "torch", "playwright-python": "playwright"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower()


def _version(req: str) -> str:
    return req.strip()[len(_name(req)):].strip()


def test_environment_yml_names_every_dependency_of_pyproject_from_conda_forge_only():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r): _version(r) for r in py["dependencies"] + py["optional-dependencies"]["test"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]          # no pytorch channel, no defaults
    conda = {CONDA_NAMES.get(_name(d), _name(d)): _version(d) for d in env["dependencies"]
             if isinstance(d, str) and _name(d) not in ("pip", "python")}
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_section == ["-e ."]
    runtime = {_name(r) for r in py["dependencies"]}
    assert runtime <= set(conda), f"missing in environment.yml: {sorted(runtime - set(conda))}"
    assert conda == wanted                     # the same packages and version ranges, nothing else


def _readme_commands() -> dict[str, str]:
    """The README's quick-start commands, by the script each one runs."""
    readme = (REPO / "README.md").read_text()
    return {m.group(1): m.group(0) for m in re.finditer(r"^bash (scripts/\w+\.sh)", readme, re.M)}


def test_ci_runs_the_readme_test_command():
    commands = _readme_commands()
    assert set(commands) >= {"scripts/main.sh", "scripts/test.sh"}
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert commands["scripts/test.sh"] in ci_lines           # the README's test command, as a line of CI
    for script in commands:                                  # each command names a real script
        text = (REPO / script).read_text()
        assert text.startswith("#!/usr/bin/env bash") and "set -e" in text, script

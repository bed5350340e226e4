"""Shared fixtures: the `exactflow` command (to compare the package against it) and small runs
it trained.

The command is $EXACTFLOW_BIN, or target/release/exactflow of this repository (build it with
`cargo build --release`). The tests fail, rather than skip, when it is missing.
"""

import json
import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

# A small moons run: realnvp's toy preset, 60 steps, 5000 toy points (test split 1250, more than
# one evaluation batch of 1024).
MOONS = dict(model="realnvp", data="moons", steps=60, toy_samples=5000, batch_size=256, seed=3)


def cli_flags(options):
    """The command line's flags for train's keyword options."""
    flags = []
    for key, value in options.items():
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


@pytest.fixture(scope="session")
def exactflow_bin():
    path = pathlib.Path(os.environ.get("EXACTFLOW_BIN", REPO / "target" / "release" / "exactflow"))
    if not path.is_file():
        pytest.fail(f"the exactflow command is not at {path}: run `cargo build --release` or set EXACTFLOW_BIN")
    return path


@pytest.fixture(scope="session")
def cli(exactflow_bin):
    """Runs the command with arguments; returns stdout, failing the test on a non-zero exit."""

    def run(*args, check=True):
        p = subprocess.run([str(exactflow_bin), *map(str, args)], capture_output=True, text=True)
        if check and p.returncode != 0:
            pytest.fail(f"exactflow {' '.join(map(str, args))} failed: {p.stderr}")
        return p

    return run


@pytest.fixture(scope="session")
def moons_run(cli, tmp_path_factory):
    """A run directory the command line trained on moons (MOONS)."""
    out = tmp_path_factory.mktemp("moons") / "run"
    cli("train", *cli_flags(MOONS), "--out", out)
    return out


@pytest.fixture(scope="session")
def moons_metrics(moons_run):
    return json.loads((moons_run / "metrics.json").read_text())

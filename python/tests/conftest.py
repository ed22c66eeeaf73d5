"""Shared fixtures: a small simulated dataset (written once per session by
``acsleuth simulate``) and the ``acsleuth`` binary the API is compared with.

The binary is ``$ACSLEUTH_BIN`` (the test script passes the one ``cargo
test --release`` built), else ``target/release/acsleuth`` of the repository,
built when missing.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Small and quick: 600 reference + 400 target cells × 800 genes, one batch,
# 30 % of the target in two anomaly types strong enough to be called.
SIMULATE = [
    "--n-ref", "600", "--n-target", "400", "--n-genes", "800", "--n-batches", "1",
    "--anomaly-ratio", "0.3", "--anomaly-de-prob", "0.3", "--anomaly-de-loc", "1.5", "--seed", "0",
]
# Settings every comparison uses: 300 HVGs, the CPU.
N_HVG = 300


@pytest.fixture(scope="session")
def acsleuth_bin() -> str:
    b = os.environ.get("ACSLEUTH_BIN") or str(ROOT / "target" / "release" / "acsleuth")
    if not os.path.exists(b):
        subprocess.run(["cargo", "build", "--release", "--bin", "acsleuth"], cwd=ROOT, check=True)
    return b


@pytest.fixture(scope="session")
def cli(acsleuth_bin):
    """Runs ``acsleuth ARGS`` quietly; fails the test with its stderr."""

    def call(*args):
        env = dict(os.environ, ACSLEUTH_QUIET="1")
        p = subprocess.run([acsleuth_bin, *map(str, args)], capture_output=True, text=True, env=env)
        assert p.returncode == 0, f"acsleuth {' '.join(map(str, args))} failed:\n{p.stderr}"
        return p

    return call


@pytest.fixture(scope="session")
def sim(tmp_path_factory, cli) -> pathlib.Path:
    d = tmp_path_factory.mktemp("sim") / "data"
    cli("simulate", "--out", d, *SIMULATE, "--h5ad")
    return d


@pytest.fixture
def ref(sim):
    import anndata as ad

    return ad.read_h5ad(sim / "reference.h5ad")


@pytest.fixture
def tgt(sim):
    import anndata as ad

    return ad.read_h5ad(sim / "target.h5ad")

"""Ctrl-C (SIGINT) stops a running call within about a second with
KeyboardInterrupt and leaves the AnnData unchanged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, time, anndata as ad, acsleuth
    ref = ad.read_h5ad(sys.argv[1]); tgt = ad.read_h5ad(sys.argv[2])
    cols = list(tgt.obs.columns)
    print("start", flush=True)
    try:
        # Module I with far more epochs than the test waits for.
        acsleuth.run(ref, tgt, n_hvg=300, device="cpu", progress=False, prepare_epochs=100000)
        print("finished")
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
        print("unchanged" if list(tgt.obs.columns) == cols and "acsleuth" not in tgt.uns else "changed", flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_ctrl_c_stops_within_a_second_and_leaves_the_anndata_unchanged(sim, tmp_path):
    script = tmp_path / "long.py"
    script.write_text(SCRIPT)
    p = subprocess.Popen([sys.executable, str(script), str(sim / "reference.h5ad"), str(sim / "target.h5ad")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "start"
        time.sleep(2.0)  # well inside the training loop
        sent = time.monotonic()
        os.kill(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    lines = out.split()
    assert "interrupted" in lines, f"stdout: {out!r}\nstderr: {err[-2000:]}"
    stopped = float(lines[lines.index("interrupted") + 1])
    assert stopped - sent < 1.5, f"took {stopped - sent:.2f} s to stop"
    assert "unchanged" in lines


SAVE_THEN_INTERRUPT = textwrap.dedent(
    """
    import os, signal, sys, time, anndata as ad, acsleuth
    ref = ad.read_h5ad(sys.argv[1])
    det = acsleuth.Detector(n_hvg=300, device="cpu", progress=False).fit(ref)
    det.save(sys.argv[2])
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(2.0)
        print("no interrupt", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    time.sleep(1.0)
    print("alive", flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_ctrl_c_after_a_save_interrupts_and_keeps_the_process(sim, tmp_path):
    """Regression: saving a detector installed the command line's signal
    handler, so the next Ctrl-C (a notebook's interrupt button) ended the
    Python process with status 130 after its KeyboardInterrupt."""
    script = tmp_path / "save.py"
    script.write_text(SAVE_THEN_INTERRUPT)
    p = subprocess.run([sys.executable, str(script), str(sim / "reference.h5ad"), str(tmp_path / "m.safetensors")],
                       capture_output=True, text=True, timeout=300)
    assert p.stdout.split() == ["interrupted", "alive"], p.stdout + p.stderr
    assert p.returncode == 0, p.stderr

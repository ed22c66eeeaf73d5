"""The engine's stages mirrored as tqdm bars (acsleuth/_progress.py)."""

from __future__ import annotations

import time

import pytest

import acsleuth
from acsleuth import _progress


def test_stages_show_as_bars_and_a_stage_without_a_count_shows_its_time(monkeypatch, capsys):
    pytest.importorskip("tqdm")
    states = iter([None, ("novelty score", 0, 0), ("novelty score", 0, 0), ("train", 3, 10), ("train", 7, 10)])
    last = [None]

    def state():
        last[0] = next(states, last[0])
        return last[0]

    monkeypatch.setattr(_progress._acsleuth, "progress_state", state)
    with _progress.Progress(True, "detect", interval=0.01):
        time.sleep(0.2)
    err = capsys.readouterr().err
    assert "acsleuth detect: novelty score (" in err, err
    assert "0it [" not in err, err
    assert "acsleuth detect: train" in err and "7/10" in err, err


def test_progress_false_prints_nothing(ref, tgt, capsys):
    acsleuth.detect(ref, tgt, n_hvg=300, device="cpu", progress=False)
    assert "acsleuth detect" not in capsys.readouterr().err

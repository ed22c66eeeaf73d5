"""Progress of a running call as tqdm bars (one per stage), when tqdm is
installed and ``progress=True``.

The engine publishes its current stage (name, position, length); while it
computes with the GIL released, a daemon thread reads that every 0.2 s and
mirrors it. The engine's own terminal bars stay off (the extension module
turns them off when it loads, without setting ``ACSLEUTH_QUIET`` in the
caller's environment).
"""

from __future__ import annotations

import threading

from . import _acsleuth


class Progress:
    """Context manager: shows the engine's stages while the block runs."""

    def __init__(self, enabled: bool, what: str, interval: float = 0.2):
        self.enabled = enabled
        self.what = what
        self.interval = interval
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        if not self.enabled:
            return self
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return self
        self._tqdm = tqdm
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        bar, name = None, None
        while True:
            stopping = self._stop.wait(self.interval)
            state = _acsleuth.progress_state()
            if state is not None:
                stage, pos, total = state
                if stage != name:
                    if bar is not None:
                        bar.close()
                    name = stage
                    # A stage without a count (the novelty score) shows its
                    # elapsed time, not "0it [00:21, ?it/s]".
                    bar = self._tqdm(
                        total=total or None,
                        desc=f"acsleuth {self.what}: {stage}",
                        leave=False,
                        bar_format=None if total else "{desc} ({elapsed})",
                    )
                if bar is not None:
                    if total and bar.total != total:
                        bar.total = total
                        bar.bar_format = None
                    bar.n = pos
                    bar.refresh()
            if stopping:
                break
        if bar is not None:
            bar.close()

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        return False

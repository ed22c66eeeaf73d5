"""``acsleuth.Detector``: a reference fitted once and reused."""

from __future__ import annotations

import json
import os
from typing import Optional

from . import _acsleuth
from ._api import finish_detect
from ._inputs import as_input
from ._progress import Progress
from ._settings import detect_settings, hvg_settings

# Settings fixed by the fitted reference (they shape its preparation).
_FIXED = ("preprocess", "n_hvg", "hvg_flavor", "score")


class Detector:
    """A reference of normal cells, prepared once, that scores many targets.

    The novelty score is non-parametric (each target is embedded jointly
    with the reference and scored by its neighbours), so what a fit keeps
    is the reference as detection prepares it — the genes kept, the highly
    variable genes, the log-normalized values — and the settings.
    ``Detector(**settings).fit(ref).score(tgt)`` gives the same scores and
    calls as ``acsleuth.detect(ref, tgt, **settings)``. The fitted genes are
    fixed: each target is aligned to them by name, genes it lacks are set
    to zero (with a warning), and fewer than half of them shared is a
    ``ValueError``.

    Parameters
    ----------
    fdr, anomaly_ratio, n_hvg, seed, score, **settings
        As for :func:`acsleuth.detect` (``score`` must be ``"novelty"``).
    layer, use_raw
        Which matrix of an AnnData reference (and, by default, target) to read.
    device, threads, progress
        Where and how visibly to compute, as for :func:`acsleuth.detect`.

    Examples
    --------
    >>> det = acsleuth.Detector(seed=0).fit(reference)      # doctest: +SKIP
    >>> det.save("atlas.safetensors")                        # doctest: +SKIP
    >>> acsleuth.Detector.load("atlas.safetensors").score(target)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        fdr: float = 0.1,
        anomaly_ratio=None,
        n_hvg: Optional[int] = None,
        seed: int = 0,
        score: str = "novelty",
        layer=None,
        use_raw: bool = False,
        device: str = "auto",
        threads=None,
        progress: bool = True,
        **settings,
    ):
        settings = {**settings, **hvg_settings(n_hvg, settings)}
        self._settings = detect_settings(fdr=fdr, anomaly_ratio=anomaly_ratio, seed=seed, score=score, **settings)
        self.layer, self.use_raw = layer, use_raw
        self.device, self.threads, self.progress = device, threads, progress
        self._fitted = None

    @property
    def settings(self) -> dict:
        """The detection settings (the keys of ``report.json``'s ``settings``)."""
        return json.loads(self._fitted.settings_json) if self._fitted is not None else dict(self._settings)

    @property
    def genes(self) -> list:
        """The genes every target is aligned to (after :meth:`fit`)."""
        return list(self._check().genes)

    @property
    def n_reference(self) -> int:
        """Cells of the fitted reference."""
        return int(self._check().n_reference)

    def _check(self):
        if self._fitted is None:
            raise ValueError("the Detector is not fitted: call fit(reference) or Detector.load(path) first")
        return self._fitted

    def fit(self, reference) -> "Detector":
        """Prepares ``reference`` (AnnData, or ``(matrix, gene_names)``).

        Returns
        -------
        Detector
            ``self``, fitted.
        """
        ref = as_input(reference, "reference", layer=self.layer, use_raw=self.use_raw)
        with Progress(self.progress, "fit"):
            self._fitted = _acsleuth.FittedReference.fit(ref, json.dumps(self._settings), self.threads)
        return self

    def score(self, target, *, batch_key=None, fdr=None, anomaly_ratio=None, seed=None, copy: bool = False):
        """Scores ``target`` against the fitted reference, as :func:`acsleuth.detect` does.

        Parameters
        ----------
        target
            AnnData (annotated in place: the keys of :func:`acsleuth.detect`),
            or ``(matrix, gene_names[, cell_names])``.
        batch_key
            ``target.obs`` column of the target's batches (each corrected as its own).
        fdr, anomaly_ratio, seed
            Override the fitted settings for this target.
        copy
            Return an annotated copy instead of annotating ``target``.

        Returns
        -------
        None, AnnData or dict
            ``None`` (in place), the copy (``copy=True``), or for a matrix
            target a dict of arrays (``score``, ``anomaly``, ``pvalue``,
            ``qvalue``, ``embedding``, ``report``).
        """
        fitted = self._check()
        cfg = json.loads(fitted.settings_json)
        if fdr is not None:
            cfg["fdr"] = fdr
        if anomaly_ratio is not None:
            cfg["anomaly_ratio"] = anomaly_ratio
        if seed is not None:
            cfg["seed"] = seed
        tgt = as_input(target, "target", layer=self.layer, use_raw=self.use_raw, obs_keys=[batch_key] if batch_key else [])
        with Progress(self.progress, "score"):
            res = fitted.score(tgt, json.dumps(cfg), batch_key, self.device, self.threads)
        return finish_detect(target, res, cfg, copy)

    def save(self, path) -> None:
        """Writes the fitted reference and settings (safetensors; the same
        file ``acsleuth detect --model`` reads)."""
        self._check().save(os.fspath(path))

    @classmethod
    def load(cls, path, *, layer=None, use_raw: bool = False, device: str = "auto", threads=None, progress: bool = True) -> "Detector":
        """Reads a file written by :meth:`save` or ``acsleuth detect --save-model``."""
        fitted = _acsleuth.FittedReference.load(os.fspath(path))
        det = cls(layer=layer, use_raw=use_raw, device=device, threads=threads, progress=progress)
        det._fitted = fitted
        det._settings = json.loads(fitted.settings_json)
        return det

    def __repr__(self) -> str:
        if self._fitted is None:
            return "Detector(not fitted)"
        return f"Detector({self.n_reference} reference cells × {len(self.genes)} genes)"

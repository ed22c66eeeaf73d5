"""``acsleuth.detect`` and ``acsleuth.run``: the engine on AnnData, the way
``sc.tl.*`` tools work (the target is annotated in place; ``copy=True``
returns an annotated copy instead)."""

from __future__ import annotations

import json
from typing import Optional

import numpy as np

from . import _acsleuth
from ._inputs import _is_anndata, as_input
from ._progress import Progress
from ._settings import detect_settings, hvg_settings, run_settings

PREFIX = "acsleuth"


def _uns(settings: dict, report: dict, **extra) -> dict:
    """``uns['acsleuth']``: what write_h5ad keeps (no None, nested JSON as text)."""
    out = {
        "settings": json.dumps(settings),
        "report": json.dumps(report),
        "score": str(report.get("score", report.get("detect", {}).get("score", ""))),
        "n_called": int(report["n_called"]),
    }
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def _nan_spread(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.full((n, values.shape[1]), np.nan, dtype=np.float32)
    out[rows] = values
    return out


def detect(
    reference,
    target,
    *,
    fdr: float = 0.1,
    anomaly_ratio=None,
    layer=None,
    use_raw: bool = False,
    n_hvg: Optional[int] = None,
    seed: int = 0,
    batch_key=None,
    score: str = "novelty",
    device: str = "auto",
    threads=None,
    progress: bool = True,
    copy: bool = False,
    **settings,
):
    """Find the target cells whose state is absent from the reference.

    The engine of ``acsleuth detect``: reference and target in one joint
    PCA, corrected with Harmony, each target cell scored by its distance to
    the nearest reference cells and by how few reference cells its
    neighbourhood holds; calls are a discovery set at a false discovery
    rate (conformal p-values, Benjamini–Hochberg). ``score="paper"`` runs
    the paper's Module I (GAN + MMD scorer) instead.

    Parameters
    ----------
    reference
        Normal cells: an AnnData, or ``(matrix, gene_names[, cell_names])``
        with a numpy array or scipy CSR/CSC matrix. Raw counts are
        preprocessed as scanpy does (gene filter, normalize_total, log1p,
        highly variable genes on the reference); log-normalized values are
        used as they are. A float32 CSR matrix with int32 indices is read in
        place (not copied, never written); do not change it from another
        thread during the call.
    target
        Cells to score, in the same forms; its genes are aligned to the
        reference's by name (missing genes are zeros, with a warning).
    fdr
        False discovery rate of the calls, in (0, 1).
    anomaly_ratio
        Call the top fraction by score instead of the FDR rule.
    layer, use_raw
        Read ``adata.layers[layer]`` or ``adata.raw`` instead of ``X``.
    n_hvg
        Highly variable genes chosen on the reference. ``None`` (default):
        3000 on raw counts, and log-normalized input used as it is; a
        number N selects N genes on log-normalized input too (scanpy's
        ``seurat`` flavour), as the command line's ``--n-hvg``; 0 = all.
    seed
        Seed of every random draw: the same seed gives the same result.
    batch_key
        ``target.obs`` column naming each cell's batch (sample, donor):
        each batch is corrected as its own.
    score
        ``"novelty"`` (default) or ``"paper"``.
    device
        ``"auto"`` (a CUDA GPU when found, else the CPU), ``"cpu"``,
        ``"cuda"`` or ``"cuda:N"``.
    threads
        Worker threads (default: one per core).
    progress
        Show one tqdm bar per stage (when tqdm is installed).
    copy
        Return an annotated copy instead of annotating ``target``.
    **settings
        Any key of ``acsleuth detect --config`` (``report.json``'s
        ``settings``); tables as dicts, e.g. ``novelty={"correction": "none"}``.

    Returns
    -------
    None, AnnData or dict
        ``None`` when ``target`` (an AnnData) was annotated in place; the
        annotated copy with ``copy=True``; for a matrix target, a dict of
        arrays (``score``, ``anomaly``, ``pvalue``, ``qvalue``,
        ``deviation``, ``embedding``) and ``report``.

        Annotations: ``obs['acsleuth_score']`` (higher = more anomalous;
        the novelty score is ≥ 0, within (0, 1] unless a cell is far
        denser in the target than anything in the reference), ``obs['acsleuth_anomaly']`` (bool),
        ``obs['acsleuth_pvalue']``, ``obs['acsleuth_qvalue']`` (novelty
        score), ``obs['acsleuth_deviation']`` (paper score),
        ``obsm['X_acsleuth']`` (the corrected joint PCA), ``uns['acsleuth']``
        (``settings`` and ``report`` as JSON text, ``n_called``,
        ``estimated_anomaly_fraction``; :func:`acsleuth.report` parses it).

    Raises
    ------
    ValueError
        Bad input (NaN or negative values, duplicated names, no shared
        gene) or settings, with the command line's message.
    RuntimeError
        The device failed.
    KeyboardInterrupt
        Ctrl-C: the call stops within about a second; ``target`` is unchanged.

    Examples
    --------
    >>> acsleuth.detect(ref, tgt)                      # doctest: +SKIP
    >>> tgt.obs["acsleuth_anomaly"].sum()              # doctest: +SKIP
    """
    settings = {**settings, **hvg_settings(n_hvg, settings)}
    cfg = detect_settings(fdr=fdr, anomaly_ratio=anomaly_ratio, seed=seed, score=score, **settings)
    ref = as_input(reference, "reference", layer=layer, use_raw=use_raw)
    tgt = as_input(target, "target", layer=layer, use_raw=use_raw, obs_keys=[batch_key] if batch_key else [])
    with Progress(progress, "detect"):
        res = _acsleuth.detect(ref, tgt, json.dumps(cfg), batch_key, device, threads)
    return finish_detect(target, res, cfg, copy)


def finish_detect(target, res: dict, cfg: dict, copy: bool):
    """The engine's detection result as annotations of an AnnData target
    (or, for a matrix target, the result dict with the report parsed)."""
    report = json.loads(res.pop("report"))
    genes = report.get("genes", {})
    if genes.get("target_genes_missing"):
        import warnings

        warnings.warn(
            f"acsleuth: {genes['target_genes_missing']} of the {genes['genes_used']} reference genes are absent from "
            f"the target and were set to zero (e.g. {', '.join(genes.get('missing_examples', [])[:5])})",
            stacklevel=3,
        )
    if not _is_anndata(target):
        res["report"] = report
        return res
    adata = target.copy() if copy else target
    obs = adata.obs
    obs[f"{PREFIX}_score"] = res["score"].astype(np.float64)
    obs[f"{PREFIX}_anomaly"] = res["anomaly"]
    for key in ("pvalue", "qvalue", "deviation"):
        if res[key] is not None:
            obs[f"{PREFIX}_{key}"] = res[key].astype(np.float64)
    if res["embedding"] is not None:
        adata.obsm[f"X_{PREFIX}"] = res["embedding"]
    adata.uns[PREFIX] = _uns(cfg, report, estimated_anomaly_fraction=report.get("estimated_anomaly_fraction"))
    return adata if copy else None


def run(
    reference,
    target,
    *,
    batch_key=None,
    n_subtypes="auto",
    correction: str = "kin-shift",
    fdr: float = 0.1,
    anomaly_ratio=None,
    layer=None,
    use_raw: bool = False,
    n_hvg: Optional[int] = None,
    seed: int = 0,
    score: str = "novelty",
    keep_corrected: bool = False,
    device: str = "auto",
    threads=None,
    progress: bool = True,
    copy: bool = False,
    **settings,
):
    """The whole workflow of ``acsleuth run``: detection, kin pairing, batch
    correction and subtypes of the anomalies.

    Parameters
    ----------
    reference, target, fdr, anomaly_ratio, layer, use_raw, n_hvg, seed, score, device, threads, progress, copy
        As for :func:`acsleuth.detect`.
    batch_key
        ``target.obs`` column naming each cell's batch: detection corrects
        each batch as its own, and the batch correction removes each
        batch's shift.
    n_subtypes
        Number of subtypes, or ``"auto"``: the k-means partition with the
        best mean silhouette, K from 2 up to the Louvain communities of a
        kNN graph of the anomalies.
    correction
        ``"kin-shift"`` (default) or ``"style"`` (the paper's Module III).
    keep_corrected
        Also return the batch-corrected expression of every cell as
        ``layers['acsleuth_corrected']`` (zero outside the genes used).
    **settings
        Any key of ``acsleuth run --config``: the workflow's own
        (``kin``, ``style``, ``subtype`` as dicts, ``batch_correction``,
        ``chunk``) and detection's (e.g. ``prepare_epochs``, ``novelty``).

    Returns
    -------
    None, AnnData or dict
        As :func:`acsleuth.detect`. Annotations: those of ``detect``
        (``obsm['X_acsleuth']`` is then Module I's encoding of the
        corrected expression), plus ``obs['acsleuth_subtype']``
        (categorical ``S1``, ``S2``, … with only subtypes of at least two cells; NaN
        for cells called normal), ``obs['acsleuth_batch']``,
        ``obsm['X_acsleuth_fused']`` and ``obsm['acsleuth_soft_assignment']``
        (NaN rows for cells called normal), ``var['acsleuth_used']`` (the
        genes the models used), ``uns['acsleuth']``.

    Raises
    ------
    ValueError, RuntimeError, KeyboardInterrupt
        As :func:`acsleuth.detect`.
    """
    if n_subtypes == "auto" or n_subtypes is None:
        k = None
    elif isinstance(n_subtypes, (int, np.integer)) and not isinstance(n_subtypes, bool) and n_subtypes >= 1:
        k = int(n_subtypes)
    else:
        raise ValueError(f"invalid configuration: n_subtypes must be a positive integer or 'auto', got {n_subtypes!r}")
    subtype = dict(settings.pop("subtype", {}) or {})
    subtype.setdefault("n_subtypes", k)
    det = dict(fdr=fdr, anomaly_ratio=anomaly_ratio, score=score, **hvg_settings(n_hvg, settings))
    settings = {k: v for k, v in settings.items() if k not in det}
    cfg = run_settings(det, seed, correction=correction, subtype=subtype, **settings)
    ref = as_input(reference, "reference", layer=layer, use_raw=use_raw)
    tgt = as_input(target, "target", layer=layer, use_raw=use_raw, obs_keys=[batch_key] if batch_key else [])
    with Progress(progress, "run"):
        res = _acsleuth.run(ref, tgt, json.dumps(cfg), batch_key, keep_corrected, device, threads)
    report = json.loads(res.pop("report"))
    if not _is_anndata(target):
        res["report"] = report
        return res
    return _annotate_run(target.copy() if copy else target, res, cfg, report, copy)


def _annotate_run(adata, res: dict, cfg: dict, report: dict, copy: bool):
    import pandas as pd

    n = adata.n_obs
    obs = adata.obs
    obs[f"{PREFIX}_score"] = res["score"].astype(np.float64)
    obs[f"{PREFIX}_anomaly"] = res["anomaly"]
    if res["qvalue"] is not None:
        obs[f"{PREFIX}_qvalue"] = res["qvalue"].astype(np.float64)
    obs[f"{PREFIX}_deviation"] = res["deviation"].astype(np.float64)
    names = [f"S{i + 1}" for i in range(res["n_subtypes"])]
    sub = pd.Categorical.from_codes(res["subtype"], categories=names)
    obs[f"{PREFIX}_subtype"] = sub.remove_unused_categories()
    obs[f"{PREFIX}_batch"] = pd.Categorical.from_codes(res["batch"].astype(np.int64), categories=res["batch_names"])
    rows = res["anomalies"].astype(np.int64)
    adata.obsm[f"X_{PREFIX}"] = res["z"]
    adata.obsm[f"X_{PREFIX}_fused"] = _nan_spread(rows, res["z_star"], n)
    adata.obsm[f"{PREFIX}_soft_assignment"] = _nan_spread(rows, res["soft_assignment"], n)
    genes = list(res["genes"])
    col = adata.var_names.get_indexer(genes)
    if (col >= 0).all():
        adata.var[f"{PREFIX}_used"] = adata.var_names.isin(genes)
    if res["corrected"] is not None:
        if (col >= 0).all():
            import scipy.sparse as sp

            c = sp.csr_matrix(res["corrected"])
            c = sp.csr_matrix((c.data, col[c.indices], c.indptr), shape=(n, adata.n_vars))
            c.sort_indices()
            adata.layers[f"{PREFIX}_corrected"] = c
        else:  # genes of .raw that X lacks: kept beside, over the genes used
            adata.obsm[f"{PREFIX}_corrected"] = res["corrected"]
    adata.uns[PREFIX] = _uns(cfg, report, n_subtypes=len(sub.remove_unused_categories().categories))
    return adata if copy else None

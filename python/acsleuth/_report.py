"""The report of the last call on an AnnData, as a dict."""

from __future__ import annotations

import json


def report(adata) -> dict:
    """The engine's report of the call that annotated ``adata``.

    Parameters
    ----------
    adata
        An AnnData annotated by :func:`acsleuth.detect` or :func:`acsleuth.run`.

    Returns
    -------
    dict
        The report as ``acsleuth detect`` / ``run`` write ``report.json``
        (settings, genes, timings, call rule, number called, ...).
    """
    if "acsleuth" not in adata.uns:
        raise ValueError("the AnnData has no uns['acsleuth']: run acsleuth.detect or acsleuth.run on it first")
    return json.loads(adata.uns["acsleuth"]["report"])

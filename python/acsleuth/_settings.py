"""Keyword arguments → the engine's settings (the keys of ``report.json``'s
``settings``, as a ``--config`` TOML file takes them)."""

from __future__ import annotations

import json
import numbers

from . import _acsleuth

_DETECT = json.loads(_acsleuth.default_settings(False))
_RUN = json.loads(_acsleuth.default_settings(True))


def _merge(base: dict, over: dict, where: str) -> dict:
    out = dict(base)
    for k, v in over.items():
        if k not in base:
            raise ValueError(f"invalid configuration: unknown setting '{where}{k}' (known: {', '.join(sorted(base))})")
        if isinstance(base[k], dict) and isinstance(v, dict):
            out[k] = _merge(base[k], v, f"{where}{k}.")
        else:
            out[k] = v
    return out


def hvg_settings(n_hvg, settings: dict) -> dict:
    """The command line's ``--n-hvg`` rule. ``None``: the defaults (3000
    highly variable genes on raw counts; log-normalized input used as it
    is). A number N > 0 selects N genes on log-normalized input too
    (``preprocess = "always"``, scanpy's ``seurat`` flavour, no
    renormalization); 0 = every gene."""
    if n_hvg is None:
        return {}
    if isinstance(n_hvg, bool) or not isinstance(n_hvg, numbers.Integral) or n_hvg < 0:
        raise ValueError(f"invalid configuration: n_hvg must be a non-negative integer or None, got {n_hvg!r}")
    out = {"n_hvg": int(n_hvg)}
    preprocess = settings.get("preprocess", "auto")
    if n_hvg > 0 and preprocess == "never":
        raise ValueError(
            f"invalid configuration: n_hvg={n_hvg} selects genes, which preprocess='never' turns off; drop one of the two"
        )
    if n_hvg > 0 and preprocess == "auto":
        out["preprocess"] = "always"
    return out


def detect_settings(**kw) -> dict:
    """Detection settings: defaults, then ``kw`` (nested tables as dicts,
    e.g. ``novelty={"correction": "none"}``); unknown keys are an error."""
    return _merge(_DETECT, kw, "")


def run_settings(detect: dict, seed: int, **kw) -> dict:
    """Workflow settings: the detection keys go to ``detect``, the
    workflow's own (``kin``, ``style``, ``subtype``, ``correction``,
    ``batch_correction``, ``chunk``) to the top level; one seed for all."""
    top = {k: v for k, v in kw.items() if k in _RUN and k != "detect"}
    rest = {k: v for k, v in kw.items() if k not in top}
    s = _merge(_RUN, top, "")
    s["detect"] = _merge(_merge(_DETECT, detect, ""), rest, "")
    for table in ("detect", "style", "subtype"):
        s[table]["seed"] = seed
    return s

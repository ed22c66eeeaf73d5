"""AnnData, numpy and scipy inputs as the engine takes them.

Each input becomes a dict of arrays (``format`` "csr" or "dense", the
arrays, ``shape``, ``cells``, ``genes``, ``obs``) that the Rust side reads
through the buffer protocol. Sparse matrices stay sparse: CSC is converted
to CSR (as scipy does, sparse), and float32 CSR with int32/int64 indices in
canonical form is handed over as it is (the engine reads float32 values
and int32 indices in place, and copies other dtypes). Dense input is made
C-contiguous float32 (a copy only when it is not already).
"""

from __future__ import annotations

import numpy as np


def _is_anndata(x) -> bool:
    return type(x).__name__ == "AnnData" and hasattr(x, "obs") and hasattr(x, "var_names")


def _is_sparse(x) -> bool:
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy comes with anndata
        return False
    return sp.issparse(x)


def _in_memory(x):
    """Backed AnnData matrices (h5py datasets, backed sparse) read into memory."""
    if hasattr(x, "to_memory"):
        return x.to_memory()
    if type(x).__module__.startswith("h5py"):
        return x[()]
    return x


def matrix_dict(x, cells, genes, what: str) -> dict:
    """One matrix with its names as the engine's input dict."""
    x = _in_memory(x)
    if _is_sparse(x):
        if x.format != "csr":
            x = x.tocsr()
        if not x.has_canonical_format:
            x = x.copy()
            x.sum_duplicates()
        data = x.data if x.data.dtype == np.float32 else x.data.astype(np.float32)
        out = dict(format="csr", data=data, indices=x.indices, indptr=x.indptr)
    elif isinstance(x, np.ndarray) or hasattr(x, "__array__"):
        a = np.asarray(x)
        if a.ndim != 2:
            raise ValueError(f"{what}: expected a 2-D matrix (cells × genes), got {a.ndim} dimension(s)")
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise ValueError(f"{what}: expected numeric values, got dtype {a.dtype}")
        out = dict(format="dense", data=np.ascontiguousarray(a, dtype=np.float32))
    else:
        raise TypeError(f"{what}: expected an AnnData, a numpy array or a scipy.sparse matrix, got {type(x).__name__}")
    n, g = x.shape
    cells = [str(c) for c in cells] if cells is not None else [str(i) for i in range(n)]
    genes = [str(c) for c in genes]
    if len(genes) != g:
        raise ValueError(f"{what}: {len(genes)} gene names for {g} genes")
    if len(cells) != n:
        raise ValueError(f"{what}: {len(cells)} cell names for {n} cells")
    out.update(shape=(int(n), int(g)), cells=cells, genes=genes, obs={})
    return out


def as_input(x, what: str, *, layer=None, use_raw=False, obs_keys=()) -> dict:
    """An AnnData (X, a layer or .raw), or a tuple ``(matrix, gene_names)``
    or ``(matrix, gene_names, cell_names)`` of a numpy / scipy matrix, as an
    input dict; obs columns named in ``obs_keys`` go along as text."""
    if _is_anndata(x):
        if layer is not None and use_raw:
            raise ValueError(f"{what}: give layer or use_raw, not both")
        if use_raw:
            if x.raw is None:
                raise ValueError(f"{what}: use_raw=True but the AnnData has no .raw")
            m, var_names = x.raw.X, x.raw.var_names
        elif layer is not None:
            if layer not in x.layers:
                raise ValueError(f"{what}: no layer '{layer}' (it has: {', '.join(x.layers.keys()) or 'none'})")
            m, var_names = x.layers[layer], x.var_names
        else:
            m, var_names = x.X, x.var_names
        if m is None:
            raise ValueError(f"{what}: the AnnData has no X")
        d = matrix_dict(m, x.obs_names, var_names, what)
        for key in obs_keys:
            if key not in x.obs.columns:
                raise ValueError(
                    f"batch_key {key}: the {what} has no such obs column (it has: {', '.join(map(str, x.obs.columns))})"
                )
            col = x.obs[key]
            missing = col.isna().to_numpy()
            d["obs"][key] = ["" if m else str(v) for v, m in zip(col.astype(object).to_numpy(), missing)]
        return d
    if obs_keys:
        raise ValueError(f"batch_key needs an AnnData {what} (a matrix has no obs columns)")
    if layer is not None or use_raw:
        raise ValueError(f"{what}: layer and use_raw apply to AnnData inputs only")
    if isinstance(x, tuple):
        if len(x) not in (2, 3):
            raise ValueError(f"{what}: a tuple must be (matrix, gene_names) or (matrix, gene_names, cell_names)")
        m, g = x[0], x[1]
        c = x[2] if len(x) == 3 else None
        return matrix_dict(m, c, g, what)
    if isinstance(x, np.ndarray) or _is_sparse(x):
        raise ValueError(f"{what}: a matrix needs its gene names: pass (matrix, gene_names) or an AnnData")
    raise TypeError(f"{what}: expected an AnnData, or a (matrix, gene_names) tuple, got {type(x).__name__}")

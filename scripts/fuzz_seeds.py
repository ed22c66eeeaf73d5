"""Seed corpus of the readers' fuzz targets (fuzz/corpus/, issue #15 item 12).

Small slices of the shared real datasets (pbmc68k, Kang, the
oligodendroglioma set) written by anndata, by scipy's Matrix Market writer
and by acsleuth itself (store and .h5ad), plus the repository's h5ad
fixtures. Multi-file inputs are joined at the separator of
`acsleuth::data::fuzz` (b"--8<--").

    .venv/bin/python scripts/fuzz_seeds.py [ACSLEUTH_BINARY]

needs anndata and scipy (the README's test venv has both) and a built
`acsleuth` (default target/release/acsleuth).
"""
import gzip
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.io
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
CORPUS = ROOT / "fuzz" / "corpus"
SEP = b"--8<--"
BIN = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "release" / "acsleuth")


def slices():
    """(name, AnnData) of 12 cells x 25 genes from each shared dataset."""
    out = []
    a = ad.read_h5ad(SHARED / "pbmc68k_reduced" / "10x_pbmc68k_reduced.h5ad")
    r = a.raw.to_adata()[:12, :25].copy()
    r.obs = r.obs[["bulk_labels"]].astype(str)
    out.append(("pbmc68k", r))
    k = ad.read_h5ad(SHARED / "kang_ifnb_pbmc" / "kang_ifnb_counts.h5ad", backed="r")
    kk = k[:12].to_memory()[:, :25].copy()
    kk.obs = kk.obs[["stim"]].astype(str)
    out.append(("kang", kk))
    o = ad.read_h5ad(SHARED / "oligodendroglioma" / "oligodendroglioma.h5ad")[:12, :25].copy()
    o.obs = o.obs[["cell_type"]].astype(str)
    out.append(("oligo", o))
    return out


def files(d: Path, names):
    return SEP.join((d / n).read_bytes() if (d / n).exists() else b"" for n in names)


def main():
    for t in ("store", "h5ad", "tenx"):
        (CORPUS / t).mkdir(parents=True, exist_ok=True)
    for f in sorted((ROOT / "fixtures" / "h5ad").glob("*.h5ad")):
        shutil.copy(f, CORPUS / "h5ad" / f"fixture_{f.stem}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, a in slices():
            a.X = sp.csr_matrix(a.X, dtype=np.float32)
            h = tmp / f"{name}.h5ad"
            a.write_h5ad(h)
            shutil.copy(h, CORPUS / "h5ad" / f"anndata_{name}")
            s = tmp / f"{name}.acs"
            subprocess.run([BIN, "convert", str(h), str(s)], check=True, capture_output=True)
            (CORPUS / "store" / f"acsleuth_{name}").write_bytes(files(s, ["matrix.bin", "genes.txt", "cells.txt", "obs.tsv", "obs.json"]))
            back = tmp / f"{name}_back.h5ad"
            subprocess.run([BIN, "convert", str(s), str(back)], check=True, capture_output=True)
            shutil.copy(back, CORPUS / "h5ad" / f"acsleuth_{name}")
            # 10x: genes x cells, integer counts where the values are counts.
            x = a.X.T.tocoo()
            if not np.allclose(x.data, np.round(x.data)):
                x.data = np.round(x.data * 10)
            mtx = tmp / "m.mtx"
            scipy.io.mmwrite(str(mtx), x.astype(np.int64), field="integer")
            feats = "".join(f"G{i}\t{g}\tGene Expression\n" for i, g in enumerate(a.var_names)).encode()
            bcs = "".join(f"{c}\n" for c in a.obs_names).encode()
            m = mtx.read_bytes()
            (CORPUS / "tenx" / f"mtx_{name}").write_bytes(SEP.join([m, bcs, feats]))
            (CORPUS / "tenx" / f"mtx_gz_{name}").write_bytes(SEP.join([gzip.compress(m, mtime=0), bcs, feats]))
    print("seeds:", {t: len(list((CORPUS / t).iterdir())) for t in ("store", "h5ad", "tenx")})


if __name__ == "__main__":
    main()

//! Preprocessing as scanpy does it (README, `detect`): gene filter, `normalize_total`,
//! `log1p`, highly variable genes (`seurat_v3` on counts, `seurat` on log
//! data), alignment of a target to the reference's genes, and the standard
//! chain for a reference + target pair ([`preprocess_pair`]).
//!
//! Everything works on CSR matrices (dense input is converted); values are
//! f32 as scanpy keeps them, with f64 accumulation where scanpy's results
//! depend on it. `tests/preprocess.rs` checks the results against scanpy
//! 1.11.5 on a PBMC sample.

pub mod hvg;
pub mod loess;
pub mod normalize;

use rayon::prelude::*;
use serde::Serialize;

pub use hvg::{HvgFlavor, HvgResult};
pub use normalize::{library_sizes, log1p, normalize_total};

use crate::data::{CsrMatrix, Dataset};
use crate::error::{Error, Result};

/// Genes removed by name before anything else: mitochondrial genes
/// (`MT-`, any case, so mouse `mt-` too) and ERCC spike-ins (`ERCC-`, as in
/// `ERCC-00002`). The dash matters: ERCC1–ERCC8 are human DNA-repair genes
/// (present in the Kang PBMC data) and a bare `ERCC` prefix would drop them.
pub fn is_dropped_gene_name(name: &str) -> bool {
    let b = name.as_bytes();
    let starts = |p: &[u8]| b.len() >= p.len() && b[..p.len()].eq_ignore_ascii_case(p);
    starts(b"MT-") || starts(b"ERCC-")
}

/// Which genes a filter kept and why the others went.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct GeneFilter {
    /// Kept column indices, increasing. Not written to reports or
    /// checkpoints (on Kang 13,100 indices, most of report.json): the
    /// genes that matter are named in the outputs; `n_kept` counts them.
    #[serde(skip)]
    pub kept: Vec<usize>,
    #[serde(default)]
    pub n_kept: usize,
    pub dropped_by_name: usize,
    /// The first few names dropped by the name rule.
    pub dropped_by_name_examples: Vec<String>,
    pub dropped_min_cells: usize,
}

/// Number of cells with a value > 0 in each column.
pub fn cells_per_gene(x: &CsrMatrix) -> Vec<usize> {
    let mut n = vec![0usize; x.cols];
    for (&j, &v) in x.indices.iter().zip(&x.data) {
        if v > 0.0 {
            n[j as usize] += 1;
        }
    }
    n
}

/// The name rule ([`is_dropped_gene_name`], when `drop_mt_ercc`) then
/// `sc.pp.filter_genes(min_cells=...)`: keep genes with a count > 0 in at
/// least `min_cells` cells.
pub fn filter_genes(x: &CsrMatrix, genes: &[String], min_cells: usize, drop_mt_ercc: bool) -> GeneFilter {
    let expressed = cells_per_gene(x);
    let mut f = GeneFilter { kept: Vec::new(), n_kept: 0, dropped_by_name: 0, dropped_by_name_examples: Vec::new(), dropped_min_cells: 0 };
    for (j, name) in genes.iter().enumerate().take(x.cols) {
        if drop_mt_ercc && is_dropped_gene_name(name) {
            f.dropped_by_name += 1;
            if f.dropped_by_name_examples.len() < 10 {
                f.dropped_by_name_examples.push(name.clone());
            }
        } else if expressed[j] < min_cells {
            f.dropped_min_cells += 1;
        } else {
            f.kept.push(j);
        }
    }
    f.n_kept = f.kept.len();
    f
}

/// Rebuilds `x` with columns mapped by `map[old] = Some(new)` (others
/// dropped) into `new_cols` columns; rows re-sorted by the new indices.
/// Two passes (count, then fill each row's own slice), so nothing but the
/// result is allocated: a list of entries per row first held the output
/// twice over.
pub fn remap_columns(x: &CsrMatrix, map: &[Option<u32>], new_cols: usize) -> CsrMatrix {
    let counts: Vec<u64> = (0..x.rows)
        .into_par_iter()
        .map(|r| x.row(r).0.iter().filter(|&&j| map[j as usize].is_some()).count() as u64)
        .collect();
    let mut indptr = Vec::with_capacity(x.rows + 1);
    indptr.push(0u64);
    for c in &counts {
        indptr.push(indptr[indptr.len() - 1] + c);
    }
    let nnz = indptr[x.rows] as usize;
    let (mut indices, mut data) = (vec![0u32; nnz], vec![0.0f32; nnz]);
    let (mut rest_i, mut rest_v) = (&mut indices[..], &mut data[..]);
    let mut rows: Vec<(&mut [u32], &mut [f32])> = Vec::with_capacity(x.rows);
    for &c in &counts {
        let (i, ri) = rest_i.split_at_mut(c as usize);
        let (v, rv) = rest_v.split_at_mut(c as usize);
        rows.push((i, v));
        (rest_i, rest_v) = (ri, rv);
    }
    rows.into_par_iter().enumerate().for_each(|(r, (oi, ov))| {
        let (idx, val) = x.row(r);
        let kept = idx.iter().zip(val).filter_map(|(&j, &v)| map[j as usize].map(|n| (n, v)));
        for ((i, v), (n, x)) in oi.iter_mut().zip(ov.iter_mut()).zip(kept) {
            (*i, *v) = (n, x);
        }
        if !oi.is_sorted() {
            let mut pairs: Vec<(u32, f32)> = oi.iter().copied().zip(ov.iter().copied()).collect();
            pairs.sort_unstable_by_key(|p| p.0);
            for ((i, v), (n, x)) in oi.iter_mut().zip(ov.iter_mut()).zip(pairs) {
                (*i, *v) = (n, x);
            }
        }
    });
    CsrMatrix { rows: x.rows, cols: new_cols, indptr, indices: indices.into(), data: data.into() }
}

/// Keeps the columns `cols` (increasing) in that order.
pub fn select_columns(x: &CsrMatrix, cols: &[usize]) -> CsrMatrix {
    let mut map = vec![None; x.cols];
    for (new, &old) in cols.iter().enumerate() {
        map[old] = Some(new as u32);
    }
    remap_columns(x, &map, cols.len())
}

/// What a matrix holds, for deciding whether to normalize.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    /// Non-negative integers (UMI or read counts).
    RawCounts,
    /// Non-negative, not all integers, maximum ≤ 50: already
    /// normalized and log-transformed.
    LogNormalized,
}

/// Decides whether `ds` holds raw counts or log-normalized values. Errors
/// (naming the first offending cell and gene) on NaN/Inf or negative values,
/// and on non-integer values too large to be log data (normalized but not
/// log-transformed: a maximum above 50 means e^50 ≈ 5·10^21 before log1p).
pub fn detect_value_kind(ds: &Dataset) -> Result<ValueKind> {
    let x = ds.x.csr();
    value_kind_of_rows((0..x.rows).map(|r| (r, Some(x.row(r).0), x.row(r).1)), &ds.cell_names, &ds.gene_names)
}

/// The rule of [`detect_value_kind`] over any rows: `(row, gene indices or
/// None for a dense row, values)`. Used on a sample of a store's rows too.
pub fn value_kind_of_rows<'a>(
    rows: impl Iterator<Item = (usize, Option<&'a [u32]>, &'a [f32])>,
    cell_names: &[String],
    gene_names: &[String],
) -> Result<ValueKind> {
    let name = |v: &[String], i: usize| v.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
    let mut integer = true;
    let mut max = 0.0f32;
    for (r, idx, val) in rows {
        for (k, &v) in val.iter().enumerate() {
            if !v.is_finite() || v < 0.0 {
                let j = idx.map_or(k, |idx| idx[k] as usize);
                return Err(Error::invalid(format!(
                    "cell '{}', gene '{}' has value {v}: expression must be finite and non-negative",
                    name(cell_names, r),
                    name(gene_names, j)
                )));
            }
            integer &= v.fract() == 0.0;
            max = max.max(v);
        }
    }
    if integer {
        Ok(ValueKind::RawCounts)
    } else if max <= 50.0 {
        Ok(ValueKind::LogNormalized)
    } else {
        Err(Error::invalid(format!(
            "values are neither integer counts nor log-normalized (non-integer, maximum {max}): they look normalized but not \
             log-transformed (CPM/TPM-like); log-transform them first (in scanpy: sc.pp.log1p(adata)) or give the raw counts"
        )))
    }
}

/// The result of aligning a matrix to a list of gene names.
#[derive(Clone, Debug, Serialize)]
pub struct Alignment {
    pub n_shared: usize,
    pub n_missing: usize,
    /// The first few reference genes absent from the target (filled with 0).
    pub missing_examples: Vec<String>,
}

/// Reorders the columns of `x` (genes `names`) to `reference_genes`, filling
/// genes absent from `x` with zeros. Refuses (Invalid) when no gene is
/// shared or fewer than `min_fraction` of the reference genes are present.
pub fn align_genes(
    x: &CsrMatrix,
    names: &[String],
    reference_genes: &[String],
    min_fraction: f64,
) -> Result<(CsrMatrix, Alignment)> {
    if names.len() != x.cols {
        return Err(Error::invalid(format!("{} gene names for {} genes", names.len(), x.cols)));
    }
    let (map, alignment) = alignment_map(names, None, reference_genes, min_fraction)?;
    Ok((remap_columns(x, &map, reference_genes.len()), alignment))
}

/// Where each of the genes `names` goes among `reference_genes` (`None`:
/// not a reference gene, or not marked in `keep`), and what that shares;
/// the refusals of [`align_genes`].
fn alignment_map(
    names: &[String],
    keep: Option<&[bool]>,
    reference_genes: &[String],
    min_fraction: f64,
) -> Result<(Vec<Option<u32>>, Alignment)> {
    let pos: std::collections::HashMap<&str, u32> =
        reference_genes.iter().enumerate().map(|(i, g)| (g.as_str(), i as u32)).collect();
    let map: Vec<Option<u32>> = names
        .iter()
        .enumerate()
        .map(|(j, g)| if keep.is_none_or(|k| k[j]) { pos.get(g.as_str()).copied() } else { None })
        .collect();
    let present: std::collections::HashSet<u32> = map.iter().flatten().copied().collect();
    let n_shared = present.len();
    let missing: Vec<&String> = reference_genes.iter().enumerate().filter(|(i, _)| !present.contains(&(*i as u32))).map(|(_, g)| g).collect();
    let examples: Vec<String> = missing.iter().take(10).map(|g| (*g).clone()).collect();
    if n_shared == 0 {
        return Err(Error::invalid(format!(
            "the target shares no gene with the reference's {} genes (reference genes such as {}); check that both use the same gene identifiers",
            reference_genes.len(),
            examples.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let frac = n_shared as f64 / reference_genes.len() as f64;
    if frac < min_fraction {
        return Err(Error::invalid(format!(
            "the target has only {n_shared} of the reference's {} genes ({:.1} %, below the required {:.1} %); missing e.g. {}",
            reference_genes.len(),
            100.0 * frac,
            100.0 * min_fraction,
            examples.join(", ")
        )));
    }
    Ok((map, Alignment { n_shared, n_missing: missing.len(), missing_examples: examples }))
}

/// Settings of the standard preprocessing chain.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Preprocess {
    /// Keep genes expressed in at least this many reference cells.
    pub min_cells: usize,
    /// Drop `MT-*` and `ERCC-*` genes ([`is_dropped_gene_name`]).
    pub drop_mt_ercc: bool,
    /// normalize_total target; None = median total (scanpy's default).
    pub target_sum: Option<f64>,
    pub hvg_flavor: HvgFlavor,
    /// Number of HVGs (3000 and 6000 are usual); None = all genes.
    pub n_top_genes: Option<usize>,
    /// Minimum fraction of the chosen genes the target must have.
    pub min_shared_fraction: f64,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            min_cells: 3,
            drop_mt_ercc: true,
            target_sum: None,
            hvg_flavor: HvgFlavor::SeuratV3,
            n_top_genes: Some(3000),
            min_shared_fraction: 0.5,
        }
    }
}

/// What [`preprocess_pair`] did, for the run report.
#[derive(Clone, Debug, Serialize)]
pub struct PreprocessReport {
    pub reference_kind: ValueKind,
    pub target_kind: ValueKind,
    pub reference_genes_in: usize,
    pub gene_filter: GeneFilter,
    pub reference_target_sum: Option<f64>,
    pub target_target_sum: Option<f64>,
    pub hvg_flavor: HvgFlavor,
    pub n_top_genes: Option<usize>,
    pub genes_out: usize,
    pub loess_singular_fits: usize,
    pub alignment: Alignment,
}

/// Both matrices, log-normalized, over the same genes.
#[derive(Clone, Debug)]
pub struct Preprocessed {
    pub reference: CsrMatrix,
    pub target: CsrMatrix,
    /// Gene names of the columns of both matrices.
    pub genes: Vec<String>,
    pub report: PreprocessReport,
}

/// Normalizes and log-transforms raw counts; leaves log data as it is.
fn to_lognorm(mut x: CsrMatrix, kind: ValueKind, target_sum: Option<f64>) -> Result<(CsrMatrix, Option<f64>)> {
    match kind {
        ValueKind::RawCounts => {
            let t = normalize_total(&mut x, target_sum)?;
            log1p(&mut x);
            Ok((x, Some(t)))
        }
        ValueKind::LogNormalized => Ok((x, None)),
    }
}

/// The standard chain for a reference + target pair:
/// 1. reference: drop MT-/ERCC- genes and genes in < `min_cells` cells;
/// 2. HVGs on the reference (`seurat_v3` on its filtered counts, or
///    `seurat` on its log-normalized data);
/// 3. each set (target: after the name rule only, so that its library sizes
///    do not depend on the reference) normalize_total + log1p when it holds
///    raw counts, as scanpy does before subsetting genes;
/// 4. the reference is subset to the HVGs and the target aligned to them by
///    name (missing genes are zeros; refused below `min_shared_fraction`).
pub fn preprocess_pair(reference: &Dataset, target: &Dataset, cfg: &Preprocess) -> Result<Preprocessed> {
    reference.validate()?;
    target.validate()?;
    let r = preprocess_reference(reference, cfg)?;
    preprocess_target(r, target, cfg)
}

/// The reference's half of [`preprocess_pair`] (steps 1–3 for the
/// reference, 4 for its genes): it does not depend on the target, so a
/// fitted detector keeps it and aligns each new target to its genes.
#[derive(Clone, Debug)]
pub struct PreprocessedReference {
    /// Log-normalized, over `genes`.
    pub reference: CsrMatrix,
    pub genes: Vec<String>,
    pub meta: ReferenceMeta,
}

/// How the reference was preprocessed (kept with a fitted detector).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ReferenceMeta {
    pub kind: ValueKind,
    pub genes_in: usize,
    pub gene_filter: GeneFilter,
    pub target_sum: Option<f64>,
    pub hvg_flavor: HvgFlavor,
    pub n_top_genes: Option<usize>,
    pub loess_singular_fits: usize,
}

/// Steps 1–3 of [`preprocess_pair`] on the reference alone.
pub fn preprocess_reference(reference: &Dataset, cfg: &Preprocess) -> Result<PreprocessedReference> {
    reference.validate()?;
    if !(0.0..=1.0).contains(&cfg.min_shared_fraction) {
        return Err(Error::Config(format!("min shared fraction must be in [0, 1], got {}", cfg.min_shared_fraction)));
    }
    let ref_kind = detect_value_kind(reference)?;
    if cfg.hvg_flavor == HvgFlavor::SeuratV3 && ref_kind != ValueKind::RawCounts {
        return Err(Error::Config(
            "the seurat_v3 HVG flavour needs raw counts, but the reference holds log-normalized values; use the seurat flavour".into(),
        ));
    }
    let rx = reference.x.csr();
    let filter = filter_genes(&rx, &reference.gene_names, cfg.min_cells, cfg.drop_mt_ercc);
    if filter.kept.is_empty() {
        return Err(Error::invalid(format!(
            "no reference gene passes the filter (expressed in >= {} cells, not MT-/ERCC-)",
            cfg.min_cells
        )));
    }
    let rx = select_columns(&rx, &filter.kept);
    let kept_names: Vec<String> = filter.kept.iter().map(|&j| reference.gene_names[j].clone()).collect();

    let v3 = match cfg.hvg_flavor {
        HvgFlavor::SeuratV3 => Some(hvg::seurat_v3(&rx, cfg.n_top_genes)?),
        HvgFlavor::Seurat => None,
    };
    let (rlog, ref_target) = to_lognorm(rx, ref_kind, cfg.target_sum)?;
    let hv = match v3 {
        Some(h) => h,
        None => hvg::seurat(&rlog, cfg.n_top_genes)?,
    };
    if hv.selected.is_empty() {
        return Err(Error::invalid("no highly variable gene could be selected (no gene varies)"));
    }
    let genes: Vec<String> = hv.selected.iter().map(|&j| kept_names[j].clone()).collect();
    let meta = ReferenceMeta {
        kind: ref_kind,
        genes_in: reference.n_genes(),
        gene_filter: filter,
        target_sum: ref_target,
        hvg_flavor: cfg.hvg_flavor,
        n_top_genes: cfg.n_top_genes,
        loess_singular_fits: hv.loess_singular_fits,
    };
    Ok(PreprocessedReference { reference: select_columns(&rlog, &hv.selected), genes, meta })
}

/// Steps 1 (the name rule), 3 and 4 of [`preprocess_pair`] on the target,
/// against a preprocessed reference.
pub fn preprocess_target(r: PreprocessedReference, target: &Dataset, cfg: &Preprocess) -> Result<Preprocessed> {
    target.validate()?;
    let tgt_kind = detect_value_kind(target)?;
    let tx = target.x.csr();
    // The name rule's genes set the library sizes; the target is then
    // aligned straight from the input and only the reference's genes are
    // normalized: the same values as normalizing the name-filtered matrix
    // and aligning it, without two copies of the whole target.
    let keep: Vec<bool> = target.gene_names.iter().map(|g| !(cfg.drop_mt_ercc && is_dropped_gene_name(g))).collect();
    let sizes = match tgt_kind {
        ValueKind::RawCounts => {
            let totals = library_sizes(&tx, Some(&keep));
            let t = normalize::size_target(&totals, cfg.target_sum)?;
            Some((totals, t))
        }
        ValueKind::LogNormalized => None,
    };
    let (map, alignment) = alignment_map(&target.gene_names, Some(&keep), &r.genes, cfg.min_shared_fraction)?;
    let mut tgt_out = remap_columns(&tx, &map, r.genes.len());
    drop(tx);
    let tgt_target = sizes.map(|(totals, t)| {
        normalize::scale_rows(&mut tgt_out, &totals, t);
        log1p(&mut tgt_out);
        t as f64
    });
    let m = r.meta;
    let report = PreprocessReport {
        reference_kind: m.kind,
        target_kind: tgt_kind,
        reference_genes_in: m.genes_in,
        gene_filter: m.gene_filter,
        reference_target_sum: m.target_sum,
        target_target_sum: tgt_target,
        hvg_flavor: m.hvg_flavor,
        n_top_genes: m.n_top_genes,
        genes_out: r.genes.len(),
        loess_singular_fits: m.loess_singular_fits,
        alignment,
    };
    Ok(Preprocessed { reference: r.reference, target: tgt_out, genes: r.genes, report })
}

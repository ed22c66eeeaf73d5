//! Inputs made ready for detection: the reference (gene filter, HVGs,
//! log-normalization by the scanpy chain, or the values as they are), then
//! the target against it (its own library sizes, aligned to the
//! reference's genes by name). The reference's half does not depend on the
//! target, which is what lets a fitted detector score new targets.

use crate::data::preprocess::{self, HvgFlavor, Preprocess, ValueKind};
use crate::data::{CsrMatrix, Dataset};
use crate::error::{Error, Result};
use crate::pipeline::detect::GeneReport;
use crate::pipeline::{DetectConfig, PreprocessMode};

/// Reference and target over the same genes, ready for training.
pub struct Prepared {
    pub reference: CsrMatrix,
    pub target: CsrMatrix,
    pub genes: Vec<String>,
    pub report: GeneReport,
}

/// The reference as detection uses it; it does not depend on the target,
/// so a fitted [`Detector`](crate::pipeline::detector::Detector) keeps it
/// and aligns each new target to its genes.
#[derive(Clone, Debug)]
pub struct PreparedReference {
    /// Over `genes`: log-normalized by the scanpy chain, or as given.
    pub matrix: CsrMatrix,
    pub genes: Vec<String>,
    pub kind: ValueKind,
    /// How the chain treated the reference; `None` when the values were
    /// used as they are.
    pub chain: Option<preprocess::ReferenceMeta>,
}

/// Whether `cfg.preprocess` runs the scanpy chain on a reference of `kind`.
fn runs_chain(cfg: &DetectConfig, kind: ValueKind) -> bool {
    match cfg.preprocess {
        PreprocessMode::Always => true,
        PreprocessMode::Never => false,
        PreprocessMode::Auto => kind == ValueKind::RawCounts,
    }
}

/// The scanpy chain's settings under `cfg` for a reference of `kind`.
fn chain_settings(cfg: &DetectConfig, kind: ValueKind) -> Preprocess {
    Preprocess {
        // seurat_v3 needs counts; log values always use the dispersion flavour.
        hvg_flavor: if kind == ValueKind::RawCounts { cfg.hvg_flavor } else { HvgFlavor::Seurat },
        n_top_genes: (cfg.n_hvg > 0).then_some(cfg.n_hvg),
        ..Preprocess::default()
    }
}

/// The reference's half of [`prepare`].
pub fn prepare_reference(reference: &Dataset, cfg: &DetectConfig) -> Result<PreparedReference> {
    reference.validate()?;
    let kind = preprocess::detect_value_kind(reference)?;
    if runs_chain(cfg, kind) {
        let r = preprocess::preprocess_reference(reference, &chain_settings(cfg, kind))?;
        return Ok(PreparedReference { matrix: r.reference, genes: r.genes, kind, chain: Some(r.meta) });
    }
    // Detached: a fitted detector must not see the caller's later changes.
    Ok(PreparedReference { matrix: reference.x.to_csr().detached(), genes: reference.gene_names.clone(), kind, chain: None })
}

/// The target prepared against a prepared reference: the same chain when
/// the reference went through it (the target's own library sizes), then
/// aligned to the reference's genes by name (genes it lacks are zeros, and
/// fewer than half of them shared is an error).
pub fn prepare_target(r: PreparedReference, target: &Dataset, cfg: &DetectConfig) -> Result<Prepared> {
    target.validate()?;
    if let Some(meta) = r.chain {
        let pp = chain_settings(cfg, r.kind);
        let pr = preprocess::PreprocessedReference { reference: r.matrix, genes: r.genes, meta };
        let out = preprocess::preprocess_target(pr, target, &pp)?;
        let a = &out.report.alignment;
        let report = GeneReport {
            mode: "scanpy chain: gene filter, normalize_total + log1p (raw counts), highly variable genes on the reference".into(),
            reference_value_kind: Some(out.report.reference_kind),
            target_value_kind: Some(out.report.target_kind),
            genes_used: out.genes.len(),
            target_genes_shared: a.n_shared,
            target_genes_missing: a.n_missing,
            missing_examples: a.missing_examples.clone(),
            preprocess: Some(out.report.clone()),
            warnings: input_warnings(cfg, r.kind, out.report.reference_genes_in, true, empty_rows(&out.target), out.target.rows),
        };
        return Ok(Prepared { reference: out.reference, target: out.target, genes: out.genes, report });
    }
    let (ref_kind, tgt_kind) = (r.kind, preprocess::detect_value_kind(target)?);
    if ref_kind != tgt_kind {
        return Err(Error::invalid(format!(
            "the reference holds {ref_kind:?} values but the target {tgt_kind:?}; give both in the same form (or let acsleuth preprocess raw counts)"
        )));
    }
    let (tx, al) = preprocess::align_genes(&target.x.csr(), &target.gene_names, &r.genes, 0.5)?;
    let report = GeneReport {
        mode: "values used as they are; target aligned to the reference's genes by name".into(),
        reference_value_kind: Some(ref_kind),
        target_value_kind: Some(tgt_kind),
        genes_used: r.genes.len(),
        target_genes_shared: al.n_shared,
        target_genes_missing: al.n_missing,
        missing_examples: al.missing_examples,
        preprocess: None,
        warnings: input_warnings(cfg, ref_kind, r.genes.len(), false, empty_rows(&tx), tx.rows),
    };
    Ok(Prepared { reference: r.matrix, target: tx, genes: r.genes, report })
}

/// Applies `cfg.preprocess`: the scanpy chain (normalize_total + log1p on
/// raw counts, HVGs on the reference, target aligned) for raw counts under
/// `auto` or always under `always`; otherwise the values are used as they
/// are and the target is aligned to the reference's genes by name.
pub fn prepare(reference: &Dataset, target: &Dataset, cfg: &DetectConfig) -> Result<Prepared> {
    reference.validate()?;
    target.validate()?;
    prepare_target(prepare_reference(reference, cfg)?, target, cfg)
}

/// Target rows with no non-zero value (over the genes used).
pub fn empty_rows(x: &CsrMatrix) -> usize {
    (0..x.rows).filter(|&r| x.row(r).1.iter().all(|&v| v == 0.0)).count()
}

/// Target rows of a store with no non-zero value: one pass over the map.
pub fn empty_store_rows(st: &crate::data::store::Store) -> usize {
    use crate::data::store::RowView;
    (0..st.n_cells())
        .filter(|&i| match st.row(i) {
            RowView::Dense(v) | RowView::Sparse(_, v) => v.iter().all(|&x| x == 0.0),
        })
        .count()
}

/// What a user should know about the input before trusting the scores
/// (issue 15, item 9): raw counts used unnormalized, HVGs not selected on
/// log-normalized input, and target cells with no expression at all
/// (empty droplets), which every score ranks as the most normal.
pub fn input_warnings(
    cfg: &DetectConfig,
    ref_kind: ValueKind,
    ref_genes: usize,
    chain_ran: bool,
    empty_target_cells: usize,
    n_target: usize,
) -> Vec<String> {
    let mut w = Vec::new();
    if !chain_ran && ref_kind == ValueKind::RawCounts {
        w.push(
            "the reference holds raw counts but preprocessing is off (--no-preprocess or preprocess = \"never\"): \
             the scores then follow library size more than expression; drop --no-preprocess to normalize_total + log1p \
             them and select highly variable genes, or give log-normalized values"
                .into(),
        );
    }
    if !chain_ran && ref_kind == ValueKind::LogNormalized && cfg.n_hvg > 0 && cfg.n_hvg < ref_genes {
        w.push(format!(
            "the reference is log-normalized, so all its {ref_genes} genes were used as they are (n_hvg = {} applies \
             to raw counts); pass --n-hvg {} (or preprocess = \"always\") to select highly variable genes on it",
            cfg.n_hvg, cfg.n_hvg
        ));
    }
    if empty_target_cells > 0 {
        w.push(format!(
            "{empty_target_cells} of {n_target} target cells have no expression over the genes used (empty droplets?): \
             they rank as the most normal and their scores say nothing; filter them first (e.g. sc.pp.filter_cells(adata, min_genes=200))"
        ));
    }
    w
}

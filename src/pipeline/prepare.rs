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
    Ok(PreparedReference { matrix: reference.x.to_csr(), genes: reference.gene_names.clone(), kind, chain: None })
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
        };
        return Ok(Prepared { reference: out.reference, target: out.target, genes: out.genes, report });
    }
    let (ref_kind, tgt_kind) = (r.kind, preprocess::detect_value_kind(target)?);
    if ref_kind != tgt_kind {
        return Err(Error::invalid(format!(
            "the reference holds {ref_kind:?} values but the target {tgt_kind:?}; give both in the same form (or let acsleuth preprocess raw counts)"
        )));
    }
    let (tx, al) = preprocess::align_genes(&target.x.to_csr(), &target.gene_names, &r.genes, 0.5)?;
    let report = GeneReport {
        mode: "values used as they are; target aligned to the reference's genes by name".into(),
        reference_value_kind: Some(ref_kind),
        target_value_kind: Some(tgt_kind),
        genes_used: r.genes.len(),
        target_genes_shared: al.n_shared,
        target_genes_missing: al.n_missing,
        missing_examples: al.missing_examples,
        preprocess: None,
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

//! What detection runs on: two row sources over the same genes with the
//! target's cell names and batches, either prepared in memory
//! ([`Inputs::prepared`]) or streamed from two on-disk stores
//! ([`Inputs::stores`]). Every way into detection ends in one of these, so
//! the scoring itself has one entry point
//! ([`detect_inputs`](crate::pipeline::detect::detect_inputs)).

use crate::data::preprocess::{self, ValueKind};
use crate::data::store::Store;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::source::RowSource;
use crate::pipeline::batches::Batches;
use crate::pipeline::detect::GeneReport;
use crate::pipeline::prepare::{empty_store_rows, input_warnings, Prepared};
use crate::pipeline::{DetectConfig, PreprocessMode, ScoreMethod};

/// Reference and target ready for detection.
pub struct Inputs<'a> {
    pub reference: &'a dyn RowSource,
    pub target: &'a dyn RowSource,
    /// The target's cell names, in row order.
    pub cells: Vec<String>,
    /// How the genes were matched (the report's `genes`).
    pub genes: GeneReport,
    /// Each target cell's batch when it has several and the novelty score
    /// runs (it corrects each batch as its own).
    pub target_batches: Option<Vec<u32>>,
    /// Seconds spent preparing them (the report's `seconds.preprocess`).
    pub preprocess_seconds: f64,
}

/// Batches of the target for the novelty score (`None`: one batch, or
/// the paper's score, which never looks at them).
fn novelty_batches(cfg: &DetectConfig, batches: impl FnOnce() -> Result<Batches>) -> Result<Option<Vec<u32>>> {
    if cfg.score != ScoreMethod::Novelty {
        return Ok(None);
    }
    let b = batches()?;
    Ok((b.names.len() > 1).then_some(b.of))
}

impl<'a> Inputs<'a> {
    /// Of a target prepared in memory (see
    /// [`prepare`](crate::pipeline::prepare::prepare)); `batch_key` names
    /// the target's obs column of batches.
    pub fn prepared(prep: &'a Prepared, target: &Dataset, batch_key: Option<&str>, cfg: &DetectConfig, preprocess_seconds: f64) -> Result<Self> {
        Ok(Inputs {
            reference: &prep.reference,
            target: &prep.target,
            cells: target.cell_names.clone(),
            genes: prep.report.clone(),
            target_batches: novelty_batches(cfg, || Batches::from_obs(target, batch_key))?,
            preprocess_seconds,
        })
    }

    /// Two stores streamed from their memory maps: the novelty score's gene
    /// statistics and projections (and Module I's minibatches and
    /// deviations) read them in chunks, so what is held grows with the
    /// cells only by their low-dimensional coordinates. The stores must
    /// hold log-normalized values over the same genes in the same order (as
    /// `acsleuth convert` writes them after preprocessing elsewhere);
    /// `Ok(None)` when they do not, and the caller loads them instead.
    pub fn stores(reference: &'a Store, target: &'a Store, batch_key: Option<&str>, cfg: &DetectConfig) -> Result<Option<Self>> {
        cfg.validate()?;
        if cfg.preprocess == PreprocessMode::Always || reference.gene_names() != target.gene_names() {
            return Ok(None);
        }
        let ref_kind = sampled_value_kind(reference)?;
        if cfg.preprocess == PreprocessMode::Auto && ref_kind == ValueKind::RawCounts {
            return Ok(None);
        }
        let tgt_kind = sampled_value_kind(target)?;
        if ref_kind != tgt_kind {
            return Err(Error::invalid(format!(
                "the reference holds {ref_kind:?} values but the target {tgt_kind:?}; give both in the same form (or let acsleuth preprocess raw counts)"
            )));
        }
        let genes = GeneReport {
            mode: "values used as they are; streamed from the stores (same genes in the same order)".into(),
            reference_value_kind: Some(ref_kind),
            target_value_kind: Some(tgt_kind),
            genes_used: reference.n_genes(),
            target_genes_shared: target.n_genes(),
            target_genes_missing: 0,
            missing_examples: vec![],
            preprocess: None,
            warnings: input_warnings(cfg, ref_kind, reference.n_genes(), false, empty_store_rows(target), target.n_cells()),
        };
        let cells = target.cell_names().to_vec();
        let target_batches = novelty_batches(cfg, || Batches::from_columns(target.obs(), &cells, batch_key))?;
        Ok(Some(Inputs { reference, target, cells, genes, target_batches, preprocess_seconds: 0.0 }))
    }
}

/// Rows looked at by [`sampled_value_kind`].
const KIND_SAMPLE_ROWS: usize = 2000;

/// The value kind of a store from its first rows (a full scan of a
/// million-cell store would cost more than it tells), by the rule of
/// [`preprocess::detect_value_kind`].
fn sampled_value_kind(st: &Store) -> Result<ValueKind> {
    use crate::data::store::RowView;
    let rows = (0..st.n_cells().min(KIND_SAMPLE_ROWS)).map(|i| match st.row(i) {
        RowView::Dense(v) => (i, None, v),
        RowView::Sparse(idx, v) => (i, Some(idx), v),
    });
    preprocess::value_kind_of_rows(rows, st.cell_names(), st.gene_names())
        .map_err(|e| Error::corrupt(st.path(), e.to_string()))
}

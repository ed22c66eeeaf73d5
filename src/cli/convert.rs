//! `acsleuth convert`: any supported input into a store, or into `.h5ad`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::io::{detect, read_dataset, Format, ReadOptions};
use crate::data::store::{self, Layout, Store};
use crate::data::{h5ad, Dataset, Matrix};
use crate::error::{Error, Result};

/// Long help shown by `acsleuth convert --help` (after the options).
const LONG_HELP: &str = "\
IN is read by its content, not its name: an AnnData .h5ad file, a 10x folder
(matrix.mtx[.gz] with barcodes.tsv[.gz] and features.tsv[.gz] or
genes.tsv[.gz]), or an acsleuth store.

OUT is an acsleuth store (a directory, by convention named *.acs) unless its
name ends in .h5ad; then an AnnData file is written that scanpy opens as it
is. Other commands memory-map a store, so converting once makes every later
run start fast and read only the cells it needs.

Nothing appears at OUT until the conversion has fully succeeded (temporary
sibling, then rename); an existing OUT is never touched without --force.
One summary line is printed: cells, genes, non-zeros, layout, seconds.

Examples:
  acsleuth convert pbmc.h5ad pbmc.acs
  acsleuth convert filtered_feature_bc_matrix/ sample1.acs --layout csr
  acsleuth convert pbmc.h5ad pbmc_counts.acs --raw     # .raw/X, often the counts
  acsleuth convert pbmc.acs pbmc.h5ad --force          # back to AnnData";

/// Convert expression data between formats (.h5ad, 10x, store).
#[derive(clap::Args, Debug)]
#[command(after_long_help = LONG_HELP)]
pub struct Args {
    /// Input: .h5ad file, 10x folder, or acsleuth store.
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Output: a store directory, or a file ending in .h5ad.
    #[arg(value_name = "OUT")]
    pub output: PathBuf,
    /// How values are laid out: csr (sparse rows, 8 bytes per non-zero) or
    /// dense (4 bytes per value). auto picks csr when fewer than half the
    /// values are non-zero, dense otherwise.
    #[arg(long, value_enum, default_value_t = LayoutArg::Auto)]
    pub layout: LayoutArg,
    /// Replace OUT if it exists (only an existing store or file; a directory
    /// that is not a store is never removed).
    #[arg(long)]
    pub force: bool,
    /// For .h5ad input: read .raw/X (often the un-normalized counts) and the
    /// .raw gene names instead of X.
    #[arg(long)]
    pub raw: bool,
    /// For .h5ad output: compress the matrices with gzip (deflate level 4,
    /// as anndata's `compression="gzip"`): smaller files, slower to write
    /// and read.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
}

/// `--compression` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// `--layout` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutArg {
    Auto,
    Dense,
    Csr,
}

impl LayoutArg {
    fn resolve(self, density: f64) -> Layout {
        match self {
            LayoutArg::Auto => Layout::for_density(density),
            LayoutArg::Dense => Layout::Dense,
            LayoutArg::Csr => Layout::Csr,
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let t0 = Instant::now();
    let s = convert(&args)?;
    println!(
        "wrote {}: {} cells × {} genes, {} non-zeros ({:.1} %), {} layout, from {} in {:.2} s",
        args.output.display(),
        s.n_cells,
        s.n_genes,
        s.nnz,
        100.0 * s.nnz as f64 / (s.n_cells as f64 * s.n_genes as f64),
        s.layout,
        s.from,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What a conversion wrote.
#[derive(Debug)]
pub struct Summary {
    pub n_cells: usize,
    pub n_genes: usize,
    pub nnz: u64,
    pub layout: Layout,
    pub from: &'static str,
}

/// Runs the conversion described by `args` (the library side of the command).
pub fn convert(args: &Args) -> Result<Summary> {
    let to_h5ad = args.output.extension().is_some_and(|e| e.eq_ignore_ascii_case("h5ad"));
    let format = detect(&args.input)?;
    let replacing = check_output(&args.output, args.force, to_h5ad)?;
    // What killed conversions left beside OUT.
    if let Some(parent) = args.output.parent() {
        crate::cleanup::remove_stale(if parent.as_os_str().is_empty() { Path::new(".") } else { parent }, false);
    }
    // Write beside OUT under a temporary name when OUT must be replaced, so
    // the old one stays until the new one is complete.
    let reg = replacing.then(|| crate::cleanup::register(crate::cleanup::temp_sibling(&args.output)));
    let target = reg.as_ref().map_or_else(|| args.output.clone(), |r| r.path().to_path_buf());
    let from = match format {
        Format::Store => "store",
        Format::H5ad => "h5ad",
        Format::TenX => "10x",
    };

    let result = if format == Format::Store && !to_h5ad && !args.raw {
        // Store to store: streamed row by row from the memory map.
        Store::open(&args.input).and_then(|src| {
            let layout = args.layout.resolve(src.density());
            store::copy_store(&src, &target, layout)?;
            store_summary(&target)
        })
    } else {
        read_dataset(&args.input, &ReadOptions { use_raw: args.raw }).and_then(|ds| {
            let density = ds.x.nnz() as f64 / (ds.n_cells() as f64 * ds.n_genes() as f64);
            let layout = args.layout.resolve(density);
            if to_h5ad {
                let (n_cells, n_genes) = (ds.n_cells(), ds.n_genes());
                let extras = carried_extras(args, format)?;
                let opts = h5ad::WriteOptions { gzip: (args.compression == Compression::Gzip).then_some(4) };
                let nnz = write_h5ad(&target, ds, layout, &extras, &opts)?;
                Ok((n_cells, n_genes, nnz, layout))
            } else {
                store::write_dataset(&target, &ds, layout)?;
                store_summary(&target)
            }
        })
    };
    let (n_cells, n_genes, nnz, layout) = match result {
        Ok(s) => s,
        Err(e) => {
            if replacing {
                remove_any(&target);
            }
            return Err(e);
        }
    };
    if replacing {
        // One step: a file is renamed over the old one; a store is
        // exchanged with the old one, which is then removed.
        let _g = crate::cleanup::commit_guard();
        if to_h5ad {
            std::fs::rename(&target, &args.output).map_err(|e| Error::io(&args.output, e))?;
        } else {
            crate::output::set::exchange(&target, &args.output)?;
            remove_existing(&target)?;
        }
    }
    Ok(Summary { n_cells, n_genes, nnz, layout, from })
}

/// Shape, stored entries and layout of a store just written (header and
/// names only).
fn store_summary(path: &Path) -> Result<(usize, usize, u64, Layout)> {
    let s = Store::open(path)?;
    Ok((s.n_cells(), s.n_genes(), s.nnz(), s.layout()))
}

/// Writes `ds` with X in `layout`; returns X's stored entries.
fn write_h5ad(path: &Path, mut ds: Dataset, layout: Layout, extras: &h5ad::H5adExtras, opts: &h5ad::WriteOptions) -> Result<u64> {
    ds.x = match (layout, ds.x) {
        (Layout::Dense, x) => Matrix::Dense(x.to_dense()),
        (Layout::Csr, Matrix::Dense(d)) => Matrix::Csr(crate::data::CsrMatrix::from_dense(&d)),
        (Layout::Csr, x) => x,
    };
    h5ad::write_h5ad_full(path, &ds, extras, opts)?;
    Ok(ds.x.nnz() as u64)
}

/// For .h5ad → .h5ad: the var columns, obsm, layers and .raw of IN (with
/// --raw, X is IN's .raw, so only obsm follows); what cannot be carried is
/// named on stderr.
fn carried_extras(args: &Args, format: Format) -> Result<h5ad::H5adExtras> {
    if format != Format::H5ad {
        return Ok(h5ad::H5adExtras::default());
    }
    let (mut extras, mut dropped) = h5ad::read_extras(&args.input)?;
    if args.raw {
        dropped.extend(extras.var.drain(..).map(|(n, _)| format!("var/{n}")));
        dropped.extend(extras.layers.drain(..).map(|(n, _)| format!("layers/{n}")));
        if extras.raw.take().is_some() {
            dropped.push("raw (it became X)".into());
        }
    }
    if !dropped.is_empty() {
        eprintln!("not carried over from {}: {}", args.input.display(), dropped.join(", "));
    }
    Ok(extras)
}

/// Whether OUT exists and may be replaced; errors when it exists without
/// --force, or is something --force must not remove.
fn check_output(out: &Path, force: bool, to_h5ad: bool) -> Result<bool> {
    let Ok(meta) = out.symlink_metadata() else { return Ok(false) };
    let exists = |why: &str| Error::io(out, std::io::Error::new(std::io::ErrorKind::AlreadyExists, why.to_string()));
    if !force {
        return Err(exists("already exists (pass --force to replace it)"));
    }
    if to_h5ad {
        if meta.is_dir() {
            return Err(exists("is a directory; refusing to replace it with an .h5ad file"));
        }
    } else if !store::is_store(out) {
        return Err(exists("exists and is not an acsleuth store; refusing to remove it even with --force"));
    }
    Ok(true)
}

fn remove_existing(p: &Path) -> Result<()> {
    let r = if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
    r.map_err(|e| Error::io(p, e))
}

fn remove_any(p: &Path) {
    if p.symlink_metadata().is_ok() {
        let _ = remove_existing(p);
    }
}

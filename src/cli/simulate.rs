//! `acsleuth simulate`: splatter-style reference and target counts with the
//! truth beside them, streamed into stores (any size), optionally also as
//! `.h5ad`. The whole output directory appears at once: it is written under
//! a temporary name beside `--out` and renamed when complete.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::data::h5ad::write_h5ad;
use crate::data::simulate::{CellLabels, DeParams, Dropout, SetKind, SimConfig, Simulator};
use crate::data::store::{Layout, StoreWriter};
use crate::data::{CsrMatrix, Dataset, Matrix, RowSink};
use crate::error::{Error, Result};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutArg {
    /// Compressed sparse rows (counts are mostly zero).
    Csr,
    /// Row-major f32.
    Dense,
}

/// Writes OUT/reference.acs and OUT/target.acs (counts, truth as obs columns:
/// cell_type, is_anomaly, anomaly_type, batch), OUT/truth.tsv (target cells)
/// and OUT/params.json (every parameter; `--config OUT/params.json` replays
/// the run). The model is described in the library's `data::simulate` docs.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output directory; must not exist (or be empty) unless --force.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Start from the parameters in this JSON file (e.g. a previous
    /// params.json); the flags below override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Reference cells (normal types only) [default: 2000].
    #[arg(long, value_name = "N")]
    pub n_ref: Option<usize>,
    /// Target cells (normal and anomalous) [default: 2000].
    #[arg(long, value_name = "N")]
    pub n_target: Option<usize>,
    /// Genes [default: 3000].
    #[arg(long, value_name = "G")]
    pub n_genes: Option<usize>,
    /// Normal cell types [default: 5].
    #[arg(long, value_name = "K")]
    pub n_types: Option<usize>,
    /// Anomaly types, present in the target only; 0 = no anomalies
    /// [default: 2].
    #[arg(long, value_name = "A")]
    pub n_anomaly_types: Option<usize>,
    /// Fraction of anomalous target cells, in [0, 1); the count is exactly
    /// round(R · n_target). 0 gives a target without anomalies, a negative
    /// control for false calls [default: 0.1].
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub anomaly_ratio: Option<f64>,
    /// Batches in all [default: 2].
    #[arg(long, value_name = "B")]
    pub n_batches: Option<usize>,
    /// Batches of the reference cells, comma-separated [default: 0].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub ref_batches: Option<Vec<usize>>,
    /// Batches of the target cells, comma-separated [default: all].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub target_batches: Option<Vec<usize>>,
    /// Batch effect: per-gene factors ~ LogNormal(0, S) [default: 0.2].
    #[arg(long, value_name = "S")]
    pub batch_scale: Option<f64>,
    /// Condition shift of the target: per (cell type, gene) factors ~
    /// LogNormal(0, S), a different vector for each type, so a condition
    /// (say a stimulation) moves some types more than others, which a
    /// single batch factor cannot mimic; 0 = off [default: 0].
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub condition_shift: Option<f64>,
    /// Fraction of genes the condition moves in each cell type (a random
    /// subset per type; real stimulations move a few % of genes strongly)
    /// [default: 1].
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub condition_genes: Option<f64>,
    /// Random seed; the same seed gives the same bytes [default: 0].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Library sizes ~ LogNormal(LOC, SCALE): location [default: 8.0].
    #[arg(long, value_name = "LOC", allow_negative_numbers = true)]
    pub lib_loc: Option<f64>,
    /// Library-size scale [default: 0.3].
    #[arg(long, value_name = "SCALE")]
    pub lib_scale: Option<f64>,
    /// Biological coefficient of variation (splatter's bcv.common) [default: 0.1].
    #[arg(long, value_name = "BCV")]
    pub bcv: Option<f64>,
    /// Probability that a gene is DE in a normal type [default: 0.1].
    #[arg(long, value_name = "P")]
    pub de_prob: Option<f64>,
    /// DE factors of normal types ~ LogNormal(LOC, ..) [default: 0.5].
    #[arg(long, value_name = "LOC", allow_negative_numbers = true)]
    pub de_loc: Option<f64>,
    /// DE factors of normal types ~ LogNormal(.., SCALE) [default: 0.4].
    #[arg(long, value_name = "SCALE")]
    pub de_scale: Option<f64>,
    /// Probability that a gene is DE in an anomaly type [default: 0.1].
    #[arg(long, value_name = "P")]
    pub anomaly_de_prob: Option<f64>,
    /// DE factors of anomaly types ~ LogNormal(LOC, ..) [default: 0.5].
    #[arg(long, value_name = "LOC", allow_negative_numbers = true)]
    pub anomaly_de_loc: Option<f64>,
    /// DE factors of anomaly types ~ LogNormal(.., SCALE) [default: 0.4].
    #[arg(long, value_name = "SCALE")]
    pub anomaly_de_scale: Option<f64>,
    /// Turn dropout on: midpoint of the logistic in ln(mean) [default: off].
    #[arg(long, value_name = "MID", allow_negative_numbers = true)]
    pub dropout_mid: Option<f64>,
    /// Dropout logistic shape (negative: low means drop more) [default: -1].
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub dropout_shape: Option<f64>,
    /// Store layout.
    #[arg(long, value_enum, default_value = "csr")]
    pub layout: LayoutArg,
    /// Also write reference.h5ad and target.h5ad (CSR counts; each set is
    /// held in memory while it is written).
    #[arg(long)]
    pub h5ad: bool,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

impl Args {
    /// The configuration: `--config` (or the defaults), then each flag given.
    pub fn to_config(&self) -> Result<SimConfig> {
        let mut c = match &self.config {
            Some(path) => {
                let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                serde_json::from_str::<SimConfig>(&text)
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
            }
            None => SimConfig::default(),
        };
        set(&mut c.n_ref, self.n_ref);
        set(&mut c.n_target, self.n_target);
        set(&mut c.n_genes, self.n_genes);
        set(&mut c.n_types, self.n_types);
        set(&mut c.n_anomaly_types, self.n_anomaly_types);
        set(&mut c.anomaly_ratio, self.anomaly_ratio);
        set(&mut c.n_batches, self.n_batches);
        set(&mut c.ref_batches, self.ref_batches.clone());
        if let Some(b) = &self.target_batches {
            c.target_batches = Some(b.clone());
        }
        set(&mut c.batch_scale, self.batch_scale);
        set(&mut c.condition_shift, self.condition_shift);
        set(&mut c.condition_genes, self.condition_genes);
        set(&mut c.seed, self.seed);
        set(&mut c.lib_loc, self.lib_loc);
        set(&mut c.lib_scale, self.lib_scale);
        set(&mut c.bcv_common, self.bcv);
        set_de(&mut c.de, self.de_prob, self.de_loc, self.de_scale);
        set_de(&mut c.anomaly_de, self.anomaly_de_prob, self.anomaly_de_loc, self.anomaly_de_scale);
        match (self.dropout_mid, self.dropout_shape, &mut c.dropout) {
            (Some(mid), shape, current) => {
                let shape = shape.or(current.as_ref().map(|d| d.shape)).unwrap_or(-1.0);
                c.dropout = Some(Dropout { mid, shape });
            }
            (None, Some(shape), Some(d)) => d.shape = shape,
            (None, Some(_), None) => {
                return Err(Error::Config("--dropout-shape needs --dropout-mid (dropout is off)".into()));
            }
            (None, None, _) => {}
        }
        Ok(c)
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

fn set_de(de: &mut DeParams, prob: Option<f64>, loc: Option<f64>, scale: Option<f64>) {
    set(&mut de.prob, prob);
    set(&mut de.loc, loc);
    set(&mut de.scale, scale);
}

pub fn run(args: Args) -> Result<()> {
    let config = args.to_config()?;
    let sim = Simulator::new(config)?;
    let layout = match args.layout {
        LayoutArg::Csr => Layout::Csr,
        LayoutArg::Dense => Layout::Dense,
    };
    let out = args.out.as_path();
    let replace = check_out(out, args.force)?;
    let _lock = crate::output::lock::OutLock::acquire(out)?;
    if let Ok((parent, _)) = crate::output::set::split(out) {
        crate::cleanup::remove_stale(&parent, false);
    }
    let tmp = TempDir::beside(out)?;

    let c = sim.config();
    let mut disk = DiskCheck::new(tmp.path(), c.n_ref + c.n_target, c.n_genes, layout, args.h5ad);
    for kind in [SetKind::Reference, SetKind::Target] {
        write_set(&sim, kind, tmp.path(), layout, args.h5ad, &mut disk)?;
    }
    write_truth(&sim, &tmp.path().join("truth.tsv"))?;
    let params = serde_json::to_string_pretty(sim.config())
        .map_err(|e| Error::Other(format!("cannot serialise the parameters: {e}")))?;
    let params_path = tmp.path().join("params.json");
    fs::write(&params_path, params + "\n").map_err(|e| Error::io(&params_path, e))?;
    let files = names_in(tmp.path());
    tmp.commit(out, replace)?;
    let c = sim.config();
    println!(
        "simulated {} reference and {} target cells × {} genes ({} anomaly type(s), anomaly ratio {}); results in {}:",
        c.n_ref,
        c.n_target,
        c.n_genes,
        c.n_anomaly_types,
        c.anomaly_ratio,
        out.display()
    );
    for f in files {
        println!("  {}", out.join(f).display());
    }
    Ok(())
}

/// The entries of `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir).map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// Whether `out` exists and will be replaced; refuses without --force unless
/// it is an empty directory.
fn check_out(out: &Path, force: bool) -> Result<bool> {
    let meta = match fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(out, e)),
    };
    let empty_dir = meta.is_dir() && fs::read_dir(out).map_err(|e| Error::io(out, e))?.next().is_none();
    if !force && !empty_dir {
        return Err(Error::Config(format!("{} already exists; use --force to replace it", out.display())));
    }
    Ok(true)
}

/// A store writer that names each cell from the truth labels, and keeps an
/// in-memory copy of the counts when an .h5ad is wanted too.
struct NamedSink<'a> {
    writer: StoreWriter,
    labels: &'a CellLabels,
    next: usize,
    copy: Option<CsrMatrix>,
    disk: &'a mut DiskCheck,
}

/// Cells written before the outputs' size is projected from them.
const PILOT_CELLS: usize = 1000;

/// Projects the outputs' size from the first cells written (their values
/// per cell, times the bytes each takes in the files) and stops the run at
/// once when the rest would not fit on the disk, instead of filling it.
struct DiskCheck {
    dir: PathBuf,
    /// Cells of both sets, and how many are written.
    total_cells: usize,
    cells: usize,
    nnz: u64,
    /// File bytes per stored value and per cell (names, row offsets; a
    /// dense row), over the store and, with --h5ad, the .h5ad copy.
    per_value: u64,
    per_cell: u64,
    checked: bool,
}

impl DiskCheck {
    fn new(dir: &Path, total_cells: usize, n_genes: usize, layout: Layout, h5ad: bool) -> Self {
        let (mut per_value, mut per_cell) = match layout {
            Layout::Csr => (8, 24),
            Layout::Dense => (0, 4 * n_genes as u64 + 16),
        };
        if h5ad {
            per_value += 8;
            per_cell += 24;
        }
        DiskCheck { dir: dir.to_path_buf(), total_cells, cells: 0, nnz: 0, per_value, per_cell, checked: false }
    }

    /// The bytes still to write, projected from the cells written so far.
    fn remaining(&self) -> u64 {
        let per_cell = self.nnz as f64 / self.cells.max(1) as f64 * self.per_value as f64 + self.per_cell as f64;
        (per_cell * (self.total_cells - self.cells.min(self.total_cells)) as f64) as u64
    }

    fn push(&mut self, nnz: usize) -> Result<()> {
        self.cells += 1;
        self.nnz += nnz as u64;
        if self.checked || self.cells < PILOT_CELLS.min(self.total_cells) {
            return Ok(());
        }
        self.checked = true;
        let needed = self.remaining();
        let Some(free) = crate::output::disk::free_bytes(&self.dir) else { return Ok(()) };
        if needed >= 1 << 30 {
            use crate::output::disk::human;
            eprintln!("writing about {} more ({} free on {})", human(needed), human(free), self.dir.display());
        }
        crate::output::disk::check_fits("simulate", &self.dir, needed, free)
    }
}

impl RowSink for NamedSink<'_> {
    fn push_row(&mut self, indices: &[u32], values: &[f32]) -> Result<()> {
        self.disk.push(values.len())?;
        self.writer.push_cell(&self.labels.cell_name(self.next), indices, values)?;
        self.next += 1;
        if let Some(m) = &mut self.copy {
            m.push_row(indices, values);
        }
        Ok(())
    }
}

fn write_set(sim: &Simulator, kind: SetKind, dir: &Path, layout: Layout, h5ad: bool, disk: &mut DiskCheck) -> Result<()> {
    let name = match kind {
        SetKind::Reference => "reference",
        SetKind::Target => "target",
    };
    let genes = sim.gene_names();
    let labels = sim.labels(kind);
    let mut sink = NamedSink {
        writer: StoreWriter::create(&dir.join(format!("{name}.acs")), &genes, layout)?,
        labels,
        next: 0,
        copy: h5ad.then(|| CsrMatrix::empty(genes.len())),
        disk,
    };
    let bar = crate::progress::bar(labels.len() as u64, name);
    sim.generate(kind, &mut sink, |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    let obs = sim.obs_columns(kind);
    sink.writer.finish(&obs)?;
    if let Some(x) = sink.copy {
        let ds = Dataset { x: Matrix::Csr(x), cell_names: labels.cell_names(), gene_names: genes, obs };
        write_h5ad(&dir.join(format!("{name}.h5ad")), &ds, &[])?;
    }
    Ok(())
}

/// truth.tsv: one line per target cell.
fn write_truth(sim: &Simulator, path: &Path) -> Result<()> {
    let labels = sim.labels(SetKind::Target);
    let types = sim.type_names();
    let batches = sim.batch_names();
    let io = |e| Error::io(path, e);
    let mut w = BufWriter::new(fs::File::create(path).map_err(io)?);
    writeln!(w, "cell\tcell_type\tis_anomaly\tanomaly_type\tbatch").map_err(io)?;
    for i in 0..labels.len() {
        let t = labels.cell_type[i] as usize;
        let anomalous = sim.is_anomaly_type(t);
        let anomaly_type = if anomalous { types[t].as_str() } else { "normal" };
        writeln!(
            w,
            "{}\t{}\t{}\t{}\t{}",
            labels.cell_name(i),
            types[t],
            anomalous,
            anomaly_type,
            batches[labels.batch[i] as usize]
        )
        .map_err(io)?;
    }
    w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)
}

/// A directory beside the final output (registered for removal if the
/// process is stopped), removed on drop unless committed.
struct TempDir {
    path: Option<PathBuf>,
    _reg: crate::cleanup::Registered,
}

impl TempDir {
    fn beside(out: &Path) -> Result<Self> {
        if out.file_name().is_none() {
            return Err(Error::Config(format!("--out {} does not name a directory", out.display())));
        }
        let path = crate::cleanup::temp_sibling(out);
        let reg = crate::cleanup::register(path.clone());
        fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        Ok(TempDir { path: Some(path), _reg: reg })
    }
    fn path(&self) -> &Path {
        self.path.as_deref().expect("a TempDir holds its path until committed")
    }
    /// Moves the finished directory to `out` in one step, replacing what
    /// was there.
    fn commit(mut self, out: &Path, replace: bool) -> Result<()> {
        let tmp = self.path.take().expect("a TempDir holds its path until committed");
        let _g = crate::cleanup::commit_guard();
        if replace {
            if let Err(e) = crate::output::set::exchange(&tmp, out) {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
            // `tmp` now holds the previous output.
            crate::cleanup::remove_path(&tmp);
            Ok(())
        } else {
            fs::rename(&tmp, out).map_err(|e| Error::io(out, e)).inspect_err(|_| {
                let _ = fs::remove_dir_all(&tmp);
            })
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = fs::remove_dir_all(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Issue 15 item 10: a simulation whose outputs would not fit stops
    /// after its first cells, saying how much it needs and how much is
    /// free; one that fits goes on.
    #[test]
    fn a_simulation_too_large_for_the_disk_stops_after_its_first_cells() {
        let d = tempfile::tempdir().unwrap();
        // 1,000 cells of 100 values each: 10^12 cells would need ~10^15 bytes.
        let mut huge = DiskCheck::new(d.path(), 1_000_000_000_000, 2000, Layout::Csr, true);
        let e = (0..PILOT_CELLS).map(|_| huge.push(100)).collect::<Result<Vec<()>>>().unwrap_err().to_string();
        assert!(e.contains("simulate would write about") && e.contains("free"), "{e}");
        assert_eq!(huge.cells, PILOT_CELLS, "checked once the pilot cells were written");
        // The projection: 100 values × (8 + 8) bytes + 48 bytes per cell.
        assert_eq!(huge.remaining(), (100 * 16 + 48) * (1_000_000_000_000 - PILOT_CELLS as u64));
        let mut small = DiskCheck::new(d.path(), 2 * PILOT_CELLS, 2000, Layout::Csr, false);
        for _ in 0..2 * PILOT_CELLS {
            small.push(100).unwrap();
        }
        assert!(small.checked);
    }

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["acsleuth", "simulate", "--out", "o"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(argv).expect("valid flags").command {
            crate::cli::Command::Simulate(a) => *a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn flags_override_the_config_file() {
        assert_eq!(args(&[]).to_config().unwrap(), SimConfig::default());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        fs::write(&file, r#"{"n_ref": 10, "seed": 4, "dropout": {"mid": 0.0, "shape": -3.0}}"#).unwrap();
        let f = file.to_str().unwrap();
        let c = args(&["--config", f, "--seed", "9", "--ref-batches", "0,1", "--de-loc", "-0.2", "--dropout-shape", "-1.5"])
            .to_config()
            .unwrap();
        assert_eq!(c.n_ref, 10);
        assert_eq!(c.seed, 9);
        assert_eq!(c.ref_batches, vec![0, 1]);
        assert_eq!(c.de.loc, -0.2);
        assert_eq!(c.dropout, Some(Dropout { mid: 0.0, shape: -1.5 }));
        assert_eq!(c.n_target, SimConfig::default().n_target);
    }

    #[test]
    fn temporary_directory_is_removed_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sim");
        let tmp = TempDir::beside(&out).unwrap();
        fs::write(tmp.path().join("half.txt"), "x").unwrap();
        drop(tmp);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

        let tmp = TempDir::beside(&out).unwrap();
        fs::write(tmp.path().join("a.txt"), "new").unwrap();
        tmp.commit(&out, false).unwrap();
        assert_eq!(fs::read_to_string(out.join("a.txt")).unwrap(), "new");

        // Replacing keeps only the new directory.
        let tmp = TempDir::beside(&out).unwrap();
        fs::write(tmp.path().join("b.txt"), "newer").unwrap();
        tmp.commit(&out, true).unwrap();
        assert!(!out.join("a.txt").exists());
        assert_eq!(fs::read_to_string(out.join("b.txt")).unwrap(), "newer");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

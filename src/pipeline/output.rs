//! Result files. Every file is written to a temporary sibling and renamed
//! into place, so an interrupted or failed run never leaves a half-written
//! output behind.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `path` atomically: `fill` writes into a temporary file in the same
/// directory, which is renamed over `path` only when `fill` succeeds.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::Config(format!("{}: not a file path", path.display())))?;
    let tmp: PathBuf = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = BufWriter::new(f);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Maps an I/O error inside a writer closure to a typed error on `path`.
pub fn io_at(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// Writes `cell\tscore\tanomaly` (and `\tpvalue\tqvalue` when given),
/// one row per cell in input order.
pub fn write_scores(path: &Path, cells: &[String], scores: &[f32], calls: &[bool]) -> Result<()> {
    write_scores_with(path, cells, scores, calls, None)
}

/// [`write_scores`] with conformal p-values and BH q-values.
pub fn write_scores_with(path: &Path, cells: &[String], scores: &[f32], calls: &[bool], pq: Option<(&[f64], &[f64])>) -> Result<()> {
    if cells.len() != scores.len() || cells.len() != calls.len() || pq.is_some_and(|(p, q)| p.len() != cells.len() || q.len() != cells.len()) {
        return Err(Error::Other(format!(
            "internal: {} cells, {} scores, {} calls",
            cells.len(),
            scores.len(),
            calls.len()
        )));
    }
    write_atomic(path, |w| {
        match pq {
            None => writeln!(w, "cell\tscore\tanomaly"),
            Some(_) => writeln!(w, "cell\tscore\tanomaly\tpvalue\tqvalue"),
        }
        .map_err(io_at(path))?;
        for (i, ((c, s), a)) in cells.iter().zip(scores).zip(calls).enumerate() {
            match pq {
                None => writeln!(w, "{c}\t{s}\t{}", *a as u8),
                Some((p, q)) => writeln!(w, "{c}\t{s}\t{}\t{}\t{}", *a as u8, p[i], q[i]),
            }
            .map_err(io_at(path))?;
        }
        Ok(())
    })
}

/// Writes `cell\tdeviation`: the reconstruction deviation ‖x − x̂‖ of every
/// cell, in input order (a diagnostic ranking beside the MMD score).
pub fn write_deviations(path: &Path, cells: &[String], deviation: &[f32]) -> Result<()> {
    if cells.len() != deviation.len() {
        return Err(Error::Other(format!("internal: {} cells, {} deviations", cells.len(), deviation.len())));
    }
    write_atomic(path, |w| {
        writeln!(w, "cell\tdeviation").map_err(io_at(path))?;
        for (c, d) in cells.iter().zip(deviation) {
            writeln!(w, "{c}\t{d}").map_err(io_at(path))?;
        }
        Ok(())
    })
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value).map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
        writeln!(w).map_err(io_at(path))
    })
}

/// Creates the output directory (and parents) if needed; refuses a path
/// that exists and is not a directory.
pub fn prepare_out_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Config(format!("{}: exists and is not a directory", dir.display())));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_file_has_header_and_rows() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("scores.tsv");
        write_scores(&p, &["a".into(), "b".into()], &[0.25, 0.75], &[false, true]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "cell\tscore\tanomaly\na\t0.25\t0\nb\t0.75\t1\n");
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.tsv");
        let r = write_atomic(&p, |w| {
            writeln!(w, "partial").unwrap();
            Err(Error::Other("boom".into()))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }
}

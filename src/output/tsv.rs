//! Tab-separated result tables: one header line, one row per cell in
//! input order, written atomically. Cell names are checked by
//! `check_cell_names` before anything is written.

use std::path::Path;

use crate::error::{Error, Result};

use super::atomic::{io_at, write_atomic};

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

}

//! Delimited text tables read by name: the scores and truth files
//! `evaluate` joins by cell (acsleuth's TSV outputs, or a user's CSV).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A delimited text table: header and rows of fields.
pub struct Table {
    pub path: PathBuf,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Reads a TSV (tab in the header) or CSV file; every row must have
    /// the header's number of fields.
    pub fn read(path: &Path) -> Result<Table> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.trim().is_empty());
        let head = lines.next().ok_or_else(|| Error::corrupt(path, "empty file"))?;
        let delim = if head.contains('\t') { '\t' } else { ',' };
        let split = |l: &str| -> Vec<String> {
            l.split(delim).map(|f| f.trim().trim_matches('"').to_string()).collect()
        };
        let header = split(head);
        let mut rows = Vec::new();
        for (i, l) in lines.enumerate() {
            let r = split(l);
            if r.len() != header.len() {
                return Err(Error::corrupt(
                    path,
                    format!("line {}: {} fields, the header has {}", i + 2, r.len(), header.len()),
                ));
            }
            rows.push(r);
        }
        if rows.is_empty() {
            return Err(Error::corrupt(path, "no data rows"));
        }
        Ok(Table { path: path.to_path_buf(), header, rows })
    }

    /// The index of column `name`.
    pub fn col(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// The index of column `name`, or an error listing the columns.
    pub fn require(&self, name: &str) -> Result<usize> {
        self.col(name).ok_or_else(|| {
            Error::Config(format!(
                "{}: no column '{name}' (columns: {})",
                self.path.display(),
                self.header.join(", ")
            ))
        })
    }

    /// The cell-name column: `cell`, else the first.
    pub fn cell_col(&self) -> usize {
        self.col("cell").unwrap_or(0)
    }
}

/// A 0/1, true/false, t/f or yes/no field (line `line` of `path`, column `col`).
pub fn parse_bool(s: &str, path: &Path, line: usize, col: &str) -> Result<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" => Ok(true),
        "0" | "false" | "f" | "no" => Ok(false),
        _ => Err(Error::corrupt(path, format!("line {line}: column '{col}' has '{s}', expected 0/1 or true/false"))),
    }
}


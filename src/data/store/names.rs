//! The text files beside `matrix.bin`: `genes.txt`, `cells.txt` (one name a
//! line), `obs.tsv` (human- and pandas-readable obs table) and `obs.json`
//! (the kind of each obs column, so that [`ObsColumn`] round-trips exactly).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::ObsColumn;
use crate::error::{Error, Result};

pub use crate::data::matrix::check_name;

/// Writes one name a line.
pub fn write_names(path: &Path, names: &[String]) -> Result<()> {
    let f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::new(f);
    for n in names {
        w.write_all(n.as_bytes()).and_then(|_| w.write_all(b"\n")).map_err(|e| Error::io(path, e))?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

/// Reads a one-name-a-line file and checks it has `expected` names.
pub fn read_names(path: &Path, expected: u64, what: &str) -> Result<Vec<String>> {
    let text = read_text(path)?;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(Error::corrupt(path, "truncated: the last line has no newline"));
    }
    let names: Vec<String> = text.lines().map(str::to_owned).collect();
    if names.len() as u64 != expected {
        return Err(Error::corrupt(
            path,
            format!("{} {what} names for {expected} {what}s in matrix.bin", names.len()),
        ));
    }
    Ok(names)
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|_| Error::corrupt(path, "not valid UTF-8"))
}

/// `obs.json`: the schema of `obs.tsv`.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct ObsSchema {
    format: String,
    version: u32,
    n_cells: u64,
    columns: Vec<ColumnSchema>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct ColumnSchema {
    name: String,
    #[serde(flatten)]
    kind: ColumnKind,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum ColumnKind {
    /// Categories in their order (codes index into it).
    Categorical { categories: Vec<String> },
    Numeric,
    Integer,
    Bool,
    Text,
}

const OBS_FORMAT: &str = "acsleuth-obs";

/// Escapes a TSV field: `\` → `\\`, tab → `\t`, newline → `\n`, CR → `\r`;
/// an empty string that must be told apart from "missing" is `\e`.
fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn unescape(s: &str) -> std::result::Result<String, String> {
    if s == "\\e" {
        return Ok(String::new());
    }
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            other => return Err(format!("bad escape '\\{}' in {s:?}", other.map(String::from).unwrap_or_default())),
        }
    }
    Ok(out)
}

/// Checks obs columns against the number of cells and for unique names and
/// valid categorical codes.
pub fn check_obs(obs: &[(String, ObsColumn)], n_cells: u64) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (name, col) in obs {
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid(format!("duplicated obs column name '{name}'")));
        }
        if col.len() as u64 != n_cells {
            return Err(Error::invalid(format!("obs column '{name}' has {} values for {n_cells} cells", col.len())));
        }
        if let ObsColumn::Categorical { categories, codes } = col
            && let Some(c) = codes.iter().find(|&&c| c < -1 || c >= categories.len() as i32)
        {
            return Err(Error::invalid(format!("obs column '{name}': code {c} outside -1..{}", categories.len())));
        }
    }
    Ok(())
}

/// Writes `obs.tsv` (index column `cell` read back from `cells_txt`, then one
/// column per obs column) and `obs.json`. Missing categorical values are
/// empty fields.
pub fn write_obs(dir: &Path, cells_txt: &Path, obs: &[(String, ObsColumn)], n_cells: u64) -> Result<()> {
    let schema = ObsSchema {
        format: OBS_FORMAT.into(),
        version: 1,
        n_cells,
        columns: obs
            .iter()
            .map(|(name, col)| ColumnSchema {
                name: name.clone(),
                kind: match col {
                    ObsColumn::Categorical { categories, .. } => ColumnKind::Categorical { categories: categories.clone() },
                    ObsColumn::Numeric(_) => ColumnKind::Numeric,
                    ObsColumn::Integer(_) => ColumnKind::Integer,
                    ObsColumn::Bool(_) => ColumnKind::Bool,
                    ObsColumn::Text(_) => ColumnKind::Text,
                },
            })
            .collect(),
    };
    let json_path = dir.join("obs.json");
    let json = serde_json::to_string_pretty(&schema).map_err(|e| Error::Other(format!("obs.json: {e}")))?;
    std::fs::write(&json_path, json + "\n").map_err(|e| Error::io(&json_path, e))?;

    let tsv_path = dir.join("obs.tsv");
    let io_err = |e| Error::io(&tsv_path, e);
    let mut w = BufWriter::new(std::fs::File::create(&tsv_path).map_err(io_err)?);
    let cells = BufReader::new(std::fs::File::open(cells_txt).map_err(|e| Error::io(cells_txt, e))?);
    let mut line = String::from("cell");
    for (name, _) in obs {
        line.push('\t');
        escape(name, &mut line);
    }
    line.push('\n');
    w.write_all(line.as_bytes()).map_err(io_err)?;
    for (i, cell) in cells.lines().enumerate() {
        let cell = cell.map_err(|e| Error::io(cells_txt, e))?;
        line.clear();
        line.push_str(&cell);
        for (_, col) in obs {
            line.push('\t');
            match col {
                ObsColumn::Categorical { categories, codes } => {
                    if codes[i] >= 0 {
                        let v = &categories[codes[i] as usize];
                        if v.is_empty() { line.push_str("\\e") } else { escape(v, &mut line) }
                    }
                }
                ObsColumn::Numeric(v) => line.push_str(&format!("{:?}", v[i])),
                ObsColumn::Integer(v) => line.push_str(&v[i].to_string()),
                ObsColumn::Bool(v) => line.push_str(if v[i] { "true" } else { "false" }),
                ObsColumn::Text(v) => escape(&v[i], &mut line),
            }
        }
        line.push('\n');
        w.write_all(line.as_bytes()).map_err(io_err)?;
    }
    w.flush().map_err(io_err)
}

/// Reads `obs.json` and `obs.tsv` back into columns, checking the index
/// column against `cell_names`.
pub fn read_obs(dir: &Path, cell_names: &[String]) -> Result<Vec<(String, ObsColumn)>> {
    let json_path = dir.join("obs.json");
    let schema: ObsSchema = serde_json::from_str(&read_text(&json_path)?)
        .map_err(|e| Error::corrupt(&json_path, format!("bad obs schema: {e}")))?;
    if schema.format != OBS_FORMAT || schema.version != 1 {
        return Err(Error::corrupt(&json_path, format!("unsupported obs schema {} v{}", schema.format, schema.version)));
    }
    let n = cell_names.len();
    if schema.n_cells != n as u64 {
        return Err(Error::corrupt(&json_path, format!("schema is for {} cells, the store has {n}", schema.n_cells)));
    }
    let tsv_path = dir.join("obs.tsv");
    let bad = |line: usize, msg: String| Error::corrupt(&tsv_path, format!("line {line}: {msg}"));
    let text = read_text(&tsv_path)?;
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| bad(1, "missing header".into()))?;
    let names: Vec<String> = header.split('\t').skip(1).map(unescape).collect::<std::result::Result<_, _>>().map_err(|m| bad(1, m))?;
    let want: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    if names.iter().map(String::as_str).ne(want.iter().copied()) {
        return Err(bad(1, format!("columns {names:?} do not match obs.json {want:?}")));
    }
    // One builder per column; categories looked up through a map.
    let lookups: Vec<Option<HashMap<&str, i32>>> = schema
        .columns
        .iter()
        .map(|c| match &c.kind {
            ColumnKind::Categorical { categories } => {
                Some(categories.iter().enumerate().map(|(k, s)| (s.as_str(), k as i32)).collect())
            }
            _ => None,
        })
        .collect();
    let mut cols: Vec<ObsColumn> = schema
        .columns
        .iter()
        .map(|c| match &c.kind {
            ColumnKind::Categorical { categories } => {
                ObsColumn::Categorical { categories: categories.clone(), codes: Vec::with_capacity(n) }
            }
            ColumnKind::Numeric => ObsColumn::Numeric(Vec::with_capacity(n)),
            ColumnKind::Integer => ObsColumn::Integer(Vec::with_capacity(n)),
            ColumnKind::Bool => ObsColumn::Bool(Vec::with_capacity(n)),
            ColumnKind::Text => ObsColumn::Text(Vec::with_capacity(n)),
        })
        .collect();
    let mut rows = 0usize;
    for (i, line) in lines.enumerate() {
        let ln = i + 2;
        if i >= n {
            return Err(bad(ln, format!("more rows than the {n} cells")));
        }
        let mut fields = line.split('\t');
        let cell = fields.next().unwrap_or_default();
        if cell != cell_names[i] {
            return Err(bad(ln, format!("cell '{cell}' where cells.txt has '{}'", cell_names[i])));
        }
        for (k, col) in cols.iter_mut().enumerate() {
            let f = fields.next().ok_or_else(|| bad(ln, format!("{} fields, expected {}", k + 1, want.len() + 1)))?;
            match col {
                ObsColumn::Categorical { codes, .. } => {
                    let code = if f.is_empty() {
                        -1
                    } else {
                        let v = unescape(f).map_err(|m| bad(ln, m))?;
                        let map = lookups[k].as_ref().expect("categorical column has a lookup");
                        *map.get(v.as_str()).ok_or_else(|| bad(ln, format!("'{v}' is not a category of '{}'", want[k])))?
                    };
                    codes.push(code);
                }
                ObsColumn::Numeric(v) => v.push(f.parse().map_err(|_| bad(ln, format!("'{f}' is not a number")))?),
                ObsColumn::Integer(v) => v.push(f.parse().map_err(|_| bad(ln, format!("'{f}' is not an integer")))?),
                ObsColumn::Bool(v) => v.push(match f {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(ln, format!("'{f}' is not true/false"))),
                }),
                ObsColumn::Text(v) => v.push(unescape(f).map_err(|m| bad(ln, m))?),
            }
        }
        if fields.next().is_some() {
            return Err(bad(ln, format!("more than {} fields", want.len() + 1)));
        }
        rows += 1;
    }
    if rows != n {
        return Err(Error::corrupt(&tsv_path, format!("{rows} rows for {n} cells")));
    }
    Ok(want.iter().map(|s| s.to_string()).zip(cols).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips() {
        for s in ["a", "a\tb", "x\\ny", "\\", "line\nbreak\r", "\\e", "é"] {
            let mut e = String::new();
            escape(s, &mut e);
            assert!(!e.contains(['\t', '\n', '\r']));
            assert_eq!(unescape(&e).unwrap(), s);
        }
        assert_eq!(unescape("\\e").unwrap(), "");
        assert!(unescape("bad\\q").is_err());
    }
}

//! 10x Genomics Matrix Market folders (Cell Ranger's `filtered_feature_bc_matrix/`).
//!
//! A folder holds `matrix.mtx[.gz]` (Matrix Market coordinate format,
//! genes × cells, 1-based, `integer`, `real` or `pattern` values, `general`
//! symmetry), `barcodes.tsv[.gz]` (cell names: first tab-separated column)
//! and `features.tsv[.gz]` (Cell Ranger ≥ 3: id, name, feature type) or
//! `genes.tsv[.gz]` (Cell Ranger 2: id, name). Plain and gzipped files may be
//! mixed; a plain file wins when both exist.
//!
//! What the reader does, as `scanpy.read_10x_mtx` does by default:
//! - gene names are the 2nd column (gene symbols) when present, else the 1st;
//! - repeated gene names are made unique the way scanpy's
//!   `var_names_make_unique` does: the first keeps its name, later ones get
//!   `-1`, `-2`, ... (skipping suffixed names already taken);
//! - with a `features.tsv`, only features whose type (3rd column) is
//!   `Gene Expression` are kept (antibody capture, CRISPR guides, ... are
//!   dropped), after the names were made unique. If no feature has that type
//!   (a hand-made file), all are kept — scanpy would return zero genes.
//! - repeated (gene, cell) entries are summed (as scipy's COO → CSR does).
//!
//! The result is a cells × genes CSR matrix (rows sorted), built by a
//! counting sort over the cells.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::data::{CsrMatrix, Dataset, Matrix};
use crate::error::{Error, Result};

/// Whether `path` is a folder holding matrix.mtx[.gz].
pub fn is_10x_dir(path: &Path) -> bool {
    path.is_dir() && (path.join("matrix.mtx").exists() || path.join("matrix.mtx.gz").exists())
}

/// Reads matrix.mtx[.gz] (genes × cells, as 10x writes it), barcodes and
/// features/genes into a cells × genes CSR dataset (see the module doc for
/// the naming and filtering rules).
pub fn read_10x(dir: &Path) -> Result<Dataset> {
    let missing = |what: &str| Error::corrupt(dir, format!("not a complete 10x folder: no {what}"));
    let mtx_path = find(dir, "matrix.mtx").ok_or_else(|| missing("matrix.mtx or matrix.mtx.gz"))?;
    let bc_path = find(dir, "barcodes.tsv").ok_or_else(|| missing("barcodes.tsv or barcodes.tsv.gz"))?;
    let (feat_path, is_features) = match find(dir, "features.tsv") {
        Some(p) => (p, true),
        None => (find(dir, "genes.tsv").ok_or_else(|| missing("features.tsv[.gz] or genes.tsv[.gz]"))?, false),
    };

    let features = read_tsv(&feat_path)?;
    let barcodes = read_tsv(&bc_path)?;
    let mut gene_names = Vec::with_capacity(features.len());
    let mut is_gex = Vec::with_capacity(features.len());
    for (k, f) in features.iter().enumerate() {
        let name = f.get(1).unwrap_or(&f[0]);
        if name.is_empty() {
            return Err(Error::corrupt(&feat_path, format!("line {}: empty gene name", k + 1)));
        }
        gene_names.push(name.clone());
        is_gex.push(f.get(2).is_none_or(|t| t == "Gene Expression"));
    }
    let cell_names: Vec<String> = barcodes.into_iter().map(|mut f| f.swap_remove(0)).collect();
    if let Some(k) = cell_names.iter().position(String::is_empty) {
        return Err(Error::corrupt(&bc_path, format!("line {}: empty barcode", k + 1)));
    }
    make_unique(&mut gene_names);

    // Feature-type filter: new column of each gene, or None when dropped.
    let filter = is_features && is_gex.iter().any(|&g| g) && !is_gex.iter().all(|&g| g);
    let mut gene_map: Vec<Option<u32>> = Vec::with_capacity(gene_names.len());
    let mut kept = Vec::with_capacity(gene_names.len());
    for (name, gex) in gene_names.into_iter().zip(&is_gex) {
        if !filter || *gex {
            gene_map.push(Some(kept.len() as u32));
            kept.push(name);
        } else {
            gene_map.push(None);
        }
    }

    let coo = read_mtx(&mtx_path)?;
    if coo.n_rows != gene_map.len() as u64 {
        return Err(Error::corrupt(
            dir,
            format!(
                "{} lists {} features but {} has {} rows",
                name_of(&feat_path),
                gene_map.len(),
                name_of(&mtx_path),
                coo.n_rows
            ),
        ));
    }
    if coo.n_cols != cell_names.len() as u64 {
        return Err(Error::corrupt(
            dir,
            format!(
                "{} lists {} barcodes but {} has {} columns",
                name_of(&bc_path),
                cell_names.len(),
                name_of(&mtx_path),
                coo.n_cols
            ),
        ));
    }
    let x = coo_to_csr(coo, &gene_map, kept.len());
    let ds = Dataset { x: Matrix::Csr(x), cell_names, gene_names: kept, obs: vec![] };
    crate::data::check_unique(&ds.cell_names, "cell (barcode)").map_err(|e| Error::corrupt(&bc_path, e.to_string()))?;
    Ok(ds)
}

/// Makes names unique as scanpy's `var_names_make_unique` /
/// anndata's `make_index_unique` do: the first occurrence keeps its name;
/// each later one becomes `name-k` with the smallest k ≥ its running count
/// that is not taken yet.
pub fn make_unique(names: &mut [String]) {
    use std::collections::{HashMap, HashSet};
    let mut first = HashSet::with_capacity(names.len());
    let dup: Vec<bool> = names.iter().map(|n| !first.insert(n.clone())).collect();
    if !dup.iter().any(|&d| d) {
        return;
    }
    let mut taken = first;
    let mut counter: HashMap<String, u64> = HashMap::new();
    for (n, _) in names.iter_mut().zip(&dup).filter(|(_, d)| **d) {
        let c = counter.entry(n.clone()).or_insert(0);
        loop {
            *c += 1;
            let candidate = format!("{n}-{c}");
            if taken.insert(candidate.clone()) {
                *n = candidate;
                break;
            }
        }
    }
}

fn name_of(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `dir/base` if it exists, else `dir/base.gz` if it exists.
fn find(dir: &Path, base: &str) -> Option<PathBuf> {
    let plain = dir.join(base);
    if plain.is_file() {
        return Some(plain);
    }
    let gz = dir.join(format!("{base}.gz"));
    gz.is_file().then_some(gz)
}

/// A buffered reader, decompressing when the name ends in `.gz`.
fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    const CAP: usize = 1 << 20;
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::with_capacity(CAP, MultiGzDecoder::new(BufReader::with_capacity(CAP, f))))
    } else {
        Box::new(BufReader::with_capacity(CAP, f))
    })
}

/// The lines of a small TSV file split on tabs (a trailing empty line is
/// ignored, a `\r` before the newline is dropped).
fn read_tsv(path: &Path) -> Result<Vec<Vec<String>>> {
    let mut text = String::new();
    open(path)?.read_to_string(&mut text).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => Error::corrupt(path, format!("not valid UTF-8 text or damaged gzip: {e}")),
        _ => Error::io(path, e),
    })?;
    let rows: Vec<Vec<String>> =
        text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l).split('\t').map(str::to_owned).collect()).collect();
    if rows.is_empty() {
        return Err(Error::corrupt(path, "empty file"));
    }
    Ok(rows)
}

/// Coordinate entries as read: genes (rows of the file), cells (columns), values.
struct Coo {
    n_rows: u64,
    n_cols: u64,
    genes: Vec<u32>,
    cells: Vec<u32>,
    values: Vec<f32>,
}

#[derive(Clone, Copy, PartialEq)]
enum Field {
    Integer,
    Real,
    Pattern,
}

fn read_mtx(path: &Path) -> Result<Coo> {
    let mut r = open(path)?;
    let bad = |line: u64, msg: String| Error::corrupt(path, format!("line {line}: {msg}"));
    let io = |e: std::io::Error| Error::corrupt(path, format!("read failed: {e}"));
    let mut buf = Vec::with_capacity(256);
    let mut ln = 0u64;
    let mut next_line = |buf: &mut Vec<u8>| -> Result<bool> {
        buf.clear();
        let n = r.read_until(b'\n', buf).map_err(io)?;
        Ok(n > 0)
    };

    // Banner: %%MatrixMarket matrix coordinate <field> general
    if !next_line(&mut buf)? {
        return Err(Error::corrupt(path, "empty file"));
    }
    ln += 1;
    let banner = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let words: Vec<&str> = banner.split_ascii_whitespace().collect();
    if words.len() != 5 || words[0] != "%%matrixmarket" || words[1] != "matrix" {
        return Err(bad(1, format!("not a Matrix Market header: {:?}", banner.trim_end())));
    }
    if words[2] != "coordinate" {
        return Err(bad(1, format!("'{}' format is not supported (10x writes 'coordinate')", words[2])));
    }
    let field = match words[3] {
        "integer" => Field::Integer,
        "real" | "double" => Field::Real,
        "pattern" => Field::Pattern,
        other => return Err(bad(1, format!("value type '{other}' is not supported (integer, real or pattern)"))),
    };
    if words[4] != "general" {
        return Err(bad(1, format!("'{}' symmetry is not supported (only 'general')", words[4])));
    }

    // Size line, after comments.
    let size = loop {
        if !next_line(&mut buf)? {
            return Err(Error::corrupt(path, "no size line after the header"));
        }
        ln += 1;
        let t = trim(&buf);
        if !t.is_empty() && t[0] != b'%' {
            break t.to_vec();
        }
    };
    let nums: Vec<Option<u64>> = tokens(&size).map(parse_u64).collect();
    let [Some(n_rows), Some(n_cols), Some(nnz)] = nums[..] else {
        return Err(bad(ln, format!("expected 'rows columns entries', found {:?}", String::from_utf8_lossy(&size))));
    };
    if n_rows > u64::from(u32::MAX) || n_cols > u64::from(u32::MAX) {
        return Err(bad(ln, format!("shape {n_rows} × {n_cols} is too large")));
    }
    if nnz > n_rows.saturating_mul(n_cols) {
        return Err(bad(ln, format!("{nnz} entries declared for a {n_rows} × {n_cols} matrix")));
    }
    // Reserve what was declared, within reason, so a lying header cannot exhaust memory up front.
    let cap = nnz.min(1 << 27) as usize;
    let mut coo = Coo {
        n_rows,
        n_cols,
        genes: Vec::with_capacity(cap),
        cells: Vec::with_capacity(cap),
        values: Vec::with_capacity(cap),
    };
    let want_tokens = if field == Field::Pattern { 2 } else { 3 };
    while next_line(&mut buf)? {
        ln += 1;
        let t = trim(&buf);
        if t.is_empty() || t[0] == b'%' {
            continue;
        }
        if coo.values.len() as u64 == nnz {
            return Err(bad(ln, format!("more entries than the {nnz} the size line declares")));
        }
        let mut toks: [&[u8]; 4] = [&[]; 4];
        let mut k = 0;
        for tok in tokens(t) {
            if k == 4 {
                break;
            }
            toks[k] = tok;
            k += 1;
        }
        if k != want_tokens {
            return Err(bad(ln, format!("expected {want_tokens} fields, found {:?}", String::from_utf8_lossy(t))));
        }
        let (i, j) = match (parse_u64(toks[0]), parse_u64(toks[1])) {
            (Some(i), Some(j)) => (i, j),
            _ => return Err(bad(ln, format!("bad coordinates in {:?}", String::from_utf8_lossy(t)))),
        };
        if i == 0 || i > n_rows || j == 0 || j > n_cols {
            return Err(bad(ln, format!("entry ({i}, {j}) out of range for a {n_rows} × {n_cols} matrix (1-based)")));
        }
        let v = match field {
            Field::Pattern => 1.0,
            Field::Integer => {
                let s = toks[2];
                let (neg, digits) = if s.first() == Some(&b'-') { (true, &s[1..]) } else { (false, s) };
                match parse_u64(digits) {
                    Some(_) if neg => return Err(bad(ln, format!("negative value {}", String::from_utf8_lossy(s)))),
                    Some(x) => x as f32,
                    None => return Err(bad(ln, format!("'{}' is not an integer", String::from_utf8_lossy(s)))),
                }
            }
            Field::Real => {
                let s = std::str::from_utf8(toks[2]).ok();
                match s.and_then(|s| s.parse::<f32>().ok()) {
                    Some(x) if !x.is_finite() => return Err(bad(ln, format!("non-finite value {x}"))),
                    Some(x) if x < 0.0 => return Err(bad(ln, format!("negative value {x}"))),
                    Some(x) => x,
                    None => return Err(bad(ln, format!("'{}' is not a number", String::from_utf8_lossy(toks[2])))),
                }
            }
        };
        coo.genes.push((i - 1) as u32);
        coo.cells.push((j - 1) as u32);
        coo.values.push(v);
    }
    if coo.values.len() as u64 != nnz {
        return Err(Error::corrupt(
            path,
            format!("the size line declares {nnz} entries but the file has {} (truncated?)", coo.values.len()),
        ));
    }
    Ok(coo)
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn tokens(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    b.split(|c| c.is_ascii_whitespace()).filter(|t| !t.is_empty())
}

fn parse_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 19 {
        return None;
    }
    t.iter().try_fold(0u64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0')))
}

/// Cells × genes CSR from genes × cells coordinates: counting sort over the
/// cells (stable, so a file sorted by gene within each cell needs no further
/// sort), genes renumbered through `gene_map` (None = dropped), then each
/// row sorted if needed and repeated entries summed.
fn coo_to_csr(coo: Coo, gene_map: &[Option<u32>], n_genes: usize) -> CsrMatrix {
    let n_cells = coo.n_cols as usize;
    let keep = |k: usize| gene_map[coo.genes[k] as usize];
    let mut indptr = vec![0u64; n_cells + 1];
    for k in 0..coo.values.len() {
        if keep(k).is_some() {
            indptr[coo.cells[k] as usize + 1] += 1;
        }
    }
    for c in 0..n_cells {
        indptr[c + 1] += indptr[c];
    }
    let nnz = indptr[n_cells] as usize;
    let mut next: Vec<u64> = indptr[..n_cells].to_vec(); // write cursor per cell
    let mut indices = vec![0u32; nnz];
    let mut data = vec![0f32; nnz];
    for k in 0..coo.values.len() {
        if let Some(g) = keep(k) {
            let c = coo.cells[k] as usize;
            let at = next[c] as usize;
            indices[at] = g;
            data[at] = coo.values[k];
            next[c] += 1;
        }
    }
    drop(coo);
    // Sort rows that need it, sum repeats, and compact in place.
    let mut w = 0usize;
    let mut pairs: Vec<(u32, f32)> = Vec::new();
    for c in 0..n_cells {
        let (a, b) = (indptr[c] as usize, indptr[c + 1] as usize);
        if !indices[a..b].windows(2).all(|p| p[0] < p[1]) {
            pairs.clear();
            pairs.extend(indices[a..b].iter().copied().zip(data[a..b].iter().copied()));
            pairs.sort_by_key(|p| p.0);
            for (k, (g, v)) in pairs.iter().enumerate() {
                indices[a + k] = *g;
                data[a + k] = *v;
            }
        }
        let row_start = w;
        for k in a..b {
            if w > row_start && indices[w - 1] == indices[k] {
                data[w - 1] += data[k];
            } else {
                indices[w] = indices[k];
                data[w] = data[k];
                w += 1;
            }
        }
        indptr[c] = row_start as u64;
    }
    indptr[n_cells] = w as u64;
    indices.truncate(w);
    data.truncate(w);
    CsrMatrix { rows: n_cells, cols: n_genes, indptr, indices: indices.into(), data: data.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn make_unique_matches_anndata() {
        // Expected from anndata.utils.make_index_unique(pd.Index([...])).
        let mut v = s(&["A", "B", "A", "A-1", "A", "C", "B"]);
        make_unique(&mut v);
        assert_eq!(v, s(&["A", "B", "A-2", "A-1", "A-3", "C", "B-1"]));
        let mut u = s(&["x", "y"]);
        make_unique(&mut u);
        assert_eq!(u, s(&["x", "y"]));
    }

    #[test]
    fn counting_sort_sorts_and_sums() {
        let coo = Coo {
            n_rows: 3,
            n_cols: 2,
            genes: vec![2, 0, 1, 2, 0],
            cells: vec![1, 1, 0, 1, 0],
            values: vec![1.0, 2.0, 3.0, 4.0, 5.0],
        };
        let m = coo_to_csr(coo, &[Some(0), Some(1), Some(2)], 3);
        assert_eq!(m.indptr, vec![0, 2, 4]);
        assert_eq!(m.indices, vec![0, 1, 0, 2]);
        assert_eq!(m.data, vec![5.0, 3.0, 2.0, 5.0]);
    }
}

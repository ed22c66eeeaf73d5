//! The on-disk store: round trips, random access, streaming, atomicity and
//! damage detection.

use std::path::Path;

use acsleuth::data::store::{is_store, write_dataset, Layout, RowView, Store, StoreWriter};
use acsleuth::data::{CsrMatrix, Dataset, DenseMatrix, Matrix, ObsColumn, RowSink};
use acsleuth::Error;

mod common;
use common::Lcg;

/// Uniform in [0, 1) on a grid of 10⁻⁶.
fn unit(r: &mut Lcg) -> f32 {
    (r.next() % 1_000_000) as f32 / 1_000_000.0
}

fn sample(n_cells: usize, n_genes: usize, density: f32, seed: u64) -> Dataset {
    let mut r = Lcg(seed);
    let mut d = DenseMatrix::zeros(n_cells, n_genes);
    for v in d.data.iter_mut() {
        if unit(&mut r) < density {
            *v = 1.0 + (r.next() % 50) as f32 * 0.25 - if r.next().is_multiple_of(7) { 30.0 } else { 0.0 };
        }
    }
    let obs = vec![
        (
            "cell type".to_string(),
            ObsColumn::Categorical {
                categories: vec!["T cell".into(), "".into(), "B\tcell\\x".into()],
                codes: (0..n_cells).map(|i| (i % 4) as i32 - 1).collect(),
            },
        ),
        ("score".to_string(), ObsColumn::Numeric((0..n_cells).map(|i| i as f64 * 0.1 - 1e300 * (i % 2) as f64).collect())),
        ("is_anomaly".to_string(), ObsColumn::Bool((0..n_cells).map(|i| i % 3 == 0).collect())),
        ("note".to_string(), ObsColumn::Text((0..n_cells).map(|i| if i % 2 == 0 { String::new() } else { format!("n\n{i}\t\\") }).collect())),
    ];
    Dataset {
        x: Matrix::Dense(d),
        cell_names: (0..n_cells).map(|i| format!("AAAC-{i}")).collect(),
        gene_names: (0..n_genes).map(|j| format!("GENE{j}")).collect(),
        obs,
    }
}

fn as_layout(ds: &Dataset, layout: Layout) -> Dataset {
    let mut ds = ds.clone();
    if layout == Layout::Csr {
        ds.x = Matrix::Csr(ds.x.to_csr());
    }
    ds
}

#[test]
fn round_trip_dense_and_csr() {
    let dir = tempfile::tempdir().unwrap();
    let ds = sample(37, 23, 0.3, 1);
    for layout in [Layout::Dense, Layout::Csr] {
        let want = as_layout(&ds, layout);
        let p = dir.path().join(format!("{layout}.acs"));
        // Write from the other in-memory layout to cross the conversion paths.
        let src = as_layout(&ds, if layout == Layout::Csr { Layout::Dense } else { Layout::Csr });
        write_dataset(&p, &src, layout).unwrap();
        assert!(is_store(&p));
        let s = Store::open(&p).unwrap();
        s.verify().unwrap();
        assert_eq!(s.layout(), layout);
        assert_eq!((s.n_cells(), s.n_genes()), (37, 23));
        assert_eq!(s.nnz() as usize, ds.x.nnz());
        let got = s.to_dataset().unwrap();
        assert_eq!(got, want, "layout {layout}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().contains(".tmp-")), "temp left: {names:?}");
    }
}

/// Both ways of gathering rows (through the map, and by positioned reads
/// of the file as training does) give the stored rows and refuse bad input.
#[test]
fn random_rows_match_dense_rows() {
    let dir = tempfile::tempdir().unwrap();
    let ds = sample(300, 257, 0.1, 2);
    let dense = ds.x.to_dense();
    let rows = [299usize, 0, 17, 17, 150, 3];
    type Read = fn(&Store, &[usize], &mut [f32]) -> acsleuth::Result<()>;
    let reads: [(&str, Read); 2] = [("mapped", Store::read_rows_dense), ("unmapped", Store::read_rows_dense_unmapped)];
    for layout in [Layout::Dense, Layout::Csr] {
        let p = dir.path().join(format!("{layout}.acs"));
        write_dataset(&p, &ds, layout).unwrap();
        let s = Store::open(&p).unwrap();
        let mut out = vec![f32::NAN; rows.len() * 257];
        for (how, read) in reads {
            out.fill(f32::NAN);
            read(&s, &rows, &mut out).unwrap();
            for (k, &r) in rows.iter().enumerate() {
                assert_eq!(&out[k * 257..(k + 1) * 257], dense.row(r), "{layout} {how} row {r}");
            }
            // A big gather takes the parallel path.
            let many: Vec<usize> = (0..300).rev().collect();
            let mut big = vec![0.0; 300 * 257];
            read(&s, &many, &mut big).unwrap();
            assert_eq!(big[..257], *dense.row(299), "{how}");
            assert_eq!(big[299 * 257..], *dense.row(0), "{how}");
            let e = read(&s, &[300], &mut out[..257]).unwrap_err();
            assert!(e.to_string().contains("out of range"), "{e}");
            assert!(read(&s, &[1], &mut out[..10]).is_err());
        }
        let (mut idx, mut val) = (vec![], vec![]);
        s.row_sparse(150, &mut idx, &mut val);
        let csr = CsrMatrix::from_dense(&dense);
        assert_eq!((idx.as_slice(), val.as_slice()), csr.row(150));
        assert!(matches!((layout, s.row(1)), (Layout::Dense, RowView::Dense(_)) | (Layout::Csr, RowView::Sparse(..))));
        let e = s.read_rows_dense(&[300], &mut out[..257]).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        assert!(s.read_rows_dense(&[1], &mut out[..10]).is_err());
    }
}

#[test]
fn streamed_write_of_200k_sparse_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.acs");
    let genes: Vec<String> = (0..2000).map(|j| format!("g{j}")).collect();
    let mut w = StoreWriter::create(&p, &genes, Layout::Csr).unwrap();
    let mut r = Lcg(7);
    let (mut idx, mut val) = (Vec::new(), Vec::new());
    let mut total = 0u64;
    let mut checksum = 0f64;
    for _ in 0..200_000 {
        idx.clear();
        val.clear();
        let mut j = (r.next() % 300) as u32;
        while (j as usize) < genes.len() {
            idx.push(j);
            let v = (r.next() % 9 + 1) as f32;
            val.push(v);
            checksum += v as f64;
            j += 1 + (r.next() % 300) as u32;
        }
        total += idx.len() as u64;
        w.push_row(&idx, &val).unwrap();
    }
    assert_eq!(w.nnz(), total);
    w.finish(&[]).unwrap();
    let s = Store::open(&p).unwrap();
    s.verify().unwrap();
    assert_eq!((s.n_cells(), s.nnz()), (200_000, total));
    assert_eq!(s.cell_names()[199_999], "cell199999");
    let len = std::fs::metadata(p.join("matrix.bin")).unwrap().len();
    assert!(len >= 128 + total * 8 + 200_001 * 8 && len < 128 + total * 8 + 200_001 * 8 + 192, "{len}");
    let mut sum = 0f64;
    for i in 0..s.n_cells() {
        if let RowView::Sparse(_, v) = s.row(i) {
            sum += v.iter().map(|&x| x as f64).sum::<f64>();
        }
    }
    assert_eq!(sum, checksum);
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn dropped_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.acs");
    let genes = vec!["a".to_string(), "b".to_string()];
    {
        let mut w = StoreWriter::create(&p, &genes, Layout::Csr).unwrap();
        w.push_cell("c0", &[1], &[2.0]).unwrap();
        assert_eq!(entries(dir.path()).len(), 1, "the temp dir exists while writing");
        assert!(!p.exists());
    }
    assert!(!p.exists());
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    // A failing finish cleans up too.
    let mut w = StoreWriter::create(&p, &genes, Layout::Dense).unwrap();
    w.push_cell("c0", &[0], &[1.0]).unwrap();
    let bad = [("x".to_string(), ObsColumn::Bool(vec![true, false]))];
    assert!(w.finish(&bad).unwrap_err().to_string().contains("2 values for 1 cells"));
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.acs");
    std::fs::create_dir(&p).unwrap();
    let e = StoreWriter::create(&p, &["a".into()], Layout::Csr).err().unwrap();
    assert!(e.to_string().contains("already exists"), "{e}");
}

fn tiny_store(dir: &Path, layout: Layout) -> std::path::PathBuf {
    let p = dir.join("t.acs");
    write_dataset(&p, &sample(50, 40, 0.2, 3), layout).unwrap();
    p
}

/// Issue #15 item 2: one flipped bit in any section makes `open` fail,
/// naming the section (it used to pass until an explicit `verify`).
#[test]
fn damaged_store_fails_open_naming_the_section() {
    for layout in [Layout::Dense, Layout::Csr] {
        let dir = tempfile::tempdir().unwrap();
        let p = tiny_store(dir.path(), layout);
        let m = p.join("matrix.bin");
        let orig = std::fs::read(&m).unwrap();
        let header = |b: &[u8], k: usize| u64::from_le_bytes(b[16 + 8 * k..24 + 8 * k].try_into().unwrap()) as usize;
        let mut sections = vec![("data", header(&orig, 3))];
        if layout == Layout::Csr {
            sections.push(("indices", header(&orig, 5)));
            sections.push(("indptr", header(&orig, 7)));
        }
        for (name, offset) in sections {
            let mut b = orig.clone();
            b[offset + 2] ^= 0x40;
            std::fs::write(&m, &b).unwrap();
            let e = Store::open(&p).err().unwrap();
            let msg = e.to_string();
            assert!(matches!(e, Error::Corrupt { .. }) && msg.contains("checksum mismatch") && msg.contains(&format!("({name})")), "{layout:?} {name}: {msg}");
        }
        // The case: byte 130 of matrix.bin.
        let mut b = orig.clone();
        b[130] ^= 1;
        std::fs::write(&m, &b).unwrap();
        assert!(Store::open(&p).err().unwrap().to_string().contains("checksum mismatch in the values (data) section"));
        // Through the commands too: inspect, convert, detect fail.
        for args in [vec!["inspect", p.to_str().unwrap()], vec!["convert", p.to_str().unwrap(), dir.path().join("x.acs").to_str().unwrap()]] {
            let o = std::process::Command::new(env!("CARGO_BIN_EXE_acsleuth")).args(&args).output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success() && err.contains("checksum mismatch"), "{args:?}: {err}");
        }
    }
}

/// Issue #15 item 2: a repeated column index within a row (with CRCs that
/// match, as a faulty writer would leave it) is an error on open, not a
/// value silently dropped.
#[test]
fn repeated_column_index_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny_store(dir.path(), Layout::Csr);
    let m = p.join("matrix.bin");
    let mut b = std::fs::read(&m).unwrap();
    let at = |k: usize| u64::from_le_bytes(b[16 + 8 * k..24 + 8 * k].try_into().unwrap()) as usize;
    let (ind_off, ind_len, ptr_off, ptr_len) = (at(5), at(6), at(7), at(8));
    let ptr: Vec<u64> = b[ptr_off..ptr_off + ptr_len].chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
    let r = (0..ptr.len() - 1).find(|&r| ptr[r + 1] - ptr[r] >= 2).unwrap();
    let first = ind_off + 4 * ptr[r] as usize;
    let v = b[first..first + 4].to_vec();
    b[first + 4..first + 8].copy_from_slice(&v);
    // Re-seal the indices CRC and the header CRC, as a faulty writer would.
    let crc = crc32fast::hash(&b[ind_off..ind_off + ind_len]);
    b[100..104].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32fast::hash(&b[..124]);
    b[124..128].copy_from_slice(&hcrc.to_le_bytes());
    std::fs::write(&m, &b).unwrap();
    let e = Store::open(&p).err().unwrap().to_string();
    assert!(e.contains(&format!("row {r}: gene indices repeated")), "{e}");
}

#[test]
fn truncated_matrix_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny_store(dir.path(), Layout::Csr);
    let m = p.join("matrix.bin");
    let len = std::fs::metadata(&m).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&m).unwrap().set_len(len - 5).unwrap();
    let e = Store::open(&p).err().unwrap();
    let want = format!("truncated: expected {len} bytes, found {}", len - 5);
    assert!(matches!(e, Error::Corrupt { .. }) && e.to_string().contains(&want), "{e}");
}

#[test]
fn damaged_header_and_names_fail_open() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny_store(dir.path(), Layout::Dense);
    let m = p.join("matrix.bin");
    let orig = std::fs::read(&m).unwrap();
    let mut b = orig.clone();
    b[20] ^= 1; // n_cells
    std::fs::write(&m, &b).unwrap();
    assert!(Store::open(&p).err().unwrap().to_string().contains("header checksum"));
    std::fs::write(&m, &orig).unwrap();
    std::fs::write(p.join("cells.txt"), "only\none\n").unwrap();
    let e = Store::open(&p).err().unwrap().to_string();
    assert!(e.contains("2 cell names for 50 cells"), "{e}");
}

#[test]
fn wrong_magic_is_unknown_format() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny_store(dir.path(), Layout::Csr);
    let m = p.join("matrix.bin");
    let mut b = std::fs::read(&m).unwrap();
    b[0] = b'X';
    std::fs::write(&m, &b).unwrap();
    assert!(!is_store(&p));
    assert!(matches!(Store::open(&p), Err(Error::UnknownFormat { .. })));
    std::fs::write(&m, b"").unwrap();
    assert!(matches!(Store::open(&p), Err(Error::UnknownFormat { .. })));
    std::fs::write(&m, b"ACSSTORE\x01").unwrap();
    assert!(Store::open(&p).err().unwrap().to_string().contains("truncated"));
    let e = StoreWriter::create(&dir.path().join("no/such/dir.acs"), &["a".into()], Layout::Csr).err().unwrap();
    assert!(e.to_string().contains("parent directory does not exist"), "{e}");
}

#[test]
fn nan_is_rejected_naming_the_cell() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = StoreWriter::create(&dir.path().join("n.acs"), &["a".into(), "b".into()], Layout::Csr).unwrap();
    w.push_cell("ok", &[0], &[1.0]).unwrap();
    let e = w.push_cell("bad-cell", &[0, 1], &[1.0, f32::NAN]).unwrap_err().to_string();
    assert!(e.contains("bad-cell") && e.contains("not finite"), "{e}");
    let e = w.push_cell_dense("inf-cell", &[f32::INFINITY, 0.0]).unwrap_err().to_string();
    assert!(e.contains("inf-cell"), "{e}");
    // Bad indices are refused too, and the writer stays usable.
    assert!(w.push_cell("c", &[1, 0], &[1.0, 1.0]).unwrap_err().to_string().contains("increasing"));
    assert!(w.push_cell("c", &[2], &[1.0]).unwrap_err().to_string().contains("out of range"));
    assert!(w.push_cell("c\td", &[], &[]).is_err());
    w.push_cell("c", &[], &[]).unwrap();
    assert_eq!(w.n_cells(), 2);
    w.finish(&[]).unwrap();
}

#[test]
fn duplicated_cell_names_fail_at_finish() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.acs");
    let mut w = StoreWriter::create(&p, &["a".into()], Layout::Dense).unwrap();
    for name in ["x", "y", "x"] {
        w.push_cell(name, &[0], &[1.0]).unwrap();
    }
    let e = w.finish(&[]).unwrap_err().to_string();
    assert!(e.contains("duplicated cell name 'x'"), "{e}");
    assert!(!p.exists() && entries(dir.path()).is_empty());
}

#[test]
fn zero_cells_fail_at_finish() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("z.acs");
    let w = StoreWriter::create(&p, &["a".into()], Layout::Csr).unwrap();
    assert!(w.finish(&[]).unwrap_err().to_string().contains("zero cells"));
    assert!(!p.exists());
}

#[test]
fn bad_gene_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.acs");
    assert!(StoreWriter::create(&p, &["a".into(), "a".into()], Layout::Csr).err().unwrap().to_string().contains("duplicated gene"));
    assert!(StoreWriter::create(&p, &["a\nb".into()], Layout::Csr).is_err());
    assert!(StoreWriter::create(&p, &[], Layout::Csr).is_err());
    assert!(entries(dir.path()).is_empty());
}

/// Releasing rows a scan has passed drops pages from the resident set only:
/// reading them again gives the same values, in both layouts.
#[test]
fn released_rows_read_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let ds = sample(3000, 700, 0.3, 5);
    for layout in [Layout::Dense, Layout::Csr] {
        let p = dir.path().join(format!("{layout:?}.acs"));
        write_dataset(&p, &as_layout(&ds, layout), layout).unwrap();
        let st = Store::open(&p).unwrap();
        let rows: Vec<usize> = (0..st.n_cells()).collect();
        let mut before = vec![0.0f32; rows.len() * st.n_genes()];
        st.read_rows_dense(&rows, &mut before).unwrap();
        for start in (0..st.n_cells()).step_by(256) {
            st.release_rows(start, start + 256);
        }
        st.release_rows(10, 5); // empty range: a no-op
        let mut after = vec![0.0f32; before.len()];
        st.read_rows_dense(&rows, &mut after).unwrap();
        assert_eq!(before, after, "{layout:?}");
    }
}

//! The anndata ≤ 0.6 dataframe: one compound dataset whose fields are the
//! index and the columns (fixed-length byte strings, numbers, booleans).
//! Categorical columns hold integer codes; their categories are in
//! `uns/<column>_categories`.

use hdf5_pure::{Dataset as H5Dataset, Datatype, DatatypeByteOrder, StringPadding};

use super::frame::Frame;
use super::read::{Node, Reader};
use crate::data::ObsColumn;
use crate::error::Result;

pub(super) fn read_compound_frame(
    r: &Reader,
    d: &H5Dataset,
    path: &str,
    columns: bool,
) -> Result<Frame> {
    let Datatype::Compound { size, members } = r.h5(d.datatype(), path)? else {
        return Err(r.err(format!(
            "{path}: expected a dataframe (a group or a compound dataset)"
        )));
    };
    let size = size as usize;
    let raw = r.read_checked(d, H5Dataset::read_raw, path)?;
    if size == 0 || raw.len() % size != 0 {
        return Err(r.err(format!(
            "{path}: {} bytes is not a whole number of {size}-byte records",
            raw.len()
        )));
    }
    let n = raw.len() / size;
    // Each record's bytes for one field.
    let field = |offset: u64, width: usize| {
        let offset = offset as usize;
        raw.chunks_exact(size)
            .map(move |rec| &rec[offset..offset + width])
    };
    let index_member = members
        .iter()
        .find(|m| m.name == "index" || m.name == "_index")
        .or_else(|| {
            members
                .iter()
                .find(|m| matches!(m.datatype, Datatype::String { .. }))
        })
        .ok_or_else(|| r.err(format!("{path}: no index field")))?;
    let index = match &index_member.datatype {
        Datatype::String {
            size: w, padding, ..
        } => {
            let w = *w as usize;
            check_fits(
                r,
                path,
                &index_member.name,
                index_member.byte_offset,
                w,
                size,
            )?;
            field(index_member.byte_offset, w)
                .map(|b| decode_str(b, padding))
                .collect()
        }
        _ => return Err(r.err(format!("{path}: the index field is not a string"))),
    };
    let mut cols = Vec::new();
    if !columns {
        return Ok(Frame {
            index,
            columns: cols,
        });
    }
    for m in members.iter().filter(|m| m.name != index_member.name) {
        let (off, name) = (m.byte_offset, m.name.as_str());
        let col = match &m.datatype {
            Datatype::String {
                size: w, padding, ..
            } => {
                check_fits(r, path, name, off, *w as usize, size)?;
                ObsColumn::Text(
                    field(off, *w as usize)
                        .map(|b| decode_str(b, padding))
                        .collect(),
                )
            }
            Datatype::FloatingPoint {
                size: w @ (4 | 8),
                byte_order,
                ..
            } => {
                check_fits(r, path, name, off, *w as usize, size)?;
                let big = matches!(byte_order, DatatypeByteOrder::BigEndian);
                ObsColumn::Numeric(
                    field(off, *w as usize)
                        .map(|b| decode_float(b, big))
                        .collect(),
                )
            }
            Datatype::Enumeration {
                base_type,
                members: em,
                ..
            } if em.len() == 2 && em.iter().any(|e| e.name.eq_ignore_ascii_case("true")) => {
                let Some((w, _, _)) = int_layout(base_type) else {
                    continue;
                };
                check_fits(r, path, name, off, w, size)?;
                ObsColumn::Bool(field(off, w).map(|b| b.iter().any(|&x| x != 0)).collect())
            }
            dt => {
                let Some((w, signed, big)) = int_layout(dt) else {
                    continue;
                };
                check_fits(r, path, name, off, w, size)?;
                let values: Vec<i64> = field(off, w).map(|b| decode_int(b, signed, big)).collect();
                let cat_path = format!("uns/{name}_categories");
                match r.node(&cat_path)? {
                    Some(Node::Dataset(cd)) => {
                        let categories = r.read_strings(&cd, &cat_path)?;
                        let k = categories.len() as i64;
                        if let Some(bad) = values.iter().find(|&&c| c < -1 || c >= k) {
                            return Err(r.err(format!(
                                "{path}/{name}: category code {bad} outside -1..{k}"
                            )));
                        }
                        let codes = values.into_iter().map(|c| c as i32).collect();
                        ObsColumn::Categorical { categories, codes }
                    }
                    _ => ObsColumn::Numeric(values.into_iter().map(|v| v as f64).collect()),
                }
            }
        };
        debug_assert_eq!(col.len(), n);
        cols.push((m.name.clone(), col));
    }
    Ok(Frame {
        index,
        columns: cols,
    })
}

/// (bytes, signed, big-endian) of an integer datatype of 1, 2, 4 or 8 bytes.
fn int_layout(dt: &Datatype) -> Option<(usize, bool, bool)> {
    match dt {
        Datatype::FixedPoint {
            size: s @ (1 | 2 | 4 | 8),
            byte_order,
            layout,
        } => Some((
            *s as usize,
            layout.signed,
            matches!(byte_order, DatatypeByteOrder::BigEndian),
        )),
        _ => None,
    }
}

fn check_fits(
    r: &Reader,
    path: &str,
    name: &str,
    offset: u64,
    width: usize,
    record: usize,
) -> Result<()> {
    if offset as usize + width > record {
        return Err(r.err(format!("{path}: field '{name}' runs past its record")));
    }
    Ok(())
}

fn decode_str(b: &[u8], padding: &StringPadding) -> String {
    let end = match padding {
        StringPadding::SpacePad => b.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1),
        _ => b.iter().position(|&c| c == 0).unwrap_or(b.len()),
    };
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn decode_int(b: &[u8], signed: bool, big: bool) -> i64 {
    let mut buf = [0u8; 8];
    let w = b.len();
    if big {
        for (i, &x) in b.iter().rev().enumerate() {
            buf[i] = x;
        }
    } else {
        buf[..w].copy_from_slice(b);
    }
    let top_bit = buf[w - 1] & 0x80 != 0;
    if signed && top_bit && w < 8 {
        buf[w..].fill(0xff);
    }
    i64::from_le_bytes(buf)
}

fn decode_float(b: &[u8], big: bool) -> f64 {
    let mut buf = [0u8; 8];
    buf[..b.len()].copy_from_slice(b);
    if big {
        buf[..b.len()].reverse();
    }
    if b.len() == 4 {
        f32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as f64
    } else {
        f64::from_le_bytes(buf)
    }
}

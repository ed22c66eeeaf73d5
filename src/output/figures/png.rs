//! A minimal PNG encoder for 8-bit RGB images (what the plots need), over
//! the `flate2` and `crc32fast` the crate already uses: signature, IHDR, one
//! IDAT of zlib-compressed scanlines (filter "Sub", which turns the long flat
//! runs of a plot into zeros), IEND.

use std::io::Write;

use crate::error::{Error, Result};

const SIGNATURE: [u8; 8] = [137, 80, 78, 71, 13, 10, 26, 10];

/// Encodes a row-major `h × w × 3` RGB buffer as a PNG file's bytes.
pub fn encode_rgb(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    let row = w as usize * 3;
    if w == 0 || h == 0 || rgb.len() != row * h as usize {
        return Err(Error::Other(format!(
            "internal: {} bytes for a {w}×{h} RGB image",
            rgb.len()
        )));
    }
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    // bit depth 8, colour type 2 (RGB), deflate, adaptive filtering, no interlace
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);

    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    let mut line = vec![0u8; row + 1]; // [filter byte, row bytes]
    line[0] = 1; // Sub: each byte minus the byte 3 to its left
    for src in rgb.chunks_exact(row) {
        for (i, o) in line[1..].iter_mut().enumerate() {
            let left = if i >= 3 { src[i - 3] } else { 0 };
            *o = src[i].wrapping_sub(left);
        }
        z.write_all(&line).map_err(|e| Error::Other(format!("internal: PNG compression: {e}")))?;
    }
    let idat = z.finish().map_err(|e| Error::Other(format!("internal: PNG compression: {e}")))?;

    let mut out = Vec::with_capacity(idat.len() + 64);
    out.extend_from_slice(&SIGNATURE);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

/// Appends one chunk: length, type, data, CRC-32 of type and data.
fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn round_trips_through_inflate() {
        let (w, h) = (5u32, 3u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let png = encode_rgb(&rgb, w, h).unwrap();
        assert_eq!(&png[..8], &SIGNATURE);
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), w);
        // IDAT starts after signature (8) + IHDR chunk (4+4+13+4).
        let at = 8 + 25;
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(&png[at + 4..at + 8], b"IDAT");
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&png[at + 8..at + 8 + len]).read_to_end(&mut raw).unwrap();
        // Undo the Sub filter and compare.
        let row = w as usize * 3;
        let mut back = Vec::new();
        for line in raw.chunks_exact(row + 1) {
            assert_eq!(line[0], 1);
            let start = back.len();
            for i in 0..row {
                let left = if i >= 3 { back[start + i - 3] } else { 0u8 };
                back.push(line[1 + i].wrapping_add(left));
            }
        }
        assert_eq!(back, rgb);
        assert!(png.ends_with(&[0xAE, 0x42, 0x60, 0x82])); // CRC of an empty IEND
    }

    #[test]
    fn wrong_size_is_an_error() {
        assert!(encode_rgb(&[0; 5], 2, 1).is_err());
        assert!(encode_rgb(&[], 0, 0).is_err());
    }
}

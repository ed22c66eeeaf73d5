//! Checkpoints after each module, so that an interrupted `acsleuth run`
//! resumes where it stopped. Each module's checkpoint carries a
//! fingerprint of the inputs and of the settings of that module and of
//! every module before it: a checkpoint is used only when its fingerprint
//! matches the current run's, so changing a setting reruns the module it
//! belongs to and every module after it.

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::data::CsrMatrix;
use crate::error::{Error, Result};
use crate::output::write_json;

/// A chain of 256-bit BLAKE3 hashes: of the inputs and the crate's
/// version, then of each stage's settings on top of the stage before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Of the model's inputs: both prepared matrices, the cell and gene
    /// names, and the crate's version (another version may compute
    /// differently, so it never resumes this one's checkpoints).
    pub fn of_inputs(reference: &CsrMatrix, target: &CsrMatrix, cells: &[String], genes: &[String]) -> Self {
        Self::of_inputs_at(env!("CARGO_PKG_VERSION"), reference, target, cells, genes)
    }

    /// [`of_inputs`](Self::of_inputs) as crate version `version` computes it.
    pub fn of_inputs_at(version: &str, reference: &CsrMatrix, target: &CsrMatrix, cells: &[String], genes: &[String]) -> Self {
        let mut h = blake3::Hasher::new();
        field(&mut h, b"acsleuth checkpoint fingerprint");
        field(&mut h, version.as_bytes());
        for m in [reference, target] {
            h.update(&(m.rows as u64).to_le_bytes());
            h.update(&(m.cols as u64).to_le_bytes());
            field(&mut h, bytes_of(&m.indptr));
            field(&mut h, bytes_of(&m.indices));
            field(&mut h, bytes_of(&m.data));
        }
        for list in [cells, genes] {
            h.update(&(list.len() as u64).to_le_bytes());
            for s in list {
                field(&mut h, s.as_bytes());
            }
        }
        Fingerprint(*h.finalize().as_bytes())
    }

    /// This fingerprint extended with the settings of the next stage
    /// (anything serializable: its config, its extra inputs), as JSON.
    pub fn then<T: Serialize>(self, settings: &T) -> Result<Self> {
        let json = serde_json::to_vec(settings).map_err(|e| Error::Other(format!("fingerprint of settings: {e}")))?;
        let mut h = blake3::Hasher::new();
        h.update(&self.0);
        field(&mut h, &json);
        Ok(Fingerprint(*h.finalize().as_bytes()))
    }

    pub fn hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Hashes `b` with its length first, so that no two sequences of fields
/// give the same stream of bytes.
fn field(h: &mut blake3::Hasher, b: &[u8]) {
    h.update(&(b.len() as u64).to_le_bytes());
    // Rayon pays off past a few hundred KiB (BLAKE3's documentation says 128 KiB).
    if b.len() >= 1 << 18 {
        h.update_rayon(b);
    } else {
        h.update(b);
    }
}

fn bytes_of<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: plain-old-data slices (u32/u64/usize/f32) viewed as bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// The checkpoint folder of a run.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    pub dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    format: String,
    fingerprint: String,
    state: T,
}

const FORMAT: &str = "acsleuth run checkpoint v2";

impl Checkpoints {
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Checkpoints { dir: dir.to_path_buf() })
    }

    /// Path of a module's file (`module1.json`, `module1.safetensors`, …).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `state` as `<name>.json` under `fp` (atomically).
    pub fn save<T: Serialize>(&self, name: &str, fp: Fingerprint, state: &T) -> Result<()> {
        let env = Envelope { format: FORMAT.into(), fingerprint: fp.hex(), state };
        write_json(&self.path(&format!("{name}.json")), &env)
    }

    /// The state saved as `<name>.json` when its fingerprint is `fp`;
    /// `None` when there is none or it belongs to other inputs or
    /// settings. A file that exists but cannot be read is an error (it is
    /// never silently replaced).
    pub fn load<T: DeserializeOwned>(&self, name: &str, fp: Fingerprint) -> Result<Option<T>> {
        let p = self.path(&format!("{name}.json"));
        if !p.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        #[derive(Deserialize)]
        struct Head {
            format: String,
            fingerprint: String,
        }
        let head: Head = serde_json::from_str(&text).map_err(|e| Error::corrupt(&p, format!("not a checkpoint: {e}")))?;
        if head.format != FORMAT || head.fingerprint != fp.hex() {
            return Ok(None);
        }
        let env: Envelope<T> = serde_json::from_str(&text).map_err(|e| Error::corrupt(&p, format!("unreadable checkpoint: {e}")))?;
        Ok(Some(env.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> (CsrMatrix, Vec<String>, Vec<String>) {
        let mut a = CsrMatrix::empty(3);
        a.push_row(&[0, 2], &[1.0, 2.0]);
        let g = ["x", "y", "z"].iter().map(|s| s.to_string()).collect();
        (a, vec!["c".to_string()], g)
    }

    #[test]
    fn fingerprint_changes_with_any_input_byte() {
        let (a, cells, genes) = inputs();
        let fa = Fingerprint::of_inputs(&a, &a, &cells, &genes);
        assert_eq!(fa, Fingerprint::of_inputs(&a, &a, &cells, &genes));
        let mut b = a.clone();
        b.data.to_mut()[1] = 2.5;
        assert_ne!(fa, Fingerprint::of_inputs(&a, &b, &cells, &genes));
        assert_ne!(fa, Fingerprint::of_inputs(&b, &a, &cells, &genes));
        let mut b = a.clone();
        b.indices.to_mut()[1] = 1;
        assert_ne!(fa, Fingerprint::of_inputs(&a, &b, &cells, &genes));
        let mut b = a.clone();
        b.cols = 4;
        assert_ne!(fa, Fingerprint::of_inputs(&a, &b, &cells, &genes));
        assert_ne!(fa, Fingerprint::of_inputs(&a, &a, &["d".to_string()], &genes));
        let mut g = genes.clone();
        g[2] = "w".into();
        assert_ne!(fa, Fingerprint::of_inputs(&a, &a, &cells, &g));
        // A name moved from one list to the other is another input.
        let (c2, g2) = (vec!["c".to_string(), "x".to_string()], genes[1..].to_vec());
        assert_ne!(fa, Fingerprint::of_inputs(&a, &a, &c2, &g2));
    }

    #[test]
    fn fingerprint_changes_with_the_version_and_settings() {
        let (a, cells, genes) = inputs();
        let fa = Fingerprint::of_inputs(&a, &a, &cells, &genes);
        assert_eq!(fa, Fingerprint::of_inputs_at(env!("CARGO_PKG_VERSION"), &a, &a, &cells, &genes));
        assert_ne!(fa, Fingerprint::of_inputs_at("0.0.0-other", &a, &a, &cells, &genes));
        assert_eq!(fa.then(&1).unwrap(), fa.then(&1).unwrap());
        assert_ne!(fa.then(&1).unwrap(), fa.then(&2).unwrap());
        assert_ne!(fa.then(&1).unwrap().then(&2).unwrap(), fa.then(&2).unwrap().then(&1).unwrap());
        assert_eq!(fa.hex().len(), 64);
    }

    #[test]
    fn stale_checkpoints_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(d.path()).unwrap();
        let (f7, f8) = (Fingerprint([7; 32]), Fingerprint([8; 32]));
        c.save("m", f7, &vec![1u32, 2]).unwrap();
        assert_eq!(c.load::<Vec<u32>>("m", f7).unwrap(), Some(vec![1, 2]));
        assert_eq!(c.load::<Vec<u32>>("m", f8).unwrap(), None);
        assert_eq!(c.load::<Vec<u32>>("other", f7).unwrap(), None);
        std::fs::write(c.path("m.json"), "{").unwrap();
        assert!(c.load::<Vec<u32>>("m", f7).is_err());
    }
}

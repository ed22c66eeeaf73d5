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

/// A chain of 64-bit fingerprints (two CRC32s with different seeds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// Of the model's inputs: both prepared matrices, the cell and gene names.
    pub fn of_inputs(reference: &CsrMatrix, target: &CsrMatrix, cells: &[String], genes: &[String]) -> Self {
        let mut h = Hasher::new();
        for m in [reference, target] {
            h.usize(m.rows);
            h.usize(m.cols);
            h.bytes(bytes_of(&m.indptr));
            h.bytes(bytes_of(&m.indices));
            h.bytes(bytes_of(&m.data));
        }
        for s in cells.iter().chain(genes) {
            h.bytes(s.as_bytes());
            h.bytes(&[0]);
        }
        Fingerprint(h.finish())
    }

    /// This fingerprint extended with the settings of the next module
    /// (anything serializable: its config, its extra inputs).
    pub fn then<T: Serialize>(self, settings: &T) -> Self {
        let mut h = Hasher::new();
        h.bytes(&self.0.to_le_bytes());
        h.bytes(serde_json::to_string(settings).unwrap_or_default().as_bytes());
        Fingerprint(h.finish())
    }

    pub fn hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

struct Hasher(crc32fast::Hasher, crc32fast::Hasher);

impl Hasher {
    fn new() -> Self {
        Hasher(crc32fast::Hasher::new(), crc32fast::Hasher::new_with_initial(0x9E37_79B9))
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.update(b);
        self.1.update(b);
    }
    fn usize(&mut self, v: usize) {
        self.bytes(&(v as u64).to_le_bytes());
    }
    fn finish(self) -> u64 {
        ((self.0.finalize() as u64) << 32) | self.1.finalize() as u64
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

const FORMAT: &str = "acsleuth run checkpoint v1";

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

    #[test]
    fn fingerprint_changes_with_values_and_settings() {
        let mut a = CsrMatrix::empty(3);
        a.push_row(&[0, 2], &[1.0, 2.0]);
        let mut b = a.clone();
        b.data[1] = 2.5;
        let names = vec!["c".to_string()];
        let g: Vec<String> = ["x", "y", "z"].iter().map(|s| s.to_string()).collect();
        let fa = Fingerprint::of_inputs(&a, &a, &names, &g);
        assert_eq!(fa, Fingerprint::of_inputs(&a, &a, &names, &g));
        assert_ne!(fa, Fingerprint::of_inputs(&a, &b, &names, &g));
        assert_ne!(fa.then(&1), fa.then(&2));
    }

    #[test]
    fn stale_checkpoints_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(d.path()).unwrap();
        c.save("m", Fingerprint(7), &vec![1u32, 2]).unwrap();
        assert_eq!(c.load::<Vec<u32>>("m", Fingerprint(7)).unwrap(), Some(vec![1, 2]));
        assert_eq!(c.load::<Vec<u32>>("m", Fingerprint(8)).unwrap(), None);
        assert_eq!(c.load::<Vec<u32>>("other", Fingerprint(7)).unwrap(), None);
        std::fs::write(c.path("m.json"), "{").unwrap();
        assert!(c.load::<Vec<u32>>("m", Fingerprint(7)).is_err());
    }
}

//! Single files written atomically: to a temporary sibling (registered
//! for removal on a stop), synced, then renamed over the final name.

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};

use crate::cleanup::{register, temp_sibling};

/// Writes `path` atomically: `fill` writes into a temporary file in the same
/// directory, which is renamed over `path` only when `fill` succeeds.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::Config(format!("{}: not a file path", path.display())));
    }
    let reg = register(temp_sibling(path));
    let tmp = reg.path().to_path_buf();
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

/// Writes a value as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value).map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
        writeln!(w).map_err(io_at(path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

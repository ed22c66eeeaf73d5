//! All-or-nothing output sets. A command's outputs are written into a
//! staging folder beside `--out` and renamed in by one atomic step, so
//! `--out` holds either the complete previous set or the complete new one,
//! whatever happens meanwhile (error, full disk, SIGKILL). The folder's
//! lock is held from before the inputs are read until the set is in place.
//!
//! When `--out` does not exist the staging folder is renamed to it. When it
//! exists, what it holds that the new set does not replace (checkpoints,
//! the user's own files) is hard-linked into the staging folder, and the
//! two folders are exchanged in one step (Linux `renameat2`
//! `RENAME_EXCHANGE`; elsewhere two renames, a window of microseconds in
//! which `--out` is absent); the old folder is then removed.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use crate::cleanup::{self, commit_guard, register, remove_path, Registered};
use super::lock::OutLock;

/// An output set being built.
pub struct OutputSet {
    out: PathBuf,
    stage: PathBuf,
    files: Vec<String>,
    committed: bool,
    _stage_reg: Registered,
    _lock: OutLock,
}

/// The parent folder and the name of `out` (made absolute when it has no
/// name of its own, as `.`).
pub fn split(out: &Path) -> Result<(PathBuf, String)> {
    let abs;
    let p = if out.file_name().is_none() {
        abs = std::path::absolute(out).map_err(|e| Error::io(out, e))?;
        std::fs::canonicalize(&abs).unwrap_or(abs)
    } else {
        out.to_path_buf()
    };
    let name = p.file_name().ok_or_else(|| Error::Config(format!("{}: not a usable output folder", out.display())))?;
    let parent = p.parent().filter(|q| !q.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    Ok((parent, name.to_string_lossy().into_owned()))
}

impl OutputSet {
    /// Locks `out` and opens a staging folder beside it; removes what
    /// killed runs left (staging folders, temporary files). `out` itself is
    /// not created.
    pub fn begin(out: &Path) -> Result<OutputSet> {
        if out.exists() && !out.is_dir() {
            return Err(Error::Config(format!("{}: exists and is not a directory", out.display())));
        }
        let (parent, name) = split(out)?;
        let lock = OutLock::acquire(out)?;
        // Under the lock nothing live writes in `out` or stages beside it:
        // every temporary there is stale, whatever its process id.
        cleanup::remove_stale(&parent, false);
        if let Ok(rd) = std::fs::read_dir(&parent) {
            let prefix = format!(".{name}.tmp-");
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    remove_path(&e.path());
                }
            }
        }
        cleanup::remove_stale(out, true);
        cleanup::remove_stale(&out.join("checkpoints"), true);
        let stage = cleanup::temp_sibling(&split_path(out)?);
        std::fs::create_dir(&stage).map_err(|e| Error::io(&stage, e))?;
        let reg = register(stage.clone());
        Ok(OutputSet { out: out.to_path_buf(), stage, files: vec![], committed: false, _stage_reg: reg, _lock: lock })
    }

    /// The final folder (where checkpoints are written as the run goes).
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// The staging folder (for scratch files that go with it).
    pub fn stage(&self) -> &Path {
        &self.stage
    }

    /// Where to write output `name` now; it appears in `--out` on commit.
    pub fn file(&mut self, name: &str) -> PathBuf {
        if !self.files.iter().any(|f| f == name) {
            self.files.push(name.to_string());
        }
        self.stage.join(name)
    }

    /// Puts the set in place; returns the final paths of its files in the
    /// order they were named.
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        // Scratch files (spills) that were not outputs do not go in.
        cleanup::remove_stale(&self.stage, true);
        for e in std::fs::read_dir(&self.stage).map_err(|e| Error::io(&self.stage, e))?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(".acsleuth-spill-") {
                remove_path(&e.path());
            }
        }
        let _g = commit_guard();
        if !self.out.exists() {
            std::fs::rename(&self.stage, &self.out).map_err(|e| Error::io(&self.out, e))?;
        } else if inside_cwd(&self.out) {
            // Exchanging the working folder would leave the shell in a
            // removed one: rename file by file instead.
            for name in &self.files {
                let (from, to) = (self.stage.join(name), self.out.join(name));
                if to.is_dir() {
                    remove_path(&to);
                }
                std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
            }
            remove_path(&self.stage);
        } else {
            link_tree(&self.out, &self.stage)?;
            if let Ok(m) = std::fs::metadata(&self.out) {
                let _ = std::fs::set_permissions(&self.stage, m.permissions());
            }
            exchange(&self.stage, &self.out)?;
            // The staging path now holds the previous set.
            remove_path(&self.stage);
        }
        self.committed = true;
        Ok(self.files.iter().map(|n| self.out.join(n)).collect())
    }
}

impl Drop for OutputSet {
    fn drop(&mut self) {
        if !self.committed {
            remove_path(&self.stage);
        }
    }
}

/// `out` with a name of its own (see [`split`]).
fn split_path(out: &Path) -> Result<PathBuf> {
    let (parent, name) = split(out)?;
    Ok(parent.join(name))
}

/// Whether the working folder is `dir` or inside it.
fn inside_cwd(dir: &Path) -> bool {
    match (std::env::current_dir().and_then(std::fs::canonicalize), std::fs::canonicalize(dir)) {
        (Ok(cwd), Ok(d)) => cwd.starts_with(d),
        _ => false,
    }
}

/// Hard-links into `dst` everything of `src` that `dst` lacks (folders
/// recreated, files linked, or copied where links fail), skipping
/// temporaries.
fn link_tree(src: &Path, dst: &Path) -> Result<()> {
    for e in std::fs::read_dir(src).map_err(|e| Error::io(src, e))?.flatten() {
        let name = e.file_name();
        let n = name.to_string_lossy();
        if cleanup::temp_owner(&n).is_some() || n.starts_with(".acsleuth-spill-") {
            continue;
        }
        let (from, to) = (e.path(), dst.join(&name));
        if to.symlink_metadata().is_ok() {
            continue;
        }
        let ft = e.file_type().map_err(|e| Error::io(&from, e))?;
        if ft.is_dir() {
            std::fs::create_dir(&to).map_err(|e| Error::io(&to, e))?;
            link_tree(&from, &to)?;
        } else if ft.is_symlink() {
            #[cfg(unix)]
            {
                let target = std::fs::read_link(&from).map_err(|e| Error::io(&from, e))?;
                std::os::unix::fs::symlink(target, &to).map_err(|e| Error::io(&to, e))?;
            }
        } else if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|e| Error::io(&to, e))?;
        }
    }
    Ok(())
}

/// Swaps folders `a` and `b` in one step where the OS can.
pub fn exchange(a: &Path, b: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let (ca, cb) = (CString::new(a.as_os_str().as_bytes()), CString::new(b.as_os_str().as_bytes()));
        if let (Ok(ca), Ok(cb)) = (ca, cb) {
            // SAFETY: two valid NUL-terminated paths relative to the working folder.
            let r = unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE) };
            if r == 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
                return Err(Error::io(b, e));
            }
        }
    }
    // Two renames: `b` aside, `a` in, the old one back at `a`'s name.
    let aside = cleanup::temp_sibling(b);
    std::fs::rename(b, &aside).map_err(|e| Error::io(b, e))?;
    if let Err(e) = std::fs::rename(a, b) {
        let _ = std::fs::rename(&aside, b);
        return Err(Error::io(b, e));
    }
    std::fs::rename(&aside, a).map_err(|e| Error::io(a, e))
}

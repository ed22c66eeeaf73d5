//! One writer per output folder: a lock file beside `--out`
//! (`.<name>.acsleuth-lock`, so the folder itself need not exist yet)
//! held with an OS file lock for the life of the command. A second
//! command on the same folder fails at once, naming the holder (pid, host,
//! start time, command). The lock file is removed on release; a lock
//! whose holder died is free again (the OS drops it with the process).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use crate::cleanup::{register, Registered};

/// A held lock on an output folder.
pub struct OutLock {
    path: PathBuf,
    file: Option<File>,
    _reg: Registered,
}

/// The lock file of output folder `out`.
pub fn lock_path(out: &Path) -> Result<PathBuf> {
    let (parent, name) = super::set::split(out)?;
    Ok(parent.join(format!(".{name}.acsleuth-lock")))
}

impl OutLock {
    /// Takes the lock of `out` or fails saying who holds it.
    pub fn acquire(out: &Path) -> Result<OutLock> {
        let path = lock_path(out)?;
        // The folder that holds `out` (not `out` itself) is made if needed.
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        // A holder may remove the file between our open and our lock: retry
        // until the locked file is the one at `path`.
        for _ in 0..10 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    let holder = holder.trim();
                    return Err(Error::Config(format!(
                        "{}: another acsleuth command is writing this output folder ({}); wait for it to finish or choose another --out",
                        out.display(),
                        if holder.is_empty() { "holder unknown" } else { holder }
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
            if !same_file(&file, &path) {
                continue;
            }
            let info = format!("held by pid {} on host {}, started {}, running `{}`", std::process::id(), host(), now(), command());
            file.set_len(0).map_err(|e| Error::io(&path, e))?;
            file.write_all(info.as_bytes()).and_then(|_| file.flush()).map_err(|e| Error::io(&path, e))?;
            let reg = register(path.clone());
            return Ok(OutLock { path, file: Some(file), _reg: reg });
        }
        Err(Error::Other(format!("{}: could not take the lock", path.display())))
    }
}

impl Drop for OutLock {
    fn drop(&mut self) {
        // Remove first, then unlock: a waiting opener re-checks the path.
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

#[cfg(unix)]
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Seconds since the epoch as UTC `YYYY-MM-DD HH:MM:SS`.
fn now() -> String {
    let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (s / 86400, s % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn command() -> String {
    std::env::args().map(|a| if a.contains(' ') { format!("'{a}'") } else { a }).collect::<Vec<_>>().join(" ")
}

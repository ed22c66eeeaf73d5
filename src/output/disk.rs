//! Free space where outputs go, and the check that what a command is about
//! to write fits — so that a large `simulate` stops at once with a
//! message instead of filling the disk.

use std::path::Path;

use crate::error::{Error, Result};

/// Bytes this user may still write on the file system holding `dir`
/// (`statvfs`: available blocks × fragment size); None where it cannot be
/// asked.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a NUL-terminated path, `s` a writable statvfs.
        let r = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
        (r == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// A size for people: "812 MB", "3.4 GB".
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match b {
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.0} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.0} KB", b / 1e3),
        _ => format!("{bytes} B"),
    }
}

/// Refuses to go on when `needed` more bytes (with 5 % and 64 MB to
/// spare) do not fit in `free` bytes on `dir`'s file system.
pub fn check_fits(what: &str, dir: &Path, needed: u64, free: u64) -> Result<()> {
    let with_margin = needed + needed / 20 + (64 << 20);
    if with_margin > free {
        return Err(Error::invalid(format!(
            "{what} would write about {} more, and {} has {} free: make it smaller or free some space",
            human(needed),
            dir.display(),
            human(free)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_known_and_sizes_are_checked() {
        let d = tempfile::tempdir().unwrap();
        assert!(free_bytes(d.path()).is_some_and(|b| b > 0));
        assert!(free_bytes(&d.path().join("no such folder")).is_none());
        assert!(check_fits("x", d.path(), 1 << 20, 1 << 30).is_ok());
        let e = check_fits("simulate", d.path(), 5_000_000_000, 1_200_000_000).unwrap_err().to_string();
        assert!(e.contains("simulate would write about 5.0 GB more") && e.contains("has 1.2 GB free"), "{e}");
        // The margin: 64 MB free is not enough for 1 MB.
        assert!(check_fits("x", d.path(), 1 << 20, 64 << 20).is_err());
        assert_eq!((human(999), human(1_500), human(2_000_000), human(3_400_000_000)), ("999 B".into(), "2 KB".into(), "2 MB".into(), "3.4 GB".into()));
    }
}

//! Temporaries: every temporary path acsleuth creates carries the process
//! id in its name, is registered here while it exists, and is removed when
//! the process is stopped by SIGINT, SIGTERM or SIGHUP (the handler waits
//! for a commit in progress, removes what is registered and exits 130).
//! Those of a process that died without cleaning up (SIGKILL, power loss)
//! are removed by the next run that writes beside them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

/// Paths to remove if the process is stopped.
static REGISTRY: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Held while an output set is renamed into place: a stop waits for it.
static COMMIT: Mutex<()> = Mutex::new(());
static NEXT: AtomicU64 = AtomicU64::new(0);
static HANDLER: Once = Once::new();

/// The marker every temporary name carries: `.<name>.tmp-<pid>-<k>`.
const MARK: &str = ".tmp-";

/// A fresh temporary sibling of `path`: `.<name>.tmp-<pid>-<k>[.<ext>]`
/// (the extension kept, so format detection by name still works).
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let k = NEXT.fetch_add(1, Ordering::Relaxed);
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    path.with_file_name(format!(".{name}{MARK}{}-{k}{ext}", std::process::id()))
}

/// The process id in a temporary name made by [`temp_sibling`] (or the
/// older `.<name>.tmp-<pid>` form), if `name` is one.
pub fn temp_owner(name: &str) -> Option<u32> {
    if !name.starts_with('.') {
        return None;
    }
    let at = name.rfind(MARK)?;
    let rest = &name[at + MARK.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether process `pid` is alive on this machine.
pub fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    true
}

/// Removes a file or a folder tree; missing is fine.
pub fn remove_path(p: &Path) {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// Removes the temporaries in `dir` (not recursing) whose process is dead,
/// or all of them when `all` (the caller holds the lock of the folder, so
/// no live acsleuth process writes there). Returns how many were removed.
pub fn remove_stale(dir: &Path, all: bool) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let owner = temp_owner(&name).or_else(|| spill_owner(&name));
        if let Some(pid) = owner
            && pid != std::process::id()
            && (all || !alive(pid))
        {
            remove_path(&e.path());
            n += 1;
        }
    }
    n
}

/// The process id of a scorer spill file `.acsleuth-spill-<pid>-<n>.f32`.
fn spill_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(".acsleuth-spill-")?;
    rest.split('-').next()?.parse().ok()
}

/// Keeps a path registered for removal on a stop; unregisters on drop
/// (the owner removes or renames the path itself).
pub struct Registered(PathBuf);

impl Registered {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = r.iter().rposition(|p| *p == self.0) {
            r.remove(i);
        }
    }
}

/// Registers `path` for removal if the process is stopped (by the handler
/// [`install`] puts in place; without it the owner's drop path cleans up).
pub fn register(path: PathBuf) -> Registered {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).push(path.clone());
    Registered(path)
}

/// Holds off a stop while an output set is being renamed into place.
pub fn commit_guard() -> MutexGuard<'static, ()> {
    COMMIT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs the SIGINT/SIGTERM/SIGHUP handler (once): a thread that waits
/// for the signal, lets a commit finish, removes every registered path and
/// exits with 128 + the signal. Only a process that is acsleuth calls it
/// (the CLI, at start): it ends the process, which an embedding program —
/// a Python kernel interrupted with Ctrl-C — must keep.
pub fn install() {
    HANDLER.call_once(|| {
        #[cfg(unix)]
        {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else { return };
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    let _commit = commit_guard();
                    let paths = std::mem::take(&mut *REGISTRY.lock().unwrap_or_else(|e| e.into_inner()));
                    for p in paths.iter().rev() {
                        remove_path(p);
                    }
                    eprintln!("stopped by signal {sig}; temporary files removed, outputs left as they were");
                    std::process::exit(128 + sig);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_carry_the_pid() {
        let p = temp_sibling(Path::new("/x/k.h5ad"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".k.h5ad.tmp-") && name.ends_with(".h5ad"), "{name}");
        assert_eq!(temp_owner(name), Some(std::process::id()));
        assert_eq!(temp_owner(".cells.tsv.tmp-4242"), Some(4242));
        assert_eq!(temp_owner("cells.tsv"), None);
        assert_eq!(spill_owner(".acsleuth-spill-77-0.f32"), Some(77));
    }
}

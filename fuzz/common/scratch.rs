//! What every fuzz target shares (included with `#[path]`: each target is
//! its own binary).

use std::sync::OnceLock;

/// One scratch folder per process, in /dev/shm when it exists (the
/// harness writes each input there before reading it).
pub fn scratch() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("a scratch folder")
    })
    .path()
}

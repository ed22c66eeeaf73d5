//! libFuzzer target: `acsleuth::data::fuzz::h5ad` (see that module).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One scratch folder per process, in /dev/shm when it exists (the
/// harness writes each input there before reading it).
fn scratch() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("a scratch folder")
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let _ = acsleuth::data::fuzz::h5ad(data, scratch());
});

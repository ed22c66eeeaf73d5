//! libFuzzer target: `acsleuth::data::fuzz::h5ad` (see that module).
#![no_main]

#[path = "../common/scratch.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = acsleuth::data::fuzz::h5ad(data, common::scratch());
});

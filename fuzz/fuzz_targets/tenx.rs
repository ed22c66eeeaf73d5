//! libFuzzer target: `acsleuth::data::fuzz::tenx` (see that module).
#![no_main]

#[path = "../common/scratch.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = acsleuth::data::fuzz::tenx(data, common::scratch());
});

//! libFuzzer target: `acsleuth::data::fuzz::store` (see that module).
#![no_main]

#[path = "../common/scratch.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = acsleuth::data::fuzz::store(data, common::scratch());
});

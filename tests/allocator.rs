//! `acsleuth::allocator`: freed memory left in the heap goes back to the OS.
//! Its own test binary, so that no other test allocates while RSS is
//! measured.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use acsleuth::allocator::release_free_memory;

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.split("VmRSS:").nth(1).and_then(|t| t.split_whitespace().next()).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        / 1024.0
}

/// After a 16 MiB block is freed, glibc serves 8 MiB blocks from its heap:
/// freeing every other one of 24 leaves holes between live blocks, which
/// stay resident until `release_free_memory`.
#[test]
fn holes_left_in_the_heap_are_returned() {
    let mut big = vec![1u8; 16 << 20];
    std::hint::black_box(&mut big);
    drop(big);
    let before = rss_mib();
    let mut blocks: Vec<Option<Vec<u8>>> = (0..24).map(|_| Some(vec![1u8; 8 << 20])).collect();
    std::hint::black_box(&mut blocks);
    let held = rss_mib();
    for b in blocks.iter_mut().step_by(2) {
        *b = None;
    }
    release_free_memory();
    let after = rss_mib();
    std::hint::black_box(&blocks);
    assert!(held - before > 150.0, "192 MiB allocated, RSS grew {:.0} MiB", held - before);
    assert!(held - after > 80.0, "96 MiB freed, RSS fell only {:.0} MiB ({held:.0} -> {after:.0})", held - after);
}

//! Giving freed memory back to the operating system between the stages of
//! a long computation.
//!
//! Why: glibc's malloc raises its mmap threshold to the size of every
//! large block freed (up to 32 MiB), so after the engine frees its first
//! big buffers (the inputs as read, the joint PCA's standardised sample),
//! later buffers below that size come from the heap, and the holes they
//! leave when freed stay resident while other buffers live on; in Python
//! the heap is also shared with numpy and anndata. [`release_free_memory`]
//! (`malloc_trim(0)`) returns those holes; the detector calls it where a
//! stage has just freed its large buffers and the next one allocates its
//! own.
//!
//! Measured on the Kang benchmark (`acsleuth detect`, CPU, 2 cores,
//! interleaved runs, identical scores): peak RSS 405 MB without, 323–332 MB
//! with the two calls, wall 20.1–23.5 s against 21.4–21.7 s (noise), 0.8 s
//! more system time. Two global settings were tried and lost: glibc's mmap
//! threshold fixed at 1 MiB (peak 290 MB, but 4–10 % slower on Kang and
//! 10–24 % on the demo's GAN training, which allocates and frees large
//! buffers every step), and mimalloc purging freed pages at once (peak
//! 288 MB, 9–14 % slower training; with a purge delay the peak rose to
//! 460 MB).
//!
//! Only glibc has `malloc_trim`; elsewhere this does nothing.

/// Returns the free memory of the C heap to the operating system. Costs a
/// walk over the free chunks (milliseconds); call it between stages, or
/// after each step of a loop whose steps are long (≥ 0.1 s) and allocate
/// large temporaries out of our hands: the joint PCA's covariance pass
/// calls it after every block, because the GEMM crate allocates its
/// packing buffer (12–24 MB) afresh on each call and, in Python, where the
/// engine runs on its own thread and glibc's threshold has been raised by
/// numpy, the freed buffers stayed resident (Kang: the call's peak grew
/// 24 MB per block, 118 or 223 MiB added by run; 116–132 MiB with it).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory that is free; glibc takes
    // its arenas' locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

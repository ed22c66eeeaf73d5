//! The rayon pool the CPU backend's parallel loops run on.
//!
//! A training iteration runs hundreds of short parallel loops (GEMM blocks,
//! sparse rows, elementwise chunks). Started from a thread outside the pool,
//! each one hands its work to the pool's workers and puts the caller to
//! sleep until they are done: a wake-up and a sleep per loop, and on 2 cores
//! three threads competing for two. Started from a thread of the pool, the
//! loop runs in place and the caller takes its share. Making the thread that
//! drives the work worker 0 of the pool made one Module I iteration (batch
//! 128, 3000 genes, 2 threads) 5–10 % faster: best of 80 0.046–0.047 s vs
//! 0.050–0.051 s with the memory block, interleaved runs of
//! `cargo test --release --test detect iteration_time -- --ignored`.

/// Builds rayon's global pool with `threads` threads (`None`: rayon's
/// default, `RAYON_NUM_THREADS` or one per core). Called from the process's
/// main thread, that thread becomes worker 0 of the pool (it lives as long
/// as the process, so no work can be stranded on it); from any other thread
/// (a test's, an embedding program's) the pool gets its own threads as
/// usual. Does nothing if the global pool already exists.
pub fn init_global(threads: Option<usize>) {
    let builder = rayon::ThreadPoolBuilder::new().num_threads(threads.unwrap_or(0));
    let builder = if std::thread::current().name() == Some("main") { builder.use_current_thread() } else { builder };
    // Fails only if a pool already exists (then its size stays).
    let _ = builder.build_global();
}

/// Makes the calling thread worker 0 of a new pool of `threads` threads for
/// the rest of its life, whatever thread it is (benchmarks and timing tests
/// use it to run as the command line does). The pool is never torn down:
/// rayon cannot release a pool that adopted a thread.
pub fn adopt_current_thread(threads: usize) -> Result<(), rayon::ThreadPoolBuildError> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).use_current_thread().build()?;
    std::mem::forget(pool);
    Ok(())
}

//! Runs library work off the Python thread: the GIL is released while it
//! computes, and the calling thread wakes every 100 ms to let Python handle
//! signals. Ctrl-C (KeyboardInterrupt) sets the library's cancellation flag;
//! the work stops at its next check and the exception is raised once it
//! has (nothing is returned, so the caller's AnnData stays unchanged).
//!
//! The work runs on one long-lived engine thread that is worker 0 of its
//! own rayon pool (one thread per core), as the command line's main thread
//! is: the hundreds of short parallel loops of a training iteration then
//! run in place instead of waking the pool and sleeping
//! (`backend::thread_pool`). With `threads=N` a pool of N threads is used for
//! that call instead.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use acsleuth::cli::common::{device, dispatch, Job};
use acsleuth::error::Error;
use pyo3::prelude::*;

/// How often the waiting thread checks for signals.
const POLL: Duration = Duration::from_millis(100);

/// Where a call computes: `device` as `--device` takes it, and the worker
/// threads (default: the engine's pool, one per core).
pub struct Machine {
    pub device: String,
    pub threads: Option<usize>,
}

type Task = Box<dyn FnOnce() + Send + 'static>;

/// The engine thread's queue (started on first use).
fn engine() -> PyResult<mpsc::Sender<Task>> {
    static ENGINE: OnceLock<Mutex<mpsc::Sender<Task>>> = OnceLock::new();
    let tx = ENGINE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Task>();
        let spawned = std::thread::Builder::new().name("acsleuth-engine".into()).spawn(move || {
            // Without its own pool the tasks still run, on rayon's global one.
            let _ = acsleuth::backend::thread_pool::adopt_current_thread(0);
            for task in rx {
                task();
            }
        });
        if spawned.is_err() {
            // The sender's receiver is gone: every send fails, and says so.
            let (tx, _) = mpsc::channel::<Task>();
            return Mutex::new(tx);
        }
        Mutex::new(tx)
    });
    tx.lock().map(|t| t.clone()).map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("acsleuth: the engine thread is unusable"))
}

/// Resolves the device and runs `job` on it on the engine thread; returns
/// its result or the Python exception (a signal's, or the library error's).
pub fn run<J>(py: Python<'_>, m: &Machine, job: J) -> PyResult<J::Output>
where
    J: Job + Send + Sync + 'static,
    J::Output: Send + 'static,
{
    if m.threads == Some(0) {
        return Err(crate::errors::to_py(Error::Config("threads must be at least 1".into())));
    }
    // A malformed device name is a ValueError; a well-formed one that finds
    // no usable device (no driver, no GPU) a RuntimeError.
    let dev = device(&m.device).map_err(|e| {
        let valid = m.device.trim().eq_ignore_ascii_case("emu")
            || m.device.parse::<acsleuth::backend::cuda::device::DeviceSpec>().is_ok();
        if valid { pyo3::exceptions::PyRuntimeError::new_err(crate::errors::message(&e)) } else { crate::errors::to_py(e) }
    })?;
    let pool = match m.threads {
        Some(n) => Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| crate::errors::to_py(Error::Other(format!("thread pool: {e}"))))?,
        ),
        None => None,
    };
    acsleuth::progress::reset_cancel();
    acsleuth::progress::reset_stage();
    let (tx, rx) = mpsc::channel();
    let task: Task = Box::new(move || {
        let go = || dispatch(dev, Default::default(), &job);
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &pool {
            Some(p) => p.install(go),
            None => go(),
        }));
        let _ = tx.send(out);
    });
    engine()?.send(task).map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("acsleuth: the engine thread could not start"))?;
    // The waiting closure runs without the GIL and must be Send.
    let rx = Mutex::new(rx);
    let mut interrupt: Option<PyErr> = None;
    loop {
        match py.detach(|| rx.lock().map_err(|_| mpsc::RecvTimeoutError::Disconnected)?.recv_timeout(POLL)) {
            Ok(out) => {
                acsleuth::progress::reset_cancel();
                if let Some(e) = interrupt {
                    return Err(e);
                }
                return match out {
                    Ok(r) => r.map_err(crate::errors::to_py),
                    Err(_) => Err(pyo3::exceptions::PyRuntimeError::new_err("acsleuth: internal error (a panic in the engine); please report it")),
                };
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if interrupt.is_none()
                    && let Err(e) = py.check_signals()
                {
                    acsleuth::progress::cancel();
                    interrupt = Some(e);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                acsleuth::progress::reset_cancel();
                return Err(pyo3::exceptions::PyRuntimeError::new_err("acsleuth: the engine thread ended without a result"));
            }
        }
    }
}

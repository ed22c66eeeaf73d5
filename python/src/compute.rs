//! Runs library work off the Python thread: the GIL is released while it
//! computes, and the calling thread wakes every 100 ms to let Python handle
//! signals. Ctrl-C (KeyboardInterrupt) sets the library's cancellation flag;
//! the work stops at its next check and the exception is raised once it
//! has (nothing is returned, so the caller's AnnData stays unchanged).

use std::sync::mpsc;
use std::time::Duration;

use acsleuth::cli::common::{device, dispatch, Job};
use acsleuth::error::Error;
use pyo3::prelude::*;

/// How often the waiting thread checks for signals.
const POLL: Duration = Duration::from_millis(100);

/// Where a call computes: `device` as `--device` takes it, and the worker
/// threads (default: the global pool, one per core).
pub struct Machine {
    pub device: String,
    pub threads: Option<usize>,
}

/// Resolves the device and runs `work` on it in a worker thread, on a pool
/// of `threads` threads when given; returns its result or the Python
/// exception (a signal's, or the library error's).
pub fn run<J: Job + Sync>(py: Python<'_>, m: &Machine, job: &J) -> PyResult<J::Output>
where
    J::Output: Send,
{
    if m.threads == Some(0) {
        return Err(crate::errors::to_py(Error::Config("threads must be at least 1".into())));
    }
    let dev = device(&m.device).map_err(crate::errors::to_py)?;
    let pool = match m.threads {
        Some(n) => Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| crate::errors::to_py(Error::Other(format!("thread pool: {e}"))))?,
        ),
        None => {
            acsleuth::backend::cpu_pool::init_global(None);
            None
        }
    };
    acsleuth::progress::reset_cancel();
    acsleuth::progress::reset_stage();
    let (tx, rx) = mpsc::channel();
    // The waiting closure runs without the GIL and must be Send.
    let rx = std::sync::Mutex::new(rx);
    std::thread::scope(|s| {
        s.spawn(move || {
            let go = || dispatch(dev, Default::default(), job);
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &pool {
                Some(p) => p.install(go),
                None => go(),
            }));
            let _ = tx.send(out);
        });
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
                    return Err(pyo3::exceptions::PyRuntimeError::new_err("acsleuth: the worker thread ended without a result"));
                }
            }
        }
    })
}

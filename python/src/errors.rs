//! The library's typed errors as Python exceptions, with the CLI's one-line
//! message: bad input or settings → `ValueError`, a missing file →
//! `FileNotFoundError`, other I/O → `OSError`, a device failure →
//! `RuntimeError`, a cancelled run → `KeyboardInterrupt`.

use acsleuth::Error;
use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

/// The error and its causes on one line, as `acsleuth` prints them.
pub fn message(e: &Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg
}

pub fn to_py(e: Error) -> PyErr {
    let msg = message(&e);
    match &e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
        Error::Io { .. } => PyOSError::new_err(msg),
        Error::UnknownFormat { .. } | Error::Corrupt { .. } | Error::Invalid(_) | Error::Config(_) => PyValueError::new_err(msg),
        Error::Cancelled => PyKeyboardInterrupt::new_err(msg),
        Error::Device(_) | Error::Other(_) => PyRuntimeError::new_err(msg),
    }
}

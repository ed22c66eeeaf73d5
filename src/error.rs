//! Typed errors. Library code returns [`Error`]; `main` prints the chain of
//! causes on one line and exits non-zero. Every variant names the problem so
//! a user can act on it (never a panic for bad input).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but its format is not one we read.
    #[error("{path}: unknown format ({hint})")]
    UnknownFormat { path: PathBuf, hint: String },
    /// A file of a known format that is damaged (truncated, bad checksum,
    /// missing a required part).
    #[error("{path}: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    /// Values or shapes a computation cannot accept (NaN, negative counts,
    /// duplicated names, zero cells, no shared genes, ...).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A bad option or combination of options.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A compute device (GPU) failed during a run: out of memory, a failed
    /// launch or copy. The message names the device and suggests a way out.
    #[error("{0}")]
    Device(String),
    /// The run was stopped on request ([`crate::progress::cancel`], e.g.
    /// Ctrl-C in Python) before it finished; nothing was written.
    #[error("interrupted")]
    Cancelled,
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn corrupt(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Corrupt { path: path.into(), msg: msg.into() }
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

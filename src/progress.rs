//! Progress bars for long work (indicatif). Hidden when stderr is not a
//! terminal or when `ACSLEUTH_QUIET` is set, so tests and pipes stay clean.
//!
//! Also the cancellation flag that long loops poll: an embedding program
//! (the Python binding on Ctrl-C) calls [`cancel`] from another thread, and
//! the run stops at its next [`check_cancelled`] with
//! [`Error::Cancelled`](crate::Error::Cancelled). Every `Backend::check`
//! polls it, so each epoch, scorer step and neighbour search does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static CANCELLED: AtomicBool = AtomicBool::new(false);

/// The stage running now: its latest bar (position and length) or, for a
/// stage without one, a bar of length 0. An embedding program shows it
/// its own way ([`current`]).
static CURRENT: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn publish(pb: &ProgressBar) {
    if let Ok(mut c) = CURRENT.lock() {
        *c = Some(pb.clone());
    }
}

/// Marks the start of a stage that has no bar of its own.
pub fn stage(what: &str) {
    let pb = ProgressBar::hidden();
    pb.set_message(what.to_string());
    publish(&pb);
}

/// The current stage: (name, position, length; 0 when unknown), or `None`
/// before any stage started.
pub fn current() -> Option<(String, u64, u64)> {
    let c = CURRENT.lock().ok()?;
    c.as_ref().map(|pb| (pb.message(), pb.position(), pb.length().unwrap_or(0)))
}

/// Forgets the current stage (at the start of a new run).
pub fn reset_stage() {
    if let Ok(mut c) = CURRENT.lock() {
        *c = None;
    }
}

/// Asks the running computation to stop at its next check.
pub fn cancel() {
    CANCELLED.store(true, Ordering::Relaxed);
}

/// Clears a cancellation request (before a new run starts).
pub fn reset_cancel() {
    CANCELLED.store(false, Ordering::Relaxed);
}

/// `Err(Error::Cancelled)` once [`cancel`] was called, until [`reset_cancel`].
pub fn check_cancelled() -> crate::Result<()> {
    if CANCELLED.load(Ordering::Relaxed) { Err(crate::Error::Cancelled) } else { Ok(()) }
}

/// A bar of `len` steps labelled `what`; hidden when not interactive.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if std::env::var_os("ACSLEUTH_QUIET").is_some() || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    publish(&pb);
    pb
}

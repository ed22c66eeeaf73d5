//! Progress bars for long work (indicatif). Hidden when stderr is not a
//! terminal or when `ACSLEUTH_QUIET` is set, so tests and pipes stay clean.
//! When stderr is not a terminal (a log file, a batch job), [`StatusLines`]
//! prints the current stage as one line every 30 s instead (stage, %, ETA;
//! `ACSLEUTH_STATUS_SECONDS` sets the interval, `ACSLEUTH_QUIET` silences
//! it too).
//!
//! Also the cancellation flag that long loops poll: an embedding program
//! (the Python binding on Ctrl-C) calls [`cancel`] from another thread, and
//! the run stops at its next [`check_cancelled`] with
//! [`Error::Cancelled`](crate::Error::Cancelled). Every `Backend::check`
//! polls it, so each epoch, scorer step and neighbour search does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Set by an embedding program that shows progress its own way.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Turns this process's terminal bars and status lines off (or on again),
/// as `ACSLEUTH_QUIET` does, without touching the environment (which
/// child processes would inherit). The Python package calls it: its tqdm
/// bars mirror [`current`] instead.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// The stage running now: its latest bar (position and length) or, for a
/// stage without one, a bar of length 0. An embedding program shows it
/// its own way ([`current`]).
static CURRENT: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn publish(pb: &ProgressBar) {
    if let Ok(mut c) = CURRENT.lock() {
        *c = Some(pb.clone());
    }
}

fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed) || std::env::var_os("ACSLEUTH_QUIET").is_some()
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
    if quiet() || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
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

/// Seconds between status lines, unless `ACSLEUTH_STATUS_SECONDS` says.
pub const STATUS_SECONDS: f64 = 30.0;

/// One status line for the stage running now, e.g. `[2m 30s] train: 45 %
/// (1350/3000, ETA 3m 2s)`; `None` before any stage.
pub fn status_line(since_start: Duration) -> Option<String> {
    let c = CURRENT.lock().ok()?;
    c.as_ref().map(|pb| format_status(pb, since_start))
}

fn format_status(pb: &ProgressBar, since_start: Duration) -> String {
    let t = fmt_duration(since_start);
    let what = pb.message();
    match pb.length() {
        Some(len) if len > 0 => {
            let pos = pb.position().min(len);
            let eta = if pos > 0 { format!(", ETA {}", fmt_duration(pb.eta())) } else { String::new() };
            format!("[{t}] {what}: {:.0} % ({pos}/{len}{eta})", 100.0 * pos as f64 / len as f64)
        }
        _ => format!("[{t}] {what} (running for {})", fmt_duration(pb.elapsed())),
    }
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// Prints [`status_line`] to stderr at an interval from a background
/// thread while it lives, when stderr is not a terminal (where the bars
/// are hidden) and `ACSLEUTH_QUIET` is unset. Dropping it stops the thread
/// at once.
pub struct StatusLines {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StatusLines {
    /// Starts the status lines where they are wanted (see the type's doc);
    /// a no-op value elsewhere.
    pub fn start() -> StatusLines {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        if quiet() || std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return StatusLines { stop, thread: None };
        }
        let every = std::env::var("ACSLEUTH_STATUS_SECONDS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .unwrap_or(STATUS_SECONDS);
        StatusLines::spawn(stop, Duration::from_secs_f64(every))
    }

    /// The status thread, printing every `every` until `stop` is set.
    fn spawn(stop: Arc<(Mutex<bool>, Condvar)>, every: Duration) -> StatusLines {
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("acsleuth-status".into())
            .spawn(move || {
                let t0 = Instant::now();
                let (lock, cv) = &*flag;
                let Ok(mut stopped) = lock.lock() else { return };
                loop {
                    // The flag is checked before each wait: a stop that
                    // came before this thread first waited is not missed.
                    if *stopped {
                        return;
                    }
                    match cv.wait_timeout(stopped, every) {
                        Ok((g, _)) => stopped = g,
                        Err(_) => return,
                    }
                    if *stopped {
                        return;
                    }
                    if let Some(line) = status_line(t0.elapsed()) {
                        eprintln!("{line}");
                    }
                }
            })
            .ok();
        StatusLines { stop, thread }
    }
}

impl Drop for StatusLines {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        if let Ok(mut s) = lock.lock() {
            *s = true;
        }
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_gives_stage_percent_and_eta() {
        let pb = ProgressBar::hidden();
        pb.set_length(200);
        pb.set_message("train");
        pb.set_position(50);
        let line = format_status(&pb, Duration::from_secs(150));
        assert!(line.starts_with("[2m 30s] train: 25 % (50/200, ETA "), "{line}");
        let pb = ProgressBar::hidden();
        pb.set_message("novelty score");
        let line = format_status(&pb, Duration::from_secs(5));
        assert!(line.starts_with("[5s] novelty score (running for "), "{line}");
        assert_eq!(fmt_duration(Duration::from_secs(7322)), "2h 2m");
    }

    /// Regression: a command that ended before the status thread first
    /// waited (an input refused at once) waited out the whole interval
    /// (30 s) at exit — the stop's notification came before the wait.
    #[test]
    fn stopping_at_once_does_not_wait_out_the_interval() {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let lines = StatusLines { stop: Arc::clone(&stop), thread: None };
        drop(lines);
        // The same thread body as `start`, begun after the stop.
        let t0 = Instant::now();
        let s = StatusLines::spawn(Arc::clone(&stop), Duration::from_secs(30));
        drop(s);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }
}

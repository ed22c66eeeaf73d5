//! A cancellation request (`progress::cancel`, what Ctrl-C in Python sets)
//! stops a run with `Error::Cancelled` and clears with `reset_cancel`.
//! Its own test binary: the flag is process-wide.

mod common;

use acsleuth::backend::CpuBackend;
use acsleuth::pipeline::detect::{detect_with, DetectOptions};
use acsleuth::pipeline::DetectConfig;
use acsleuth::{progress, Error};

#[test]
fn a_cancelled_run_stops_with_error_cancelled_and_the_next_one_runs() {
    let (r, t, _) = common::simulate(120, 60, 30, 0.2, 3);
    let cfg = DetectConfig { n_hvg: 0, ..DetectConfig::default() };
    let be = CpuBackend::new();
    progress::cancel();
    let e = detect_with(&be, &r, &t, &cfg, &DetectOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");
    assert_eq!(e.to_string(), "interrupted");
    progress::reset_cancel();
    detect_with(&be, &r, &t, &cfg, &DetectOptions::default()).unwrap();
    assert!(progress::current().is_some_and(|(stage, _, _)| stage == "novelty score"));
}

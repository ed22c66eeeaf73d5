//! The `acsleuth` binary: a thin layer over the library. Errors print their
//! chain of causes on one line and exit non-zero.

use clap::Parser;

fn main() {
    // A closed stdout (`acsleuth simulate … | head -2`) ends the process
    // quietly, as it does `cat`, instead of a panic on the next print.
    // Outputs are committed before anything is printed about them.
    #[cfg(unix)]
    // SAFETY: restoring the default action of one signal, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = acsleuth::cli::Cli::parse();
    if let Err(e) = acsleuth::cli::run(cli) {
        let mut msg = format!("error: {e}");
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            let s_txt = s.to_string();
            if !msg.contains(&s_txt) {
                msg.push_str(": ");
                msg.push_str(&s_txt);
            }
            src = s.source();
        }
        eprintln!("{msg}");
        std::process::exit(1);
    }
}

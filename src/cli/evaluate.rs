//! `acsleuth evaluate` (in progress).

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::Other("`evaluate` is not available yet".into()))
}

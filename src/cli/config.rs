//! `acsleuth config --defaults`: every setting at its default, as the TOML
//! file `--config` takes — a starting point to edit, and the list of keys
//! (README, `detect` and `run`, say what each means).

use crate::error::{Error, Result};
use crate::pipeline::run::RunConfig;
use crate::pipeline::DetectConfig;

/// Print the settings files `detect --config` and `run --config` take.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print every key at its default (the file `detect --config` takes;
    /// with --run, the one `run --config` takes).
    #[arg(long)]
    pub defaults: bool,
    /// The settings of `run` (top-level keys and the tables [detect],
    /// [style], [subtype]) instead of those of `detect`.
    #[arg(long)]
    pub run: bool,
}

/// The defaults as TOML, with a header saying what the file is for.
pub fn defaults_toml(workflow: bool) -> Result<String> {
    let (body, command) = if workflow {
        (toml::to_string(&RunConfig::default()), "run")
    } else {
        (toml::to_string(&DetectConfig::default()), "detect")
    };
    let body = body.map_err(|e| Error::Other(format!("settings: {e}")))?;
    Ok(format!(
        "# acsleuth {command} --config FILE: every setting at its default.\n\
         # Keep the keys you change (unknown keys are an error); flags override\n\
         # the file. README, `{command}`, says what each key means.\n\n{body}"
    ))
}

pub fn run(a: Args) -> Result<()> {
    if !a.defaults {
        return Err(Error::Config("acsleuth config: nothing to print; --defaults prints every setting at its default".into()));
    }
    print!("{}", defaults_toml(a.run)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 item 10: the printed defaults are a file `--config` reads
    /// back to the defaults, for `detect` and for `run`.
    #[test]
    fn printed_defaults_read_back_as_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let (d, r) = (dir.path().join("detect.toml"), dir.path().join("run.toml"));
        std::fs::write(&d, defaults_toml(false).unwrap()).unwrap();
        std::fs::write(&r, defaults_toml(true).unwrap()).unwrap();
        assert_eq!(DetectConfig::from_toml_file(&d).unwrap(), DetectConfig::default());
        // RunConfig has no PartialEq: compare what it serializes to.
        let json = |c: &RunConfig| serde_json::to_string(c).unwrap();
        assert_eq!(json(&RunConfig::from_toml_file(&r).unwrap()), json(&RunConfig::default()));
        let text = defaults_toml(true).unwrap();
        for table in ["[detect]", "[detect.novelty.mnn]", "[style]", "[subtype]"] {
            assert!(text.contains(table), "{table} missing");
        }
    }
}

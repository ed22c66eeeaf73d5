//! `acsleuth config --defaults`: every setting at its default, as the TOML
//! file `--config` takes — a starting point to edit, and the list of keys
//! with one line of help above each ([`super::config_docs`]).

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
    /// The settings of `run` (top-level keys and the tables `[detect]`,
    /// `[style]`, `[subtype]`) instead of those of `detect`.
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
         # the file. README, `{command}`, says more about each key.\n\n{}",
        commented(&body)
    ))
}

/// The dotted key of each `key = value` line of a TOML document, with the
/// line's index (tables as `[a.b]` headers, as `toml` writes them).
fn keys(body: &str) -> Vec<(usize, String)> {
    let mut table = String::new();
    let mut out = vec![];
    for (i, line) in body.lines().enumerate() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            table = name.to_string();
        } else if let Some((k, _)) = t.split_once(" = ") {
            out.push((i, if table.is_empty() { k.to_string() } else { format!("{table}.{k}") }));
        }
    }
    out
}

/// `body` with each key's help as a comment line above it.
fn commented(body: &str) -> String {
    let help: std::collections::HashMap<usize, &str> = keys(body).into_iter().filter_map(|(i, k)| super::config_docs::help(&k).map(|h| (i, h))).collect();
    let mut out = String::with_capacity(body.len() * 2);
    for (i, line) in body.lines().enumerate() {
        if let Some(h) = help.get(&i) {
            out.push_str("# ");
            out.push_str(h);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
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

    /// Issue 15 item 10: every key `detect` or `run` takes has its line of
    /// help in the printed defaults, and no help is left for a key that is
    /// gone (keys whose default is "absent" are not printed).
    #[test]
    fn every_key_has_its_help_and_no_help_is_stale() {
        let mut seen = std::collections::HashSet::new();
        for workflow in [false, true] {
            let body = toml::to_string(&RunConfig::default()).unwrap();
            let body = if workflow { body } else { toml::to_string(&DetectConfig::default()).unwrap() };
            for (_, k) in keys(&body) {
                assert!(super::super::config_docs::help(&k).is_some(), "no help for key {k}");
                seen.insert(k.strip_prefix("detect.").unwrap_or(&k).to_string());
            }
            let printed = defaults_toml(workflow).unwrap();
            assert!(printed.contains("# false discovery rate of the calls"), "{printed}");
        }
        for (k, _) in super::super::config_docs::KEY_DOCS {
            assert!(seen.contains(*k) || ["anomaly_ratio", "subtype.n_subtypes"].contains(k), "help for a key that does not exist: {k}");
        }
    }

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

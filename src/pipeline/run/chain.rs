//! The modules of a run as a chain of checkpointed stages. Each stage's
//! fingerprint is the one of the stage before it extended with its own
//! settings, so a stage is resumed from its checkpoint only when its
//! inputs, its settings and everything upstream are the same; otherwise
//! it and every later stage are recomputed.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

use super::checkpoint::{Checkpoints, Fingerprint};
use crate::error::{Error, Result};

/// One checkpointed step of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage {
    /// Stem of its files: `<file>.json` (state and fingerprint) and, when
    /// it keeps networks, `<file>.safetensors`.
    pub file: &'static str,
    /// Its name in `report.json`'s `resumed` and on the console.
    pub label: &'static str,
    /// Whether its checkpoint needs a `.safetensors` file beside the JSON.
    pub networks: bool,
}

/// The modules of `acsleuth run`, in order.
pub const MODULES: [Stage; 4] = [
    Stage { file: "module1", label: "module I", networks: true },
    Stage { file: "module2", label: "module II", networks: false },
    Stage { file: "module3", label: "module III", networks: true },
    Stage { file: "module4", label: "module IV", networks: false },
];

/// Runs stages in order, resuming each from its checkpoint when it matches.
pub struct Chain<'a> {
    ck: Option<&'a Checkpoints>,
    order: &'a [Stage],
    fp: Fingerprint,
    /// Labels of the stages taken from their checkpoints, in order.
    pub resumed: Vec<String>,
}

impl<'a> Chain<'a> {
    /// A chain over `order` (the stages that may run, first to last)
    /// starting from the fingerprint of the inputs; without checkpoints
    /// every stage is computed.
    pub fn new(ck: Option<&'a Checkpoints>, order: &'a [Stage], inputs: Fingerprint) -> Self {
        Chain { ck, order, fp: inputs, resumed: Vec::new() }
    }

    /// Folds the settings of a step that keeps no checkpoint (a cheap one,
    /// or one skipped) into the chain: later stages rerun when they change.
    pub fn extend<S: Serialize>(&mut self, settings: &S) -> Result<()> {
        self.fp = self.fp.then(settings)?;
        Ok(())
    }

    /// A stage whose whole result is its JSON state.
    pub fn stage<T, S>(&mut self, stage: &Stage, settings: &S, run: impl FnOnce() -> Result<T>) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        S: Serialize,
    {
        self.stage_with_networks(stage, settings, |_| Ok((run()?, ())), |_| Ok(())).map(|(t, ())| t)
    }

    /// Stage `stage` under `settings`: its state from the checkpoint, and
    /// its networks rebuilt by `load` from `<file>.safetensors`, when the
    /// fingerprint matches; otherwise this checkpoint and every later one
    /// are deleted, `run` computes (writing its networks to the path it is
    /// given, when checkpointing), and the state is saved after it.
    pub fn stage_with_networks<T, M, S>(
        &mut self,
        stage: &Stage,
        settings: &S,
        run: impl FnOnce(Option<&Path>) -> Result<(T, M)>,
        load: impl FnOnce(&Path) -> Result<M>,
    ) -> Result<(T, M)>
    where
        T: Serialize + DeserializeOwned,
        S: Serialize,
    {
        self.extend(settings)?;
        let fp = self.fp;
        let Some(ck) = self.ck else { return run(None) };
        let nets = ck.path(&format!("{}.safetensors", stage.file));
        if (!stage.networks || nets.exists())
            && let Some(state) = ck.load::<T>(stage.file, fp)?
        {
            let m = load(&nets)?;
            self.resumed.push(stage.label.to_string());
            return Ok((state, m));
        }
        self.invalidate(stage)?;
        let (state, m) = run(stage.networks.then_some(nets.as_path()))?;
        ck.save(stage.file, fp, &state)?;
        Ok((state, m))
    }

    /// Deletes the checkpoint of `stage` and of every later one before
    /// `stage` is recomputed, so that a half-finished recomputation can
    /// never be paired with an older record that still matches.
    fn invalidate(&self, stage: &Stage) -> Result<()> {
        let Some(ck) = self.ck else { return Ok(()) };
        let from = self.order.iter().position(|s| s == stage).ok_or_else(|| Error::Other(format!("stage {} is not in the chain", stage.file)))?;
        for s in &self.order[from..] {
            let p = ck.path(&format!("{}.json", s.file));
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: [Stage; 3] = [
        Stage { file: "a", label: "A", networks: false },
        Stage { file: "b", label: "B", networks: true },
        Stage { file: "c", label: "C", networks: false },
    ];

    /// Runs the three stages with settings `s`; returns the labels of the
    /// stages computed and those resumed.
    fn run(ck: &Checkpoints, s: [u32; 3]) -> (Vec<&'static str>, Vec<String>) {
        let mut chain = Chain::new(Some(ck), &ORDER, Fingerprint([1; 32]));
        let mut ran = Vec::new();
        let a = chain.stage(&ORDER[0], &s[0], || { ran.push("A"); Ok(s[0] * 10) }).unwrap();
        let (b, net) = chain
            .stage_with_networks(
                &ORDER[1],
                &s[1],
                |p| {
                    ran.push("B");
                    // Later checkpoints are gone before a stage is recomputed.
                    assert!(!ck.path("c.json").exists());
                    std::fs::write(p.unwrap(), (a + s[1]).to_string()).unwrap();
                    Ok((a + s[1], a + s[1]))
                },
                |p| Ok(std::fs::read_to_string(p).unwrap().parse::<u32>().unwrap()),
            )
            .unwrap();
        assert_eq!(b, net);
        let c = chain.stage(&ORDER[2], &s[2], || { ran.push("C"); Ok(b + s[2]) }).unwrap();
        assert_eq!(c, 10 * s[0] + s[1] + s[2]);
        (ran, chain.resumed)
    }

    #[test]
    fn changed_settings_rerun_their_stage_and_every_later_one() {
        let d = tempfile::tempdir().unwrap();
        let ck = Checkpoints::new(d.path()).unwrap();
        assert_eq!(run(&ck, [1, 2, 3]), (vec!["A", "B", "C"], vec![]));
        assert_eq!(run(&ck, [1, 2, 3]), (vec![], vec!["A".into(), "B".into(), "C".into()]));
        assert_eq!(run(&ck, [1, 5, 3]), (vec!["B", "C"], vec!["A".into()]));
        assert_eq!(run(&ck, [1, 5, 4]), (vec!["C"], vec!["A".into(), "B".into()]));
        assert_eq!(run(&ck, [2, 5, 4]), (vec!["A", "B", "C"], vec![]));
    }

    #[test]
    fn an_extended_chain_reruns_what_follows() {
        let d = tempfile::tempdir().unwrap();
        let ck = Checkpoints::new(d.path()).unwrap();
        let go = |extra: u32| {
            let mut chain = Chain::new(Some(&ck), &ORDER, Fingerprint([1; 32]));
            let mut ran = 0;
            chain.stage(&ORDER[0], &0, || Ok(0u32)).unwrap();
            chain.extend(&extra).unwrap();
            chain.stage(&ORDER[2], &0, || { ran += 1; Ok(0u32) }).unwrap();
            (ran, chain.resumed)
        };
        assert_eq!(go(1), (1, vec![]));
        assert_eq!(go(1), (0, vec!["A".into(), "C".into()]));
        assert_eq!(go(2), (1, vec!["A".into()]));
    }

    #[test]
    fn mismatched_or_incomplete_checkpoints_are_recomputed_and_damaged_ones_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let ck = Checkpoints::new(d.path()).unwrap();
        run(&ck, [1, 2, 3]);
        // A record of other inputs under a stage's name: recomputed.
        ck.save("a", Fingerprint([9; 32]), &7u32).unwrap();
        assert_eq!(run(&ck, [1, 2, 3]).0, ["A", "B", "C"]);
        // Networks missing beside a matching record: recomputed.
        std::fs::remove_file(ck.path("b.safetensors")).unwrap();
        assert_eq!(run(&ck, [1, 2, 3]), (vec!["B", "C"], vec!["A".into()]));
        // A record that cannot be read is never silently replaced.
        std::fs::write(ck.path("c.json"), "{").unwrap();
        let mut chain = Chain::new(Some(&ck), &ORDER, Fingerprint([1; 32]));
        chain.stage(&ORDER[0], &1, || Ok(10u32)).unwrap();
        chain.stage_with_networks(&ORDER[1], &2, |_| Ok((12u32, ())), |_| Ok(())).unwrap();
        let e = chain.stage(&ORDER[2], &3, || Ok(15u32)).unwrap_err();
        assert!(e.to_string().contains("c.json"), "{e}");
    }

    #[test]
    fn without_checkpoints_every_stage_runs() {
        let mut chain = Chain::new(None, &ORDER, Fingerprint([1; 32]));
        let (v, ()) = chain.stage_with_networks(&ORDER[1], &0, |p| { assert!(p.is_none()); Ok((1u32, ())) }, |_| unreachable!()).unwrap();
        assert_eq!((v, chain.resumed.len()), (1, 0));
    }
}

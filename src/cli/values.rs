//! How the command line spells the library's setting enums: their
//! `clap::ValueEnum` impls live here, so that `model` and `pipeline` do not
//! depend on the command-line crate. A value's name is its serde spelling
//! (the one settings files and report.json use; a test checks that they
//! agree), its help the first paragraph of the variant's doc, as clap's
//! derive wrote it (`--help` lists them under "Possible values").

use clap::builder::PossibleValue;
use clap::ValueEnum;

use crate::model::kin::KinSimilarity;
use crate::model::novelty::Correction as NoveltyCorrection;
use crate::model::scorer::Kernel;
use crate::pipeline::run::Correction as RunCorrection;
use crate::pipeline::ScoreMethod;

/// `impl ValueEnum for $ty`: each variant with its command-line name and
/// help, in the order `--help` lists them.
macro_rules! value_enum {
    ($ty:ident { $($variant:ident => $name:literal: $help:literal,)+ }) => {
        impl ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($ty::$variant),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $($ty::$variant => PossibleValue::new($name).help($help)),+
                })
            }
        }
    };
}

value_enum!(ScoreMethod {
    Novelty => "novelty": "Novelty in a joint PCA of reference and target, corrected by Harmony \
        and the MNN refinement: distance to the nearest reference cells, scarcity of reference \
        cells nearby and the target/reference density ratio; conformal p-values against the \
        reference; calls at `fdr` (default; needs no GAN)",
    Paper => "paper": "The paper's Module I: GAN deviations scored by the γ_c MMD scorer \
        (p > 0.5 calls)",
});

value_enum!(NoveltyCorrection {
    Harmony => "harmony": "Harmony, refitted on likely-normal cells, then the local MNN \
        refinement (`[novelty.mnn] enabled = false` skips it) (default)",
    Mnn => "mnn": "The MNN refinement alone, on the joint PCA (an ablation)",
    None => "none": "No correction: the joint PCA as it is",
});

value_enum!(Kernel {
    Linear => "linear": "k(δi, δj) = δi·δj: exact O(N·G) form (the authors' choice)",
    Rbf => "rbf": "Gaussian kernel, bandwidth by the median heuristic: tiled O(N²) form",
});

value_enum!(RunCorrection {
    Style => "style": "Module III as the paper has it: the style-transfer generator's output \
        `Dec(Enc(x) − Sᵀb)`. It is trained on normal kin pairs only, so it maps an anomaly onto \
        normal-looking expression: on our simulations the anomalies' subtypes are lost (README, \
        \"Accuracy\")",
    KinShift => "kin-shift": "The default: subtract each batch's kin shift, gene by gene the \
        mean `x_target − x_kin` over the batch's kin pairs where both are expressed, from the \
        expressed (non-zero) entries (clamped at 0). Removes the batch's average effect and \
        keeps every cell's own deviations, the anomalies' included; needs no training \
        (Module III's generator is not trained)",
});

value_enum!(KinSimilarity {
    Cosine => "cosine": "The default: cosine of the two embeddings (inner product of the \
        L2-normalised rows), so a reference cell of large norm does not become everyone's kin",
    InnerProduct => "inner-product": "The raw inner product (the paper's); favours reference \
        cells of large norm",
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value's command-line name is its serde spelling.
    fn names_are_serde<T: ValueEnum + serde::Serialize>() {
        for v in T::value_variants() {
            let name = v.to_possible_value().unwrap().get_name().to_owned();
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::Value::String(name));
        }
    }

    #[test]
    fn command_line_names_are_the_settings_names() {
        names_are_serde::<ScoreMethod>();
        names_are_serde::<NoveltyCorrection>();
        names_are_serde::<Kernel>();
        names_are_serde::<RunCorrection>();
        names_are_serde::<KinSimilarity>();
    }
}

//! The output layer, below both `pipeline` and `cli`: every file a
//! command leaves behind is written here.
//!
//! - [`set`]: all-or-nothing output sets (staging folder beside `--out`,
//!   committed by one rename) and [`lock`]: one writer per folder;
//! - [`atomic`]: single files by temporary sibling + rename, JSON;
//! - [`tsv`]: the per-cell tables (`scores.tsv`, `cells.tsv`, ...);
//! - [`figures`]: the PNG figures;
//! - temporaries are registered with [`crate::cleanup`] (removed on
//!   SIGINT/SIGTERM in the CLI and after a kill);
//! - [`disk`]: free space, and whether what a command will write fits.

pub mod atomic;
pub mod disk;
pub mod figures;
pub mod lock;
pub mod set;
pub mod tsv;

pub use atomic::{io_at, write_atomic, write_json};
pub use set::OutputSet;
pub use tsv::{write_deviations, write_scores, write_scores_with};

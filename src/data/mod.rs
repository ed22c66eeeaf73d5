//! Expression data in and out: in-memory matrices, the memory-mapped store,
//! AnnData `.h5ad` and 10x Matrix Market readers, format detection,
//! preprocessing as scanpy does it, and the simulator.

pub mod buffer;
pub mod matrix;
pub mod store;
pub mod h5ad;
pub mod tenx;
pub mod io;
pub mod preprocess;
pub mod simulate;
pub mod summary;
pub mod table;
#[doc(hidden)]
pub mod fuzz;

pub use matrix::{check_unique, CsrMatrix, Dataset, DenseMatrix, Matrix, ObsColumn, RowSink};

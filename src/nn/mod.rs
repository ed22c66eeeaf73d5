//! Layers with forward and backward side by side, written once against the
//! [`Backend`](crate::backend::Backend) trait.
//!
//! Conventions:
//! - Activations are row-major `[batch, features]` buffers; a layer's
//!   `forward(be, x, batch, train)` returns a reference to its own output
//!   buffer, `backward(be, dy)` returns a reference to its input gradient.
//!   Everything the backward needs (input copy, pre-activations, BN
//!   statistics, dropout keys) is cached inside the layer by the forward, so
//!   a layer must be run forward → backward before its next forward.
//! - Parameter gradients accumulate (`+=`), as in PyTorch; zero them with
//!   [`params::zero_grads`] before each step.
//! - Weights are stored `[out, in]` as PyTorch does, and every layer names its
//!   tensors as the equivalent PyTorch module would in a `state_dict`
//!   (`encoder.0.weight`, `encoder.1.running_mean`, …), so checkpoints
//!   ([`params::save`]) read naturally on either side.

pub mod act;
pub mod attention;
pub mod dense;
pub mod init;
pub mod loss;
pub mod mlp;
pub mod norm;
pub mod params;
pub mod resblock;
pub mod spectral;

pub use act::{Activation, Dropout};
pub use attention::{MultiheadAttention, TransformerEncoderLayer};
pub use dense::{Dense, DenseConfig};
pub use loss::L1Loss;
pub use norm::{BatchNorm1d, LayerNorm};
pub use params::{cosine_lr, Adam, Module, Param};
pub use resblock::ResBlock;

/// Join a module path the way PyTorch names state-dict entries.
pub fn join(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}.{name}"),
    }
}

//! L1 loss (`torch.nn.L1Loss`, mean reduction) with its gradient.

use crate::backend::{ensure, Backend};

/// Mean absolute error; keeps the gradient buffer between steps.
pub struct L1Loss<B: Backend> {
    grad: B::Buf,
}

impl<B: Backend> L1Loss<B> {
    pub fn new(be: &B) -> Self {
        L1Loss { grad: be.zeros(0) }
    }
    /// Returns `mean |pred − target|` and stores `weight · ∂/∂pred` (the loss
    /// weight, e.g. 30 in ACsleuth's generator loss, folded in).
    pub fn forward_backward(&mut self, be: &B, pred: &B::Buf, target: &B::Buf, weight: f32) -> f32 {
        ensure(be, &mut self.grad, be.len(pred));
        be.l1_loss(pred, target, weight, &mut self.grad)
    }
    /// Gradient of the last call, same shape as `pred`.
    pub fn grad(&self) -> &B::Buf {
        &self.grad
    }
}

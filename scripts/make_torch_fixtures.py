#!/usr/bin/env python3
"""Golden fixtures for tests/torch_golden.rs: per layer, the inputs,
parameters, outputs and gradients PyTorch computes, plus the losses of ten
Adam steps of a small MLP.

Run:  /work/pyenv/bin/python scripts/make_torch_fixtures.py
Writes fixtures/torch/<case>.safetensors (float32, little-endian; a tiny
writer below, so only torch is needed). Naming inside a file:
  in.<name>      inputs (x, dy, target, ...)
  <state-dict>   parameters and buffers BEFORE the step, with PyTorch's names
  out.<name>     outputs (y, running stats / u, v after, losses)
  grad.<name>    gradients (grad.x, grad.<state-dict name>)
Every layer is run with loss = sum(y * dy), so its gradient w.r.t. y is dy.
Dropout is off (p = 0) in every fixture: PyTorch's dropout masks come from
its own generator; the engine's masks are checked by the gradient tests.
"""
import json
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "torch")
torch.manual_seed(0)
torch.set_default_dtype(torch.float32)


def save(name, tensors):
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        t = tensors[k].detach().to(torch.float32).contiguous().cpu()
        b = t.numpy().astype("<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def layer_case(name, module, x, train=True, extra_fwd=None):
    """Record state before, forward with loss sum(y*dy), state after, grads."""
    module.train(train)
    # All state (num_batches_tracked, an int64 counter, is stored as f32).
    before = {k: v.clone() for k, v in module.state_dict().items()}
    x = x.clone().requires_grad_(True)
    y = module(x) if extra_fwd is None else extra_fwd(module, x)
    dy = torch.randn_like(y)
    (y * dy).sum().backward()
    t = {"in.x": x.detach(), "in.dy": dy, "out.y": y.detach(), "grad.x": x.grad}
    t.update(before)
    for k, v in module.state_dict().items():
        t["out." + k] = v
    for k, p in module.named_parameters():
        t["grad." + k] = p.grad
    save(name, t)
    return t


def randomize_bn(bn):
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)


# Linear
layer_case("linear", nn.Linear(5, 4), torch.randn(6, 5))

# BatchNorm1d, training (batch statistics, running stats updated) and eval.
for mode, train in (("train", True), ("eval", False)):
    bn = nn.BatchNorm1d(5)
    randomize_bn(bn)
    layer_case("bn_" + mode, bn, torch.randn(8, 5) * 2 + 1, train=train)

# LayerNorm
ln = nn.LayerNorm(7)
with torch.no_grad():
    ln.weight.uniform_(0.5, 1.5)
    ln.bias.uniform_(-0.5, 0.5)
layer_case("layernorm", ln, torch.randn(6, 7))

# LeakyReLU(0.2), ReLU, Sigmoid
layer_case("leaky_relu", nn.LeakyReLU(0.2), torch.randn(4, 6))
layer_case("sigmoid", nn.Sigmoid(), torch.randn(4, 6))

# Spectral-norm Linear: one power iteration in training (u, v updated), then
# an eval forward with the updated vectors.
sn = nn.utils.spectral_norm(nn.Linear(6, 5))
t = layer_case("sn_linear", sn, torch.randn(7, 6))
sn.eval()
with torch.no_grad():
    xe = torch.randn(3, 6)
    t2 = dict(t)
    t2["in.x_eval"] = xe
    t2["out.y_eval"] = sn(xe)
save("sn_linear", t2)


# ResBlock (generator variant), dropout 0.
class ResBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.LeakyReLU(0.2), nn.Dropout(0.0), nn.Linear(d, d))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x):
        return self.act(x + self.fc(x))


rb = ResBlock(6)
randomize_bn(rb.fc[1])
layer_case("resblock", rb, torch.randn(8, 6))


# Spectral-norm ResBlock (critic variant, no BN), dropout 0.
class SnResBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        sn_ = nn.utils.spectral_norm
        self.fc = nn.Sequential(sn_(nn.Linear(d, d)), nn.LeakyReLU(0.2), nn.Dropout(0.0), sn_(nn.Linear(d, d)))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x):
        return self.act(x + self.fc(x))


layer_case("sn_resblock", SnResBlock(6), torch.randn(8, 6))

# Multi-head attention, 4 heads, batch-first, 2 tokens; self-attention.
mha = nn.MultiheadAttention(16, 4, dropout=0.0, batch_first=True)
with torch.no_grad():
    mha.in_proj_bias.uniform_(-0.3, 0.3)
    mha.out_proj.bias.uniform_(-0.3, 0.3)
layer_case("mha", mha, torch.randn(3, 2, 16), extra_fwd=lambda m, x: m(x, x, x, need_weights=False)[0])

# Post-LN transformer encoder layer (ReLU FFN), dropout 0.
enc = nn.TransformerEncoderLayer(16, 4, dim_feedforward=24, dropout=0.0, batch_first=True)
# The fast path (eval-only) is not used in training; keep the math path.
layer_case("encoder_layer", enc, torch.randn(3, 2, 16))

# L1 loss (mean) with weight 30, as the generator loss uses it.
pred = torch.randn(5, 7, requires_grad=True)
target = torch.randn(5, 7)
loss = 30 * F.l1_loss(pred, target)
loss.backward()
save("l1", {"in.pred": pred.detach(), "in.target": target, "out.loss": loss.detach().reshape(1), "grad.pred": pred.grad})

# Ten Adam steps (coupled weight decay) with cosine annealing of a small MLP.
mlp = nn.Sequential(nn.Linear(10, 8), nn.BatchNorm1d(8), nn.LeakyReLU(0.2), nn.Linear(8, 3))
init = {k: v.clone() for k, v in mlp.state_dict().items()}
x = torch.randn(16, 10)
target = torch.randn(16, 3)
opt = torch.optim.Adam(mlp.parameters(), lr=1e-2, betas=(0.5, 0.999), weight_decay=1e-3)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
losses = []
mlp.train()
for _ in range(10):
    opt.zero_grad()
    loss = F.l1_loss(mlp(x), target)
    loss.backward()
    opt.step()
    sched.step()
    losses.append(loss.item())
t = {"in.x": x, "in.target": target, "out.losses": torch.tensor(losses)}
t.update(init)
for k, v in mlp.state_dict().items():
    t["out." + k] = v
save("mlp_adam", t)
print("wrote fixtures to", os.path.normpath(OUT))

"""PyTorch reference for the critic and its WGAN-GP (tests/critic.rs).

Builds Module I's critic exactly as a PyTorch user would (nn.Sequential of
torch.nn.utils.spectral_norm Linears, LeakyReLU(0.2), Dropout, and the
spectral-norm ResBlock), with dropout 0 so the comparison is deterministic,
and writes fixtures/critic/reference.json:

- cfg, batch, the inputs x_real, x_fake and the interpolation weights eta;
- state: every state-dict tensor (weight_orig, bias, weight_u, weight_v)
  before anything runs (Rust loads these);
- gp_only: one GP evaluation from that state (one training forward of D on
  x_tilde, so one power iteration): GP, dGP/dparam for every parameter
  (torch.autograd.grad with create_graph=True for the inner gradient),
  and u, v afterwards;
- full: from the same state, the critic loss of one training step in the
  order D(x_real), D(x_fake), GP (three forwards, three power iterations):
  L_D = -mean D(x_real) + mean D(x_fake) + 10 GP; D(x_real), D(x_fake), GP,
  dL_D/dparam and u, v afterwards.

Computed in float64 from float32-representable inputs, so the reference is
exact to float32 and the tolerance in Rust measures the Rust side only.

Run: /work/pyenv/bin/python scripts/make_critic_fixture.py
"""

import json
import os
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn.utils import spectral_norm

warnings.filterwarnings("ignore")

IN_DIM, HIDDEN, OUT_DIM, SLOPE, DROPOUT = 100, 32, 16, 0.2, 0.0
BATCH, LAMBDA = 8, 10.0
SEED = 7


class ResBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc = nn.Sequential(
            spectral_norm(nn.Linear(d, d)),
            nn.LeakyReLU(SLOPE),
            nn.Dropout(DROPOUT),
            spectral_norm(nn.Linear(d, d)),
        )
        self.act = nn.LeakyReLU(SLOPE)

    def forward(self, x):
        return self.act(x + self.fc(x))


def critic():
    return nn.Sequential(
        spectral_norm(nn.Linear(IN_DIM, HIDDEN)),
        nn.LeakyReLU(SLOPE),
        nn.Dropout(DROPOUT),
        spectral_norm(nn.Linear(HIDDEN, OUT_DIM)),
        nn.LeakyReLU(SLOPE),
        nn.Dropout(DROPOUT),
        ResBlock(OUT_DIM),
    )


def f32(t):
    """Round to float32 values, keep float64 storage."""
    return t.float().double()


def gradient_penalty(d, x_real, x_fake, eta):
    xt = (eta[:, None] * x_real + (1 - eta[:, None]) * x_fake).requires_grad_(True)
    out = d(xt)
    (g,) = torch.autograd.grad(out, xt, grad_outputs=torch.ones_like(out), create_graph=True)
    return ((g.norm(2, dim=1) - 1) ** 2).mean()


def params(d):
    return [(n, p) for n, p in d.named_parameters()]


def grads_of(loss, d):
    ps = params(d)
    gs = torch.autograd.grad(loss, [p for _, p in ps], allow_unused=True)
    return {n: (torch.zeros_like(p) if g is None else g).flatten().tolist() for (n, p), g in zip(ps, gs)}


def state_of(d):
    return {k: v.flatten().tolist() for k, v in d.state_dict().items()}


def uv_of(d):
    return {k: v.flatten().tolist() for k, v in d.state_dict().items() if k.endswith("_u") or k.endswith("_v")}


def main():
    torch.manual_seed(SEED)
    d = critic().double()
    with torch.no_grad():
        for m in d.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight_orig)
        # float32-representable state (u, v renormalised in float64).
        for k, v in d.state_dict().items():
            v.copy_(f32(v))
            if k.endswith("_u") or k.endswith("_v"):
                v.copy_(f32(v / v.norm()))
    state0 = {k: v.clone() for k, v in d.state_dict().items()}
    d.train()

    x_real = f32(torch.relu(torch.randn(BATCH, IN_DIM, dtype=torch.float64) + 0.5))
    x_fake = f32(torch.relu(torch.randn(BATCH, IN_DIM, dtype=torch.float64) + 0.3))
    eta = f32(torch.rand(BATCH, dtype=torch.float64))

    gp = gradient_penalty(d, x_real, x_fake, eta)
    gp_only = {"gp": gp.item(), "grads": grads_of(gp, d), "uv_after": uv_of(d)}

    d.load_state_dict(state0)
    d_real = d(x_real)
    d_fake = d(x_fake)
    gp2 = gradient_penalty(d, x_real, x_fake, eta)
    loss = -d_real.mean() + d_fake.mean() + LAMBDA * gp2
    full = {
        "d_real": d_real.flatten().tolist(),
        "d_fake": d_fake.flatten().tolist(),
        "gp": gp2.item(),
        "lambda": LAMBDA,
        "grads": grads_of(loss, d),
        "uv_after": uv_of(d),
    }

    out = {
        "torch_version": torch.__version__,
        "cfg": {"in_dim": IN_DIM, "hidden": HIDDEN, "out_dim": OUT_DIM, "slope": SLOPE, "dropout": DROPOUT},
        "batch": BATCH,
        "x_real": x_real.flatten().tolist(),
        "x_fake": x_fake.flatten().tolist(),
        "eta": eta.tolist(),
        "state": {k: v.flatten().tolist() for k, v in state0.items()},
        "gp_only": gp_only,
        "full": full,
    }
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "fixtures", "critic", "reference.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}: GP {gp.item():.6f}, full GP {gp2.item():.6f}, loss {loss.item():.6f}")


if __name__ == "__main__":
    main()

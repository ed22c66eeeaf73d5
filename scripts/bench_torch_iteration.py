#!/usr/bin/env python3
"""The PyTorch twin of one Module I training iteration, for the speed target of
issue #4: the authors' loop structure (Catchxu/ACSleuth `AnomalyModel._train`:
n_critic critic updates, each with a fresh `G(x)` in training mode and the
WGAN-GP penalty through `torch.autograd.grad(create_graph=True)`, then one
generator update and the memory-queue update) with the layer sizes of
DESIGN.md §1 (BN generator 3000→512→256 + 2 ResBlocks each side, memory
block 512×256 with τ = 0.05 and λ = 0.01, SN critic 3000→256→16 + ResBlock(16)).

Run on the same machine right after the Rust side:
    cargo test --release --test detect iteration_time -- --ignored --nocapture
    /work/pyenv/bin/python scripts/bench_torch_iteration.py 20
Prints the median and best seconds per iteration for the prepare phase
(memory block bypassed) and the train phase (with it), 2 threads.
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

torch.set_num_threads(2)
torch.manual_seed(0)
B, G, P, SLOPE = 128, 3000, 0.1, 0.2


def block(i, o):
    return [nn.Linear(i, o), nn.BatchNorm1d(o), nn.LeakyReLU(SLOPE), nn.Dropout(P)]


class ResBlock(nn.Module):
    def __init__(self, d, sn=False):
        super().__init__()
        lin = (lambda i, o: spectral_norm(nn.Linear(i, o))) if sn else nn.Linear
        if sn:
            self.fc = nn.Sequential(lin(d, d), nn.LeakyReLU(SLOPE), nn.Dropout(P), lin(d, d))
        else:
            self.fc = nn.Sequential(*block(d, d), nn.Linear(d, d))
        self.act = nn.LeakyReLU(SLOPE)

    def forward(self, x):
        return self.act(x + self.fc(x))


class Memory(nn.Module):
    def __init__(self, n=512, d=256, lam=0.01, tau=0.05):
        super().__init__()
        self.register_buffer("mem", (torch.rand(n, d) * 2 - 1) / d**0.5)
        self.lam, self.tau, self.ptr = lam, tau, 0

    def forward(self, z):
        w = F.softmax(z @ self.mem.t() / self.tau, dim=1)
        w = F.relu(w - self.lam) * w / (torch.abs(w - self.lam) + 1e-12)
        w = F.normalize(w, p=1, dim=1)
        return w @ self.mem

    def update(self, z):
        n = z.shape[0]
        self.mem[self.ptr : self.ptr + n] = z.detach()
        self.ptr = (self.ptr + n) % self.mem.shape[0]


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(*block(G, 512), *block(512, 256), ResBlock(256), ResBlock(256))
        self.dec = nn.Sequential(ResBlock(256), ResBlock(256), *block(256, 512), nn.Linear(512, G), nn.ReLU())
        self.memory = Memory()
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)

    def forward(self, x, use_memory):
        z = self.enc(x)
        return self.dec(self.memory(z) if use_memory else z), z


def critic():
    d = nn.Sequential(
        spectral_norm(nn.Linear(G, 256)), nn.LeakyReLU(SLOPE), nn.Dropout(P),
        spectral_norm(nn.Linear(256, 16)), nn.LeakyReLU(SLOPE), nn.Dropout(P),
        ResBlock(16, sn=True),
    )
    for m in d.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight_orig if hasattr(m, "weight_orig") else m.weight)
    return d


def gradient_penalty(d, real, fake):
    eta = torch.rand(real.shape[0], 1)
    xt = (eta * real + (1 - eta) * fake).requires_grad_(True)
    out = d(xt)
    (g,) = torch.autograd.grad(out, xt, grad_outputs=torch.ones_like(out), create_graph=True)
    return ((g.norm(2, dim=1) - 1) ** 2).mean()


gen, dis = Generator(), critic()
opt_g = torch.optim.Adam(gen.parameters(), lr=1e-4, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(dis.parameters(), lr=1e-4, betas=(0.5, 0.999))
gen.train()
dis.train()

# The input of tests/detect.rs::iteration_time: 90 % zeros, others U(1, 3).
u = torch.rand(B, G)
x = torch.where(u < 0.9, torch.zeros_like(u), 1 + 2 * torch.rand(B, G))


def iteration(use_memory):
    for _ in range(2):  # n_critic
        fake, _ = gen(x, use_memory)
        d_loss = -dis(x).mean() + dis(fake.detach()).mean() + 10 * gradient_penalty(dis, x, fake.detach())
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
    fake, z = gen(x, use_memory)
    g_loss = 30 * (x - fake).abs().mean() - dis(fake).mean()
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    if use_memory:
        gen.memory.update(z)


steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
for phase, mem in (("prepare", False), ("memory", True)):
    for _ in range(3):
        iteration(mem)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        iteration(mem)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"torch {torch.__version__} {phase} phase: median {times[len(times) // 2]:.3f} s, "
          f"best {times[0]:.3f} s per iteration over {steps} ({torch.get_num_threads()} threads)")

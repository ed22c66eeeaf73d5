#!/usr/bin/env python3
"""The PyTorch twin of benches/train_step.rs: one generator training step of
ACsleuth's Module I without the memory block (forward + 30·L1 + backward +
Adam), batch 128, 3000 genes, torch.set_num_threads(2).

Run right after the Rust benchmark, on the same machine:
    STEP_TIMES=30 cargo bench --bench train_step
    /work/pyenv/bin/python scripts/bench_torch_step.py 30
Prints the median and the best step time in ms.
"""
import sys
import time

import torch
import torch.nn as nn

torch.set_num_threads(2)
torch.manual_seed(0)
B, G, P = 128, 3000, 0.1


def block(i, o):
    return [nn.Linear(i, o), nn.BatchNorm1d(o), nn.LeakyReLU(0.2), nn.Dropout(P)]


class ResBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc = nn.Sequential(*block(d, d), nn.Linear(d, d))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x):
        return self.act(x + self.fc(x))


encoder = nn.Sequential(*block(G, 512), *block(512, 256), ResBlock(256), ResBlock(256))
decoder = nn.Sequential(ResBlock(256), ResBlock(256), *block(256, 512), nn.Linear(512, G), nn.ReLU())
for m in list(encoder.modules()) + list(decoder.modules()):
    if isinstance(m, nn.Linear):
        nn.init.xavier_normal_(m.weight)
params = list(encoder.parameters()) + list(decoder.parameters())
opt = torch.optim.Adam(params, lr=1e-4, betas=(0.5, 0.999))

# Synthetic log-normalized expression with ~80 % zeros, as the Rust bench.
u = torch.rand(B, G)
x = torch.where(u < 0.8, torch.zeros_like(u), torch.log1p(20 * (u - 0.8)))

encoder.train()
decoder.train()
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
times = []
for i in range(steps + 3):
    t0 = time.perf_counter()
    opt.zero_grad()
    xh = decoder(encoder(x))
    loss = 30 * (x - xh).abs().mean()
    loss.backward()
    opt.step()
    if i >= 3:
        times.append((time.perf_counter() - t0) * 1e3)
times.sort()
print(f"torch {torch.__version__} train step (batch {B}, genes {G}, 2 threads): "
      f"median {times[len(times) // 2]:.1f} ms, best {times[0]:.1f} ms over {steps} steps (last loss {loss.item():.4f})")

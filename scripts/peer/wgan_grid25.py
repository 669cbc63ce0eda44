#!/usr/bin/env python3
"""PyTorch peer of experiments/grid25-wgan.yaml: WGAN-GP on the 5×5 grid of Gaussians (modes at {−4,…,4}²,
std 0.05), the same MLP critic (leaky ReLU 0.2) and generator (ReLU), 2-d noise, 5 critic steps per generator
step, gradient penalty 10 on random interpolates, Adam with β = (0.5, 0.9), batch 256. Prints modes covered
(≥ 20 of 2,500 samples within 3 std of the mode) and the high-quality fraction every --every steps — the
VEEGAN protocol vaelab's mode_coverage metric uses — to tell whether a setting fails in the method or in
vaelab. Usage (the second line is experiments/grid25-wgan.yaml: Gulrajani et al.'s toy setting):
  .venv-peer/bin/python scripts/peer/wgan_grid25.py --hidden 128 --lr 3e-4 --steps 3000
  .venv-peer/bin/python scripts/peer/wgan_grid25.py --hidden 256 --lr 1e-4 --scale 2.828 --gp 0.1 --steps 20000 --every 1000
"""
import argparse, time
import torch
import torch.nn as nn


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gp", type=float, default=10.0, help="gradient-penalty weight λ")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="divide the data by this (Gulrajani et al. use 2.828); the std scales with it")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    h = a.hidden
    centers = torch.tensor([[-4.0 + 2 * (k // 5), -4.0 + 2 * (k % 5)] for k in range(25)]) / a.scale
    std = 0.05 / a.scale
    data = lambda n: centers[torch.randint(0, 25, (n,))] + std * torch.randn(n, 2)
    g = nn.Sequential(nn.Linear(2, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 2))
    d = nn.Sequential(nn.Linear(2, h), nn.LeakyReLU(0.2), nn.Linear(h, h), nn.LeakyReLU(0.2), nn.Linear(h, h), nn.LeakyReLU(0.2), nn.Linear(h, 1))
    og = torch.optim.Adam(g.parameters(), lr=a.lr, betas=(0.5, 0.9))
    od = torch.optim.Adam(d.parameters(), lr=a.lr, betas=(0.5, 0.9))

    def coverage():
        with torch.no_grad():
            nearest = torch.cdist(g(torch.randn(2500, 2)), centers).min(1)
            hq = nearest.values < 3 * std
            counts = torch.bincount(nearest.indices[hq], minlength=25)
            return int((counts >= 20).sum()), float(hq.float().mean())

    t0 = time.time()
    for step in range(1, a.steps + 1):
        for _ in range(5):
            x, fake = data(256), g(torch.randn(256, 2)).detach()
            eps = torch.rand(256, 1)
            mix = (eps * x + (1 - eps) * fake).requires_grad_(True)
            grad = torch.autograd.grad(d(mix).sum(), mix, create_graph=True)[0]
            loss = d(fake).mean() - d(x).mean() + a.gp * ((grad.norm(dim=1) - 1) ** 2).mean()
            od.zero_grad()
            loss.backward()
            od.step()
        gl = -d(g(torch.randn(256, 2))).mean()
        og.zero_grad()
        gl.backward()
        og.step()
        if step % a.every == 0:
            modes, hq = coverage()
            print(f"step {step}: modes {modes}/25, high-quality {hq:.3f}, {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()

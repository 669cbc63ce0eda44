#!/usr/bin/env python3
"""The PyTorch side of `vaelab bench` (issue #8): the same reference models, data, batch, optimizer and thread
count, timed the same way — a fixed number of optimizer steps after a warm-up, each step = draw a batch of MNIST
digits, binarize it afresh, forward, backward, Adam, read the loss. Prints one JSON line like `vaelab bench`.

  mlp   VAE 784-400-20, decoder the mirror image (ReLU hidden layers)
  conv  conv 1→32 k4 s2 p1, conv 32→64 k4 s2 p1, linear 3136→2×16; decoder the mirror image (vae_mnist.ConvVae)

Usage: python scripts/peer/bench.py --model conv --batch 128 --steps 50 --threads 2 [--device cuda]

On a GPU (`--device cuda`), as in `vaelab bench --device cuda`, each batch is drawn and binarized on the host
and copied to the device; the model, its optimizer state and the noise live on the device.
"""
import argparse, json, os, resource, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vae_mnist import ConvVae, candle_init, load  # noqa: E402


class MlpVae(nn.Module):
    def __init__(self, hidden=400, latent=20):
        super().__init__()
        self.latent = latent
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 784))
        self.apply(candle_init)

    def terms(self, x):
        h = self.enc(x)
        mu, logvar = h[:, : self.latent], h[:, self.latent:]
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.dec(z).view_as(x)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
        return recon, kl


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["mlp", "conv"], default="mlp")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--data", default=os.path.join(os.environ.get("VAELAB_DATA", "data"), "mnist"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    train, _ = load(args.data)
    dev = torch.device(args.device)
    model = (MlpVae() if args.model == "mlp" else ConvVae(latent=16)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    times = []
    t_start = None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            t_start = time.time()  # wall clock, comparable across processes (scripts/stack-bench.sh)
        t = time.perf_counter()
        idx = torch.randint(0, len(train), (args.batch,), generator=gen)
        x = torch.bernoulli(train[idx], generator=gen).to(dev)
        recon, kl = model.terms(x)
        loss = (recon + kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        if step >= args.warmup:
            times.append(time.perf_counter() - t)
    s = np.sort(np.array(times))
    pct = lambda p: float(s[int(round((len(s) - 1) * p))] * 1e3)
    print(json.dumps({
        "impl_": f"pytorch {torch.__version__}", "model": f"{args.model}_vae", "batch": args.batch,
        "device": args.device, "threads": torch.get_num_threads(), "steps": args.steps,
        "images_per_sec": args.steps * args.batch / float(np.sum(times)),
        "step_ms_p50": pct(0.5), "step_ms_p90": pct(0.9), "step_ms_p99": pct(0.99),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "t_start": t_start, "t_end": time.time(),
        **({"peak_gpu_mib": torch.cuda.max_memory_allocated(dev) / 2**20} if dev.type == "cuda" else {}),
    }), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The PyTorch peer of vaelab's conv VAE on dynamically binarized MNIST (experiments/mnist-vae-50.yaml).

Same architecture, init scheme, optimizer, batch, epochs and binarization as vaelab:
  encoder  conv 1→32 k4 s2 p1, ReLU, conv 32→64 k4 s2 p1, ReLU, linear 3136 → 2·latent (μ, log σ²)
  decoder  linear latent → 3136, ReLU, deconv 64→32 k4 s2 p1, ReLU, deconv 32→1 k4 s2 p1 → Bernoulli logits
  init     as candle-nn: Linear/Conv2d weights Kaiming-normal (fan-in, ReLU gain), Linear biases
           U(±1/√in), Conv2d biases U(±1/√in_channels); ConvTranspose2d weights and biases U(±1/√(out·k²))
  loss     mean over the batch of BCE-with-logits (summed over pixels) + analytic KL: the negative ELBO
  Adam     lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay; batch 128, last partial batch dropped
  data     fresh Bernoulli binarization of every training batch; the test split re-binarized at each eval

Prints one JSON line per evaluation and a final JSON summary. Usage:
  .venv-peer/bin/python scripts/peer/vae_mnist.py --data ../shared/data/mnist --epochs 50 --threads 2
"""
import argparse, gzip, json, math, os, struct, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(dir_):
    def find(stem):
        for name in (stem + ".gz", stem):
            p = os.path.join(dir_, name)
            if os.path.exists(p):
                return p
        raise FileNotFoundError(os.path.join(dir_, stem))
    tr = read_idx(find("train-images-idx3-ubyte")).astype(np.float32) / 255.0
    te = read_idx(find("t10k-images-idx3-ubyte")).astype(np.float32) / 255.0
    return torch.from_numpy(tr).unsqueeze(1), torch.from_numpy(te).unsqueeze(1)


def candle_init(m):
    if isinstance(m, nn.ConvTranspose2d):
        b = 1.0 / math.sqrt(m.out_channels * m.kernel_size[0] * m.kernel_size[1])
        nn.init.uniform_(m.weight, -b, b)
        nn.init.uniform_(m.bias, -b, b)
    elif isinstance(m, nn.Conv2d):
        fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
        b = 1.0 / math.sqrt(m.in_channels)
        nn.init.uniform_(m.bias, -b, b)
    elif isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.in_features))
        b = 1.0 / math.sqrt(m.in_features)
        nn.init.uniform_(m.bias, -b, b)


class ConvVae(nn.Module):
    def __init__(self, latent=32):
        super().__init__()
        self.latent = latent
        self.enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Flatten())
        self.enc_out = nn.Linear(64 * 7 * 7, 2 * latent)
        self.dec_fc = nn.Linear(latent, 64 * 7 * 7)
        self.dec = nn.Sequential(nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1))
        self.apply(candle_init)

    def posterior(self, x):
        h = self.enc_out(self.enc(x))
        return h[:, : self.latent], h[:, self.latent:]

    def decode(self, z):
        return self.dec(F.relu(self.dec_fc(z)).view(-1, 64, 7, 7))

    def terms(self, x):
        """Per-example reconstruction NLL and KL."""
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.decode(z)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
        return recon, kl


@torch.no_grad()
def evaluate(model, test, gen, batch=500):
    s = np.zeros(3)
    for i in range(0, len(test), batch):
        x = torch.bernoulli(test[i:i + batch], generator=gen)
        r, k = model.terms(x)
        s += [(r + k).sum().item(), r.sum().item(), k.sum().item()]
    return dict(zip(["neg_elbo", "recon", "kl"], (s / len(test)).tolist()))


@torch.no_grad()
def iwae_nll(model, test, gen, k, n, chunk=250):
    """Importance-weighted estimate of −log p(x) (Burda et al.) with k samples of q(z|x), over the first n
    test images binarized once. Returns the mean and its standard error, in nats."""
    x_all = torch.bernoulli(test[:n], generator=gen)
    out = []
    for x in x_all:
        x = x.unsqueeze(0)
        mu, logvar = model.posterior(x)
        logw = []
        for c in range(0, k, chunk):
            m = min(chunk, k - c)
            eps = torch.randn(m, mu.shape[1], generator=gen)
            z = mu + eps * torch.exp(0.5 * logvar)
            log_px = -F.binary_cross_entropy_with_logits(model.decode(z), x.expand(m, -1, -1, -1),
                                                         reduction="none").flatten(1).sum(1)
            log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1)
            log_qz = -0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi)).sum(1)
            logw.append(log_px + log_pz - log_qz)
        out.append(-(torch.logsumexp(torch.cat(logw), 0) - math.log(k)).item())
    a = np.array(out)
    return {"iwae_nll": float(a.mean()), "iwae_nll_se": float(a.std(ddof=1) / math.sqrt(len(a))), "k": k, "n": n}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(os.environ.get("VAELAB_DATA", "data"), "mnist"))
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every-epochs", type=int, default=5)
    ap.add_argument("--iwae-k", type=int, default=0, help="importance samples for the final IWAE NLL (0: skip)")
    ap.add_argument("--iwae-n", type=int, default=1000, help="test images the IWAE NLL averages over")
    ap.add_argument("--lr-decay", choices=["none", "cosine"], default="none",
                    help="cosine: lr 1e-3·½(1 + cos(π·s/S)) at step s of S, as vaelab's train.lr_decay: cosine")
    ap.add_argument("--save", help="write the trained model's state_dict here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    train, test = load(args.data)
    model = ConvVae(args.latent)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    n = len(train)
    steps_per_epoch = n // args.batch
    total_steps = args.epochs * steps_per_epoch
    started, train_time = time.time(), 0.0
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        model.train()
        perm = torch.randperm(n, generator=gen)
        for s in range(steps_per_epoch):
            x = torch.bernoulli(train[perm[s * args.batch:(s + 1) * args.batch]], generator=gen)
            if args.lr_decay == "cosine":
                done = ((epoch - 1) * steps_per_epoch + s) / total_steps
                for g in opt.param_groups:
                    g["lr"] = 1e-3 * 0.5 * (1.0 + math.cos(math.pi * done))
            recon, kl = model.terms(x)
            loss = (recon + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        train_time += time.time() - t0
        if epoch % args.eval_every_epochs == 0 or epoch == args.epochs:
            m = evaluate(model, test, gen)
            print(json.dumps({"epoch": epoch, "step": epoch * steps_per_epoch, **m,
                              "images_per_sec": epoch * steps_per_epoch * args.batch / train_time}), flush=True)
    if args.save:
        torch.save(model.state_dict(), args.save)
    final = {"final": evaluate(model, test, gen)}
    if args.iwae_k:
        t0 = time.time()
        final["iwae"] = {**iwae_nll(model, test, gen, args.iwae_k, args.iwae_n), "seconds": time.time() - t0}
    print(json.dumps({**final, "epochs": args.epochs, "wall_s": time.time() - started,
                      "images_per_sec": args.epochs * steps_per_epoch * args.batch / max(train_time, 1e-9),
                      "torch": torch.__version__, "threads": args.threads}), flush=True)


if __name__ == "__main__":
    main()

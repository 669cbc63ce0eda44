"""PyTorch peer of vaelab's conv GAN (issue #3: the `gan` trial of experiments/zoo-fashion.yaml), to tell an
implementation problem from a property of the model when the samples look wrong.

Same model as vaelab's `gan` with `backbone: conv, channels: [32, 64], latent_dim: 32`:
  G: z (32) -> Linear 32→64·7·7, ReLU -> ConvT 64→32 k4 s2 p1, ReLU -> ConvT 32→1 k4 s2 p1 -> sigmoid
  D: Conv 1→32 k4 s2 p1, LeakyReLU 0.2 -> Conv 32→64 k4 s2 p1, LeakyReLU 0.2 -> Linear 3136→1 (a logit)
non-saturating loss (D: softplus(-D(x)) + softplus(D(G(z))); G: softplus(-D(G(z)))), one D step per G step,
Adam 2e-4 β (0.5, 0.999) for each, batch 128, grey-level Fashion-MNIST in [0, 1], candle-nn's init scheme.
Writes the final samples (64, 28×28, in [0, 1]) as .npy; `--png` also writes an 8×8 grid if Pillow is present.

  .venv-peer/bin/python scripts/peer/gan_fashion.py --data ../shared/data/fashion-mnist --steps 2000 --out runs/peer-gan

The switches (--bn-g, --bn-d, --init dcgan, --tanh, --channels) tried the parts of DCGAN's recipe one by one;
`--bn-g --bn-d --init dcgan` is the peer of the spec's `gan` trial with `model.batch_norm: true, model.init: dcgan`.
"""
import argparse, json, os, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from vae_mnist import candle_init, load  # noqa: E402


class Generator(nn.Module):
    def __init__(self, latent=32, ch=(32, 64), bn=False):
        super().__init__()
        self.ch = ch
        self.fc = nn.Linear(latent, ch[1] * 7 * 7)
        self.up1 = nn.ConvTranspose2d(ch[1], ch[0], 4, 2, 1)
        self.up2 = nn.ConvTranspose2d(ch[0], 1, 4, 2, 1)
        self.n0 = nn.BatchNorm2d(ch[1]) if bn else nn.Identity()
        self.n1 = nn.BatchNorm2d(ch[0]) if bn else nn.Identity()

    def forward(self, z):  # pre-activation output
        h = F.relu(self.n0(self.fc(z).view(-1, self.ch[1], 7, 7)))
        return self.up2(F.relu(self.n1(self.up1(h))))


class Discriminator(nn.Module):
    def __init__(self, ch=(32, 64), bn=False):
        super().__init__()
        self.c1 = nn.Conv2d(1, ch[0], 4, 2, 1)
        self.c2 = nn.Conv2d(ch[0], ch[1], 4, 2, 1)
        self.n2 = nn.BatchNorm2d(ch[1]) if bn else nn.Identity()
        self.out = nn.Linear(ch[1] * 7 * 7, 1)

    def forward(self, x):
        h = F.leaky_relu(self.c1(x), 0.2)
        h = F.leaky_relu(self.n2(self.c2(h)), 0.2)
        return self.out(h.flatten(1)).squeeze(1)


def dcgan_init(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(os.environ.get("VAELAB_DATA", "data"), "fashion-mnist"))
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/peer-gan")
    ap.add_argument("--png", action="store_true")
    # Variants (issue #3's search for a recipe whose samples look like clothing); the defaults are vaelab's gan.
    ap.add_argument("--channels", default="32,64")
    ap.add_argument("--bn-g", action="store_true", help="batch norm in the generator (DCGAN)")
    ap.add_argument("--bn-d", action="store_true", help="batch norm in the discriminator (DCGAN)")
    ap.add_argument("--tanh", action="store_true", help="data on [-1, 1] and a tanh output instead of [0, 1] and sigmoid")
    ap.add_argument("--init", choices=["candle", "dcgan"], default="candle")
    ap.add_argument("--lr-g", type=float, default=2e-4)
    ap.add_argument("--lr-d", type=float, default=2e-4)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train, _ = load(a.data)
    ch = tuple(int(c) for c in a.channels.split(","))
    g, d = Generator(ch=ch, bn=a.bn_g), Discriminator(ch=ch, bn=a.bn_d)
    g.apply(candle_init if a.init == "candle" else dcgan_init)
    d.apply(candle_init if a.init == "candle" else dcgan_init)
    og = torch.optim.Adam(g.parameters(), lr=a.lr_g, betas=(0.5, 0.999))
    od = torch.optim.Adam(d.parameters(), lr=a.lr_d, betas=(0.5, 0.999))
    if a.tanh:
        train = train * 2 - 1
    out_act = torch.tanh if a.tanh else torch.sigmoid
    gen = torch.Generator().manual_seed(a.seed)
    t0, log = time.time(), []
    for step in range(1, a.steps + 1):
        x = train[torch.randint(0, len(train), (a.batch,), generator=gen)]
        fake = out_act(g(torch.randn(a.batch, 32, generator=gen))).detach()
        lr_, lf = d(x), d(fake)
        d_loss = F.softplus(-lr_).mean() + F.softplus(lf).mean()
        od.zero_grad()
        d_loss.backward()
        od.step()
        g_loss = F.softplus(-d(out_act(g(torch.randn(a.batch, 32, generator=gen))))).mean()
        og.zero_grad()
        g_loss.backward()
        og.step()
        if step % 200 == 0 or step == a.steps:
            rec = {"step": step, "d_loss": d_loss.item(), "g_loss": g_loss.item(),
                   "d_real": torch.sigmoid(lr_).mean().item(), "d_fake": torch.sigmoid(lf).mean().item(),
                   "seconds": round(time.time() - t0, 1)}
            log.append(rec)
            print(json.dumps(rec), flush=True)
    os.makedirs(a.out, exist_ok=True)
    with torch.no_grad():
        s = out_act(g(torch.randn(64, 32, generator=gen))).squeeze(1).numpy()
    if a.tanh:
        s = (s + 1) / 2
    np.save(os.path.join(a.out, "samples.npy"), s)
    if a.png:
        try:
            from PIL import Image
        except ImportError:
            print("no Pillow: samples.npy only", file=sys.stderr)
        else:
            grid = np.ones((8 * 30 + 2, 8 * 30 + 2), np.float32) * 0.5
            for i, im in enumerate(s):
                r, c = divmod(i, 8)
                grid[2 + r * 30:2 + r * 30 + 28, 2 + c * 30:2 + c * 30 + 28] = im
            Image.fromarray((grid * 255).astype(np.uint8)).save(os.path.join(a.out, "samples.png"))


if __name__ == "__main__":
    main()

//! K trials of one VAE architecture trained together as one computation (#8's GPU sweep).
//!
//! A sweep's trials often share an architecture and differ in seed, β or learning rate. At sweep-sized
//! batches one trial leaves a GPU almost idle (PyTorch uses ≈ 1% of an H100 at batch 128), and K processes
//! each launch every kernel K times. Here every parameter gets a leading trial axis (`[K, …]`), and each layer
//! is one batched computation for all K trials:
//! - dense: one batched matmul, `x [K, B, I] · Wᵀ [K, I, O]`;
//! - the stride-2 4×4 conv: its im2col as one `index_select` (a fixed gather table into each image, plus one
//!   zero for the padding), then one batched matmul;
//! - the transposed conv: one batched matmul into columns, then one `index_add` (col2im) into the image.
//!
//! candle's grouped `conv2d` loops over the groups and its `conv_transpose2d` has none, so neither would
//! make K trials one kernel launch. Everything here is candle's stock differentiable ops, so the same code runs
//! on the CPU and on CUDA, and backward is candle's.
//!
//! Trials never mix: each trial's outputs read only its own slice of every parameter, and the objective is
//! the sum of the trials' own objectives, so each slice's gradient is that trial's gradient alone. On the CPU
//! a trial trained in a stack gives the same bits as in a stack of one (`crates/train/tests/stacked.rs`), and
//! a diverging trial (NaN) leaves the others untouched.
//!
//! Scope: `vae` and `beta_vae` (β form, no warm-up), MLP or conv backbone without batch norm, Bernoulli
//! likelihood, unconditional — the reference models of `vaelab bench`. Parameters are stacked from each
//! trial's own var map (as `vaelab_models::build` initialised it) and written back with
//! [`StackedVae::write_back`], so a trial's checkpoint and evaluation are the solo model's.

use crate::spec::{Backbone, Likelihood, ModelSpec};
use candle_core::{Device, Result, Tensor, Var, D};
use candle_nn::VarMap;

/// A stack of K VAEs of one architecture.
pub struct StackedVae {
    k: usize,
    latent: usize,
    /// `[K, 1]`: each trial's KL weight.
    beta: Tensor,
    /// The stacked parameters by the solo models' names, name-sorted.
    params: Vec<(String, Var)>,
    encoder: Net,
    decoder: Net,
}

/// One network's layers, each naming its stacked parameters by index into `params`.
enum Net {
    /// Dense layers, ReLU between (none after the last).
    Mlp(Vec<Linear>),
    /// Encoder: convs with ReLU, flattened, a dense head.
    ConvEncoder { convs: Vec<Conv>, head: Linear },
    /// Decoder: a dense layer to `start`, ReLU, transposed convs with ReLU between.
    ConvDecoder { fc: Linear, start: [usize; 3], deconvs: Vec<Conv> },
}

struct Linear {
    w: Tensor, // [K, O, I]
    b: Tensor, // [K, 1, O]
}

/// A 4×4 stride-2 padding-1 conv (`down`) or transposed conv (`up`) and its gather / scatter table.
struct Conv {
    /// Down: `[K, O, C·16]`; up: `[K, C, O·16]`.
    w: Tensor,
    /// `[K, 1, O, 1]`.
    b: Tensor,
    /// Down: for each im2col entry (pixel, c, ky, kx) the index into the image `[C·H·W]` with one zero
    /// appended (`C·H·W` is the padding). Up: for each column entry (pixel, o, ky, kx) the index into the
    /// output `[O·2h·2w]` with one dump slot appended (entries falling in the padding go there).
    table: Tensor,
    c: usize,
    o: usize,
    /// The input's height and width.
    hw: (usize, usize),
    up: bool,
}

/// The per-trial terms of one step, `[K]` each.
pub struct StackedLosses {
    /// recon + β·KL, the batch mean (what each trial's optimizer minimises).
    pub objective: Tensor,
    pub recon: Tensor,
    pub kl: Tensor,
}

impl StackedVae {
    /// Stack K trials. `specs[j]` and `varmaps[j]` are trial j's model spec and the var map its solo model was
    /// built into (`vaelab_models::build`); the specs must describe one architecture.
    pub fn new(specs: &[ModelSpec], sample_shape: &[usize], varmaps: &[&VarMap], dev: &Device) -> Result<Self> {
        let Some(first) = specs.first() else { candle_core::bail!("stacked trials: none given") };
        if specs.len() != varmaps.len() {
            candle_core::bail!("stacked trials: {} specs, {} var maps", specs.len(), varmaps.len());
        }
        let k = specs.len();
        let mut betas = Vec::with_capacity(k);
        for s in specs {
            betas.push(supported(s)? as f32);
            let arch = |s: &ModelSpec| (s.backbone, s.hidden.clone(), s.channels.clone(), s.latent_dim, s.likelihood);
            if arch(s) != arch(first) {
                candle_core::bail!("stacked trials: every trial needs the same architecture ({:?} vs {:?})", arch(s), arch(first));
            }
        }
        let mut params = stack_params(varmaps, dev)?;
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let get = |name: &str| -> Result<Tensor> {
            match params.iter().find(|(n, _)| n == name) {
                Some((_, v)) => Ok(v.as_tensor().clone()),
                None => candle_core::bail!("stacked trials: no parameter `{name}` (not a {:?} VAE)", first.backbone),
            }
        };
        let linear = |p: &str| -> Result<Linear> {
            let b = get(&format!("{p}.bias"))?;
            Ok(Linear { w: get(&format!("{p}.weight"))?, b: b.unsqueeze(1)? })
        };
        let conv = |p: &str, hw: (usize, usize), up: bool| -> Result<Conv> {
            let w = get(&format!("{p}.weight"))?; // down [K, O, C, 4, 4], up [K, C, O, 4, 4]
            let (_, a, bdim, _, _) = w.dims5()?;
            let (c, o) = if up { (a, bdim) } else { (bdim, a) };
            let bias = get(&format!("{p}.bias"))?;
            let table = if up { scatter_table(o, hw, dev)? } else { gather_table(c, hw, dev)? };
            Ok(Conv { w: w.reshape((k, a, bdim * 16))?, b: bias.reshape((k, 1, o, 1))?, table, c, o, hw, up })
        };
        let (encoder, decoder) = match first.backbone {
            Backbone::Mlp => {
                let n = first.hidden.len();
                let mut enc: Vec<Linear> = (0..n).map(|i| linear(&format!("encoder.fc{i}"))).collect::<Result<_>>()?;
                enc.push(linear("encoder.out")?);
                let mut dec: Vec<Linear> = (0..n).map(|i| linear(&format!("decoder.fc{i}"))).collect::<Result<_>>()?;
                dec.push(linear("decoder.out")?);
                (Net::Mlp(enc), Net::Mlp(dec))
            }
            Backbone::Conv => {
                let &[_, h, w] = sample_shape else { candle_core::bail!("stacked conv VAE: image data needed, not {sample_shape:?}") };
                let levels = first.channels.len();
                let convs = (0..levels).map(|i| conv(&format!("encoder.conv{i}"), (h >> i, w >> i), false)).collect::<Result<_>>()?;
                let start = [*first.channels.last().unwrap(), h >> levels, w >> levels];
                let deconvs = (0..levels).map(|i| conv(&format!("decoder.deconv{i}"), (h >> (levels - i), w >> (levels - i)), true)).collect::<Result<_>>()?;
                (Net::ConvEncoder { convs, head: linear("encoder.out")? }, Net::ConvDecoder { fc: linear("decoder.fc")?, start, deconvs })
            }
        };
        Ok(StackedVae { k, latent: first.latent_dim, beta: Tensor::from_vec(betas, (k, 1), dev)?, params, encoder, decoder })
    }

    /// Trials in the stack.
    pub fn trials(&self) -> usize {
        self.k
    }

    pub fn latent_dim(&self) -> usize {
        self.latent
    }

    /// The stacked parameters, name-sorted (one optimizer).
    pub fn vars(&self) -> Vec<Var> {
        self.params.iter().map(|(_, v)| v.clone()).collect()
    }

    /// Each trial's terms for its batch `x [K, B, …]` (binary or [0, 1] pixels) and its reparameterisation
    /// noise `eps [K, B, latent]`.
    pub fn loss(&self, x: &Tensor, eps: &Tensor) -> Result<StackedLosses> {
        let (k, b) = (x.dim(0)?, x.dim(1)?);
        if k != self.k {
            candle_core::bail!("stacked trials: a batch for {k} trials, the stack has {}", self.k);
        }
        let h = self.encoder.forward(x, k)?; // [K, B, 2L]
        let (mu, logvar) = (h.narrow(D::Minus1, 0, self.latent)?, h.narrow(D::Minus1, self.latent, self.latent)?);
        let z = (&mu + (eps * (&logvar * 0.5)?.exp()?)?)?;
        let logits = self.decoder.forward(&z, k)?; // [K, B, D]
        let target = x.reshape((k, b, ()))?;
        // BCE with logits, summed over pixels: max(l, 0) − l·t + log(1 + e^−|l|).
        let per = ((logits.relu()? - (&logits * &target)?)? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
        let recon = per.sum(D::Minus1)?; // [K, B]
        let kl = ((((&logvar + 1.0)? - mu.sqr()?)? - logvar.exp()?)?.sum(D::Minus1)? * -0.5)?; // [K, B]
        let (recon, kl) = (recon.mean(1)?, kl.mean(1)?);
        let objective = (&recon + kl.unsqueeze(1)?.broadcast_mul(&self.beta)?.squeeze(1)?)?;
        Ok(StackedLosses { objective, recon, kl })
    }

    /// Copy trial `j`'s slice of every parameter into `varmap` (its solo model's var map, same names).
    pub fn write_back(&self, j: usize, varmap: &VarMap) -> Result<()> {
        let data = varmap.data().lock().expect("the var map lock is never poisoned");
        for (name, v) in &self.params {
            let Some(solo) = data.get(name) else { candle_core::bail!("write_back: trial {j}'s var map has no `{name}`") };
            solo.set(&v.as_tensor().get(j)?.to_device(solo.device())?)?;
        }
        Ok(())
    }
}

/// Trial j's KL weight, or why its spec cannot be stacked.
fn supported(s: &ModelSpec) -> Result<f64> {
    let beta = match s.kind.as_str() {
        "vae" => 1.0,
        "beta_vae" if s.capacity.is_none() => s.beta,
        other => candle_core::bail!("stacked trials: model.kind `{other}` cannot be stacked (vae, beta_vae without capacity)"),
    };
    if s.kl_warmup.is_some() || s.batch_norm || s.likelihood != Likelihood::Bernoulli {
        candle_core::bail!("stacked trials: kl_warmup, batch_norm and a Gaussian likelihood are not stacked");
    }
    Ok(beta)
}

/// Every trial's variables stacked by name: `[K, …]`, on `dev`.
fn stack_params(varmaps: &[&VarMap], dev: &Device) -> Result<Vec<(String, Var)>> {
    let first = varmaps[0].data().lock().expect("the var map lock is never poisoned");
    let mut out = Vec::with_capacity(first.len());
    for name in first.keys() {
        let mut slices = Vec::with_capacity(varmaps.len());
        for (j, vm) in varmaps.iter().enumerate() {
            // (A var map given twice is read through the lock already held.)
            let t = if j == 0 || std::ptr::eq(vm.data(), varmaps[0].data()) {
                first[name].as_tensor().clone()
            } else {
                let data = vm.data().lock().expect("the var map lock is never poisoned");
                match data.get(name) {
                    Some(v) => v.as_tensor().clone(),
                    None => candle_core::bail!("stacked trials: trial {j} has no parameter `{name}`"),
                }
            };
            slices.push(t.to_device(dev)?);
        }
        out.push((name.clone(), Var::from_tensor(&Tensor::stack(&slices, 0)?)?));
    }
    Ok(out)
}

/// im2col gather table of a 4×4 stride-2 padding-1 conv over `[C, H, W]`: rows (pixel of the `H/2 × W/2`
/// output), columns (c, ky, kx), as [`crate::fastconv`] lays them out and as the weight `[O, C, 4, 4]` reads.
fn gather_table(c: usize, (h, w): (usize, usize), dev: &Device) -> Result<Tensor> {
    let pad = (c * h * w) as u32;
    let mut t = Vec::with_capacity((h / 2) * (w / 2) * c * 16);
    for m in 0..h / 2 {
        for n in 0..w / 2 {
            for ci in 0..c {
                for ky in 0..4 {
                    for kx in 0..4 {
                        let (iy, ix) = ((2 * m + ky) as isize - 1, (2 * n + kx) as isize - 1);
                        let inside = iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize;
                        t.push(if inside { (ci * h * w) as u32 + (iy as usize * w + ix as usize) as u32 } else { pad });
                    }
                }
            }
        }
    }
    Tensor::from_vec(t, (h / 2) * (w / 2) * c * 16, dev)
}

/// col2im scatter table of a 4×4 stride-2 padding-1 transposed conv from `[·, h, w]` to `[O, 2h, 2w]`: for
/// each column entry (input pixel, o, ky, kx) its output index, or `O·2h·2w` (the dump slot) in the padding.
fn scatter_table(o: usize, (h, w): (usize, usize), dev: &Device) -> Result<Tensor> {
    let (ho, wo) = (2 * h, 2 * w);
    let dump = (o * ho * wo) as u32;
    let mut t = Vec::with_capacity(h * w * o * 16);
    for m in 0..h {
        for n in 0..w {
            for oi in 0..o {
                for ky in 0..4 {
                    for kx in 0..4 {
                        let (oy, ox) = ((2 * m + ky) as isize - 1, (2 * n + kx) as isize - 1);
                        let inside = oy >= 0 && oy < ho as isize && ox >= 0 && ox < wo as isize;
                        t.push(if inside { (oi * ho * wo) as u32 + (oy as usize * wo + ox as usize) as u32 } else { dump });
                    }
                }
            }
        }
    }
    Tensor::from_vec(t, h * w * o * 16, dev)
}

impl Linear {
    /// `x [K, B, I] → x·Wᵀ + b`, `[K, B, O]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.w.t()?)?.broadcast_add(&self.b)
    }
}

impl Conv {
    /// `x [K·B, C, H, W]` (trial-major) → `[K·B, O, H', W']`.
    fn forward(&self, x: &Tensor, k: usize) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if (c, (h, w)) != (self.c, self.hw) {
            candle_core::bail!("stacked conv: input {:?}, layer built for [{}, {}, {}]", x.dims(), self.c, self.hw.0, self.hw.1);
        }
        let b = n / k;
        if self.up {
            let p = h * w;
            // Columns x_bᵀ · W: [K, B·P, C] · [K, C, O·16], then scattered into the images (col2im).
            let xt = x.reshape((k, b, c, p))?.transpose(2, 3)?.contiguous()?.reshape((k, b * p, c))?;
            let cols = xt.matmul(&self.w)?.reshape((n, p * self.o * 16))?;
            let size = self.o * 4 * p;
            let out = Tensor::zeros((n, size + 1), x.dtype(), x.device())?.index_add(&self.table, &cols, 1)?;
            let y = out.narrow(1, 0, size)?.reshape((k, b, self.o, 4 * p))?.broadcast_add(&self.b)?;
            y.reshape((n, self.o, 2 * h, 2 * w))
        } else {
            let p = (h / 2) * (w / 2);
            let flat = Tensor::cat(&[&x.reshape((n, c * h * w))?, &Tensor::zeros((n, 1), x.dtype(), x.device())?], 1)?;
            let cols = flat.index_select(&self.table, 1)?.reshape((k, b * p, c * 16))?;
            let y = cols.matmul(&self.w.t()?)?; // [K, B·P, O]
            let y = y.reshape((k, b, p, self.o))?.transpose(2, 3)?.broadcast_add(&self.b)?;
            y.contiguous()?.reshape((n, self.o, h / 2, w / 2))
        }
    }
}

impl Net {
    /// `x [K, B, …]` → `[K, B, out]` (encoder, decoder MLP) or `[K, B, C·H·W]` logits (conv decoder).
    fn forward(&self, x: &Tensor, k: usize) -> Result<Tensor> {
        let b = x.dim(1)?;
        match self {
            Net::Mlp(layers) => {
                let mut h = x.reshape((k, b, ()))?;
                for (i, l) in layers.iter().enumerate() {
                    h = l.forward(&h)?;
                    if i + 1 < layers.len() {
                        h = h.relu()?;
                    }
                }
                Ok(h)
            }
            Net::ConvEncoder { convs, head } => {
                let dims = x.dims();
                let mut h = x.reshape((k * b, dims[2], dims[3], dims[4]))?;
                for c in convs {
                    h = c.forward(&h, k)?.relu()?;
                }
                head.forward(&h.reshape((k, b, ()))?)
            }
            Net::ConvDecoder { fc, start, deconvs } => {
                let mut h = fc.forward(x)?.relu()?.reshape((k * b, start[0], start[1], start[2]))?;
                for (i, d) in deconvs.iter().enumerate() {
                    h = d.forward(&h, k)?;
                    if i + 1 < deconvs.len() {
                        h = h.relu()?;
                    }
                }
                h.reshape((k, b, ()))
            }
        }
    }
}

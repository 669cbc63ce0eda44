//! K trials of one VAE architecture trained together as one computation (#8's GPU sweep).
//!
//! A sweep's trials often share an architecture and differ in seed, β or learning rate. At sweep-sized
//! batches one trial leaves a GPU almost idle (PyTorch uses ≈ 1% of an H100 at batch 128), and K processes
//! each launch every kernel K times. Here every parameter gets a leading trial axis (`[K, …]`), and each layer
//! is one batched computation for all K trials:
//! - dense: one batched matmul, `x [K, B, I] · Wᵀ [K, I, O]`;
//! - the 4×4 stride-2 padding-1 conv, split by pixel parity (space-to-depth): the padded input's 2×2 blocks
//!   become channels, and the conv becomes a 2×2 stride-1 conv over them — its im2col is four shifted views
//!   of one tensor side by side, then one batched matmul;
//! - the transposed conv, its adjoint: one batched matmul into four blocks of columns, each padded into place
//!   (shifted by one block or not) and added, then depth-to-space.
//!
//! candle's grouped `conv2d` loops over the groups and its `conv_transpose2d` has none, so neither would
//! make K trials one kernel launch; an im2col by `index_select` / col2im by `index_add` would, but candle's
//! CUDA `index_add` (also `index_select`'s backward) runs one thread per row over every index in turn. The
//! views, pads, permutes and matmuls here are candle's stock differentiable ops with parallel kernels on both
//! devices, so the same code runs on the CPU and on CUDA, and backward is candle's.
//!
//! Trials never mix: each trial's outputs read only its own slice of every parameter, and the objective is
//! the sum of the trials' own objectives, so each slice's gradient is that trial's gradient alone. On the CPU
//! a trial trained in a stack gives the same bits as in a stack of one (`crates/train/tests/stacked.rs`), and
//! a diverging trial (NaN) leaves the others untouched.
//!
//! Scope: `ae`, `vae` and `beta_vae` (β form, no warm-up) — a stack holds AEs or VAEs, not both — with an MLP
//! or conv backbone without batch norm, Bernoulli or Gaussian likelihood, unconditional (the reference models
//! of `vaelab bench` among them). Parameters are stacked from each
//! trial's own var map (as `vaelab_models::build` initialised it) and written back with
//! [`StackedVae::write_back`], so a trial's checkpoint and evaluation are the solo model's.

use crate::spec::{Backbone, Likelihood, ModelSpec};
use candle_core::{Device, Result, Tensor, Var, D};
use candle_nn::VarMap;

/// A stack of K VAEs of one architecture.
pub struct StackedVae {
    k: usize,
    latent: usize,
    /// `[K, 1]`: each trial's KL weight (VAEs); `None`: a stack of AEs (deterministic codes, no KL).
    beta: Option<Tensor>,
    likelihood: Likelihood,
    /// The stacked parameters by the solo models' names, name-sorted.
    params: Vec<(String, Var)>,
    encoder: Net,
    decoder: Net,
}

/// One network's layers (their tensors are the stacked `Var`s of `params`, so gradients reach them).
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

/// A 4×4 stride-2 padding-1 conv (`down`) or transposed conv (`up`).
struct Conv {
    /// The stacked weight as the solo layers hold it: down `[K, O, C, 4, 4]`, up `[K, C, O, 4, 4]`.
    w: Tensor,
    /// `[K, 1, O, 1]`.
    b: Tensor,
    c: usize,
    o: usize,
    /// The input's height and width.
    hw: (usize, usize),
    up: bool,
}

/// The per-trial terms of one step, `[K]` each.
pub struct StackedLosses {
    /// recon + β·KL (VAEs) or recon (AEs), the batch mean (what each trial's optimizer minimises).
    pub objective: Tensor,
    pub recon: Tensor,
    /// VAEs only.
    pub kl: Option<Tensor>,
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
            betas.push(stackable(s)?);
            let (this, first) = (architecture(s)?, architecture(first)?);
            if this != first {
                candle_core::bail!("stacked trials: every trial needs the same architecture ({this} vs {first})");
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
            Ok(Conv { w, b: bias.reshape((k, 1, o, 1))?, c, o, hw, up })
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
        let beta = match betas.iter().map(|b| b.map(|b| b as f32)).collect::<Option<Vec<f32>>>() {
            Some(b) => Some(Tensor::from_vec(b, (k, 1), dev)?),
            None => None, // AEs (the architecture check keeps AEs and VAEs apart)
        };
        Ok(StackedVae { k, latent: first.latent_dim, beta, likelihood: first.likelihood, params, encoder, decoder })
    }

    /// Trials in the stack.
    pub fn trials(&self) -> usize {
        self.k
    }

    /// The size of each example's reparameterisation noise: the latent size for VAEs, none for AEs.
    pub fn noise_dim(&self) -> Option<usize> {
        self.beta.as_ref().map(|_| self.latent)
    }

    /// The stacked parameters, name-sorted (one optimizer).
    pub fn vars(&self) -> Vec<Var> {
        self.params.iter().map(|(_, v)| v.clone()).collect()
    }

    /// Each trial's terms for its batch `x [K, B, …]` and, for VAEs, its reparameterisation noise
    /// `eps [K, B, latent]`.
    pub fn loss(&self, x: &Tensor, eps: Option<&Tensor>) -> Result<StackedLosses> {
        let (k, b) = (x.dim(0)?, x.dim(1)?);
        if k != self.k {
            candle_core::bail!("stacked trials: a batch for {k} trials, the stack has {}", self.k);
        }
        let h = self.encoder.forward(x, k)?; // [K, B, 2L] (VAE) or [K, B, L] (AE)
        let (z, kl) = match (&self.beta, eps) {
            (Some(_), Some(eps)) => {
                let (mu, logvar) = (h.narrow(D::Minus1, 0, self.latent)?, h.narrow(D::Minus1, self.latent, self.latent)?);
                let z = (&mu + (eps * (&logvar * 0.5)?.exp()?)?)?;
                let kl = ((((&logvar + 1.0)? - mu.sqr()?)? - logvar.exp()?)?.sum(D::Minus1)? * -0.5)?; // [K, B]
                (z, Some(kl.mean(1)?))
            }
            (Some(_), None) => candle_core::bail!("stacked VAEs: no noise given"),
            (None, _) => (h, None),
        };
        let out = self.decoder.forward(&z, k)?; // [K, B, D]
        let target = x.reshape((k, b, ()))?;
        let recon = match self.likelihood {
            // BCE with logits, summed over pixels: max(l, 0) − l·t + log(1 + e^−|l|).
            Likelihood::Bernoulli => ((out.relu()? - (&out * &target)?)? + (out.abs()?.neg()?.exp()? + 1.0)?.log()?)?.sum(D::Minus1)?,
            // ½‖x − μ‖² + (D/2)·log 2π, as `losses::gaussian_nll`.
            Likelihood::Gaussian => (((&out - &target)?.sqr()?.sum(D::Minus1)? * 0.5)? + 0.5 * out.dim(2)? as f64 * (2.0 * std::f64::consts::PI).ln())?,
        }
        .mean(1)?;
        let objective = match (&kl, &self.beta) {
            (Some(kl), Some(beta)) => (&recon + kl.unsqueeze(1)?.broadcast_mul(beta)?.squeeze(1)?)?,
            _ => recon.clone(),
        };
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

/// What trials must share to be stacked together — AE or VAE, backbone, layer sizes, latent size, likelihood —
/// as a key, or why this model cannot be stacked.
pub fn architecture(s: &ModelSpec) -> Result<String> {
    let family = if stackable(s)?.is_some() { "vae" } else { "ae" };
    Ok(format!("{family} {:?} hidden {:?} channels {:?} latent {} {:?}", s.backbone, s.hidden, s.channels, s.latent_dim, s.likelihood))
}

/// A trial's KL weight in a stack (`None` for an AE), or why its model cannot be stacked.
pub fn stackable(s: &ModelSpec) -> Result<Option<f64>> {
    let beta = match s.kind.as_str() {
        "ae" => None,
        "vae" => Some(1.0),
        "beta_vae" if s.capacity.is_none() => Some(s.beta),
        other => candle_core::bail!("stacked trials: model.kind `{other}` cannot be stacked (ae, vae, beta_vae without capacity)"),
    };
    if s.kl_warmup.is_some() || s.batch_norm {
        candle_core::bail!("stacked trials: kl_warmup and batch_norm are not stacked");
    }
    Ok(beta)
}

/// Every trial's variables stacked by name: `[K, …]`, on `dev`.
fn stack_params(varmaps: &[&VarMap], dev: &Device) -> Result<Vec<(String, Var)>> {
    // Each var map's tensors by name, one lock at a time.
    let named: Vec<std::collections::HashMap<String, Tensor>> = varmaps
        .iter()
        .map(|vm| vm.data().lock().expect("the var map lock is never poisoned").iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect())
        .collect();
    let mut out = Vec::with_capacity(named[0].len());
    for name in named[0].keys() {
        let mut slices = Vec::with_capacity(named.len());
        for (j, trial) in named.iter().enumerate() {
            let Some(t) = trial.get(name) else { candle_core::bail!("stacked trials: trial {j} has no parameter `{name}`") };
            slices.push(t.to_device(dev)?);
        }
        out.push((name.clone(), Var::from_tensor(&Tensor::stack(&slices, 0)?)?));
    }
    Ok(out)
}

impl Linear {
    /// `x [K, B, I] → x·Wᵀ + b`, `[K, B, O]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.w.t()?)?.broadcast_add(&self.b)
    }
}

/// The four 2×2 blocks of a 4×4 kernel, (dy, dx) = (0, 0), (0, 1), (1, 0), (1, 1): tap (ky, kx) =
/// (2·dy + a, 2·dx + b) for pixel parities a, b.
const BLOCKS: [(usize, usize); 4] = [(0, 0), (0, 1), (1, 0), (1, 1)];

impl Conv {
    /// `x [K·B, C, H, W]` (trial-major) → `[K·B, O, H', W']`.
    fn forward(&self, x: &Tensor, k: usize) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if (c, (h, w)) != (self.c, self.hw) {
            candle_core::bail!("stacked conv: input {:?}, layer built for [{}, {}, {}]", x.dims(), self.c, self.hw.0, self.hw.1);
        }
        let (b, o) = (n / k, self.o);
        if self.up {
            // Padded output pixel (2i + a, 2j + b) gets x[m, n]·W[ky = 2dy + a, kx = 2dx + b] from i = m + dy,
            // j = n + dx: per block (dy, dx) the columns xᵀ·W[dy, dx] [h, w, O·2·2], shifted by (dy, dx).
            let p = h * w;
            // W [K, C, O, 4, 4] as [K, C, (dy, dx, O, a, b)].
            let wm = self.w.reshape(vec![k, c, o, 2, 2, 2, 2])?.permute(vec![0, 1, 3, 5, 2, 4, 6])?.contiguous()?.reshape((k, c, 16 * o))?;
            let xt = x.reshape((k, b, c, p))?.transpose(2, 3)?.contiguous()?.reshape((k, b * p, c))?;
            let cols = xt.matmul(&wm)?.reshape((n, h, w, 4, 4 * o))?;
            let mut sum: Option<Tensor> = None;
            for (i, &(dy, dx)) in BLOCKS.iter().enumerate() {
                let block = cols.narrow(3, i, 1)?.squeeze(3)?.pad_with_zeros(1, dy, 1 - dy)?.pad_with_zeros(2, dx, 1 - dx)?;
                sum = Some(match sum {
                    Some(s) => (s + block)?,
                    None => block,
                });
            }
            // [N, h+1, w+1, O, a, b] → [N, O, (h+1, a), (w+1, b)], the padding cropped.
            let padded = sum.expect("four blocks").reshape((n, h + 1, w + 1, o, 2, 2))?.permute((0, 3, 1, 4, 2, 5))?.reshape((n, o, 2 * h + 2, 2 * w + 2))?;
            let y = padded.narrow(2, 1, 2 * h)?.narrow(3, 1, 2 * w)?.reshape((k, b, o, 4 * p))?.broadcast_add(&self.b)?;
            y.reshape((n, o, 2 * h, 2 * w))
        } else {
            // Padded input pixel (2i + a, 2j + b) → block (i, j), channel (c, a, b); output (m, n) reads blocks
            // (m + dy, n + dx) with tap (2dy + a, 2dx + b).
            let (ho, wo) = (h / 2, w / 2);
            let xp = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
            let s2d = xp.reshape((n, c, ho + 1, 2, wo + 1, 2))?.permute((0, 2, 4, 1, 3, 5))?.contiguous()?.reshape((n, ho + 1, wo + 1, 4 * c))?;
            let views: Vec<Tensor> = BLOCKS.iter().map(|&(dy, dx)| s2d.narrow(1, dy, ho)?.narrow(2, dx, wo)).collect::<Result<_>>()?;
            let cols = Tensor::cat(&views, 3)?.reshape((k, b * ho * wo, 16 * c))?;
            // W [K, O, C, 4, 4] as [K, (dy, dx, C, a, b), O].
            let wm = self.w.reshape(vec![k, o, c, 2, 2, 2, 2])?.permute(vec![0, 3, 5, 2, 4, 6, 1])?.contiguous()?.reshape((k, 16 * c, o))?;
            let y = cols.matmul(&wm)?; // [K, B·P, O]
            let y = y.reshape((k, b, ho * wo, o))?.transpose(2, 3)?.broadcast_add(&self.b)?;
            y.contiguous()?.reshape((n, o, ho, wo))
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

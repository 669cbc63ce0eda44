//! Encoder and decoder networks shared by the zoo: an MLP and a DCGAN-style conv stack (4×4 stride-2
//! convolutions from [`fastconv`], the same layers as candle-nn's but as single gemms).

use crate::spec::{Backbone, ModelSpec};
use candle_core::{Result, Tensor};
use crate::fastconv::{self, Down, Up};
use crate::dense::{dense, Dense};
use crate::norm::{batch_norm2d, BatchNorm2d};
use candle_nn::{Module, VarBuilder};

/// Maps a sample (`[B, C, H, W]` or `[B, D]`) to `out_dim` features.
pub struct Encoder {
    body: EncoderBody,
    out: Dense,
    /// Negative slope of the hidden activations: 0 (ReLU) for encoders, 0.2 (leaky) for discriminators.
    slope: f64,
}

enum EncoderBody {
    Mlp(Vec<Dense>),
    /// `norms[i]`: the batch normalisation after conv `i` (a conv discriminator with `model.batch_norm`
    /// normalises every layer but the first, as DCGAN's).
    Conv(Vec<Down>, Vec<Option<BatchNorm2d>>),
}

/// Maps `in_dim` features to a sample-shaped output (logits or means).
pub enum Decoder {
    Mlp { layers: Vec<Dense>, out: Dense, shape: Vec<usize> },
    /// `norms`: with `model.batch_norm`, one batch normalisation after the first layer and after each
    /// transposed conv but the last (DCGAN's generator).
    Conv { fc: Dense, deconvs: Vec<Up>, start: [usize; 3], norms: Option<Vec<BatchNorm2d>> },
}


fn conv_shape(spec: &ModelSpec, shape: &[usize]) -> Result<[usize; 3]> {
    if shape.len() != 3 {
        candle_core::bail!("the conv backbone needs image data ([C, H, W]); this dataset's samples are {shape:?}");
    }
    let f = 1usize << spec.channels.len();
    if shape[1] % f != 0 || shape[2] % f != 0 {
        candle_core::bail!("the conv backbone halves the image {} times: {}×{} is not divisible by {f}", spec.channels.len(), shape[1], shape[2]);
    }
    Ok([*spec.channels.last().unwrap(), shape[1] / f, shape[2] / f])
}

impl Encoder {
    pub fn new(spec: &ModelSpec, shape: &[usize], extra_in: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_slope(spec, shape, extra_in, out_dim, 0.0, vb)
    }

    /// A discriminator: the encoder's architecture with leaky-ReLU (0.2) hidden layers and one logit out,
    /// as in DCGAN.
    pub fn discriminator(spec: &ModelSpec, shape: &[usize], extra_in: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_slope(spec, shape, extra_in, 1, 0.2, vb)
    }

    fn with_slope(spec: &ModelSpec, shape: &[usize], extra_in: usize, out_dim: usize, slope: f64, vb: VarBuilder) -> Result<Self> {
        match spec.backbone {
            Backbone::Mlp => {
                let mut d = shape.iter().product::<usize>() + extra_in;
                let mut layers = vec![];
                for (i, &h) in spec.hidden.iter().enumerate() {
                    layers.push(dense(d, h, vb.pp(format!("fc{i}")))?);
                    d = h;
                }
                Ok(Encoder { body: EncoderBody::Mlp(layers), out: dense(d, out_dim, vb.pp("out"))?, slope })
            }
            Backbone::Conv => {
                let last = conv_shape(spec, shape)?;
                // Extra inputs (a one-hot label) enter as constant image planes beside the pixels, so every
                // conv layer sees them (as in PyTorch-VAE's conditional VAE).
                let mut c = shape[0] + extra_in;
                let mut convs = vec![];
                let mut norms = vec![];
                // Batch norm only in discriminators (the VAE encoders' statistics would mix the batch's
                // examples into each code).
                let bn = spec.batch_norm && slope > 0.0;
                for (i, &ch) in spec.channels.iter().enumerate() {
                    convs.push(fastconv::down(c, ch, vb.pp(format!("conv{i}")))?);
                    norms.push(match bn && i > 0 {
                        true => Some(batch_norm2d(ch, vb.pp(format!("norm{i}")))?),
                        false => None,
                    });
                    c = ch;
                }
                let flat = last.iter().product::<usize>();
                Ok(Encoder { body: EncoderBody::Conv(convs, norms), out: dense(flat, out_dim, vb.pp("out"))?, slope })
            }
        }
    }

    fn act(&self, h: Tensor) -> Result<Tensor> {
        if self.slope == 0.0 {
            crate::act::relu(&h)
        } else {
            crate::act::leaky_relu(&h, self.slope)
        }
    }

    /// The last hidden layer, flattened: the input of the output layer. `extra` (e.g. a one-hot label) joins
    /// the input: concatenated to the flattened sample (MLP) or as constant planes (conv). VAE-GAN measures
    /// reconstructions in this space of its discriminator.
    pub fn features(&self, x: &Tensor, extra: Option<&Tensor>) -> Result<Tensor> {
        let cat = |h: Tensor| match extra {
            Some(e) => Tensor::cat(&[&h, e], 1),
            None => Ok(h),
        };
        match &self.body {
            EncoderBody::Mlp(layers) => {
                // The MLP sees the label with its input; its features are the last hidden layer.
                let mut h = cat(x.flatten_from(1)?)?;
                for l in layers {
                    h = self.act(l.forward(&h)?)?;
                }
                Ok(h)
            }
            EncoderBody::Conv(convs, norms) => {
                let mut h = match extra {
                    Some(e) => {
                        let (b, _, hh, ww) = x.dims4()?;
                        let planes = e.reshape((b, e.dim(1)?, 1, 1))?.broadcast_as((b, e.dim(1)?, hh, ww))?.contiguous()?;
                        Tensor::cat(&[x, &planes], 1)?
                    }
                    None => x.clone(),
                };
                for (c, n) in convs.iter().zip(norms) {
                    h = c.forward(&h)?;
                    if let Some(n) = n {
                        h = n.forward(&h)?;
                    }
                    h = self.act(h)?;
                }
                h.flatten_from(1)
            }
        }
    }

    /// Width of [`Encoder::features`].
    pub fn feature_dim(&self) -> usize {
        self.out.weight().dim(1).expect("a linear layer's weight is 2-d")
    }

    /// The output layer applied to [`Encoder::features`].
    pub fn head(&self, features: &Tensor) -> Result<Tensor> {
        self.out.forward(features)
    }

    pub fn forward(&self, x: &Tensor, extra: Option<&Tensor>) -> Result<Tensor> {
        self.out.forward(&self.features(x, extra)?)
    }

    /// ∇ₓ Σ_b f(x_b) for a one-output network f (a critic), shaped like `x`, built from differentiable forward
    /// ops so that a penalty on it trains the weights (WGAN-GP). candle's backward detaches the gradients it
    /// returns (no double backprop), hence this explicit backward pass: through each layer in reverse, the
    /// activation's derivative (1 or the leaky slope: constant almost everywhere) times the layer's transpose.
    pub fn input_gradient(&self, x: &Tensor, extra: Option<&Tensor>) -> Result<Tensor> {
        let b = x.dim(0)?;
        let w_out = self.out.weight(); // [1, F]
        if w_out.dim(0)? != 1 {
            candle_core::bail!("input_gradient: the network has {} outputs, not one", w_out.dim(0)?);
        }
        let slope = self.slope;
        let act_grad = |pre: &Tensor| -> Result<Tensor> { ((pre.ge(0.0)?.to_dtype(pre.dtype())? * (1.0 - slope))? + slope).map(|t| t.detach()) };
        let head = |shape: &[usize]| -> Result<Tensor> { w_out.broadcast_as((b, w_out.dim(1)?))?.contiguous()?.reshape(shape) };
        match &self.body {
            EncoderBody::Mlp(layers) => {
                let mut h = x.flatten_from(1)?;
                if let Some(e) = extra {
                    h = Tensor::cat(&[&h, e], 1)?;
                }
                let mut pres = Vec::with_capacity(layers.len());
                for l in layers {
                    let pre = l.forward(&h)?;
                    h = self.act(pre.clone())?;
                    pres.push(pre);
                }
                let mut g = head(h.dims())?;
                for (l, pre) in layers.iter().zip(&pres).rev() {
                    g = (g * act_grad(pre)?)?.matmul(l.weight())?;
                }
                let nx = x.flatten_from(1)?.dim(1)?;
                g.narrow(1, 0, nx)?.contiguous()?.reshape(x.shape())
            }
            EncoderBody::Conv(_, norms) if norms.iter().any(Option::is_some) => {
                // Each example's critic value would depend on the whole batch: the penalty's per-example
                // gradient is not defined (Gulrajani et al. drop batch norm from the critic for this reason).
                candle_core::bail!("input_gradient: not defined with batch norm in the critic (model.batch_norm)")
            }
            EncoderBody::Conv(convs, _) => {
                let mut h = match extra {
                    Some(e) => {
                        let (_, _, hh, ww) = x.dims4()?;
                        let planes = e.reshape((b, e.dim(1)?, 1, 1))?.broadcast_as((b, e.dim(1)?, hh, ww))?.contiguous()?;
                        Tensor::cat(&[x, &planes], 1)?
                    }
                    None => x.clone(),
                };
                let mut pres = Vec::with_capacity(convs.len());
                for c in convs {
                    let pre = c.forward(&h)?;
                    h = self.act(pre.clone())?;
                    pres.push(pre);
                }
                let mut g = head(h.dims())?;
                for (c, pre) in convs.iter().zip(&pres).rev() {
                    g = c.input_gradient(&(g * act_grad(pre)?)?)?;
                }
                g.narrow(1, 0, x.dim(1)?)?.contiguous()
            }
        }
    }
}

impl Decoder {
    pub fn new(spec: &ModelSpec, shape: &[usize], in_dim: usize, vb: VarBuilder) -> Result<Self> {
        match spec.backbone {
            Backbone::Mlp => {
                let mut d = in_dim;
                let mut layers = vec![];
                for (i, &h) in spec.hidden.iter().rev().enumerate() {
                    layers.push(dense(d, h, vb.pp(format!("fc{i}")))?);
                    d = h;
                }
                let out = dense(d, shape.iter().product(), vb.pp("out"))?;
                Ok(Decoder::Mlp { layers, out, shape: shape.to_vec() })
            }
            Backbone::Conv => {
                let start = conv_shape(spec, shape)?;
                let fc = dense(in_dim, start.iter().product(), vb.pp("fc"))?;
                let mut outs: Vec<usize> = spec.channels.iter().rev().skip(1).copied().collect();
                outs.push(shape[0]);
                let mut c = start[0];
                let mut deconvs = vec![];
                let mut norms = vec![];
                let bn = spec.batch_norm;
                if bn {
                    norms.push(batch_norm2d(c, vb.pp("norm0"))?);
                }
                for (i, &o) in outs.iter().enumerate() {
                    deconvs.push(fastconv::up(c, o, vb.pp(format!("deconv{i}")))?);
                    if bn && i + 1 < outs.len() {
                        norms.push(batch_norm2d(o, vb.pp(format!("norm{}", i + 1)))?);
                    }
                    c = o;
                }
                Ok(Decoder::Conv { fc, deconvs, start, norms: bn.then_some(norms) })
            }
        }
    }

    /// Pre-activation output of the sample's shape (`[B, C, H, W]` or `[B, D]`).
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let b = z.dim(0)?;
        match self {
            Decoder::Mlp { layers, out, shape } => {
                let mut h = z.clone();
                for l in layers {
                    h = crate::act::relu(&l.forward(&h)?)?;
                }
                let mut dims = vec![b];
                dims.extend_from_slice(shape);
                out.forward(&h)?.reshape(dims)
            }
            Decoder::Conv { fc, deconvs, start, norms } => {
                // Batch statistics always, also when sampling (samples are drawn in batches), as DCGAN
                // implementations commonly do.
                let norm = |i: usize, h: Tensor| -> Result<Tensor> {
                    match norms {
                        Some(n) => n[i].forward(&h),
                        None => Ok(h),
                    }
                };
                let h = fc.forward(z)?.reshape((b, start[0], start[1], start[2]))?;
                let mut h = crate::act::relu(&norm(0, h)?)?;
                for (i, d) in deconvs.iter().enumerate() {
                    h = d.forward(&h)?;
                    if i + 1 < deconvs.len() {
                        h = crate::act::relu(&norm(i + 1, h)?)?;
                    }
                }
                Ok(h)
            }
        }
    }
}

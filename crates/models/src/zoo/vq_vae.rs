//! VQ-VAE (van den Oord et al. 2017): the encoder's output is `model.latent_dim` vectors of `model.code_dim`
//! numbers, each replaced by its nearest entry of a codebook of `model.codebook_size` vectors; the decoder
//! sees the quantized vectors. Gradients pass the quantization straight through (z_q = z_e + sg[e − z_e]).
//! Loss = recon + ‖sg[z_e] − e‖² (codebook) + β·‖z_e − sg[e]‖² (commitment, β = `model.commitment`).
//!
//! `vq_vae_ema` updates the codebook by exponential moving averages of the encoder outputs assigned to each
//! entry instead of the codebook loss (the paper's appendix; decay 0.99, Laplace-smoothed counts). Its
//! averages are buffers: checkpointed with the weights, updated by the model during the training loss, in no
//! optimizer's group.
//!
//! The training prior over codes is uniform, so −ELBO = recon + latent_dim·log(codebook_size) (the KL of a
//! one-hot posterior against it) is reported; `sample` returns nothing, as the paper samples from a separately
//! trained autoregressive prior that vaelab does not have.

use super::{recon_nll, to_data_space, vars_under};
use crate::backbone::{Decoder, Encoder};
use crate::model::{Batch, DataInfo, GenerativeModel, Losses, ModelCtx, ParamGroup};
use crate::spec::{Likelihood, ModelSpec};
use candle_core::{DType, Result, Tensor, Var, D};
use candle_nn::{Init, VarBuilder, VarMap};

const EMA_DECAY: f64 = 0.99;
const EMA_EPS: f64 = 1e-5;

pub struct VqVae {
    encoder: Encoder,
    decoder: Decoder,
    /// `[K, code_dim]`.
    codebook: Tensor,
    likelihood: Likelihood,
    codes: usize,
    code_dim: usize,
    commitment: f64,
    /// EMA variant: (codebook, counts `[K]`, sums `[K, code_dim]`) as variables the model sets itself.
    ema: Option<(Var, Var, Var)>,
    varmap: VarMap,
}

pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    Ok(Box::new(VqVae::new(spec, data, varmap, vb, false)?))
}

pub fn build_ema(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    Ok(Box::new(VqVae::new(spec, data, varmap, vb, true)?))
}

fn find(varmap: &VarMap, name: &str) -> Result<Var> {
    match varmap.data().lock().expect("the var map lock is never poisoned").get(name) {
        Some(v) => Ok(v.clone()),
        None => candle_core::bail!("no variable {name}"),
    }
}

impl VqVae {
    fn new(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder, ema: bool) -> Result<Self> {
        let (codes, code_dim, k) = (spec.latent_dim, spec.code_dim, spec.codebook_size);
        let bound = 1.0 / k as f64; // the authors' initialisation
        let codebook = vb.pp("codebook").get_with_hints((k, code_dim), "weight", Init::Uniform { lo: -bound, up: bound })?;
        let ema = if ema {
            let counts = vb.pp("codebook_ema").get_with_hints(k, "counts", Init::Const(1.0))?;
            let sums = vb.pp("codebook_ema").get_with_hints((k, code_dim), "sums", Init::Const(0.0))?;
            let _ = (counts, sums);
            let (cb, n, s) = (find(varmap, "codebook.weight")?, find(varmap, "codebook_ema.counts")?, find(varmap, "codebook_ema.sums")?);
            if s.as_tensor().abs()?.sum_all()?.to_scalar::<f32>()? == 0.0 {
                s.set(cb.as_tensor())?; // fresh model: the averages start at the codebook (a resume loads them)
            }
            Some((cb, n, s))
        } else {
            None
        };
        Ok(VqVae {
            encoder: Encoder::new(spec, data.shape, 0, codes * code_dim, vb.pp("encoder"))?,
            decoder: Decoder::new(spec, data.shape, codes * code_dim, vb.pp("decoder"))?,
            codebook,
            likelihood: spec.likelihood,
            codes,
            code_dim,
            commitment: spec.commitment,
            ema,
            varmap: varmap.clone(),
        })
    }

    /// Index of the nearest codebook entry for each row of `flat` (`[N, code_dim]`): `[N]` u32.
    fn nearest(&self, flat: &Tensor) -> Result<Tensor> {
        let cb = self.codebook.detach();
        let d2 = flat.sqr()?.sum_keepdim(1)?.broadcast_add(&cb.sqr()?.sum_keepdim(1)?.t()?)?.broadcast_sub(&(flat.matmul(&cb.t()?)? * 2.0)?)?;
        d2.argmin(D::Minus1)
    }

    /// (z_e `[B·codes, code_dim]`, nearest indices, quantized e `[B·codes, code_dim]`).
    fn quantize(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let ze = self.encoder.forward(x, None)?.reshape(((), self.code_dim))?;
        let idx = self.nearest(&ze.detach())?;
        let e = self.codebook.index_select(&idx, 0)?;
        Ok((ze, idx, e))
    }

    fn decode_flat(&self, zq: &Tensor, b: usize) -> Result<Tensor> {
        self.decoder.forward(&zq.reshape((b, self.codes * self.code_dim))?)
    }

    /// Moves each used codebook entry to the (decayed) mean of the encoder outputs assigned to it.
    fn ema_update(&self, ze: &Tensor, idx: &Tensor) -> Result<()> {
        let Some((cb, counts, sums)) = &self.ema else { return Ok(()) };
        let k = cb.dim(0)?;
        let n = ze.dim(0)?;
        let onehot = Tensor::zeros((n, k), DType::F32, ze.device())?.scatter_add(&idx.unsqueeze(1)?, &Tensor::ones((n, 1), DType::F32, ze.device())?, 1)?;
        let batch_counts = onehot.sum(0)?; // [K]
        let batch_sums = onehot.t()?.matmul(&ze.detach())?; // [K, d]
        let new_counts = ((counts.as_tensor() * EMA_DECAY)? + (batch_counts * (1.0 - EMA_DECAY))?)?;
        let new_sums = ((sums.as_tensor() * EMA_DECAY)? + (batch_sums * (1.0 - EMA_DECAY))?)?;
        // Laplace smoothing keeps unused entries' counts away from 0.
        let total = new_counts.sum_all()?.to_scalar::<f32>()? as f64;
        let smoothed = (((&new_counts + EMA_EPS)? / (total + k as f64 * EMA_EPS))? * total)?;
        let entries = new_sums.broadcast_div(&smoothed.unsqueeze(1)?)?;
        counts.set(&new_counts)?;
        sums.set(&new_sums)?;
        cb.set(&entries)
    }

    /// Per-example reconstruction NLL and squared quantization error (‖z_e − e‖² summed over the codes, once
    /// towards the codebook, once towards the encoder), with z_e and the chosen entries.
    fn terms(&self, batch: &Batch) -> Result<(Tensor, Tensor, Tensor, Tensor, Tensor)> {
        let b = batch.x.dim(0)?;
        let (ze, idx, e) = self.quantize(&batch.x)?;
        let zq = (&ze + (&e - &ze)?.detach())?; // straight-through
        let recon = recon_nll(self.likelihood, &self.decode_flat(&zq, b)?, &batch.x)?;
        let codebook_err = (ze.detach() - &e)?.sqr()?.reshape((b, ()))?.sum(1)?;
        let commit_err = (&ze - e.detach())?.sqr()?.reshape((b, ()))?.sum(1)?;
        Ok((recon, codebook_err, commit_err, ze, idx))
    }

    fn uniform_kl(&self) -> f64 {
        self.codes as f64 * (self.codebook.dim(0).unwrap_or(1) as f64).ln()
    }
}

impl GenerativeModel for VqVae {
    fn param_groups(&self) -> Vec<ParamGroup> {
        let mut vars = vars_under(&self.varmap, "decoder.");
        vars.extend(vars_under(&self.varmap, "encoder."));
        if self.ema.is_none() {
            vars.extend(vars_under(&self.varmap, "codebook."));
        }
        vec![ParamGroup { name: "model", vars }]
    }

    fn buffers(&self) -> Vec<Var> {
        match &self.ema {
            Some(_) => {
                let mut v = vars_under(&self.varmap, "codebook.");
                v.extend(vars_under(&self.varmap, "codebook_ema."));
                v
            }
            None => vec![],
        }
    }

    fn loss(&self, _phase: usize, batch: &Batch, _ctx: &mut ModelCtx) -> Result<Losses> {
        let (recon, cb_err, commit_err, ze, idx) = self.terms(batch)?;
        let (recon, cb_err, commit_err) = (recon.mean_all()?, cb_err.mean_all()?, commit_err.mean_all()?);
        let mut objective = (&recon + (&commit_err * self.commitment)?)?;
        if self.ema.is_none() {
            objective = (objective + &cb_err)?;
        }
        let used = {
            let mut seen = vec![false; self.codebook.dim(0)?];
            idx.to_vec1::<u32>()?.iter().for_each(|&i| seen[i as usize] = true);
            seen.iter().filter(|&&s| s).count() as f32
        };
        // The EMA variant moves its codebook after the assignment this step's loss was computed with.
        self.ema_update(&ze, &idx)?;
        let terms = vec![
            ("loss", objective.clone()),
            ("recon", recon),
            ("codebook", cb_err),
            ("commitment", commit_err),
            ("codes_used", Tensor::new(used, objective.device())?),
        ];
        Ok(Losses { objective, terms })
    }

    fn eval(&self, batch: &Batch, _ctx: &mut ModelCtx) -> Result<Vec<(&'static str, Tensor)>> {
        let (recon, cb_err, ..) = self.terms(batch)?;
        Ok(vec![("neg_elbo", (&recon + self.uniform_kl())?), ("recon", recon), ("quantization_error", cb_err)])
    }

    fn primary_metric(&self) -> &'static str {
        "recon"
    }

    fn reconstruct(&self, batch: &Batch, _ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        let (_, _, e) = self.quantize(&batch.x)?;
        to_data_space(self.likelihood, &self.decode_flat(&e, batch.x.dim(0)?)?).map(Some)
    }

    fn sample(&self, _n: usize, _labels: Option<&Tensor>, _ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        Ok(None) // no learned prior over codes
    }

    /// The quantized codes, flattened: `[B, latent_dim·code_dim]`.
    fn encode(&self, batch: &Batch) -> Result<Option<Tensor>> {
        let (_, _, e) = self.quantize(&batch.x)?;
        e.reshape((batch.x.dim(0)?, ())).map(Some)
    }

    fn decode(&self, z: &Tensor, _labels: Option<&Tensor>) -> Result<Option<Tensor>> {
        to_data_space(self.likelihood, &self.decoder.forward(z)?).map(Some)
    }

    fn latent_dim(&self) -> usize {
        self.codes * self.code_dim
    }
}

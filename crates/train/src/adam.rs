//! Adam, fused and in place.
//!
//! candle-nn's `AdamW` builds each update from ~12 tensor ops per parameter, each allocating a new tensor:
//! on the 2-core machine that was about half of an MLP VAE's step (17 ms of it, measured with perf). This
//! optimizer does the same arithmetic (Kingma & Ba, with bias correction; no weight decay) in one pass over
//! each parameter, writing the parameter and its moments in place. Its moments are plain vectors, so a
//! checkpoint can store them and a resumed trial continues exactly where it stopped.

use candle_core::{backprop::GradStore, CpuStorage, Layout, Result, Tensor, Var};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

/// First and second moments of one parameter.
#[derive(Debug, Default, Clone)]
pub struct Moments {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

pub struct Adam {
    params: Vec<Param>,
    /// Updates taken so far (the bias correction needs it).
    pub t: u64,
    pub config: AdamConfig,
}

/// One parameter and its moments.
struct Param {
    var: Var,
    moments: Mutex<Moments>,
    /// The moments of a parameter off the CPU (CUDA), kept on its device between steps; see [`stock_update`].
    on_device: Mutex<Option<(Tensor, Tensor)>>,
}

/// The in-place update of one parameter from its gradient.
struct Update<'a> {
    moments: &'a Mutex<Moments>,
    /// The kernel threads a large parameter's update may be split over.
    threads: usize,
    lr_t: f32,
    beta1: f32,
    beta2: f32,
    eps_t: f32,
}

impl Update<'_> {
    /// θ, m, v ← one Adam step with gradient `g`, or `g + h` element by element (two shards' gradients).
    fn apply(&self, p: &mut [f32], g: &[f32], h: Option<&[f32]>) {
        let mut st = self.moments.lock().expect("moments lock");
        let Moments { m, v } = &mut *st;
        if m.len() != p.len() {
            *m = vec![0.0; p.len()];
            *v = vec![0.0; p.len()];
        }
        if self.threads > 1 && p.len() > CHUNK {
            // A large parameter in pieces on the kernel threads: the MLP VAE's two 784×400 weights are 96% of its
            // parameters, so one thread per parameter left most of the update on one thread. Element-wise, so the
            // same bits however it is split.
            use rayon::prelude::*;
            let pieces = p.par_chunks_mut(CHUNK).zip(m.par_chunks_mut(CHUNK)).zip(v.par_chunks_mut(CHUNK)).zip(g.par_chunks(CHUNK));
            match h {
                None => pieces.for_each(|(((p, m), v), g)| self.update(p, m, v, g, None)),
                Some(h) => pieces.zip(h.par_chunks(CHUNK)).for_each(|((((p, m), v), g), h)| self.update(p, m, v, g, Some(h))),
            }
        } else {
            self.update(p, m, v, g, h);
        }
    }

    fn update(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], h: Option<&[f32]>) {
        let (b1, b2, lr_t, eps_t) = (self.beta1, self.beta2, self.lr_t, self.eps_t);
        let one = |p: &mut f32, gi: f32, m: &mut f32, v: &mut f32| {
            let mi = b1 * *m + (1.0 - b1) * gi;
            let vi = b2 * *v + (1.0 - b2) * gi * gi;
            *m = mi;
            *v = vi;
            // θ ← θ − α_t · m / (√v + ε̂), with α_t = α·√(1−β2^t)/(1−β1^t) and ε̂ = ε·√(1−β2^t): the
            // same update as m̂ / (√v̂ + ε) without dividing every element twice.
            *p -= lr_t * mi / (vi.sqrt() + eps_t);
        };
        // Zipped slices, no indexing: the loops compile to packed SIMD (with bounds checks they did not, and the
        // update was 14% of an MLP VAE step — perf).
        match h {
            None => p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()).for_each(|(((p, &gi), m), v)| one(p, gi, m, v)),
            Some(h) => p.iter_mut().zip(g).zip(h).zip(m.iter_mut()).zip(v.iter_mut()).for_each(|((((p, &gi), &hi), m), v)| one(p, gi + hi, m, v)),
        }
    }
}

/// Elements per piece of a parameter's update split over threads (64 KiB of each array).
const CHUNK: usize = 16 * 1024;

/// A contiguous f32 slice of a parameter or gradient.
fn f32s<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("fused Adam handles f32 {what} only") };
    let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("fused Adam needs contiguous {what}") };
    Ok(&v[a..b])
}

fn f32s_mut<'a>(s: &'a mut CpuStorage, l: &Layout) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("fused Adam handles f32 parameters only") };
    let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("fused Adam needs contiguous parameters") };
    Ok(&mut v[a..b])
}

impl candle_core::InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "fused-adam"
    }

    fn cpu_fwd(&self, p: &mut CpuStorage, pl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<()> {
        let (p, g) = (f32s_mut(p, pl)?, f32s(g, gl, "gradients")?);
        self.apply(p, g, None);
        Ok(())
    }
}

/// The update from two shards' gradients, summed as it reads them (no summed gradient written first).
impl candle_core::InplaceOp3 for Update<'_> {
    fn name(&self) -> &'static str {
        "fused-adam-sum"
    }

    fn cpu_fwd(&self, p: &mut CpuStorage, pl: &Layout, g: &CpuStorage, gl: &Layout, h: &CpuStorage, hl: &Layout) -> Result<()> {
        let (p, g, h) = (f32s_mut(p, pl)?, f32s(g, gl, "gradients")?, f32s(h, hl, "gradients")?);
        if g.len() != p.len() || h.len() != p.len() {
            candle_core::bail!("fused Adam: gradients of {} and {} for a parameter of {}", g.len(), h.len(), p.len());
        }
        self.apply(p, g, Some(h));
        Ok(())
    }
}

/// The same update from candle's tensor ops, for parameters off the CPU (see `vaelab_models::kernels`): the
/// fused update is a CPU kernel. The moments live on the parameter's device between steps (first made from the
/// host moments, which a restored checkpoint may have filled).
fn stock_update(Param { var, moments, on_device }: &Param, g: &Tensor, (b1, b2): (f64, f64), lr_t: f64, eps_t: f64) -> Result<()> {
    let mut slot = on_device.lock().expect("moments lock");
    let (m, v) = match slot.take() {
        Some(mv) => mv,
        None => {
            let h = moments.lock().expect("moments lock");
            if h.m.is_empty() {
                (g.zeros_like()?, g.zeros_like()?)
            } else {
                (Tensor::from_slice(&h.m, var.shape(), var.device())?, Tensor::from_slice(&h.v, var.shape(), var.device())?)
            }
        }
    };
    let (m, v) = next_moments(&m, &v, g, (b1, b2))?;
    let step = (&m / (v.sqrt()? + eps_t)?)?.affine(lr_t, 0.0)?;
    var.set(&(var.as_tensor().detach() - step)?)?;
    *slot = Some((m, v));
    Ok(())
}

/// The moments after gradient `g`, as tensor ops: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g² (here and in the
/// stacked optimizer, `crate::stacked`, so a trial's slice there takes the same arithmetic).
pub(crate) fn next_moments(m: &Tensor, v: &Tensor, g: &Tensor, (b1, b2): (f64, f64)) -> Result<(Tensor, Tensor)> {
    Ok(((m.affine(b1, 0.0)? + g.affine(1.0 - b1, 0.0)?)?, (v.affine(b2, 0.0)? + g.sqr()?.affine(1.0 - b2, 0.0)?)?))
}

/// The step size α_t = α·√(1−β₂ᵗ)/(1−β₁ᵗ) and ε̂ = ε·√(1−β₂ᵗ) of update `t`, as f32: θ ← θ − α_t · m / (√v + ε̂)
/// is the update with m̂ / (√v̂ + ε) without dividing every element twice.
pub(crate) fn step_size(c: &AdamConfig, t: u64) -> (f32, f32) {
    let (bc1, bc2) = (1.0 - c.beta1.powi(t as i32), 1.0 - c.beta2.powi(t as i32));
    ((c.lr * bc2.sqrt() / bc1) as f32, (c.eps * bc2.sqrt()) as f32)
}

/// ((g0 + g1) + …) + gn, in the order given (shard order: the sum must not depend on the thread count).
fn sum_in_order(gs: &[&Tensor]) -> Result<Tensor> {
    let mut sum = gs[0].contiguous()?;
    for g in &gs[1..] {
        sum = (sum + *g)?;
    }
    Ok(sum)
}

impl Adam {
    pub fn new(vars: Vec<Var>, config: AdamConfig) -> Self {
        let params = vars.into_iter().map(|var| Param { var, moments: Mutex::default(), on_device: Mutex::default() }).collect();
        Self { params, t: 0, config }
    }

    /// Backpropagate `loss` and update every parameter that received a gradient.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.step(&grads)
    }

    /// Change the learning rate for the following steps (schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_sum(std::slice::from_ref(grads))
    }

    /// One update from the sum of several gradient stores (a batch's shards, `train.shards`), added in the
    /// order given. Parameters, and pieces of large ones, are updated in parallel on candle's kernel threads when
    /// it has several: each piece reads and writes only its own elements, so the result does not depend on it
    /// (the serial loop over parameters was the part of a sharded step that ran on one thread).
    pub fn step_sum(&mut self, grads: &[GradStore]) -> Result<()> {
        self.t += 1;
        let c = self.config;
        let (lr_t, eps_t) = step_size(&c, self.t);
        let threads = candle_core::utils::get_num_threads();
        let one = |param: &Param| -> Result<()> {
            let Param { var, moments, .. } = param;
            let parts: Vec<&Tensor> = grads.iter().filter_map(|g| g.get(var.as_tensor())).collect();
            if !parts.is_empty() && !vaelab_models::kernels::custom(var.as_tensor()) {
                return stock_update(param, &sum_in_order(&parts)?, (c.beta1, c.beta2), lr_t as f64, eps_t as f64);
            }
            let update = Update { moments, threads, lr_t, beta1: c.beta1 as f32, beta2: c.beta2 as f32, eps_t };
            match parts.as_slice() {
                [] => Ok(()),
                [g] => var.as_tensor().inplace_op2(&g.contiguous()?, &update),
                [first @ .., last] => {
                    // All but the last summed in order, the last added inside the update: ((g0 + g1) + …) + gn.
                    var.as_tensor().inplace_op3(&sum_in_order(first)?, &last.contiguous()?, &update)
                }
            }
        };
        if threads > 1 {
            use rayon::prelude::*;
            self.params.par_iter().try_for_each(one)
        } else {
            self.params.iter().try_for_each(one)
        }
    }

    /// The parameters this optimizer updates, with their moments (for checkpoints).
    pub fn state(&self) -> impl Iterator<Item = (&Var, Moments)> {
        self.params.iter().map(|p| match &*p.on_device.lock().expect("moments lock") {
            Some((m, v)) => {
                let host = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("optimizer moments to host");
                (&p.var, Moments { m: host(m), v: host(v) })
            }
            None => (&p.var, p.moments.lock().expect("moments lock").clone()),
        })
    }

    /// Restore moments saved by [`Adam::state`], in the same parameter order.
    pub fn set_state(&mut self, t: u64, moments: Vec<Moments>) -> Result<()> {
        if moments.len() != self.params.len() {
            candle_core::bail!("optimizer state has {} parameters, the model {}", moments.len(), self.params.len());
        }
        for (Param { var, moments: slot, on_device }, m) in self.params.iter().zip(moments) {
            if !m.m.is_empty() && (m.m.len() != var.elem_count() || m.v.len() != var.elem_count()) {
                candle_core::bail!("optimizer state does not match a parameter of shape {:?}", var.shape());
            }
            *slot.lock().expect("moments lock") = m;
            // A device copy is made again from these at the next step.
            *on_device.lock().expect("moments lock") = None;
        }
        self.t = t;
        Ok(())
    }
}

//! Adam for a stack of trials ([`vaelab_models::stacked::StackedVae`]): every parameter is `[K, …]`, one
//! trial per slice, each trial with its own learning rate.
//!
//! The update is [`crate::Adam`]'s tensor-op form (the one it takes off the CPU), with the step size a `[K]`
//! tensor broadcast over each slice: one set of kernels per parameter for all K trials, on any device, and for
//! each slice the arithmetic of that trial's own Adam.

use crate::AdamConfig;
use candle_core::{backprop::GradStore, Result, Tensor, Var};

pub struct StackedAdam {
    vars: Vec<Var>,
    /// (m, v) per parameter, on its device; `None` until its first gradient.
    moments: Vec<Option<(Tensor, Tensor)>>,
    /// Each trial's learning rate.
    lrs: Vec<f64>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// Updates taken so far (the bias correction needs it).
    pub t: u64,
}

impl StackedAdam {
    /// `lrs[j]` is trial j's learning rate; β₁, β₂ and ε are shared (from `config`; its `lr` is not used).
    pub fn new(vars: Vec<Var>, lrs: Vec<f64>, config: AdamConfig) -> Self {
        let moments = vec![None; vars.len()];
        StackedAdam { vars, moments, lrs, beta1: config.beta1, beta2: config.beta2, eps: config.eps, t: 0 }
    }

    /// Backpropagate `objective` (the sum of the trials' objectives) and update every parameter.
    pub fn backward_step(&mut self, objective: &Tensor) -> Result<()> {
        let grads = objective.backward()?;
        self.step(&grads)
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let (bc1, bc2) = (1.0 - b1.powi(self.t as i32), 1.0 - b2.powi(self.t as i32));
        // α_t = α·√(1−β2^t)/(1−β1^t) and ε̂ = ε·√(1−β2^t), rounded to f32 as the solo optimizer rounds them.
        let lr_t: Vec<f32> = self.lrs.iter().map(|lr| (lr * bc2.sqrt() / bc1) as f32).collect();
        let eps_t = (self.eps * bc2.sqrt()) as f32 as f64;
        let mut lr: Option<Tensor> = None; // one host-to-device copy a step, viewed per parameter's rank
        for (var, slot) in self.vars.iter().zip(self.moments.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let (m, v) = match slot.take() {
                Some(mv) => mv,
                None => (g.zeros_like()?, g.zeros_like()?),
            };
            let m = (m.affine(b1, 0.0)? + g.affine(1.0 - b1, 0.0)?)?;
            let v = (v.affine(b2, 0.0)? + g.sqr()?.affine(1.0 - b2, 0.0)?)?;
            let lr = match &lr {
                Some(t) => t.clone(),
                None => lr.insert(Tensor::from_slice(&lr_t, lr_t.len(), var.device())?).clone(),
            };
            let mut shape = vec![1usize; var.rank()];
            shape[0] = lr_t.len();
            let step = (&m / (v.sqrt()? + eps_t)?)?.broadcast_mul(&lr.reshape(shape)?)?;
            var.set(&(var.as_tensor().detach() - step)?)?;
            *slot = Some((m, v));
        }
        Ok(())
    }
}

//! Trials trained together as one stacked computation ([`vaelab_models::stacked::StackedVae`]; #8's GPU
//! sweep): the optimizer for the stack, and the meeting point of the trials' own training loops.
//!
//! Each trial keeps its own [`crate::train`] loop — its batches, noise, learning-rate schedule, logs,
//! evaluations, checkpoints, early stopping and NaN handling — on its own thread. Only the step itself is
//! shared: every trial hands its batch and noise to the [`Stack`] and waits; the last one to arrive runs the
//! forward, backward and update of all of them at once and hands each trial its terms. A trial that ends
//! (finished, pruned, failed) leaves, and its slice is carried along unchanged after that.

use crate::adam::Moments;
use crate::AdamConfig;
use candle_core::{backprop::GradStore, DType, Device, Result, Tensor, Var};
use candle_nn::VarMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use vaelab_models::stacked::StackedVae;
use vaelab_models::ModelSpec;

/// Adam over a stack's parameters (every one `[K, …]`, a trial per slice): each trial with its own learning
/// rate and step count, updated together by candle's tensor ops — for each slice the arithmetic of that trial's
/// own Adam off the CPU (`Adam`'s tensor-op update).
pub struct StackedAdam {
    vars: Vec<Var>,
    /// (m, v) per parameter, on its device.
    moments: Vec<(Tensor, Tensor)>,
    /// β₁, β₂ and ε (the learning rates come with each step).
    config: AdamConfig,
    /// Updates each trial has taken (its bias correction).
    pub t: Vec<u64>,
}

impl StackedAdam {
    /// A fresh optimizer for K trials (β₁, β₂ and ε from `config`; learning rates come with each step).
    pub fn new(vars: Vec<Var>, k: usize, config: AdamConfig) -> Result<Self> {
        Self::with_state(vars, config, vec![(0, vec![]); k])
    }

    /// Each trial's step count and moments as its own optimizer saved them ([`crate::Adam::state`], parameter
    /// order = name order); a trial with no moments starts from zeros.
    pub fn with_state(vars: Vec<Var>, config: AdamConfig, trials: Vec<(u64, Vec<Moments>)>) -> Result<Self> {
        let mut moments = Vec::with_capacity(vars.len());
        for (i, var) in vars.iter().enumerate() {
            let slice_shape = &var.dims()[1..];
            let (mut ms, mut vs) = (Vec::with_capacity(trials.len()), Vec::with_capacity(trials.len()));
            for (j, (_, m)) in trials.iter().enumerate() {
                match m.get(i) {
                    Some(Moments { m, v }) if !m.is_empty() => {
                        if m.len() * trials.len() != var.elem_count() {
                            candle_core::bail!("stacked Adam: trial {j}'s moments do not match a parameter of shape {:?}", var.shape());
                        }
                        ms.push(Tensor::from_slice(m, slice_shape, var.device())?);
                        vs.push(Tensor::from_slice(v, slice_shape, var.device())?);
                    }
                    _ => {
                        ms.push(Tensor::zeros(slice_shape, var.dtype(), var.device())?);
                        vs.push(Tensor::zeros(slice_shape, var.dtype(), var.device())?);
                    }
                }
            }
            moments.push((Tensor::stack(&ms, 0)?, Tensor::stack(&vs, 0)?));
        }
        let t = trials.iter().map(|(t, _)| *t).collect();
        Ok(StackedAdam { vars, moments, config, t })
    }

    /// One update of every trial with `active[j]`, at learning rate `lrs[j]`; the other trials' slices (and
    /// moments) stay as they are, whatever their gradient holds.
    pub fn step(&mut self, grads: &GradStore, lrs: &[f64], active: &[bool]) -> Result<()> {
        let k = self.t.len();
        if lrs.len() != k || active.len() != k {
            candle_core::bail!("stacked Adam: {} learning rates and {} flags for {k} trials", lrs.len(), active.len());
        }
        let (mut lr_t, mut eps_t) = (vec![0f32; k], vec![1f32; k]);
        for j in (0..k).filter(|&j| active[j]) {
            self.t[j] += 1;
            // Each trial's step size, as its own optimizer computes it.
            (lr_t[j], eps_t[j]) = crate::adam::step_size(&AdamConfig { lr: lrs[j], ..self.config }, self.t[j]);
        }
        let dev = self.vars[0].device().clone();
        let (lr_t, eps_t) = (Tensor::from_vec(lr_t, k, &dev)?, Tensor::from_vec(eps_t, k, &dev)?);
        let mask = match active.iter().all(|&a| a) {
            true => None,
            false => Some(Tensor::from_vec(active.iter().map(|&a| a as u8).collect::<Vec<_>>(), k, &dev)?),
        };
        for (var, (m, v)) in self.vars.iter().zip(self.moments.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let mut per_trial = vec![1usize; var.rank()];
            per_trial[0] = k;
            let view = |t: &Tensor| t.reshape(per_trial.as_slice());
            let (m_new, v_new) = crate::adam::next_moments(m, v, g, (self.config.beta1, self.config.beta2))?;
            let step = m_new.broadcast_div(&v_new.sqrt()?.broadcast_add(&view(&eps_t)?)?)?.broadcast_mul(&view(&lr_t)?)?;
            let p_new = (var.as_tensor().detach() - step)?;
            match &mask {
                None => {
                    var.set(&p_new)?;
                    (*m, *v) = (m_new, v_new);
                }
                Some(mask) => {
                    let keep = |new: Tensor, old: &Tensor| view(mask)?.broadcast_as(old.shape())?.where_cond(&new, old);
                    var.set(&keep(p_new, &var.as_tensor().detach())?)?;
                    (*m, *v) = (keep(m_new, m)?, keep(v_new, v)?);
                }
            }
        }
        Ok(())
    }

    /// Trial `j`'s step count and moments, on the host, in parameter order (for its checkpoint).
    pub fn trial_state(&self, j: usize) -> Result<(u64, Vec<Moments>)> {
        let host = |t: &Tensor| t.get(j)?.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>();
        let moments = self.moments.iter().map(|(m, v)| Ok(Moments { m: host(m)?, v: host(v)? })).collect::<Result<_>>()?;
        Ok((self.t[j], moments))
    }
}

/// The meeting point of K trials trained as one stack (see the module docs). Members are made with
/// [`Stack::member`], one per trial, each used by its trial's own thread.
pub struct Stack {
    k: usize,
    dev: Device,
    config: AdamConfig,
    state: Mutex<State>,
    turn: Condvar,
}

/// What a trial brings when it joins.
struct Joining {
    spec: ModelSpec,
    sample_shape: Vec<usize>,
    varmap: VarMap,
    t: u64,
    moments: Vec<Moments>,
}

/// One step's input of a trial.
struct Input {
    x: Tensor,
    /// VAEs' reparameterisation noise.
    eps: Option<Tensor>,
    lr: f64,
}

/// The stacked model and its optimizer; `slot[j]` is trial j's slice (trials that left before the build have
/// none).
struct Built {
    vae: StackedVae,
    adam: StackedAdam,
    slot: Vec<Option<usize>>,
}

#[derive(Default)]
struct State {
    joining: Vec<Option<Joining>>,
    /// Trials that have left (ended, or failed before joining).
    gone: Vec<bool>,
    /// The stack once every trial has joined or left, or why it could not be built.
    built: Option<std::result::Result<Built, String>>,
    inputs: Vec<Option<Input>>,
    outputs: Vec<Option<std::result::Result<Vec<(&'static str, f32)>, String>>>,
}

/// One trial's handle on its [`Stack`]. Dropping it leaves the stack.
pub struct StackMember {
    stack: Arc<Stack>,
    j: usize,
    spec: ModelSpec,
    /// The noise size a step needs (VAEs: the latent size; AEs: none).
    noise: Option<usize>,
}

impl Stack {
    /// A stack for `k` trials on `dev`; β₁, β₂ and ε of `config` are the trials' (their learning rates come
    /// with each step).
    pub fn new(k: usize, dev: Device, config: AdamConfig) -> Arc<Stack> {
        let state = State { joining: (0..k).map(|_| None).collect(), gone: vec![false; k], built: None, inputs: (0..k).map(|_| None).collect(), outputs: (0..k).map(|_| None).collect() };
        Arc::new(Stack { k, dev, config, state: Mutex::new(state), turn: Condvar::new() })
    }

    /// Trial `j`'s handle (`j < k`), for a trial of `spec`.
    pub fn member(self: &Arc<Self>, j: usize, spec: ModelSpec) -> StackMember {
        assert!(j < self.k, "stack member {j} of {}", self.k);
        let noise = vaelab_models::stacked::stackable(&spec).ok().flatten().map(|_| spec.latent_dim);
        StackMember { stack: self.clone(), j, spec, noise }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Build the stack once every trial has joined or left.
    fn build_if_ready(&self, st: &mut State) {
        if st.built.is_some() || (0..self.k).any(|j| st.joining[j].is_none() && !st.gone[j]) {
            return;
        }
        let mut slot = vec![None; self.k];
        let joined: Vec<(usize, &Joining)> = (0..self.k).filter_map(|j| st.joining[j].as_ref().map(|x| (j, x))).collect();
        for (s, (j, _)) in joined.iter().enumerate() {
            slot[*j] = Some(s);
        }
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Built> {
            let Some((_, first)) = joined.first() else { candle_core::bail!("stacked trials: every trial left before the stack was built") };
            let specs: Vec<ModelSpec> = joined.iter().map(|(_, x)| x.spec.clone()).collect();
            let maps: Vec<&VarMap> = joined.iter().map(|(_, x)| &x.varmap).collect();
            let vae = StackedVae::new(&specs, &first.sample_shape, &maps, &self.dev)?;
            let adam = StackedAdam::with_state(vae.vars(), self.config, joined.iter().map(|(_, x)| (x.t, x.moments.clone())).collect())?;
            Ok(Built { vae, adam, slot })
        }))
        .unwrap_or_else(|_| Err(candle_core::Error::Msg("building the stack panicked".into())));
        st.joining.iter_mut().for_each(|x| *x = None);
        st.built = Some(built.map_err(|e| format!("{e:#}")));
        self.turn.notify_all();
    }

    /// Run the step once every trial still in the stack has handed in its input.
    fn step_if_ready(&self, st: &mut State) {
        let State { built, gone, inputs, outputs, .. } = st;
        let Some(Ok(built)) = built else { return };
        let waiting: Vec<usize> = (0..self.k).filter(|&j| built.slot[j].is_some() && !gone[j]).collect();
        if waiting.is_empty() || waiting.iter().any(|&j| inputs[j].is_none()) {
            return;
        }
        let inputs: Vec<(usize, Input)> = waiting.iter().map(|&j| (j, inputs[j].take().expect("checked above"))).collect();
        // A panic in the step (candle's, say) must not leave the other trials waiting for ever: it becomes
        // every waiting trial's error.
        // Stacks of one process take turns at the device (two stacks run when `--jobs` > 1): their steps never
        // share cuBLAS handles and streams at the same moment; the trials' own work between steps overlaps.
        static DEVICE_TURN: Mutex<()> = Mutex::new(());
        let _turn = DEVICE_TURN.lock().unwrap_or_else(|p| p.into_inner());
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::step(built, &inputs, &self.dev)))
            .unwrap_or_else(|p| Err(candle_core::Error::Msg(format!("stacked step panicked: {}", p.downcast_ref::<String>().map(String::as_str).or(p.downcast_ref::<&str>().copied()).unwrap_or("?")))));
        for (j, _) in &inputs {
            outputs[*j] = Some(match &result {
                Ok(terms) => Ok(terms[built.slot[*j].expect("a joined trial")].clone()),
                Err(e) => Err(format!("{e:#}")),
            });
        }
        self.turn.notify_all();
    }

    /// Forward, backward and update of the stack: trials in `inputs` take their step, the others (left, or
    /// failed) are fed zeros and not updated. Each slice's terms as its solo model logs them: loss, neg_elbo,
    /// recon, kl for a VAE; recon for an AE.
    fn step(built: &mut Built, inputs: &[(usize, Input)], dev: &Device) -> Result<Vec<Vec<(&'static str, f32)>>> {
        let n = built.vae.trials();
        let (x0, e0) = (&inputs[0].1.x, &inputs[0].1.eps);
        let mut xs = vec![None; n];
        let mut eps = vec![None; n];
        let mut lrs = vec![0.0; n];
        for (j, input) in inputs {
            if input.x.dims() != x0.dims() || input.eps.as_ref().map(|e| e.dims()) != e0.as_ref().map(|e| e.dims()) {
                candle_core::bail!("stacked trials: batches of {:?} and {:?} in one step (every trial needs the same batch size)", input.x.dims(), x0.dims());
            }
            let s = built.slot[*j].expect("a joined trial");
            (xs[s], eps[s], lrs[s]) = (Some(input.x.clone()), input.eps.clone(), input.lr);
        }
        let mut active: Vec<bool> = xs.iter().map(Option::is_some).collect();
        let zx = x0.zeros_like()?;
        let xs: Vec<Tensor> = xs.into_iter().map(|x| x.unwrap_or_else(|| zx.clone())).collect();
        let noise = match e0 {
            Some(e0) => {
                let ze = e0.zeros_like()?;
                let eps: Vec<Tensor> = eps.into_iter().map(|e| e.unwrap_or_else(|| ze.clone())).collect();
                Some(Tensor::stack(&eps, 0)?.to_device(dev)?)
            }
            None => None,
        };
        let losses = built.vae.loss(&Tensor::stack(&xs, 0)?.to_device(dev)?, noise.as_ref())?;
        // One device-to-host copy a step for all the terms.
        let mut parts = vec![&losses.objective, &losses.recon];
        parts.extend(losses.kl.as_ref());
        let terms = Tensor::stack(&parts, 0)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let (obj, recon) = (&terms[0], &terms[1]);
        // A non-finite objective is not stepped on (the trainer then fails the trial or skips the batch).
        active.iter_mut().zip(obj).for_each(|(a, o)| *a &= o.is_finite());
        if active.iter().any(|&a| a) {
            let grads = losses.objective.sum_all()?.backward()?;
            built.adam.step(&grads, &lrs, &active)?;
        }
        Ok((0..n)
            .map(|s| match terms.get(2) {
                Some(kl) => vec![("loss", obj[s]), ("neg_elbo", recon[s] + kl[s]), ("recon", recon[s]), ("kl", kl[s])],
                None => vec![("recon", recon[s])],
            })
            .collect())
    }
}

impl StackMember {
    /// Hand in this trial's weights (its var map, as built or restored from a checkpoint) and optimizer state;
    /// waits until every trial of the stack has joined or left.
    pub fn join(&mut self, sample_shape: &[usize], varmap: &VarMap, t: u64, moments: Vec<Moments>) -> anyhow::Result<()> {
        let stack = &self.stack;
        let mut st = stack.lock();
        st.joining[self.j] = Some(Joining { spec: self.spec.clone(), sample_shape: sample_shape.to_vec(), varmap: varmap.clone(), t, moments });
        stack.build_if_ready(&mut st);
        while st.built.is_none() {
            st = stack.turn.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        match st.built.as_ref().expect("waited for it") {
            Ok(_) => Ok(()),
            Err(e) => anyhow::bail!("{e}"),
        }
    }

    /// This trial's step: its batch `x [B, …]`, its noise `eps [B, latent]` (VAEs: [`Self::noise_dim`]) and
    /// learning rate; returns its terms (as its solo model logs them) once the whole stack has stepped.
    pub fn step(&mut self, x: &Tensor, eps: Option<&Tensor>, lr: f64) -> anyhow::Result<Vec<(&'static str, f32)>> {
        let stack = &self.stack;
        let mut st = stack.lock();
        st.inputs[self.j] = Some(Input { x: x.clone(), eps: eps.cloned(), lr });
        stack.step_if_ready(&mut st);
        while st.outputs[self.j].is_none() {
            st = stack.turn.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.outputs[self.j].take().expect("waited for it").map_err(anyhow::Error::msg)
    }

    /// Write this trial's weights into `varmap` (its solo model's) and return its optimizer's step count and
    /// moments: before an evaluation or a checkpoint.
    pub fn sync(&self, varmap: &VarMap) -> anyhow::Result<(u64, Vec<Moments>)> {
        let st = self.stack.lock();
        let Some(Ok(built)) = &st.built else { anyhow::bail!("stacked trials: the stack is not built") };
        let s = built.slot[self.j].expect("a joined trial");
        built.vae.write_back(s, varmap)?;
        Ok(built.adam.trial_state(s)?)
    }

    /// The size of each example's reparameterisation noise the trial draws: the latent size for a VAE, none for
    /// an AE.
    pub fn noise_dim(&self) -> Option<usize> {
        self.noise
    }
}

impl Drop for StackMember {
    fn drop(&mut self) {
        let stack = &self.stack;
        let mut st = stack.lock();
        st.gone[self.j] = true;
        st.inputs[self.j] = None;
        // The others may have been waiting for this trial only.
        stack.build_if_ready(&mut st);
        stack.step_if_ready(&mut st);
        stack.turn.notify_all();
    }
}

//! The training loop.

use crate::spec::TrainSpec;
use candle_core::{Device, Tensor};
use crate::adam::{Adam, AdamConfig};
use crate::checkpoint::TrainState;
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::time::Instant;
use vaelab_data::{batch::gather, Binarize, Dataset, EpochBatches, Split};
use vaelab_metrics::MeanOf;
use vaelab_models::{Batch, GenerativeModel, ModelCtx};
use vaelab_track::TrialLog;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("non-finite loss at step {step}")]
    Diverged { step: u64 },
    #[error("non-finite loss at step {step}: {consecutive} batches in a row skipped (on_nan: skip_batch), {total} in all")]
    DivergedAfterSkips { step: u64, consecutive: u64, total: u64 },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        TrainError::Other(e.into())
    }
}

/// What the runner's progress bar shows.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub step: u64,
    pub total: u64,
    pub loss: f64,
}

#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub steps: u64,
    pub primary_metric: String,
    /// Test-split metrics at the last evaluation (validation ones prefixed `val_`).
    pub final_metrics: Vec<(String, f64)>,
    /// Best (lowest) value of the primary metric over all evaluations.
    pub best_primary: f64,
    /// Every evaluation: (step, metrics).
    pub evals: Vec<(u64, Vec<(String, f64)>)>,
    pub images_per_sec: f64,
    /// Set when early stopping ended the trial at this step.
    pub pruned_at: Option<u64>,
    /// The step a resumed trial continued from (0 for a fresh start).
    pub resumed_from: u64,
    /// Training seconds of the steps before `resumed_from`, from the checkpoint (0 for a fresh start).
    pub earlier_seconds: f64,
    /// Where this run's time went: the training steps themselves (batch wait, forward, backward, update) and
    /// the evaluations (metrics, validation, image figures). What else the run took — scalar logs, checkpoints,
    /// flushes of the event and Parquet files — is the bookkeeping's cost, measured in the same process as the
    /// steps (issue #8's "runner overhead"; comparing against a separate bench run drowned it in run-to-run noise).
    pub step_seconds: f64,
    pub eval_seconds: f64,
}

pub fn make_batch(split: &Split, data: &Dataset, idx: &[usize], binarize: Binarize, rng: &mut ChaCha8Rng, dev: &Device) -> candle_core::Result<Batch> {
    let mut x = gather(&split.x, data.dim(), idx);
    binarize.apply(&mut x, rng);
    let mut shape = vec![idx.len()];
    shape.extend_from_slice(&data.sample_shape);
    let labels = match (&split.labels, data.num_classes) {
        (Some(l), Some(k)) => {
            let mut onehot = vec![0f32; idx.len() * k];
            for (r, &i) in idx.iter().enumerate() {
                onehot[r * k + l[i] as usize] = 1.0;
            }
            Some(Tensor::from_vec(onehot, (idx.len(), k), dev)?)
        }
        _ => None,
    };
    Ok(Batch { x: Tensor::from_vec(x, shape, dev)?, labels })
}

/// Early stopping and resumption hooks of one training run.
#[derive(Default)]
pub struct Control<'a> {
    /// Continue from this checkpointed state (weights already loaded into the var map).
    pub resume: Option<TrainState>,
    /// Steps at which `judge` decides whether the trial goes on (ASHA rungs); evaluation runs there too.
    pub rungs: Vec<u64>,
    /// Called at each rung with the evaluation metrics; `false` stops the trial (pruned).
    pub judge: Option<Box<dyn FnMut(u64, &[(String, f64)]) -> bool + 'a>>,
    /// Metrics beyond the model's own (the spec's `metrics:`), computed at each evaluation.
    pub extra: Option<ExtraMetrics<'a>>,
    /// Train as one trial of a stack ([`crate::stacked`]): the stack takes each step (forward, backward,
    /// update of all its trials at once); this loop keeps everything else. The model must be one a stack takes.
    pub stack: Option<crate::stacked::StackMember>,
}

/// Called at each evaluation with the model and whether it is the last one; returns named test metrics.
/// Names starting with `seconds_` are what a metric cost and are logged under `cost/` instead of `test/`.
pub type ExtraMetrics<'a> = Box<dyn FnMut(&dyn GenerativeModel, bool) -> anyhow::Result<Vec<(String, f64)>> + 'a>;

/// A generator for one purpose at one step: every random stream is a pure function of (seed, purpose,
/// step), so a trial resumed at step k draws exactly what the uninterrupted run drew.
fn stream(seed: u64, purpose: u64, step: u64) -> ChaCha8Rng {
    let mut h = seed ^ purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h = (h ^ step).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 31;
    ChaCha8Rng::seed_from_u64(h)
}

const SHUFFLE: u64 = 0x5151;
const BINARIZE: u64 = 0xb1a7;
const NOISE: u64 = 0x0e0e;

/// Train `model` on `data` as `spec` says, logging to `log` and checkpointing to `checkpoint`.
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: &dyn GenerativeModel,
    varmap: &VarMap,
    data: &Dataset,
    binarize: Binarize,
    spec: &TrainSpec,
    seed: u64,
    log: &mut TrialLog,
    checkpoint: &Path,
    progress: &mut dyn FnMut(Progress),
    mut control: Control,
) -> Result<TrainOutcome, TrainError> {
    let dev = Device::Cpu;
    let n = data.train.n;
    let total = spec.total_steps(n);
    let per_epoch = EpochBatches::batches_per_epoch(n, spec.batch_size) as u64;
    let steps_per_epoch = per_epoch as f64;
    let groups = model.param_groups();
    if let Some(name) = spec.groups.keys().find(|k| !groups.iter().any(|g| g.name == k.as_str())) {
        let have: Vec<&str> = groups.iter().map(|g| g.name).collect();
        return Err(anyhow::anyhow!("train.groups.{name}: the model has no parameter group `{name}` (it has: {})", have.join(", ")).into());
    }
    let base_lr: Vec<f64> = groups.iter().map(|g| spec.adam_for(g.name).0).collect();
    let mut opts: Vec<Adam> = groups
        .iter()
        .map(|g| {
            let (lr, beta1, beta2) = spec.adam_for(g.name);
            Adam::new(g.vars.clone(), AdamConfig { lr, beta1, beta2, eps: 1e-8 })
        })
        .collect();
    let phases = model.phases();
    if spec.shards > 1 && !(model.per_example_objective() && phases.iter().all(|p| p.repeats == 1)) {
        return Err(anyhow::anyhow!(
            "train.shards: {} needs a model whose objective is a mean of per-example terms (ae, vae, beta_vae without capacity, cvae, iwae); this model's objective couples the examples of a batch — use train.shards: 1",
            spec.shards
        )
        .into());
    }

    let mut state = control.resume.take().unwrap_or_default();
    if !state.moments.is_empty() {
        for ((opt, t), m) in opts.iter_mut().zip(&state.optim_t).zip(std::mem::take(&mut state.moments)) {
            opt.set_state(*t, m)?;
        }
    }
    if let Some(member) = control.stack.as_mut() {
        if spec.shards > 1 || opts.len() != 1 || phases.len() != 1 || phases[0].repeats != 1 {
            return Err(anyhow::anyhow!("stacked trials: one parameter group, one phase and train.shards: 1 only").into());
        }
        // The weights as built or restored, and the optimizer state restored with them.
        member.join(&data.sample_shape, varmap, opts[0].t, opts[0].state().map(|(_, m)| m).collect())?;
    }
    let first = state.step + 1;
    let earlier_seconds = state.seconds;
    let mut evals = std::mem::take(&mut state.evals);
    let mut pruned_at = None;
    let started = Instant::now();
    let mut last_log = (Instant::now(), state.step);
    let mut waited = std::time::Duration::ZERO;
    let (mut in_steps, mut in_evals) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    // (consecutive, total) batches skipped for a non-finite loss.
    let mut skips = (0u64, 0u64);

    // Batches are gathered (and binarized) on a producer thread, two steps ahead of the optimizer, so
    // the step never waits on data; the time it still waits is logged as train/data_wait_ms.
    std::thread::scope(|scope| -> Result<(), TrainError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<candle_core::Result<Batch>>(2);
        scope.spawn(move || {
            let mut epoch_no = u64::MAX;
            let mut epoch: Vec<Vec<usize>> = vec![];
            for step in first..=total {
                let (e, k) = ((step - 1) / per_epoch, ((step - 1) % per_epoch) as usize);
                if e != epoch_no {
                    epoch = EpochBatches::new(n, spec.batch_size, &mut stream(seed, SHUFFLE, e)).collect();
                    epoch_no = e;
                }
                let batch = make_batch(&data.train, data, &epoch[k], binarize, &mut stream(seed, BINARIZE, step), &dev);
                if tx.send(batch).is_err() {
                    break; // the trainer stopped early
                }
            }
        });
        for step in first..=total {
            let t = Instant::now();
            let batch = rx.recv().map_err(|_| anyhow::anyhow!("the batch producer stopped"))??;
            waited += t.elapsed();
            let mut noise_rng = stream(seed, NOISE, step);
            let decay = spec.lr_decay.factor(step, total);
            let lr = spec.lr * decay;
            opts.iter_mut().zip(&base_lr).for_each(|(o, base)| o.set_lr(base * decay));
            // Each phase's terms from its last repeat, phases in order.
            let mut terms: Vec<(&'static str, f32)> = vec![];
            let joint = match control.stack.is_none() && phases.iter().all(|p| p.repeats == 1) {
                true => model.joint_losses(&batch, &mut ModelCtx { rng: &mut noise_rng, step })?,
                false => None,
            };
            // A non-finite objective: fail, or (on_nan: skip_batch) leave the rest of this step's updates out.
            let mut bad_batch = |step: u64| -> Result<(), TrainError> {
                skips.0 += 1;
                skips.1 += 1;
                match spec.on_nan {
                    crate::spec::OnNan::Fail => Err(TrainError::Diverged { step }),
                    crate::spec::OnNan::SkipBatch if skips.0 >= crate::spec::MAX_CONSECUTIVE_SKIPS => {
                        Err(TrainError::DivergedAfterSkips { step, consecutive: skips.0, total: skips.1 })
                    }
                    crate::spec::OnNan::SkipBatch => Ok(()),
                }
            };
            let mut skipped = false;
            if let Some(member) = control.stack.as_mut() {
                // The noise the solo VAE would draw from this stream (`Vae::sample_posterior`); an AE draws none.
                let eps = match member.noise_dim() {
                    Some(l) => Some(vaelab_models::init::randn(&mut noise_rng, (batch.x.dim(0)?, l), &Device::Cpu)?),
                    None => None,
                };
                let stepped = member.step(&batch.x, eps.as_ref(), base_lr[0] * decay)?;
                if stepped[0].1.is_finite() {
                    terms.extend(stepped);
                } else {
                    bad_batch(step)?;
                    skipped = true;
                }
            } else if let Some(all) = joint {
                // Simultaneous update: every gradient from the same parameters, then every step.
                let mut grads = Vec::with_capacity(all.len());
                for l in &all {
                    if !l.objective.to_scalar::<f32>()?.is_finite() {
                        bad_batch(step)?;
                        skipped = true;
                        break;
                    }
                    grads.push(l.objective.backward()?);
                }
                if skipped {
                    grads.clear();
                }
                for (phase, g) in phases.iter().zip(&grads) {
                    opts[phase.group].step(g)?;
                }
                for l in all.iter().filter(|_| !skipped) {
                    for (name, t) in &l.terms {
                        terms.push((name, t.to_scalar::<f32>()?));
                    }
                }
            } else {
                'phases: for (pi, phase) in phases.iter().enumerate() {
                    let mut last = vec![];
                    for _ in 0..phase.repeats {
                        if spec.shards > 1 {
                            // Data-parallel: per_example_objective was checked before the first step.
                            let s = crate::shards::sharded_loss(model, pi, &batch, spec.shards, &mut noise_rng, step)?;
                            if !s.objective.is_finite() {
                                bad_batch(step)?;
                                skipped = true;
                                break 'phases;
                            }
                            opts[phase.group].step_sum(&s.grads)?;
                            terms.extend(s.terms);
                            continue;
                        }
                        let mut ctx = ModelCtx { rng: &mut noise_rng, step };
                        let losses = model.loss(pi, &batch, &mut ctx)?;
                        let value = losses.objective.to_scalar::<f32>()?;
                        if !value.is_finite() {
                            bad_batch(step)?;
                            skipped = true;
                            break 'phases;
                        }
                        opts[phase.group].backward_step(&losses.objective)?;
                        last = losses.terms;
                    }
                    for (name, t) in &last {
                        terms.push((name, t.to_scalar::<f32>()?));
                    }
                }
            }
            if !skipped {
                skips.0 = 0;
            }
            in_steps += t.elapsed();
            let loss = terms.first().map(|t| t.1 as f64).unwrap_or(f64::NAN);
            progress(Progress { step, total, loss });
            let ep = step as f64 / steps_per_epoch;
            if step % spec.log_every == 0 || step == total {
                for (name, v) in &terms {
                    log.scalar("train", name, step, ep, *v as f64)?;
                }
                let (t0, s0) = last_log;
                let ips = (step - s0) as f64 * spec.batch_size as f64 / t0.elapsed().as_secs_f64().max(1e-9);
                log.scalar("train", "images_per_sec", step, ep, ips)?;
                log.scalar("train", "lr", step, ep, lr)?;
                if spec.on_nan == crate::spec::OnNan::SkipBatch {
                    log.scalar("train", "skipped_batches", step, ep, skips.1 as f64)?;
                }
                log.scalar("train", "data_wait_ms", step, ep, waited.as_secs_f64() * 1e3 / (step - s0) as f64)?;
                waited = std::time::Duration::ZERO;
                last_log = (Instant::now(), step);
            }
            let at_rung = control.rungs.contains(&step);
            let evaluating = step % spec.eval_every == 0 || step == total || at_rung;
            if let Some(member) = control.stack.as_ref().filter(|_| evaluating || spec.checkpoint_every.is_some_and(|k| step % k == 0)) {
                // The evaluation and the checkpoint read this trial's weights and moments from its own model
                // and optimizer.
                let (t, moments) = member.sync(varmap)?;
                opts[0].set_state(t, moments)?;
            }
            if evaluating {
                let eval_started = Instant::now();
                let mut metrics = evaluate(model, data, &data.test, binarize, spec, seed, step)?;
                if let Some(extra) = control.extra.as_mut() {
                    metrics.extend(extra(model, step == total)?);
                }
                for (name, v) in &metrics {
                    log.scalar(if name.starts_with("seconds_") { "cost" } else { "test" }, name, step, ep, *v)?;
                }
                if data.val.n > 0 {
                    for (name, v) in evaluate(model, data, &data.val, binarize, spec, seed, step)? {
                        log.scalar("val", &name, step, ep, v)?;
                        metrics.push((format!("val_{name}"), v));
                    }
                }
                log_images(model, data, binarize, seed, step, log)?;
                in_evals += eval_started.elapsed();
                evals.push((step, metrics.clone()));
                let st = TrainState { step, optim_t: vec![], evals: evals.clone(), seconds: earlier_seconds + started.elapsed().as_secs_f64(), moments: vec![] };
                crate::save_checkpoint(varmap, &opts, &st, checkpoint)?;
                log.flush()?;
                if at_rung && step < total {
                    if let Some(judge) = control.judge.as_mut() {
                        if !judge(step, &metrics) {
                            pruned_at = Some(step);
                            return Ok(());
                        }
                    }
                }
            } else if spec.checkpoint_every.is_some_and(|k| step % k == 0) {
                let st = TrainState { step, optim_t: vec![], evals: evals.clone(), seconds: earlier_seconds + started.elapsed().as_secs_f64(), moments: vec![] };
                crate::save_checkpoint(varmap, &opts, &st, checkpoint)?;
                log.flush()?;
            }
        }
        Ok(())
    })?;
    let primary = model.primary_metric().to_string();
    let final_metrics = evals.last().map(|e| e.1.clone()).unwrap_or_default();
    let best_primary = evals
        .iter()
        .filter_map(|(_, m)| m.iter().find(|(k, _)| *k == primary).map(|x| x.1))
        .fold(f64::INFINITY, f64::min);
    let done = pruned_at.unwrap_or(total);
    let images_per_sec = (done + 1 - first) as f64 * spec.batch_size as f64 / started.elapsed().as_secs_f64().max(1e-9);
    Ok(TrainOutcome { steps: done, primary_metric: primary, final_metrics, best_primary, evals, images_per_sec, pruned_at, resumed_from: first - 1, earlier_seconds, step_seconds: in_steps.as_secs_f64(), eval_seconds: in_evals.as_secs_f64() })
}

/// Mean of every eval metric over a whole split (test or validation). Noise is seeded by (seed, step) so
/// evaluation does not depend on how much randomness training used.
pub fn evaluate(model: &dyn GenerativeModel, data: &Dataset, split: &Split, binarize: Binarize, spec: &TrainSpec, seed: u64, step: u64) -> anyhow::Result<Vec<(String, f64)>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xe7a1 ^ step.wrapping_mul(0x9e37_79b9));
    let mut mean = MeanOf::default();
    let idx: Vec<usize> = (0..split.n).collect();
    for chunk in idx.chunks(spec.eval_batch_size) {
        let batch = make_batch(split, data, chunk, binarize, &mut rng, &Device::Cpu)?;
        let mut ctx = ModelCtx { rng: &mut rng, step };
        for (name, t) in model.eval(&batch, &mut ctx)? {
            mean.add(name, &t.to_vec1::<f32>()?);
        }
    }
    Ok(mean.means())
}

/// The image logs of one evaluation (see [`crate::figures`]).
fn log_images(model: &dyn GenerativeModel, data: &Dataset, binarize: Binarize, seed: u64, step: u64, log: &mut TrialLog) -> anyhow::Result<()> {
    use crate::figures;
    let samples_tag = if model.classes().is_some() { "images/samples_per_class" } else { "images/samples" };
    let figs = [
        ("images/reconstruction", figures::reconstructions(model, data, binarize, seed, 8)?),
        (samples_tag, figures::samples(model, data, seed, 8 * if model.classes().is_some() { 1 } else { 8 }, None)?),
        ("images/traversal", figures::traversal(model, data, binarize, seed)?),
        ("images/interpolation", figures::interpolation(model, data, binarize, seed)?),
        ("images/manifold", figures::manifold(model, data)?),
        ("images/scatter", figures::scatter(model, data, seed)?),
    ];
    for (tag, fig) in figs {
        if let Some(img) = fig {
            log.events.image(tag, &img, step)?;
        }
    }
    Ok(())
}

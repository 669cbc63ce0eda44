//! One trial: its directory and how it runs (data → model → trainer → logs).

use crate::plan::Trial;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use vaelab_data::Dataset;
use vaelab_track::fsutil::write_atomic;
use vaelab_track::hparams::{HValue, SessionStatus};
use vaelab_track::TrialLog;
use vaelab_train::{Progress, TrainError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    Completed,
    Failed,
    /// Stopped early by the sweep's early-stopping rule; its logs and checkpoint stay.
    Pruned,
}

/// `status.yaml` of a trial: what happened and its final numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialStatus {
    pub trial_id: String,
    pub index: usize,
    pub status: State,
    #[serde(default)]
    pub reason: Option<String>,
    /// The swept keys and this trial's values.
    pub hparams: serde_yaml::Mapping,
    pub steps: u64,
    /// Seconds the trial took; for a resumed trial its earlier runs' time up to the checkpoint it continued
    /// from is included (work a killed run did after its last checkpoint is redone, and counted once).
    pub wall_time_s: f64,
    pub started_at: f64,
    #[serde(default)]
    pub primary_metric: Option<String>,
    /// Test-split metrics at the last evaluation.
    #[serde(default)]
    pub final_metrics: BTreeMap<String, f64>,
    #[serde(default)]
    pub best_primary: Option<f64>,
    #[serde(default)]
    pub images_per_sec: Option<f64>,
    /// The step early stopping ended the trial at.
    #[serde(default)]
    pub pruned_at: Option<u64>,
    /// Set when this run continued from a checkpoint at that step.
    #[serde(default)]
    pub resumed_from: Option<u64>,
    /// Where this run's time went (a resumed trial's earlier runs not included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_split: Option<TimeSplit>,
}

/// A trial run's seconds: the training steps, the evaluations, and the rest — setup, scalar logs,
/// checkpoints, event and Parquet files — which is what the runner adds to the training itself.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TimeSplit {
    pub steps_s: f64,
    pub eval_s: f64,
    pub other_s: f64,
}

impl TimeSplit {
    /// The rest as a share of the step time (0.02 = 2%).
    pub fn overhead(&self) -> f64 {
        self.other_s / self.steps_s.max(1e-9)
    }
}

/// `runs/<experiment>/<sweep-id>/<trial-id>/`.
#[derive(Debug, Clone)]
pub struct TrialDir {
    pub path: PathBuf,
}

impl TrialDir {
    pub fn new(sweep_dir: &Path, trial_id: &str) -> Self {
        Self { path: sweep_dir.join(trial_id) }
    }
    pub fn spec(&self) -> PathBuf {
        self.path.join("spec.yaml")
    }
    pub fn status_file(&self) -> PathBuf {
        self.path.join("status.yaml")
    }
    pub fn checkpoint(&self) -> PathBuf {
        self.path.join("checkpoint.safetensors")
    }
    pub fn metrics(&self) -> PathBuf {
        self.path.join("metrics.parquet")
    }

    pub fn read_status(&self) -> Option<TrialStatus> {
        let text = std::fs::read_to_string(self.status_file()).ok()?;
        serde_yaml::from_str(&text).ok()
    }

    pub fn write_status(&self, s: &TrialStatus) -> anyhow::Result<()> {
        write_atomic(&self.status_file(), serde_yaml::to_string(s)?.as_bytes())?;
        Ok(())
    }
}

/// A swept value as the HParams dashboard types it.
pub fn hvalue(v: &serde_yaml::Value) -> HValue {
    match v {
        serde_yaml::Value::Number(n) => HValue::Num(n.as_f64().unwrap_or(f64::NAN)),
        serde_yaml::Value::Bool(b) => HValue::Bool(*b),
        other => HValue::Str(crate::plan::value_flow(other)),
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// An error message without the backtrace candle appends when RUST_BACKTRACE is set.
pub(crate) fn without_backtrace(msg: &str) -> String {
    msg.split("\n   0: ").next().unwrap_or(msg).trim_end().to_string()
}

/// Run one trial to the end and record its status; never panics on a trial's own failure. A trial whose
/// directory holds a valid checkpoint from an interrupted run continues from it; a corrupt checkpoint is
/// reported and the trial starts over.
pub fn run_trial(
    trial: &Trial,
    dir: &TrialDir,
    data: &Dataset,
    feature_net: Option<&crate::schedule::LazyFeatureNet>,
    progress: &mut dyn FnMut(Progress),
    rungs: Vec<u64>,
    judge: Option<Box<dyn FnMut(u64, &[(String, f64)]) -> bool + '_>>,
    mut stack: Option<vaelab_train::stacked::StackMember>,
) -> TrialStatus {
    let start = Instant::now();
    let mut status = TrialStatus {
        trial_id: trial.id.clone(),
        index: trial.index,
        status: State::Running,
        reason: None,
        hparams: trial.overrides.iter().map(|(k, v)| (serde_yaml::Value::from(k.as_str()), v.clone())).collect(),
        steps: 0,
        wall_time_s: 0.0,
        started_at: unix_now(),
        primary_metric: None,
        final_metrics: BTreeMap::new(),
        best_primary: None,
        images_per_sec: None,
        pruned_at: None,
        resumed_from: None,
        time_split: None,
    };
    let mut note = None;
    // The trial's log outlives the training closure so the session end goes into the same event file.
    let mut log_slot: Option<TrialLog> = None;
    let result = (|| -> Result<vaelab_train::TrainOutcome, TrainError> {
        std::fs::create_dir_all(&dir.path).map_err(anyhow::Error::from)?;
        // This process holds the trial (sweep lock or the Slurm task's lock): a temp file of anyone else's is
        // the remains of a killed run.
        vaelab_track::fsutil::remove_stale_temps(&dir.path, true).map_err(anyhow::Error::from)?;
        write_atomic(&dir.spec(), serde_yaml::to_string(&trial.spec).map_err(anyhow::Error::from)?.as_bytes()).map_err(anyhow::Error::from)?;
        dir.write_status(&status)?;
        let spec = &trial.spec;
        let varmap = candle_nn::VarMap::new();
        let info = vaelab_models::DataInfo { shape: &data.sample_shape, num_classes: data.num_classes, train_size: data.train.n };
        let model = vaelab_models::build(&spec.model, &info, &varmap, spec.seed, &candle_core::Device::Cpu)?;
        let resume = match dir.checkpoint().exists() {
            false => None,
            true => match vaelab_train::load_checkpoint(&varmap, &dir.checkpoint()) {
                Ok(state) => Some(state),
                Err(e) => {
                    // Never train on from garbage: start over with fresh weights.
                    note = Some(format!("{e:#}; restarted from scratch"));
                    let fresh = candle_nn::VarMap::new();
                    vaelab_models::build(&spec.model, &info, &fresh, spec.seed, &candle_core::Device::Cpu)?;
                    for (name, var) in varmap.data().lock().unwrap().iter() {
                        var.set(fresh.data().lock().unwrap()[name].as_tensor())?;
                    }
                    std::fs::remove_file(dir.checkpoint()).map_err(anyhow::Error::from)?;
                    None
                }
            },
        };
        let resumed_from = resume.as_ref().map(|r| r.step);
        let log = log_slot.insert(match resumed_from {
            Some(step) => TrialLog::resume(&dir.path, &trial.id, step)?,
            None => TrialLog::create(&dir.path, &trial.id)?,
        });
        // The HParams dashboard's row for this trial: its swept values.
        let hp: Vec<(String, HValue)> = trial.overrides.iter().map(|(k, v)| (k.clone(), hvalue(v))).collect();
        log.events.summary(vaelab_track::hparams::session_start(&hp, &trial.id, status.started_at).map_err(anyhow::Error::from)?, 0).map_err(anyhow::Error::from)?;
        // The spec's extra metrics at every evaluation (final_only ones at the last), each timed.
        let inputs = crate::evaluation::MetricInputs { data, binarize: spec.data.binarize, seed: spec.seed, feature_net };
        let extra: vaelab_train::ExtraMetrics = Box::new(|model, last| {
            let mut out = vec![];
            for m in spec.metrics.iter().filter(|m| last || !m.options.final_only) {
                let t = Instant::now();
                let values = crate::evaluation::compute(m, model, &inputs).map_err(|e| e.context(format!("metric {}", m.name.as_str())))?;
                if !values.is_empty() {
                    out.extend(values);
                    out.push((format!("seconds_{}", m.name.as_str()), t.elapsed().as_secs_f64()));
                }
            }
            Ok(out)
        });
        let outcome = vaelab_train::train(
            model.as_ref(),
            &varmap,
            data,
            spec.data.binarize,
            &spec.train,
            spec.seed,
            log,
            &dir.checkpoint(),
            progress,
            vaelab_train::Control { resume, rungs, judge, extra: Some(extra), stack: stack.take() },
        )?;
        log.flush()?;
        Ok(outcome)
    })();
    // A trial that failed before training leaves its stack here (the others wait for it otherwise).
    drop(stack);
    status.wall_time_s = start.elapsed().as_secs_f64();
    match result {
        Ok(o) => {
            status.time_split = Some(TimeSplit {
                steps_s: o.step_seconds,
                eval_s: o.eval_seconds,
                other_s: (status.wall_time_s - o.step_seconds - o.eval_seconds).max(0.0),
            });
            status.status = if o.pruned_at.is_some() { State::Pruned } else { State::Completed };
            status.pruned_at = o.pruned_at;
            status.resumed_from = (o.resumed_from > 0).then_some(o.resumed_from);
            status.wall_time_s += o.earlier_seconds;
            status.steps = o.steps;
            status.final_metrics = o.final_metrics.into_iter().collect();
            status.best_primary = o.best_primary.is_finite().then_some(o.best_primary);
            status.primary_metric = Some(o.primary_metric);
            status.images_per_sec = Some(o.images_per_sec);
        }
        Err(e) => {
            status.status = State::Failed;
            if let TrainError::Diverged { step } | TrainError::DivergedAfterSkips { step, .. } = &e {
                status.steps = *step;
            }
            status.reason = Some(without_backtrace(&format!("{e:#}")));
        }
    }
    // Session end for the HParams dashboard (a trial that failed before its log existed has no session).
    let end = match status.status {
        State::Completed | State::Pruned => SessionStatus::Success,
        _ => SessionStatus::Failure,
    };
    if let (Some(log), Ok(summary)) = (log_slot.as_mut(), vaelab_track::hparams::session_end(end, unix_now())) {
        let _ = log.events.summary(summary, status.steps).and_then(|_| log.events.flush());
    }
    if let Some(n) = note {
        status.reason = Some(match status.reason.take() {
            Some(r) => format!("{r} ({n})"),
            None => n,
        });
    }
    if let Err(e) = dir.write_status(&status) {
        status.status = State::Failed;
        status.reason = Some(format!("cannot write {}: {e:#}", dir.status_file().display()));
    }
    status
}

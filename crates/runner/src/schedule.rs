//! Running a plan: datasets loaded once, trials in parallel on a rayon pool, progress, summary.
//!
//! Threads: the pool has one thread per core and `jobs` of them each drive one trial at a time. candle's
//! kernels parallelise with rayon inside the current pool (conv loops) and split gemms into
//! `RAYON_NUM_THREADS` parts, so we set that to `cores / jobs` (unless the user did): trials never
//! oversubscribe the cores. Measured on the 2-core quickstart (4 small MLP trials): jobs 2 × 1 kernel thread
//! 12.2 s; jobs 1 × 2 kernel threads 20.5 s; jobs 1 × 1 thread 22.4 s; jobs 2 with candle's default of 2
//! gemm threads per trial was the worst, ≈ 5× slower than 1 (the two trials fight over the same cores).

use crate::plan::{SweepPlan, Trial};
use crate::spec::SpecFile;
use crate::summary;
use crate::trial::{run_trial, State, TrialDir, TrialStatus};
use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vaelab_data::Dataset;

pub struct RunOptions {
    pub runs_dir: PathBuf,
    /// Overrides `sweep.jobs`.
    pub jobs: Option<usize>,
    /// Run only the trial with this index.
    pub only_trial: Option<usize>,
}

pub struct RunReport {
    pub sweep_dir: PathBuf,
    pub statuses: Vec<TrialStatus>,
    pub table: String,
    pub skipped: usize,
}

impl RunReport {
    pub fn failed(&self) -> usize {
        self.statuses.iter().filter(|s| s.status == State::Failed).count()
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Load each distinct dataset of the plan once, before any training, so bad data fails the run early.
fn load_datasets(trials: &[&Trial]) -> anyhow::Result<HashMap<String, Arc<Dataset>>> {
    let mut out = HashMap::new();
    for t in trials {
        let key = serde_yaml::to_string(&t.spec.data)?;
        if !out.contains_key(&key) {
            let d = vaelab_data::load(&t.spec.data, t.spec.data.split_seed).with_context(|| format!("loading data for trial {}", t.id))?;
            out.insert(key, Arc::new(d));
        }
    }
    Ok(out)
}

/// The feature net of each labelled image dataset that a trial's `class_accuracy` needs: loaded from
/// `<runs>/.feature-nets/` or trained there once (3 epochs on the training split) and reported.
fn prepare_feature_nets(
    trials: &[&Trial],
    datasets: &HashMap<String, Arc<Dataset>>,
    runs_dir: &std::path::Path,
) -> anyhow::Result<HashMap<String, Arc<vaelab_metrics::FeatureNet>>> {
    let mut out = HashMap::new();
    for t in trials {
        if !t.spec.metrics.contains(&crate::spec::MetricName::ClassAccuracy) {
            continue;
        }
        let key = serde_yaml::to_string(&t.spec.data)?;
        if out.contains_key(&key) {
            continue;
        }
        let data = &datasets[&key];
        let (Some(k), Some(train_labels), Some(test_labels), true) = (data.num_classes, &data.train.labels, &data.test.labels, data.is_image()) else {
            anyhow::bail!("trial {}: metric class_accuracy needs a labelled image dataset; {} is not one", t.id, data.name);
        };
        let shape = [data.sample_shape[0], data.sample_shape[1], data.sample_shape[2]];
        let dir = runs_dir.join(".feature-nets");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}-{:016x}.safetensors", data.name, crate::plan::fnv1a(key.as_bytes())));
        let net = match path.exists() {
            true => vaelab_metrics::FeatureNet::load(&path, shape, k)?,
            false => {
                let started = Instant::now();
                eprintln!("vaelab: training the {} feature net (3 epochs on {} images) for class_accuracy …", data.name, data.train.n);
                let net = vaelab_metrics::FeatureNet::train(shape, k, &data.train.x, train_labels, 3, 0)?;
                net.save(&path)?;
                eprintln!("vaelab: feature net trained in {:.0}s, saved to {}", started.elapsed().as_secs_f64(), path.display());
                net
            }
        };
        eprintln!("vaelab: {} feature net: test accuracy {:.2}%", data.name, 100.0 * net.accuracy(&data.test.x, test_labels)?);
        out.insert(key, Arc::new(net));
    }
    Ok(out)
}

pub fn run_plan(plan: &SweepPlan, file: &SpecFile, opts: &RunOptions) -> anyhow::Result<RunReport> {
    let sweep_dir = opts.runs_dir.join(&plan.experiment).join(&plan.sweep_id);
    let selected: Vec<&Trial> = match opts.only_trial {
        Some(k) => vec![plan.trials.get(k).with_context(|| format!("--trial {k}: the sweep has {} trials (0..{})", plan.trials.len(), plan.trials.len()))?],
        None => plan.trials.iter().collect(),
    };
    let datasets = load_datasets(&selected)?;
    let feature_nets = prepare_feature_nets(&selected, &datasets, &opts.runs_dir)?;

    std::fs::create_dir_all(&sweep_dir).with_context(|| format!("creating {}", sweep_dir.display()))?;
    vaelab_track::fsutil::write_atomic(&sweep_dir.join("sweep.yaml"), file.source.as_bytes())?;

    let mut skipped = 0;
    let mut queue = VecDeque::new();
    for t in &selected {
        match TrialDir::new(&sweep_dir, &t.id).read_status() {
            Some(s) if s.status == State::Completed => skipped += 1,
            _ => queue.push_back(*t),
        }
    }
    let jobs = opts.jobs.or(file.spec.sweep.jobs).unwrap_or(2).clamp(1, cores()).min(queue.len().max(1));
    let total = queue.len();
    let kernel_threads = (cores() / jobs).max(1);
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Read by candle for every gemm; set before any worker thread exists.
        std::env::set_var("RAYON_NUM_THREADS", kernel_threads.to_string());
    }
    let interactive = std::io::stderr().is_terminal();
    let mp = MultiProgress::with_draw_target(if interactive { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    let overall = mp.add(ProgressBar::new(total as u64));
    overall.set_style(ProgressStyle::with_template("sweep {bar:30.green/white} {pos}/{len} trials  {msg}  [{elapsed_precise}, ETA {eta}]").unwrap());
    overall.set_message("0 failed"); // draws the bar before the first trial ends
    let say = |line: String| {
        if interactive {
            mp.println(line).ok();
        } else {
            eprintln!("{line}");
        }
    };
    say(format!(
        "vaelab: {} — {} trials in {} ({} already completed), {} at a time on {} cores ({} kernel threads each)",
        plan.experiment,
        plan.trials.len(),
        sweep_dir.display(),
        skipped,
        jobs,
        cores(),
        std::env::var("RAYON_NUM_THREADS").unwrap_or_default()
    ));

    let queue = Mutex::new(queue);
    let results: Mutex<Vec<TrialStatus>> = Mutex::new(vec![]);
    let failed_count = Mutex::new(0usize);
    let started = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cores().max(jobs)).build()?;
    pool.scope(|s| {
        for _ in 0..jobs {
            s.spawn(|_| loop {
                let Some(trial) = queue.lock().unwrap().pop_front() else { break };
                let key = serde_yaml::to_string(&trial.spec.data).unwrap();
                let data = datasets[&key].clone();
                let net = feature_nets.get(&key).cloned();
                let bar = mp.add(ProgressBar::new(trial.spec.train.total_steps(data.train.n)));
                bar.set_style(ProgressStyle::with_template("  {prefix} {bar:25.cyan/blue} {pos}/{len} steps  loss {msg}  ETA {eta}").unwrap());
                bar.set_prefix(trial.id.clone());
                let mut last_line = Instant::now();
                let mut on_progress = |p: vaelab_train::Progress| {
                    bar.set_position(p.step);
                    bar.set_message(format!("{:.3}", p.loss));
                    if !interactive && last_line.elapsed().as_secs() >= 10 {
                        eprintln!("  {} step {}/{} loss {:.3}", trial.id, p.step, p.total, p.loss);
                        last_line = Instant::now();
                    }
                };
                let status = run_trial(trial, &TrialDir::new(&sweep_dir, &trial.id), &data, net.as_deref(), &mut on_progress);
                bar.finish_and_clear();
                mp.remove(&bar);
                let line = match status.status {
                    State::Completed => {
                        let primary = status.primary_metric.clone().unwrap_or_default();
                        let v = status.final_metrics.get(&primary).copied().unwrap_or(f64::NAN);
                        format!("  {} completed in {:.1}s: {primary} = {v:.3}", trial.id, status.wall_time_s)
                    }
                    _ => format!("  {} FAILED after {:.1}s: {}", trial.id, status.wall_time_s, status.reason.clone().unwrap_or_default()),
                };
                let failed = {
                    let mut c = failed_count.lock().unwrap();
                    *c += (status.status == State::Failed) as usize;
                    *c
                };
                say(line);
                overall.inc(1);
                overall.set_message(format!("{failed} failed"));
                results.lock().unwrap().push(status);
            });
        }
    });
    overall.finish_and_clear();
    let df = summary::collect(&sweep_dir)?;
    let table = summary::render_table(&df);
    let mut statuses = results.into_inner().unwrap();
    statuses.sort_by_key(|s| s.index);
    say(format!("vaelab: {} trials finished in {:.1}s", statuses.len(), started.elapsed().as_secs_f64()));
    Ok(RunReport { sweep_dir, statuses, table, skipped })
}

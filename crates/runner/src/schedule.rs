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
    /// Train up to this many trials of one architecture together as one stacked computation (`--stack`), on
    /// `device`; trials a stack cannot take run alone.
    pub stack: Option<usize>,
    /// Where stacks run: `cpu`, `cuda`, `cuda:N` (trials alone always run on the CPU).
    pub device: String,
}

/// What one worker of the sweep runs next: a trial alone, or trials as one stack.
enum Work<'a> {
    Alone(&'a Trial),
    Stack(Vec<&'a Trial>),
}

/// Why `trial` cannot join a stack, if it cannot; else the key it shares with the trials it can be stacked
/// with (dataset, AE or VAE, architecture, likelihood, batch size, Adam's β's).
fn stack_key(trial: &Trial) -> Result<String, String> {
    let t = &trial.spec.train;
    let arch = vaelab_models::stacked::architecture(&trial.spec.model).map_err(|e| crate::trial::without_backtrace(&e.to_string()))?;
    if t.shards > 1 || !t.groups.is_empty() {
        return Err("stacked trials: train.shards and train.groups are not stacked".into());
    }
    Ok(format!("{}|{arch}|{}|{}|{}", data_key(&trial.spec.data), t.batch_size, t.beta1, t.beta2))
}

/// The queue's trials in stacks of up to `k` (queue order within each key), and the ones a stack cannot take
/// alone, each with the reason.
fn into_stacks(queue: VecDeque<&Trial>, k: usize) -> (VecDeque<Work<'_>>, Vec<(String, String)>) {
    let mut keys: Vec<(String, Vec<&Trial>)> = vec![];
    let (mut work, mut alone) = (VecDeque::new(), vec![]);
    for t in queue {
        match stack_key(t) {
            Ok(key) => match keys.iter_mut().find(|(k2, _)| *k2 == key) {
                Some((_, v)) => v.push(t),
                None => keys.push((key, vec![t])),
            },
            Err(why) => {
                alone.push((t.id.clone(), why));
                work.push_back(Work::Alone(t));
            }
        }
    }
    for (_, trials) in keys {
        for chunk in trials.chunks(k.max(1)) {
            work.push_back(Work::Stack(chunk.to_vec()));
        }
    }
    (work, alone)
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

/// Trials share a loaded dataset when their data specs differ at most in binarization (applied per batch).
fn data_key(spec: &vaelab_data::DataSpec) -> String {
    let mut s = spec.clone();
    s.binarize = Default::default();
    serde_yaml::to_string(&s).expect("a data spec serializes")
}

/// Load each distinct dataset of the plan once, before any training, so bad data fails the run early.
fn load_datasets(trials: &[&Trial]) -> anyhow::Result<HashMap<String, Arc<Dataset>>> {
    let mut out = HashMap::new();
    for t in trials {
        let key = data_key(&t.spec.data);
        if !out.contains_key(&key) {
            let d = vaelab_data::load(&t.spec.data, t.spec.data.split_seed).with_context(|| format!("loading data for trial {}", t.id))?;
            out.insert(key, Arc::new(d));
        }
    }
    Ok(out)
}

/// A dataset's feature net for `class_accuracy`, loaded from `<runs>/.feature-nets/` or trained there (3 epochs
/// on the training split) the first time a conditional model needs it — a sweep without one never pays.
pub struct LazyFeatureNet {
    path: PathBuf,
    data: Arc<Dataset>,
    net: std::sync::OnceLock<Result<Arc<vaelab_metrics::FeatureNet>, String>>,
}

impl LazyFeatureNet {
    /// The feature net of `data` (loaded with `spec`), cached under `<runs_dir>/.feature-nets/`.
    pub fn for_data(spec: &vaelab_data::DataSpec, data: Arc<Dataset>, runs_dir: &std::path::Path) -> anyhow::Result<Self> {
        if !(data.num_classes.is_some() && data.train.labels.is_some() && data.test.labels.is_some() && data.is_image()) {
            anyhow::bail!("vaelab's feature net needs a labelled image dataset; {} is not one", data.name);
        }
        let key = data_key(spec);
        let path = runs_dir.join(".feature-nets").join(format!("{}-{:016x}.safetensors", data.name, crate::plan::fnv1a(key.as_bytes())));
        Ok(LazyFeatureNet { path, data, net: Default::default() })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn get(&self) -> anyhow::Result<Arc<vaelab_metrics::FeatureNet>> {
        let r = self.net.get_or_init(|| {
            let d = &self.data;
            let shape = [d.sample_shape[0], d.sample_shape[1], d.sample_shape[2]];
            let k = d.num_classes.unwrap_or(0);
            let (train, test) = (d.train.labels.as_deref().unwrap_or(&[]), d.test.labels.as_deref().unwrap_or(&[]));
            (|| -> anyhow::Result<Arc<vaelab_metrics::FeatureNet>> {
                let net = if self.path.exists() {
                    vaelab_metrics::FeatureNet::load(&self.path, shape, k)?
                } else {
                    let started = Instant::now();
                    eprintln!("vaelab: training the {} feature net (3 epochs on {} images) for the metrics in its space …", d.name, d.train.n);
                    let net = vaelab_metrics::FeatureNet::train(shape, k, &d.train.x, train, 3, 0)?;
                    std::fs::create_dir_all(self.path.parent().expect("under .feature-nets"))?;
                    net.save(&self.path)?;
                    eprintln!("vaelab: feature net trained in {:.0}s, saved to {}", started.elapsed().as_secs_f64(), self.path.display());
                    net
                };
                eprintln!("vaelab: {} feature net: test accuracy {:.2}%", d.name, 100.0 * net.accuracy(&d.test.x, test)?);
                Ok(Arc::new(net))
            })()
            .map_err(|e| format!("{e:#}"))
        });
        r.clone().map_err(|e| anyhow::anyhow!(e))
    }
}

/// `vaelab train-feature-net`: train (or find cached) the feature net of every labelled image dataset in
/// the plan; returns the cache files.
pub fn train_feature_nets(plan: &SweepPlan, runs_dir: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = vec![];
    for t in &plan.trials {
        if seen.insert(data_key(&t.spec.data)) {
            let d = vaelab_data::load(&t.spec.data, t.spec.data.split_seed)?;
            let net = LazyFeatureNet::for_data(&t.spec.data, Arc::new(d), runs_dir)?;
            net.get()?;
            out.push(net.path().to_path_buf());
        }
    }
    Ok(out)
}

/// The feature nets the plan's `class_accuracy` metrics may need, checked up front (a labelled image
/// dataset), trained lazily.
fn prepare_feature_nets(trials: &[&Trial], datasets: &HashMap<String, Arc<Dataset>>, runs_dir: &std::path::Path) -> anyhow::Result<HashMap<String, Arc<LazyFeatureNet>>> {
    let mut out = HashMap::new();
    for t in trials {
        if !t.spec.metrics.iter().any(|m| m.name.needs_feature_net()) {
            continue;
        }
        let key = data_key(&t.spec.data);
        if out.contains_key(&key) {
            continue;
        }
        let net = LazyFeatureNet::for_data(&t.spec.data, datasets[&key].clone(), runs_dir).with_context(|| format!("trial {}: metrics class_accuracy, fid_lenet and precision_recall", t.id))?;
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
    // One runner per sweep; with --trial (array jobs) one per trial, so the tasks of an array run together.
    let _lock = match opts.only_trial {
        None => crate::lock::DirLock::acquire(&sweep_dir)?,
        Some(_) => {
            let dir = TrialDir::new(&sweep_dir, &selected[0].id);
            std::fs::create_dir_all(&dir.path)?;
            crate::lock::DirLock::acquire(&dir.path)?
        }
    };
    vaelab_track::fsutil::remove_stale_temps(&sweep_dir, false)?;
    vaelab_track::fsutil::write_atomic(&sweep_dir.join("sweep.yaml"), file.source.as_bytes())?;

    let mut skipped = 0;
    let mut queue = VecDeque::new();
    for t in &selected {
        match TrialDir::new(&sweep_dir, &t.id).read_status() {
            Some(s) if matches!(s.status, State::Completed | State::Pruned) => skipped += 1,
            _ => queue.push_back(*t),
        }
    }
    let total = queue.len();
    let (queue, alone) = match opts.stack {
        None => (queue.into_iter().map(Work::Alone).collect::<VecDeque<_>>(), vec![]),
        Some(_) if opts.only_trial.is_some() => anyhow::bail!("--stack with --trial: one trial is not a stack"),
        Some(k) => into_stacks(queue, k),
    };
    let stack_device = match opts.stack {
        Some(_) => Some(crate::bench::parse_device(&opts.device)?),
        None => None,
    };
    let jobs = opts.jobs.or(file.spec.sweep.jobs).unwrap_or(2).clamp(1, cores()).min(queue.len().max(1));
    let kernel_threads = (cores() / jobs).max(1);
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Read by candle for every gemm; set before any worker thread exists.
        std::env::set_var("RAYON_NUM_THREADS", kernel_threads.to_string());
    }
    let interactive = std::io::stderr().is_terminal();
    let mp = MultiProgress::with_draw_target(if interactive { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    let overall = mp.add(ProgressBar::new(total as u64));
    overall.set_style(ProgressStyle::with_template("sweep {bar:30.green/white} {pos}/{len} trials  {msg}  [{elapsed_precise}, ETA {eta}]").unwrap());
    overall.set_message("0 running, 0 failed, 0 pruned"); // draws the bar before the first trial ends
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

    if opts.stack.is_some() {
        let stacks: Vec<usize> = queue.iter().filter_map(|w| if let Work::Stack(v) = w { Some(v.len()) } else { None }).collect();
        say(format!("vaelab: {} trial(s) in {} stack(s) of {:?} on {}, {} alone", stacks.iter().sum::<usize>(), stacks.len(), stacks, opts.device, alone.len()));
        if stack_device.as_ref().is_some_and(|d| d.is_cpu()) {
            say("  (on the CPU a stack runs candle's generic ops, several times slower than trials alone: --stack is meant for a GPU)".into());
        }
        for (id, why) in &alone {
            say(format!("  {id} runs alone: {why}"));
        }
    }
    let asha = file.spec.sweep.early_stop.clone().map(|es| Asha::load(&sweep_dir, es));
    let queue = Mutex::new(queue);
    let results: Mutex<Vec<TrialStatus>> = Mutex::new(vec![]);
    // (running, failed, pruned) for the sweep bar.
    let counts = Mutex::new((0usize, 0usize, 0usize));
    let show = |c: &(usize, usize, usize)| format!("{} running, {} failed, {} pruned", c.0, c.1, c.2);
    let started = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cores().max(jobs)).build()?;
    // One trial to its end, on the calling thread (with its stack's handle when it is one of a stack).
    let run_one = |trial: &Trial, member: Option<vaelab_train::stacked::StackMember>| {
        let key = data_key(&trial.spec.data);
        let data = datasets[&key].clone();
        let net = feature_nets.get(&key).cloned();
        {
            let mut c = counts.lock().unwrap();
            c.0 += 1;
            overall.set_message(show(&c));
        }
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
        let total_steps = trial.spec.train.total_steps(data.train.n);
        let (rungs, judge): (Vec<u64>, Option<Box<dyn FnMut(u64, &[(String, f64)]) -> bool + '_>>) = match &asha {
            Some(a) => (a.rule.rungs(total_steps), Some(Box::new(|step: u64, m: &[(String, f64)]| a.judge(step, m)))),
            None => (vec![], None),
        };
        let status = run_trial(trial, &TrialDir::new(&sweep_dir, &trial.id), &data, net.as_deref(), &mut on_progress, rungs, judge, member);
        bar.finish_and_clear();
        mp.remove(&bar);
        let line = match status.status {
            State::Completed => {
                let primary = status.primary_metric.clone().unwrap_or_default();
                let v = status.final_metrics.get(&primary).copied().unwrap_or(f64::NAN);
                format!("  {} completed in {:.1}s: {primary} = {v:.3}", trial.id, status.wall_time_s)
            }
            State::Pruned => format!("  {} pruned at step {} after {:.1}s", trial.id, status.pruned_at.unwrap_or(0), status.wall_time_s),
            _ => format!("  {} FAILED after {:.1}s: {}", trial.id, status.wall_time_s, status.reason.clone().unwrap_or_default()),
        };
        let msg = {
            let mut c = counts.lock().unwrap();
            c.0 -= 1;
            c.1 += (status.status == State::Failed) as usize;
            c.2 += (status.status == State::Pruned) as usize;
            show(&c)
        };
        say(line);
        overall.inc(1);
        overall.set_message(msg);
        results.lock().unwrap().push(status);
    };
    pool.scope(|s| {
        for _ in 0..jobs {
            s.spawn(|_| loop {
                let Some(work) = queue.lock().unwrap().pop_front() else { break };
                match work {
                    Work::Alone(trial) => run_one(trial, None),
                    Work::Stack(trials) => {
                        let t = &trials[0].spec.train;
                        let config = vaelab_train::AdamConfig { lr: t.lr, beta1: t.beta1, beta2: t.beta2, eps: 1e-8 };
                        let dev = stack_device.clone().expect("parsed with --stack");
                        let stack = vaelab_train::stacked::Stack::new(trials.len(), dev, config);
                        // Each trial's own loop on its own thread; they meet in the stack at every step.
                        std::thread::scope(|scope| {
                            for (j, trial) in trials.iter().enumerate() {
                                let member = stack.member(j, trial.spec.model.clone());
                                let run_one = &run_one;
                                scope.spawn(move || run_one(trial, Some(member)));
                            }
                        });
                    }
                }
            });
        }
    });
    overall.finish_and_clear();
    let df = summary::collect(&sweep_dir)?;
    let table = summary::render_table(&df);
    let mut statuses = results.into_inner().unwrap();
    statuses.sort_by_key(|s| s.index);
    say(format!("vaelab: {} trials finished in {:.1}s", statuses.len(), started.elapsed().as_secs_f64()));
    if let Some(line) = time_split_line(&statuses) {
        say(line);
    }
    Ok(RunReport { sweep_dir, statuses, table, skipped })
}

/// Where this run's trials spent their time, summed: training steps, evaluations and the rest (setup, scalar
/// logs, checkpoints, event and Parquet files), the rest also as a share of the step time.
fn time_split_line(statuses: &[TrialStatus]) -> Option<String> {
    let splits: Vec<_> = statuses.iter().filter_map(|s| s.time_split).collect();
    if splits.is_empty() {
        return None;
    }
    let (steps, eval, other) = splits.iter().fold((0.0, 0.0, 0.0), |a, t| (a.0 + t.steps_s, a.1 + t.eval_s, a.2 + t.other_s));
    let total = crate::trial::TimeSplit { steps_s: steps, eval_s: eval, other_s: other };
    Some(format!(
        "vaelab: trial time {:.1}s in training steps, {:.1}s in evaluations, {:.1}s in the rest (setup, logs, checkpoints, Parquet) = {:.1}% of the step time",
        steps, eval, other, 100.0 * total.overhead()
    ))
}

/// The ASHA rung table shared by the workers of one sweep, persisted in `early_stop.yaml` so a resumed
/// sweep judges against the same history. Asynchronous by design: which trials are stopped depends on the
/// order in which they reach a rung, as in Li et al.
struct Asha {
    rule: crate::spec::EarlyStop,
    path: PathBuf,
    table: Mutex<std::collections::BTreeMap<u64, Vec<f64>>>,
}

impl Asha {
    fn load(sweep_dir: &std::path::Path, rule: crate::spec::EarlyStop) -> Self {
        let path = sweep_dir.join("early_stop.yaml");
        let table = std::fs::read_to_string(&path).ok().and_then(|t| serde_yaml::from_str(&t).ok()).unwrap_or_default();
        Self { rule, path, table: Mutex::new(table) }
    }

    /// Record `metrics` at rung `step`; true if the trial is among the best 1/eta there.
    fn judge(&self, step: u64, metrics: &[(String, f64)]) -> bool {
        let Some(v) = metrics.iter().find(|(k, _)| *k == self.rule.metric).map(|x| x.1) else {
            return true; // the metric is not reported by this model: never prune on it
        };
        let mut table = self.table.lock().unwrap();
        let seen = table.entry(step).or_default();
        let v = if v.is_finite() { v } else { f64::INFINITY };
        seen.push(v);
        let keep = (seen.len() / self.rule.eta as usize).max(1);
        let rank = seen.iter().filter(|&&x| x < v).count();
        let _ = vaelab_track::fsutil::write_atomic(&self.path, serde_yaml::to_string(&*table).unwrap_or_default().as_bytes());
        rank < keep
    }
}

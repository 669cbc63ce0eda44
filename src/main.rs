//! `vaelab`: train, sweep and compare generative models from a YAML spec.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use vaelab_runner::schedule::{run_plan, RunOptions};
use vaelab_runner::inspect::Picture;
use vaelab_runner::spec::SpecFile;
use vaelab_runner::SweepPlan;

// candle allocates a fresh buffer for every tensor op; with glibc's malloc the large ones are mmap'd and
// page-faulted anew each step (≈ half the process time was sys time on the quickstart). mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc returns freed pages to the OS after `purge_delay` (1 s in mimalloc v3, 10 ms in v2), and a
/// training step frees and re-allocates the same large buffers every ~100 ms, so each step page-faulted them in again (perf:
/// `clear_page_erms` ≈ 8% of a conv VAE step). Never purging keeps them mapped: conv VAE step p50 181 → 149 ms
/// at one thread, peak RSS unchanged (340 → 347 MiB), since the process's peak is reached every step anyway.
/// A user's own `MIMALLOC_PURGE_DELAY` wins.
fn keep_freed_pages() {
    // `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (v2 and v3); libmimalloc-sys names no constant for it.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

/// candle runs its large element-wise ops on its own "barrier pool" (`CANDLE_NUM_THREADS` − 1 workers beside the
/// calling thread), separate from the rayon pool its gemm uses, and each worker spins 25,000 pauses after every
/// op before parking. In a vaelab step the big element-wise work is in the project's own ops (split over rayon);
/// what candle still runs there is mostly backprop's gradient accumulation, and its spinning worker took a core
/// from the gemm that followed (perf, MLP VAE b1024 two threads: the `candle-bp-0` thread 8% of samples). With no
/// pool workers those adds run on the calling thread: `vaelab bench`, two threads, 3 alternating rounds, medians
/// img/s — MLP b1024 26,700 → 31,334, MLP b128 18,966 → 21,991, conv b128 3,438 → 3,596, conv b1024 3,190 →
/// 3,212. A user's own `CANDLE_NUM_THREADS` wins.
fn no_candle_elementwise_pool() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // Before any thread exists and before candle's pool is first built (it reads this once).
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Idle rayon workers keep looking for work for 1 ms before they sleep (the patched rayon-core's
/// `RAYON_SPIN_MICROS`; patches/README.md). A worker that sleeps between a step's ops leaves its CPU idle, and
/// where an idle vCPU halts at once (a KVM guest without halt polling) waking it again went through the host
/// each time: `vaelab bench`, two threads, batch 128, two alternating rounds on such a machine, img/s, 0 → 1,000 µs
/// — MLP one shard 25,559 / 21,274 → 38,100 / 42,346, two shards 38,494 / 28,627 → 44,162 / 44,441; conv one
/// shard 6,166 / 4,924 → 7,153 / 6,955, two shards 6,888 / 6,436 → 8,192 / 8,601. A user's own setting wins.
fn rayon_spin() {
    if std::env::var_os("RAYON_SPIN_MICROS").is_none() {
        // Before rayon's pool is first built (it reads this once).
        std::env::set_var("RAYON_SPIN_MICROS", "1000");
    }
}

#[derive(Parser)]
#[command(name = "vaelab", version, about = "Train, sweep and compare generative models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Expand a spec's sweep and train its trials (resuming: completed trials are skipped).
    Run {
        spec: PathBuf,
        /// Trials at a time (default: the spec's sweep.jobs, else 2; at most the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Where experiments are written.
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        /// Run only the K-th trial of the expansion (as `vaelab validate` numbers them).
        #[arg(long)]
        trial: Option<usize>,
        /// Train up to K trials of one architecture (ae, or vae / beta_vae; same data, likelihood, batch size and
        /// Adam β's) together as one stacked computation on `--device`; other trials run alone. Meant for a GPU.
        #[arg(long)]
        stack: Option<usize>,
        /// Where stacks run: `cpu`, or `cuda` / `cuda:N` (a build with `--features cuda`). Only with --stack.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// On a GPU, f32 matmuls on TF32 tensor cores (as PyTorch runs convolutions by default); results then
        /// differ from full f32 by rounding. No effect on the CPU.
        #[arg(long)]
        tf32: bool,
    },
    /// Write an sbatch job-array script (one task per trial) into the sweep directory and print how to submit it.
    Slurm {
        spec: PathBuf,
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// Compare a sweep's settings: mean ± std of a metric over seeds per hyperparameter setting, best trial each.
    Compare {
        sweep_dir: PathBuf,
        /// Group by these hyperparameter columns (default: every swept key except seed).
        #[arg(long, num_args = 1..)]
        by: Vec<String>,
        /// Metric column or name (default: the final value of the models' primary metric).
        #[arg(long)]
        metric: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Write the result here instead of stdout (required for parquet).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Compute metrics on a trained trial (its last checkpoint), e.g. `--metric '{iwae_nll: {k: 1000}}'`.
    Evaluate {
        trial_dir: PathBuf,
        /// Metric entries as in a spec's `metrics:` list (a name, or `{name: {n, k}}`); repeatable.
        #[arg(long = "metric", required = true)]
        metrics: Vec<String>,
        /// Where feature nets are cached (`<runs>/.feature-nets/`).
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// Training throughput of a reference model (MLP or conv VAE on MNIST): images/s, step-time percentiles,
    /// peak memory, as one JSON line. `scripts/bench.sh` runs it against the PyTorch peer.
    Bench {
        /// `mlp` (VAE 784-400-20) or `conv` (conv 32-64, 16-d latent).
        #[arg(long, default_value = "mlp")]
        model: String,
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// Timed steps, after `--warmup` untimed ones.
        #[arg(long, default_value_t = 50)]
        steps: usize,
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Kernel threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Split each batch into this many data-parallel shards, each on its own thread (`train.shards`).
        #[arg(long, default_value_t = 1)]
        shards: usize,
        /// `cpu`, or `cuda` / `cuda:N` (a build with `--features cuda`: scripts/build-cuda.sh).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Train K trials of the model (seeds 0…K−1) together as one stacked computation — the batched-trial
        /// sweep meant for a GPU; images/s counts all K trials' images.
        #[arg(long)]
        stack: Option<usize>,
        /// On a GPU, f32 matmuls on TF32 tensor cores (as PyTorch runs convolutions by default). No effect on
        /// the CPU.
        #[arg(long)]
        tf32: bool,
        /// Directory of the MNIST IDX files.
        #[arg(long, default_value = "${VAELAB_DATA:-data}/mnist")]
        data: String,
    },
    /// Train (or load) and cache vaelab's feature net for each labelled image dataset of a spec — the
    /// classifier FID-LeNet, precision/recall and class accuracy are computed with.
    TrainFeatureNet {
        spec: PathBuf,
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// Samples from a trained trial's model (per class for conditional models) as a PNG grid.
    Sample {
        trial_dir: PathBuf,
        /// Samples (per class for conditional models).
        #[arg(long, default_value_t = 64)]
        n: usize,
        /// Only this class (conditional models).
        #[arg(long)]
        class: Option<usize>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Test images (top) and a trained trial's reconstructions (bottom) as a PNG.
    Reconstruct {
        trial_dir: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Latent traversals of a trained trial: one row per latent dimension, swept over -3..3.
    Traverse {
        trial_dir: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Interpolations between pairs of test images in a trained trial's latent space.
    Interpolate {
        trial_dir: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// A trained trial's codes of its data (posterior means and log-variances) with the examples' labels and
    /// ground-truth factors, as Parquet for Polars: one row per example.
    Encode {
        trial_dir: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// `train` or `test`.
        #[arg(long, default_value = "train")]
        split: String,
        /// The first N examples of the split.
        #[arg(long, default_value_t = 10_000)]
        n: usize,
    },
    /// Rebuild SWEEP_DIR/trials.parquet from its trial directories and print the summary table.
    Collect { sweep_dir: PathBuf },
    /// Parse a spec, expand its sweep and print the trials, without training.
    Validate { spec: PathBuf },
    /// List the model kinds `model.kind` can name.
    Models,
}

/// `println!` that ends the process quietly when stdout is closed (`vaelab validate … | head`) instead of
/// panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Csv,
    Parquet,
    Markdown,
}

fn compare(sweep_dir: &std::path::Path, by: &[String], metric: Option<&str>, format: Format, output: Option<&std::path::Path>) -> Result<()> {
    use polars::prelude::*;
    let c = vaelab_runner::compare::compare(sweep_dir, by, metric)?;
    let mut table = c.table;
    let text = match format {
        Format::Table => format!("{} by {} ({} is better)\n{}", c.metric, if c.by.is_empty() { "(all trials)".into() } else { c.by.join(", ") }, if vaelab_runner::compare::higher_is_better(&c.metric) { "higher" } else { "lower" }, vaelab_runner::summary::render_table(&table)),
        Format::Markdown => vaelab_runner::compare::markdown(&table),
        Format::Csv => {
            let mut buf = vec![];
            CsvWriter::new(&mut buf).finish(&mut table)?;
            String::from_utf8(buf)?
        }
        Format::Parquet => {
            let Some(out) = output else { anyhow::bail!("--format parquet needs -o FILE") };
            vaelab_track::parquet::write_parquet(&mut table, out)?;
            eprintln!("wrote {}", out.display());
            return Ok(());
        }
    };
    match output {
        Some(out) => vaelab_track::fsutil::write_atomic(out, text.as_bytes())?,
        None => out!("{}", text.trim_end()),
    }
    Ok(())
}

fn picture(dir: &std::path::Path, what: Picture, out: &std::path::Path) -> ExitCode {
    match vaelab_runner::inspect::draw(dir, what, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load(spec: &PathBuf) -> Result<(SpecFile, SweepPlan), String> {
    let file = SpecFile::load(spec).map_err(|e| e.to_string())?;
    let plan = SweepPlan::expand(&file).map_err(|e| e.to_string())?;
    Ok((file, plan))
}

fn write_slurm(file: &SpecFile, plan: &SweepPlan, spec: &std::path::Path, runs_dir: &std::path::Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(runs_dir)?;
    let (spec, runs_dir) = (std::fs::canonicalize(spec)?, std::fs::canonicalize(runs_dir)?);
    let sweep_dir = runs_dir.join(&plan.experiment).join(&plan.sweep_id);
    std::fs::create_dir_all(&sweep_dir)?;
    let res = file.spec.sweep.slurm.clone().unwrap_or_default();
    let text = vaelab_runner::slurm::sbatch_script(plan, &res, &spec, &runs_dir, &sweep_dir, &std::env::current_exe()?, &std::env::current_dir()?);
    let script = sweep_dir.join("slurm.sbatch");
    vaelab_track::fsutil::write_atomic(&script, text.as_bytes())?;
    Ok((script, sweep_dir))
}

fn main() -> ExitCode {
    keep_freed_pages();
    no_candle_elementwise_pool();
    rayon_spin();
    let cli = Cli::parse();
    match cli.command {
        Command::Models => {
            for k in vaelab_models::kinds() {
                out!("{k}");
            }
            ExitCode::SUCCESS
        }
        Command::Compare { sweep_dir, by, metric, format, output } => match compare(&sweep_dir, &by, metric.as_deref(), format, output.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Bench { model, batch, steps, warmup, threads, shards, device, stack, tf32, data } => {
            vaelab_runner::bench::use_tf32(tf32);
            if let Some(t) = threads {
                // Before candle's first kernel: its thread pool reads this once.
                std::env::set_var("RAYON_NUM_THREADS", t.to_string());
            }
            let result = vaelab_runner::bench::RefModel::parse(&model)
                .and_then(|m| Ok((m, vaelab_runner::bench::parse_device(&device)?)))
                .and_then(|(m, dev)| match stack {
                    Some(_) if shards > 1 => anyhow::bail!("--stack with --shards {shards}: a stack is not split into shards"),
                    Some(k) => vaelab_runner::bench::run_stacked(m, batch, steps, warmup, k, &data, 0, &dev),
                    None => vaelab_runner::bench::run(m, batch, steps, warmup, shards, &data, 0, &dev),
                });
            match result {
                Ok(r) => {
                    out!("{}", serde_json::to_string(&r).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Evaluate { trial_dir, metrics, runs_dir } => {
            let parsed: Result<Vec<vaelab_runner::spec::MetricSpec>> = metrics.iter().map(|m| vaelab_runner::spec::MetricSpec::parse(m).with_context(|| format!("--metric {m}"))).collect();
            match parsed.and_then(|ms| vaelab_runner::inspect::evaluate(&trial_dir, &ms, &runs_dir)) {
                Ok(values) => {
                    for (k, v) in values {
                        out!("{k}\t{v:.6}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::TrainFeatureNet { spec, runs_dir } => {
            let (_, plan) = match load(&spec) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match vaelab_runner::schedule::train_feature_nets(&plan, &runs_dir) {
                Ok(paths) => {
                    for p in paths {
                        out!("{}", p.display());
                    }
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(2);
                }
            }
            ExitCode::SUCCESS
        }
        Command::Sample { trial_dir, n, class, output } => picture(&trial_dir, Picture::Sample { n, class }, &output),
        Command::Reconstruct { trial_dir, output } => picture(&trial_dir, Picture::Reconstruct, &output),
        Command::Traverse { trial_dir, output } => picture(&trial_dir, Picture::Traverse, &output),
        Command::Interpolate { trial_dir, output } => picture(&trial_dir, Picture::Interpolate, &output),
        Command::Encode { trial_dir, output, split, n } => match vaelab_runner::inspect::encode(&trial_dir, &split, n, &output) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Collect { sweep_dir } => match vaelab_runner::summary::collect(&sweep_dir) {
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
            Ok(df) => {
                out!("{}", vaelab_runner::summary::render_table(&df));
                out!("wrote {}", sweep_dir.join("trials.parquet").display());
                ExitCode::SUCCESS
            }
        },
        Command::Slurm { spec, runs_dir } => {
            let (file, plan) = match load(&spec) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match write_slurm(&file, &plan, &spec, &runs_dir) {
                Ok((script, sweep_dir)) => {
                    out!("wrote {} ({} array tasks)", script.display(), plan.trials.len());
                    out!("submit:  sbatch {}", script.display());
                    out!("then:    vaelab collect {}", sweep_dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Validate { spec } => match load(&spec) {
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
            Ok((_, plan)) => {
                out!("{}: {} trials (sweep id {})", plan.experiment, plan.trials.len(), plan.sweep_id);
                for t in &plan.trials {
                    let o: Vec<String> = t.overrides.iter().map(|(k, v)| format!("{k}={}", vaelab_runner::plan::value_flow(v))).collect();
                    out!("  [{}] {}  {}", t.index, t.id, o.join("  "));
                }
                ExitCode::SUCCESS
            }
        },
        Command::Run { spec, jobs, runs_dir, trial, stack, device, tf32 } => {
            vaelab_runner::bench::use_tf32(tf32);
            let (file, plan) = match load(&spec) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let trial = trial.or_else(|| std::env::var("SLURM_ARRAY_TASK_ID").ok().and_then(|s| s.parse().ok()));
            match run_plan(&plan, &file, &RunOptions { runs_dir, jobs, only_trial: trial, stack, device }) {
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
                Ok(report) => {
                    out!("{}", report.table);
                    out!("results: {}", report.sweep_dir.display());
                    if report.failed() > 0 {
                        eprintln!("{} trial(s) failed", report.failed());
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The option index is the one mimalloc documents as `purge_delay`: its default is 1000 ms in v3, 10 ms in v2
    /// (unless the user set `MIMALLOC_PURGE_DELAY`), and `keep_freed_pages` turns it to −1.
    #[test]
    fn purge_delay_option_is_the_one_set() {
        let get = || unsafe { libmimalloc_sys::mi_option_get(15) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert!([10, 1000].contains(&get()), "option 15 is {}, not purge_delay's default", get());
            super::keep_freed_pages();
            assert_eq!(get(), -1);
        }
    }
}

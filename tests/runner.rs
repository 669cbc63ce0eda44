//! The sweep runner as users lean on it: killed and resumed, early stopping, locks, Slurm scripts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{status, sweep_dir, text, trials, vaelab, write_spec};

/// Three small VAEs on the ring, checkpointing every 10 steps.
const RESUMABLE: &str = "\
name: resumable
seed: 1
data: {kind: ring8, n_train: 4000, n_test: 500}
model: {kind: vae, latent_dim: 2, hidden: [64, 64], likelihood: gaussian}
train: {steps: 600, batch_size: 64, eval_every: 200, log_every: 20, checkpoint_every: 10}
sweep:
  grid:
    model.latent_dim: [2, 3, 4]
  jobs: 1
";

/// Every file under `dir` either parses or is a temporary file that a killed writer left (removed at resume).
/// Returns the number of temporary files seen.
fn check_files_parse(dir: &Path) -> usize {
    use polars::prelude::SerReader;
    let mut temps = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            temps += check_files_parse(&p);
        } else if name.starts_with('.') && name.contains(".tmp") {
            temps += 1;
        } else if name.ends_with(".safetensors") {
            safetensors::SafeTensors::deserialize(&std::fs::read(&p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        } else if name.ends_with(".parquet") {
            polars::prelude::ParquetReader::new(std::fs::File::open(&p).unwrap()).finish().unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        } else if name.ends_with(".yaml") {
            serde_yaml::from_str::<serde_yaml::Value>(&std::fs::read_to_string(&p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
        // TensorBoard event files are append-only logs: a kill can cut the last record, which readers skip.
    }
    temps
}

/// SIGKILL the runner at 20 seeded points — while a checkpoint, a Parquet file, a status or a spec file is
/// being written (temporary file filled, not yet renamed: `VAELAB_KILL_AT`), and after seeded random delays
/// (mid-step) — resuming after each. Every file on disk parses or is a temp file that the next run removes, no
/// completed trial is rerun, and the final numbers equal those of a run that was never interrupted.
#[test]
fn killed_sweeps_resume_to_the_same_results() {
    use rand::{Rng, SeedableRng};
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "resumable.yaml", RESUMABLE);
    let clean = tmp.path().join("clean");
    let t0 = Instant::now();
    let out = vaelab(&["run", spec.to_str().unwrap(), "--runs-dir", clean.to_str().unwrap()], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let clean_sweep = sweep_dir(&clean, "resumable");
    // Delays are drawn as fractions of this machine's uninterrupted run, so that a delay kill lands mid-run on
    // fast and slow machines alike (fixed delays let runs finish first on a fast CI machine).
    let clean_ms = t0.elapsed().as_millis().max(200) as f64;

    // The kill points, drawn from a seeded stream: (file-name substring, n-th write of it in that run) — with n
    // in the range that one run reaches — or a delay in ms. Drawn until 20 of them have killed a run.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261123);
    let sites = [("checkpoint", 40), ("metrics.parquet", 4), ("status.yaml", 5), ("spec.yaml", 3), ("trials.parquet", 1), ("sweep.yaml", 1)];
    let mut drawn = 0;
    let mut points = std::iter::from_fn(move || {
        drawn += 1;
        Some(match drawn % 2 {
            0 => {
                let (site, most) = sites[rng.random_range(0..sites.len())];
                (Some((site, rng.random_range(1..=most))), 0)
            }
            _ => (None, (rng.random_range(0.05..0.9) * clean_ms) as u64),
        })
    });
    let (mut kills, mut temps_seen, mut episodes, mut tried, mut mid_write) = (0, 0, 0, 0, 0);
    while kills < 20 {
        // An episode: a fresh runs directory, killed at the next points until a run completes the sweep.
        episodes += 1;
        // A bound, not a target: an episode ends when a run completes (late delays in an episode outlast the
        // little work left), so episodes hold 1–6 kills; 20 kills normally take 6–10 episodes.
        assert!(episodes <= 25, "20 kills within 25 episodes (got {kills})");
        let killed = tmp.path().join(format!("killed{episodes}"));
        let mut finished_at: std::collections::HashMap<PathBuf, String> = Default::default();
        loop {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_vaelab"));
            cmd.args(["run", spec.to_str().unwrap(), "--runs-dir", killed.to_str().unwrap()])
                .current_dir(tmp.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let next = points.next();
            tried += 1;
            if let Some((Some((site, n)), _)) = next {
                cmd.env("VAELAB_KILL_AT", format!("{site}:{n}"));
            }
            let mut child = cmd.spawn().unwrap();
            let wait = match next {
                Some((None, ms)) => Duration::from_millis(ms),
                _ => Duration::from_secs(600),
            };
            let t = Instant::now();
            let mut exit = None;
            while t.elapsed() < wait {
                if let Some(s) = child.try_wait().unwrap() {
                    exit = Some(s);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let was_killed = match exit {
                None => {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    true
                }
                Some(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    assert!(s.success() || s.signal() == Some(9), "{next:?}: {s:?}");
                    !s.success()
                }
            };
            let sweep = sweep_dir(&killed, "resumable");
            temps_seen += check_files_parse(&sweep);
            for t in trials(&sweep) {
                if t.join("status.yaml").exists() && status(&t)["status"] == "completed" {
                    let stamp = format!("{:?}", status(&t)["started_at"]);
                    if let Some(prev) = finished_at.get(&t) {
                        assert_eq!(prev, &stamp, "{} was rerun after it completed", t.display());
                    }
                    finished_at.insert(t.clone(), stamp);
                }
            }
            if !was_killed {
                break; // the sweep completed
            }
            kills += 1;
            mid_write += next.is_some_and(|(site, _)| site.is_some()) as usize;
        }
        let sweep = sweep_dir(&killed, "resumable");
        assert_eq!(check_files_parse(&sweep), 0, "the completing run removed every temp file a kill left");
        let mut resumed = 0;
        for (ta, tb) in trials(&sweep).iter().zip(trials(&clean_sweep)) {
            let (sa, sb) = (status(ta), status(&tb));
            assert_eq!(sa["status"], "completed");
            assert_eq!(sa["steps"], sb["steps"]);
            resumed += sa["resumed_from"].as_u64().is_some() as usize;
            // Per-step random streams and the checkpointed optimizer make the resumed run identical.
            assert_eq!(sa["final_metrics"], sb["final_metrics"], "{}", ta.display());
        }
        eprintln!("episode {episodes}: {kills} kills so far ({tried} runs), {resumed} trials resumed from a checkpoint");
    }
    eprintln!("{kills} kills in {tried} runs: {mid_write} mid-write, {} after a delay; {temps_seen} temp files seen and removed", kills - mid_write);
    assert!(mid_write >= 5 && temps_seen >= 5, "kills hit writes between fill and rename ({mid_write} kills, {temps_seen} temp files)");
}

/// A trial killed late and resumed reports the time of all its training, not only its last run's: the
/// checkpoint carries the seconds behind its step, and the finished trial's `wall_time_s` adds them.
#[test]
fn a_resumed_trial_counts_the_time_of_its_earlier_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(
        tmp.path(),
        "timed.yaml",
        "name: timed\nseed: 3\ndata: {kind: ring8, n_train: 2000, n_test: 300}\n\
         model: {kind: vae, latent_dim: 2, hidden: [64, 64], likelihood: gaussian}\n\
         train: {steps: 500, batch_size: 64, eval_every: 250, checkpoint_every: 10}\n",
    );
    let runs = tmp.path().join("runs");
    // Killed while writing its 45th checkpoint: the 44th (step 440) is on disk.
    let killed = Command::new(env!("CARGO_BIN_EXE_vaelab"))
        .args(["run", spec.to_str().unwrap(), "--runs-dir", runs.to_str().unwrap()])
        .env("VAELAB_KILL_AT", "checkpoint:45")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!killed.success());
    let trial = trials(&sweep_dir(&runs, "timed")).pop().unwrap();
    let bytes = std::fs::read(trial.join("checkpoint.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let state: serde_yaml::Value = serde_yaml::from_str(&header.metadata().as_ref().unwrap()["vaelab.state"]).unwrap();
    assert_eq!(state["step"].as_u64(), Some(440));
    let earlier = state["seconds"].as_f64().expect("the checkpoint records its training seconds");
    assert!(earlier > 0.0);

    let out = vaelab(&["run", spec.to_str().unwrap(), "--runs-dir", runs.to_str().unwrap()], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let s = status(&trial);
    assert_eq!(s["resumed_from"].as_u64(), Some(440));
    let wall = s["wall_time_s"].as_f64().unwrap();
    // The last run trained 60 of the 500 steps; its own time alone would be well under the first run's 440.
    assert!(wall > earlier, "wall_time_s {wall} leaves out the {earlier} s before step 440");
}

/// A trial's time split (status.yaml `time_split`) puts checkpoint writing in "the rest", not in the steps:
/// the trial that checkpoints every step spends far more there than the one that checkpoints once, and the
/// three parts add up to the trial's wall time. The sweep's last line reports the rest as a share of the steps.
#[test]
fn the_time_split_charges_checkpoints_to_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(
        tmp.path(),
        "split.yaml",
        "name: split\nseed: 3\ndata: {kind: ring8, n_train: 2000, n_test: 300}\n\
         model: {kind: vae, latent_dim: 2, hidden: [64, 64], likelihood: gaussian}\n\
         train: {steps: 300, batch_size: 64, eval_every: 300}\n\
         sweep: {grid: {train.checkpoint_every: [1, 1000]}, jobs: 1}\n",
    );
    let runs = tmp.path().join("runs");
    let out = vaelab(&["run", spec.to_str().unwrap(), "--runs-dir", runs.to_str().unwrap()], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("in training steps"), "{}", text(&out));
    let mut other = vec![];
    for trial in trials(&sweep_dir(&runs, "split")) {
        let s = status(&trial);
        let t = &s["time_split"];
        let (steps, eval, rest) = (t["steps_s"].as_f64().unwrap(), t["eval_s"].as_f64().unwrap(), t["other_s"].as_f64().unwrap());
        let wall = s["wall_time_s"].as_f64().unwrap();
        assert!(steps > 0.0 && eval > 0.0 && rest > 0.0, "{t:?}");
        assert!((steps + eval + rest - wall).abs() < 1e-6 * wall.max(1.0), "{steps} + {eval} + {rest} vs wall {wall}");
        other.push((s["hparams"]["train.checkpoint_every"].as_u64().unwrap(), rest));
    }
    other.sort_by_key(|o| o.0);
    assert_eq!(other.len(), 2);
    // 300 checkpoints against one: the writes land in the rest.
    assert!(other[0].1 > 3.0 * other[1].1, "checkpoint every step: {:.3} s, once: {:.3} s", other[0].1, other[1].1);
}

#[test]
fn early_stopping_prunes_trials_that_fall_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(
        tmp.path(),
        "asha.yaml",
        "name: asha
data: {kind: ring8, n_train: 2000, n_test: 300}
model: {kind: vae, latent_dim: 2, hidden: [32], likelihood: gaussian}
train: {steps: 270, batch_size: 64, eval_every: 1000}
sweep:
  random:
    n: 9
    seed: 4
    params:
      train.lr: {log_uniform: [0.00001, 0.03]}
  early_stop: {metric: neg_elbo, min_steps: 30, eta: 3}
  jobs: 1
",
    );
    let out = vaelab(&["run", spec.to_str().unwrap(), "--runs-dir", "runs"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let sweep = sweep_dir(&tmp.path().join("runs"), "asha");
    let statuses: Vec<_> = trials(&sweep).iter().map(|t| status(t)).collect();
    let pruned: Vec<_> = statuses.iter().filter(|s| s["status"] == "pruned").collect();
    assert!(!pruned.is_empty() && pruned.len() < statuses.len(), "{}", text(&out));
    for p in &pruned {
        let at = p["pruned_at"].as_u64().unwrap();
        assert!([30, 90].contains(&at), "pruned at a rung, not {at}");
        assert_eq!(p["steps"].as_u64(), Some(at));
    }
    assert!(sweep.join("early_stop.yaml").exists());
    // The rerun skips pruned trials as well as completed ones.
    let again = vaelab(&["run", spec.to_str().unwrap(), "--runs-dir", "runs"], tmp.path());
    assert!(text(&again).contains("(9 already completed)"), "{}", text(&again));
}

#[test]
fn a_second_runner_is_refused_and_a_stale_lock_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "lock.yaml", "name: lock\ndata: {kind: ring8, n_train: 500, n_test: 100}\nmodel: {kind: vae, hidden: [8], likelihood: gaussian}\ntrain: {steps: 5}\n");
    let out = vaelab(&["validate", spec.to_str().unwrap()], tmp.path());
    let sweep_id = text(&out).split("sweep id ").nth(1).unwrap().split(')').next().unwrap().to_string();
    let sweep = tmp.path().join("runs/lock").join(&sweep_id);
    std::fs::create_dir_all(&sweep).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    // A live owner (this test process): refused, nothing trained.
    std::fs::write(sweep.join(".lock"), format!("pid {} host {host}\n", std::process::id())).unwrap();
    let out = vaelab(&["run", spec.to_str().unwrap()], tmp.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(&format!("in use by another vaelab run (pid {}", std::process::id())), "{}", text(&out));
    assert_eq!(trials(&sweep).len(), 0);
    // A dead owner: taken over, trained, lock released.
    std::fs::write(sweep.join(".lock"), format!("pid 4000000 host {host}\n")).unwrap();
    let out = vaelab(&["run", spec.to_str().unwrap()], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("taking over the stale lock"));
    assert!(!sweep.join(".lock").exists());
}

#[test]
fn slurm_script_runs_one_trial_per_array_task() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(
        tmp.path(),
        "arr.yaml",
        "name: arr\ndata: {kind: ring8}\nmodel: {kind: vae, likelihood: gaussian}\nsweep:\n  grid: {model.latent_dim: [2, 4, 8]}\n  seeds: [0, 1]\n  slurm: {cpus: 1, mem: 1G, time: '00:10:00', max_parallel: 2}\n",
    );
    let out = vaelab(&["slurm", spec.to_str().unwrap()], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("sbatch "), "{}", text(&out));
    let script = std::fs::read_to_string(sweep_dir(&tmp.path().join("runs"), "arr").join("slurm.sbatch")).unwrap();
    for want in ["#SBATCH --array=0-5%2", "#SBATCH --cpus-per-task=1", "#SBATCH --mem=1G", "#SBATCH --time=00:10:00", "--trial \"$SLURM_ARRAY_TASK_ID\""] {
        assert!(script.contains(want), "missing {want:?} in\n{script}");
    }
}

/// The generated array job on a real Slurm (started by scripts/slurm/local-cluster.sh; `.ci/run` does that
/// and sets VAELAB_SLURM_TEST=1): every task completes and `vaelab collect` gives the trials.parquet of a
/// local run — same trial ids, hyperparameters and metrics.
#[test]
fn slurm_array_matches_a_local_run() {
    if std::env::var("VAELAB_SLURM_TEST").is_err() {
        eprintln!("skipped: set VAELAB_SLURM_TEST=1 with a Slurm cluster up (scripts/slurm/local-cluster.sh start)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(
        tmp.path(),
        "arr.yaml",
        "name: arr\ndata: {kind: ring8, n_train: 2000, n_test: 300}\nmodel: {kind: vae, hidden: [32], likelihood: gaussian}\n\
         train: {steps: 120, batch_size: 64, eval_every: 60}\nsweep:\n  grid: {model.latent_dim: [2, 4]}\n  seeds: [0, 1]\n  \
         slurm: {cpus: 1, mem: 500M, time: '00:05:00', max_parallel: 2}\n",
    );
    let out = vaelab(&["slurm", spec.to_str().unwrap(), "--runs-dir", "slurm-runs"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let sweep = sweep_dir(&tmp.path().join("slurm-runs"), "arr");
    let sb = Command::new("sbatch").args(["--wait", sweep.join("slurm.sbatch").to_str().unwrap()]).current_dir(tmp.path()).output().expect("sbatch runs");
    assert!(sb.status.success(), "sbatch: {}", text(&sb));
    let out = vaelab(&["collect", sweep.to_str().unwrap()], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let local = vaelab(&["run", spec.to_str().unwrap(), "--runs-dir", "local-runs"], tmp.path());
    assert!(local.status.success(), "{}", text(&local));
    let read = |p: PathBuf| polars::prelude::ParquetReader::new(std::fs::File::open(p).unwrap()).finish().unwrap();
    use polars::prelude::SerReader;
    let a = read(sweep.join("trials.parquet"));
    let b = read(sweep_dir(&tmp.path().join("local-runs"), "arr").join("trials.parquet"));
    assert_eq!(a.height(), 4);
    for col in ["trial_id", "status", "model.latent_dim", "seed", "final_neg_elbo", "final_kl", "steps"] {
        assert_eq!(a.column(col).unwrap(), b.column(col).unwrap(), "column {col}");
    }
}

/// A checkpoint with flipped bytes or cut short is refused at resume (checksum / format), reported in the
/// trial's status, and the trial starts over — ending with exactly the numbers of a clean run.
#[test]
fn corrupt_checkpoints_are_detected_and_never_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "c.yaml", "name: c\nseed: 2\ndata: {kind: ring8, n_train: 1000, n_test: 200}\nmodel: {kind: vae, hidden: [32], likelihood: gaussian}\ntrain: {steps: 100, batch_size: 32, eval_every: 50}\n");
    let out = vaelab(&["run", spec.to_str().unwrap()], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let sweep = sweep_dir(&tmp.path().join("runs"), "c");
    let trial = trials(&sweep).pop().unwrap();
    let clean = status(&trial);
    let ckpt = trial.join("checkpoint.safetensors");
    let good = std::fs::read(&ckpt).unwrap();
    for (how, damaged, says) in [
        ("flipped bytes", { let mut b = good.clone(); let n = b.len(); for i in (n - 400..n - 10).step_by(37) { b[i] ^= 0x5a; } b }, "checksum mismatch"),
        ("truncated", good[..good.len() / 2].to_vec(), "is corrupt"),
    ] {
        // As if the runner died mid-trial: status running, the damaged checkpoint on disk.
        let st = std::fs::read_to_string(trial.join("status.yaml")).unwrap().replace("status: completed", "status: running");
        std::fs::write(trial.join("status.yaml"), st).unwrap();
        std::fs::write(&ckpt, &damaged).unwrap();
        let out = vaelab(&["run", spec.to_str().unwrap()], tmp.path());
        assert!(out.status.success(), "{how}: {}", text(&out));
        let s = status(&trial);
        assert_eq!(s["status"], "completed", "{how}");
        let reason = s["reason"].as_str().unwrap_or_default().to_string();
        assert!(reason.contains(says) && reason.contains("restarted from scratch"), "{how}: reason {reason:?}");
        assert!(s["resumed_from"].is_null(), "{how}: nothing was resumed from the damaged file");
        assert_eq!(s["final_metrics"], clean["final_metrics"], "{how}: the restart reproduces the clean run");
        safetensors::SafeTensors::deserialize(&std::fs::read(&ckpt).unwrap()).expect("a fresh, valid checkpoint");
    }
}

/// Disk full: trials write into a 1.5 MB tmpfs. A finished trial's checkpoint stays intact; trials whose
/// checkpoints do not fit end `failed` with "No space left on device" (no half-written file left behind), the
/// sweep goes on to its end and exits 1. Needs root and mount rights (this machine and CI have both).
#[test]
fn a_full_disk_fails_trials_cleanly_and_keeps_earlier_checkpoints() {
    if !Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false) {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let m = Command::new("mount").args(["-t", "tmpfs", "-o", "size=1500k", "tmpfs"]).arg(&small).output().unwrap();
    if !m.status.success() {
        // A container without mount rights (RLIMIT_FSIZE would kill the process with SIGXFSZ instead of
        // failing the write, so it is no substitute).
        eprintln!("skipped: cannot mount a tmpfs here: {}", text(&m));
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(small.clone());
    let runs = small.join("runs");
    let write = |name: &str, hidden: &str| {
        let p = tmp.path().join(format!("{name}.yaml"));
        std::fs::write(&p, format!("name: {name}\ndata: {{kind: ring8, n_train: 2000, n_test: 200}}\nmodel: {{kind: vae, hidden: {hidden}, likelihood: gaussian}}\ntrain: {{steps: 40, batch_size: 32, eval_every: 20}}\nsweep:\n  grid: {{model.latent_dim: [2, 3]}}\n  jobs: 1\n")).unwrap();
        p
    };
    let (fits, too_big) = (write("fits", "[16]"), write("big", "[256, 256]"));
    let out = vaelab(&["run", fits.to_str().unwrap(), "--runs-dir", runs.to_str().unwrap()], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let kept: Vec<(PathBuf, Vec<u8>)> = trials(&sweep_dir(&runs, "fits")).iter().map(|t| (t.join("checkpoint.safetensors"), std::fs::read(t.join("checkpoint.safetensors")).unwrap())).collect();

    let out = vaelab(&["run", too_big.to_str().unwrap(), "--runs-dir", runs.to_str().unwrap()], tmp.path());
    assert_eq!(out.status.code(), Some(1), "some trials failed: {}", text(&out));
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
    for t in trials(&sweep_dir(&runs, "big")) {
        let s = status(&t);
        assert_eq!(s["status"], "failed", "{}", t.display());
        assert!(s["reason"].as_str().unwrap().contains("No space left on device"), "{:?}", s["reason"]);
        for e in std::fs::read_dir(&t).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            assert!(!name.contains(".tmp"), "no temporary file left: {name}");
        }
    }
    for (path, bytes) in kept {
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{} untouched", path.display());
        safetensors::SafeTensors::deserialize(&bytes).unwrap();
    }
}

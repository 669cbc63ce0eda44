//! `vaelab run --stack K`: a sweep's trials of one architecture trained together as one stacked computation
//! (#8's batched-trial sweep, meant for a GPU; here on the CPU, where the same code runs).

use polars::prelude::*;
use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{sweep_dir, text, vaelab, write_spec};

/// Conv β-VAEs, AEs and β-TCVAEs (a stack does not take those) at three learning rates; the last diverges.
const SPEC: &str = "\
name: stacked
seed: 3
data:
  kind: dsprites
  image_size: 32
  n_train: 1024
  n_test: 256
model:
  kind: beta_vae
  beta: 4.0
  backbone: conv
  channels: [8, 16]
  latent_dim: 4
train:
  steps: 20
  batch_size: 32
  eval_every: 10
  log_every: 5
sweep:
  grid:
    model.kind: [beta_vae, ae, beta_tc_vae]
    train.lr: [0.001, 0.003, 1.0e+12]
";

/// The sweep's trials (id, status, final metrics), by id.
fn finals(runs: &Path) -> DataFrame {
    let f = sweep_dir(runs, "stacked").join("trials.parquet");
    let df = ParquetReader::new(std::fs::File::open(&f).unwrap()).finish().unwrap();
    let cols: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).filter(|c| c.starts_with("final_") || c == "trial_id" || c == "status").collect();
    df.select(cols).unwrap().sort(["trial_id"], Default::default()).unwrap()
}

fn run(spec: &Path, runs: &str, extra: &[&str], cwd: &Path) -> String {
    let mut args = vec!["run", spec.to_str().unwrap(), "--runs-dir", runs];
    args.extend_from_slice(extra);
    let out = vaelab(&args, cwd);
    // The two diverging trials fail (exit 1); anything else is an error.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    text(&out)
}

#[test]
fn stacked_trials_train_as_they_would_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "stacked.yaml", SPEC);
    let log = run(&spec, "in_one", &["--stack", "8"], tmp.path());
    assert!(log.contains("6 trial(s) in 2 stack(s) of [3, 3] on cpu, 3 alone"), "{log}");
    assert!(log.contains("runs alone: stacked trials: model.kind `beta_tc_vae` cannot be stacked"), "{log}");
    run(&spec, "one_each", &["--stack", "1"], tmp.path());
    run(&spec, "unstacked", &[], tmp.path());
    let (stacked, each, alone) = (finals(&tmp.path().join("in_one")), finals(&tmp.path().join("one_each")), finals(&tmp.path().join("unstacked")));

    // In a stack of three, each trial gives the same bits as in a stack of its own: its slice never mixes with
    // the others' — including the one that diverges and fails at step 2 while the other two go on. (The AEs
    // are a stack of their own: a stack holds AEs or VAEs.)
    assert!(stacked.equals_missing(&each), "stack of 3:\n{stacked}\nstacks of 1:\n{each}");
    let status: Vec<String> = stacked.column("status").unwrap().str().unwrap().iter().map(|s| s.unwrap_or_default().to_string()).collect();
    assert_eq!(status, ["completed", "completed", "failed"].repeat(3), "{stacked}");
    let reasons = sweep_dir(&tmp.path().join("in_one"), "stacked");
    let failed = std::fs::read_to_string(common::trials(&reasons)[2].join("status.yaml")).unwrap();
    assert!(failed.contains("reason: non-finite loss at step 2"), "{failed}");

    // And the same as the zoo's own model trained alone by the CPU kernels, to rounding (different summation
    // orders, 20 Adam steps).
    assert_eq!(stacked.column("status").unwrap(), alone.column("status").unwrap());
    for col in ["final_neg_elbo", "final_recon", "final_kl"] {
        let (a, b) = (stacked.column(col).unwrap().f64().unwrap(), alone.column(col).unwrap().f64().unwrap());
        for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
            match (x, y) {
                (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-4 * y.abs(), "trial {i} {col}: stacked {x} vs alone {y}"),
                (x, y) => assert_eq!(x.is_some(), y.is_some(), "trial {i} {col}"),
            }
        }
    }
}

#[test]
fn a_killed_stacked_sweep_resumes_to_the_same_results() {
    let tmp = tempfile::tempdir().unwrap();
    // The β-VAE stack's trials only: every checkpoint written is one of theirs.
    let body = SPEC.replace("  log_every: 5\n", "  log_every: 5\n  checkpoint_every: 3\n").replace("    model.kind: [beta_vae, ae, beta_tc_vae]\n", "");
    let spec = write_spec(tmp.path(), "stacked.yaml", &body);
    run(&spec, "whole", &["--stack", "8"], tmp.path());
    // Killed while writing a checkpoint at step 9 (the two trials that do not diverge write one every 3 steps);
    // then one trial's checkpoint is lost: it starts over while the other resumes, so the stack holds trials at
    // different steps, each with its own optimizer step count.
    let runs = tmp.path().join("killed");
    let killed = Command::new(env!("CARGO_BIN_EXE_vaelab"))
        .args(["run", spec.to_str().unwrap(), "--runs-dir", runs.to_str().unwrap(), "--stack", "8"])
        .env("VAELAB_KILL_AT", "checkpoint:6")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!killed.success());
    let trials = common::trials(&sweep_dir(&runs, "stacked"));
    std::fs::remove_file(trials[1].join("checkpoint.safetensors")).unwrap();
    run(&spec, "killed", &["--stack", "8"], tmp.path());
    let resumed: Vec<Option<u64>> = trials.iter().map(|t| common::status(t)["resumed_from"].as_u64()).collect();
    assert!(matches!(resumed.as_slice(), [Some(s), None, None] if *s >= 6), "resumed from {resumed:?}");
    let (whole, again) = (finals(&tmp.path().join("whole")), finals(&runs));
    assert!(whole.equals_missing(&again), "uninterrupted:\n{whole}\nkilled and resumed:\n{again}");
}

/// Early stopping (ASHA) in a stack: a pruned trial leaves its stack at the rung, and the trials that go on
/// train exactly as they would have with no one leaving. (Which of the 12 trials ASHA stops depends on the
/// order they reach a rung; that it stops none at the first rung would take ≈ 1 order in 5,000.)
#[test]
fn a_pruned_trial_leaves_its_stack_and_the_others_train_on_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let body = "\
name: stacked
seed: 5
data: {kind: dsprites, image_size: 32, n_train: 1024, n_test: 256}
model: {kind: vae, backbone: mlp, hidden: [64], latent_dim: 4}
train: {steps: 40, batch_size: 32, eval_every: 20, log_every: 10}
sweep:
  grid:
    train.lr: [0.0001, 0.0003, 0.001, 0.003]
  seeds: [0, 1, 2]
";
    let asha = write_spec(tmp.path(), "asha.yaml", &format!("{body}  early_stop: {{metric: neg_elbo, min_steps: 10, eta: 2}}\n"));
    let plain = write_spec(tmp.path(), "plain.yaml", body);
    let ok = |spec: &Path, runs: &str, extra: &[&str]| {
        let mut args = vec!["run", spec.to_str().unwrap(), "--runs-dir", runs];
        args.extend_from_slice(extra);
        let out = vaelab(&args, tmp.path());
        assert!(out.status.success(), "{}", text(&out));
        finals(&tmp.path().join(runs))
    };
    let pruned = ok(&asha, "asha", &["--stack", "4"]);
    let alone = ok(&plain, "plain", &["--stack", "1"]);
    let status: Vec<String> = pruned.column("status").unwrap().str().unwrap().iter().map(|s| s.unwrap_or_default().to_string()).collect();
    assert!(status.contains(&"pruned".to_string()) && status.contains(&"completed".to_string()), "{pruned}");
    let done: Vec<usize> = (0..status.len()).filter(|&i| status[i] == "completed").collect();
    for col in ["final_neg_elbo", "final_recon", "final_kl"] {
        let (a, b) = (pruned.column(col).unwrap().f64().unwrap(), alone.column(col).unwrap().f64().unwrap());
        for &i in &done {
            assert_eq!(a.get(i), b.get(i), "trial {i} {col}: in the stack its neighbours left vs alone");
        }
    }
}

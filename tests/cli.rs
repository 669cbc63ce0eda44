//! End-to-end tests of the `vaelab` binary, run as a user would run it.

use polars::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{repo, sweep_dir, text, vaelab, write_spec};

/// A small, fast version of the quickstart: AE and VAE × two latent sizes on procedural dSprites.
const SMALL: &str = "\
name: small
seed: 3
data:
  kind: dsprites
  image_size: 32
  n_train: 1024
  n_test: 256
model:
  kind: vae
  backbone: mlp
  hidden: [64]
train:
  steps: 60
  batch_size: 32
  eval_every: 20
  log_every: 10
sweep:
  grid:
    model.kind: [ae, vae]
    model.latent_dim: [2, 6]
";

fn read(p: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(p).unwrap()).finish().unwrap()
}

fn strings(df: &DataFrame, name: &str) -> Vec<Option<String>> {
    let ca = df.column(name).unwrap().str().unwrap();
    (0..ca.len()).map(|i| ca.get(i).map(String::from)).collect()
}

#[test]
fn a_sweep_writes_every_output_and_the_vae_learns() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "small.yaml", SMALL);
    let out = vaelab(&["run", spec.to_str().unwrap(), "--runs-dir", "runs"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("trial_id") && stdout.contains("final_recon"), "summary table printed:\n{stdout}");

    let sweep = sweep_dir(&tmp.path().join("runs"), "small");
    let trials = read(&sweep.join("trials.parquet"));
    assert_eq!(trials.height(), 4, "{trials}");
    assert!(strings(&trials, "status").iter().all(|s| s.as_deref() == Some("completed")), "{trials}");
    assert_eq!(trials.column("model.latent_dim").unwrap().dtype(), &DataType::Int64);
    assert_eq!(trials.column("model.kind").unwrap().dtype(), &DataType::String);

    for id in strings(&trials, "trial_id").into_iter().flatten() {
        let dir = sweep.join(id);
        for f in ["spec.yaml", "status.yaml", "metrics.parquet", "checkpoint.safetensors"] {
            assert!(dir.join(f).is_file(), "{} missing", dir.join(f).display());
        }
        let events: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("events.out.tfevents."))
            .collect();
        assert_eq!(events.len(), 1, "one event file in {}", dir.display());
        assert!(events[0].metadata().unwrap().len() > 1000, "event file has scalars and images");

        let m = read(&dir.join("metrics.parquet"));
        let names: Vec<&str> = m.get_column_names().iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["trial_id", "step", "epoch", "split", "metric", "value", "wall_time"]);
        let logged: std::collections::HashSet<Option<String>> = strings(&m, "metric").into_iter().collect();
        for want in ["images_per_sec", "data_wait_ms", "lr", "recon"] {
            assert!(logged.contains(&Some(want.to_string())), "{want} logged in {}", dir.display());
        }
        let kind = std::fs::read_to_string(dir.join("spec.yaml")).unwrap();
        if kind.contains("kind: vae") {
            // The VAE learns: test negative ELBO at the last evaluation is below the first.
            let elbo = m
                .clone()
                .lazy()
                .filter(col("split").eq(lit("test")).and(col("metric").eq(lit("neg_elbo"))))
                .sort(["step"], Default::default())
                .collect()
                .unwrap();
            let v: Vec<f64> = elbo.column("value").unwrap().f64().unwrap().into_no_null_iter().collect();
            assert_eq!(v.len(), 3, "evaluations at steps 20, 40, 60");
            assert!(v[2] < v[0], "neg ELBO fell: {v:?}");
        }
    }
}

#[test]
fn same_spec_and_seed_give_identical_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "small.yaml", &SMALL.replace("steps: 60", "steps: 20"));
    let finals = |runs: &str| {
        let out = vaelab(&["run", spec.to_str().unwrap(), "--runs-dir", runs, "--jobs", "2"], tmp.path());
        assert!(out.status.success(), "{}", text(&out));
        let df = read(&sweep_dir(&tmp.path().join(runs), "small").join("trials.parquet"));
        let cols: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).filter(|c| c.starts_with("final_")).collect();
        assert!(!cols.is_empty());
        df.select(cols).unwrap()
    };
    let a = finals("runs_a");
    let b = finals("runs_b");
    assert!(a.equals_missing(&b), "run 1:\n{a}\nrun 2:\n{b}");
}

fn assert_spec_error(body: &str, key: &str, line: usize, column: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "bad.yaml", body);
    for cmd in ["run", "validate"] {
        let out = vaelab(&[cmd, "bad.yaml", "--runs-dir", "runs"][..if cmd == "run" { 4 } else { 2 }], tmp.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd} must fail: {}", text(&out));
        let want = format!("{}:{line}:{column}", "bad.yaml");
        assert!(err.contains(&want), "{cmd}: error names {want}: {err}");
        assert!(err.contains(key), "{cmd}: error names key {key}: {err}");
    }
    assert!(!tmp.path().join("runs").exists(), "nothing written under runs/");
    drop(spec);
}

#[test]
fn misspelled_key_is_located() {
    let body = SMALL.replace("  hidden: [64]", "  hiden: [64]");
    assert_spec_error(&body, "model.hiden", 11, 3);
}

#[test]
fn wrong_type_is_located() {
    let body = SMALL.replace("  batch_size: 32", "  batch_size: lots");
    assert_spec_error(&body, "train.batch_size", 14, 15);
}

#[test]
fn bad_sweep_key_and_out_of_range_values_are_located() {
    assert_spec_error(&SMALL.replace("model.latent_dim: [2, 6]", "model.latnt_dim: [2, 6]"), "model.latnt_dim", 20, 5);
    assert_spec_error(&SMALL.replace("model.latent_dim: [2, 6]", "model.latent_dim: [2, 0]"), "model.latent_dim", 20, 5);
    assert_spec_error(&SMALL.replace("model.kind: [ae, vae]", "model.kind: [ae, vea]"), "model.kind", 19, 5);
    assert_spec_error(&SMALL.replace("  steps: 60", "  steps: 60\n  lr: -1"), "train.lr", 14, 3);
}

#[test]
fn every_experiment_spec_validates() {
    let dir = repo().join("experiments");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let out = vaelab(&["validate", p.to_str().unwrap()], &repo());
            assert!(out.status.success(), "{}: {}", p.display(), text(&out));
            n += 1;
        }
    }
    assert!(n >= 1);
}

/// Two VAEs, one with an absurd learning rate (its loss overflows), `extra` added to `train:`. Runs the sweep
/// and returns the exit code's output and the failed trial's reason, after checking one completed, one failed.
fn diverging_sweep(extra: &str) -> (Output, String) {
    let tmp = tempfile::tempdir().unwrap();
    let body = SMALL.replace("    model.kind: [ae, vae]\n    model.latent_dim: [2, 6]", "    train.lr: [0.001, 1.0e+12]")
        .replace("  kind: vae\n", "  kind: vae\n  latent_dim: 4\n")
        .replace("  log_every: 10\n", &format!("  log_every: 10\n{extra}"));
    let spec = write_spec(tmp.path(), "nan.yaml", &body);
    let out = vaelab(&["run", spec.to_str().unwrap(), "--runs-dir", "runs"], tmp.path());
    let df = read(&sweep_dir(&tmp.path().join("runs"), "small").join("trials.parquet"));
    let status: Vec<String> = strings(&df, "status").into_iter().flatten().collect();
    assert_eq!(status, ["completed", "failed"], "{df}");
    let reason = strings(&df, "reason")[1].clone().unwrap();
    (out, reason)
}

#[test]
fn a_diverging_trial_fails_and_the_others_complete() {
    let (out, reason) = diverging_sweep("");
    assert_eq!(out.status.code(), Some(1), "exit code says a trial failed: {}", text(&out));
    assert!(reason.starts_with("non-finite loss at step "), "{reason}");
}

#[test]
fn a_rerun_skips_completed_trials() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "small.yaml", &SMALL.replace("steps: 60", "steps: 10"));
    let first = vaelab(&["run", spec.to_str().unwrap()], tmp.path());
    assert!(first.status.success(), "{}", text(&first));
    let second = vaelab(&["run", spec.to_str().unwrap()], tmp.path());
    assert!(second.status.success());
    assert!(text(&second).contains("4 already completed"), "{}", text(&second));
}

/// Hostile specs: a YAML alias bomb and experiment names that would escape the runs directory are refused
/// quickly with a clear error, and nothing is written.
#[test]
fn hostile_specs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // 10^9 copies once expanded, hidden inside a valid key.
    let mut bomb = String::from("name: bomb\ndata: {kind: ring8}\nmodel: {kind: vae}\nsweep:\n  grid:\n    model.hidden: [&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]");
    for i in 1..9 {
        bomb += &format!(", &a{i} [{}]", vec![format!("*a{}", i - 1); 10].join(", "));
    }
    bomb += "]\n";
    let p = write_spec(tmp.path(), "bomb.yaml", &bomb);
    let t = std::time::Instant::now();
    let out = vaelab(&["run", p.to_str().unwrap()], tmp.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(t.elapsed().as_secs() < 10, "refused quickly");
    assert!(text(&out).contains("bomb.yaml") && text(&out).contains("repetition limit exceeded"), "{}", text(&out));
    for name in ["../escape", "/abs/path", ".hidden", "a/b", "nul\\0byte"] {
        let p = write_spec(tmp.path(), "n.yaml", &format!("name: \"{name}\"\ndata: {{kind: ring8}}\nmodel: {{kind: vae}}\n"));
        let out = vaelab(&["run", p.to_str().unwrap()], tmp.path());
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(text(&out).contains("key `name`") && text(&out).contains("not a valid experiment name"), "{name}: {}", text(&out));
    }
    assert!(!tmp.path().join("runs").exists(), "nothing written");
}

/// Output honours the user's umask (no chmod of our own), and a run writes nothing outside its runs directory.
#[test]
fn output_follows_the_umask_and_stays_in_the_runs_directory() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let spec = write_spec(&work, "u.yaml", "name: u\ndata: {kind: ring8, n_train: 500, n_test: 100}\nmodel: {kind: vae, hidden: [16], likelihood: gaussian}\ntrain: {steps: 20, batch_size: 32, eval_every: 10}\n");
    let runs = tmp.path().join("out");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask 027 && exec '{}' run '{}' --runs-dir '{}'", env!("CARGO_BIN_EXE_vaelab"), spec.display(), runs.display()))
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    fn walk(p: &Path, seen: &mut Vec<(PathBuf, u32)>) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            seen.push((p.clone(), std::fs::metadata(&p).unwrap().permissions().mode() & 0o777));
            if p.is_dir() {
                walk(&p, seen);
            }
        }
    }
    let mut seen = vec![];
    walk(&runs, &mut seen);
    assert!(seen.len() > 5, "{seen:?}");
    for (p, mode) in &seen {
        let want = if p.is_dir() { 0o750 } else { 0o640 };
        assert_eq!(*mode, want, "{} has mode {mode:o}, umask 027 gives {want:o}", p.display());
    }
    // The working directory holds only the spec: nothing was written beside it.
    let beside: Vec<_> = std::fs::read_dir(&work).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("u.yaml")]);
}

/// Mutated copies of every spec in experiments/ (characters deleted, lines dropped or repeated, values
/// replaced, keys misspelled, files cut short; seeded): `vaelab validate` either accepts the spec or refuses
/// it with a located error — it never panics.
#[test]
fn mutated_example_specs_never_panic() {
    use rand::{Rng, SeedableRng};
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261122);
    let (mut accepted, mut refused) = (0, 0);
    let mut specs: Vec<_> = std::fs::read_dir(repo().join("experiments")).unwrap().map(|e| e.unwrap().path()).collect();
    specs.sort();
    for spec in specs {
        let text = std::fs::read_to_string(&spec).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for k in 0..40 {
            let mutated = match k % 6 {
                0 => {
                    let mut c: Vec<char> = text.chars().collect();
                    let i = rng.random_range(0..c.len());
                    c.remove(i);
                    c.into_iter().collect::<String>()
                }
                1 => {
                    let i = rng.random_range(0..lines.len());
                    lines.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, l)| *l).collect::<Vec<_>>().join("\n")
                }
                2 => {
                    let i = rng.random_range(0..lines.len());
                    let mut v = lines.clone();
                    v.insert(i, lines[i]);
                    v.join("\n")
                }
                3 => {
                    // Replace a value by something of the wrong type or range.
                    let bad = ["-1", "0", "\"lots\"", "[]", "{}", "1e400", "null", "~", "NaN", "-0.0", "99999999999999999999"];
                    let i = rng.random_range(0..lines.len());
                    let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                    if let Some((key, _)) = v[i].split_once(": ") {
                        v[i] = format!("{key}: {}", bad[rng.random_range(0..bad.len())]);
                    }
                    v.join("\n")
                }
                4 => {
                    let i = rng.random_range(0..lines.len());
                    let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                    v[i] = v[i].replacen(':', "x:", 1);
                    v.join("\n")
                }
                _ => {
                    let cut = rng.random_range(0..text.len());
                    text.char_indices().take_while(|(i, _)| *i < cut).map(|(_, c)| c).collect()
                }
            };
            let p = write_spec(tmp.path(), "m.yaml", &mutated);
            let out = vaelab(&["validate", p.to_str().unwrap()], tmp.path());
            match out.status.code() {
                Some(0) => accepted += 1,
                Some(2) => {
                    refused += 1;
                    let err = String::from_utf8_lossy(&out.stderr);
                    assert!(err.starts_with(&format!("error: {}:", p.display())), "unlocated error for {}:\n{err}\n---\n{mutated}", spec.display());
                }
                other => panic!("{} mutation {k}: exit {other:?}\n{}\n---\n{mutated}", spec.display(), text_of(&out)),
            }
        }
    }
    eprintln!("mutated specs: {} validated, {accepted} accepted, {refused} refused with a located error, 0 panics", accepted + refused);
    assert!(refused > 50 && accepted > 0, "accepted {accepted}, refused {refused}");
}

fn text_of(o: &Output) -> String {
    text(o)
}

/// Spec metrics with options: computed at each evaluation, written to trials.parquet with their cost, and a
/// misspelled option or metric name is located like any other key. `vaelab evaluate` recomputes them later.
#[test]
fn metrics_with_options_are_computed_timed_and_located() {
    let body = "\
name: m
data:
  kind: dsprites
  image_size: 32
  n_train: 1024
  n_test: 256
model:
  kind: vae
  backbone: mlp
  hidden: [64]
  latent_dim: 4
train:
  steps: 60
  batch_size: 32
  eval_every: 30
metrics:
  - mig
  - {iwae_nll: {k: 20, n: 64}}
  - active_units
";
    assert_spec_error(&body.replace("k: 20", "kk: 20"), "metrics[1].iwae_nll.kk", 18, 17);
    assert_spec_error(&body.replace("  - mig", "  - mgi"), "metrics[0]", 17, 5);
    let tmp = tempfile::tempdir().unwrap();
    write_spec(tmp.path(), "m.yaml", body);
    let out = vaelab(&["run", "m.yaml", "--runs-dir", "runs"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let df = read(&sweep_dir(&tmp.path().join("runs"), "m").join("trials.parquet"));
    let get = |c: &str| df.column(c).unwrap_or_else(|_| panic!("column {c}")).f64().unwrap().get(0).unwrap();
    let (mig, iwae, elbo, au) = (get("final_mig"), get("final_iwae_nll"), get("final_neg_elbo"), get("final_active_units"));
    assert!((0.0..=1.0).contains(&mig), "{mig}");
    assert!(iwae.is_finite() && iwae > 0.0 && iwae < 1.2 * elbo, "IWAE {iwae} vs −ELBO {elbo}");
    assert!((0.0..=4.0).contains(&au) && au.fract() == 0.0, "{au}");
    assert!(get("final_seconds_iwae_nll") > 0.0);
    // Recomputed on the checkpoint: the same seed gives the same value.
    let trial = std::fs::read_dir(sweep_dir(&tmp.path().join("runs"), "m")).unwrap().filter_map(|e| e.ok()).find(|e| e.file_name().to_string_lossy().starts_with("t000")).unwrap().path();
    let out = vaelab(&["evaluate", trial.to_str().unwrap(), "--metric", "{iwae_nll: {k: 20, n: 64}}"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let again: f64 = String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix("iwae_nll\t")).unwrap().parse().unwrap();
    assert!((again - iwae).abs() < 1e-3, "{again} vs {iwae}");
    let out = vaelab(&["evaluate", trial.to_str().unwrap(), "--metric", "mode_coverage"], tmp.path());
    assert!(!out.status.success() && text(&out).contains("needs 2D data with known modes"), "{}", text(&out));
}

/// `on_nan: skip_batch` drops bad batches but still gives up on a trial that only produces them.
#[test]
fn skip_batch_gives_up_after_ten_non_finite_losses_in_a_row() {
    let (out, reason) = diverging_sweep("  on_nan: skip_batch\n");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(reason.contains("10 batches in a row skipped (on_nan: skip_batch)"), "{reason}");
}

/// `vaelab bench` trains the reference models for a few steps on real MNIST and reports one JSON measurement
/// (what scripts/bench.sh compares with the PyTorch peer). It measures; the test checks only the report.
#[test]
fn bench_reports_throughput_step_times_and_memory() {
    let data = std::env::var("VAELAB_DATA").map(PathBuf::from).unwrap_or_else(|_| repo().join("../shared/data"));
    let data = std::fs::canonicalize(&data).unwrap_or(data);
    if !data.join("mnist").exists() {
        assert!(std::env::var_os("CI").is_none(), "CI must provide the real datasets (../shared/data)");
        eprintln!("skipped: no MNIST under {}", data.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for model in ["mlp", "conv"] {
        let out = vaelab(&["bench", "--model", model, "--batch", "32", "--steps", "4", "--warmup", "1", "--threads", "1", "--data", data.join("mnist").to_str().unwrap()], tmp.path());
        assert!(out.status.success(), "{}", text(&out));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["model"], format!("{model}_vae"));
        assert_eq!((r["batch"].as_u64(), r["steps"].as_u64(), r["threads"].as_u64()), (Some(32), Some(4), Some(1)));
        let (ips, p50, p99, rss) = (r["images_per_sec"].as_f64().unwrap(), r["step_ms_p50"].as_f64().unwrap(), r["step_ms_p99"].as_f64().unwrap(), r["peak_rss_mib"].as_f64().unwrap());
        assert!(ips > 0.0 && p50 > 0.0 && p99 >= p50 && rss > 10.0, "{r}");
    }
    let out = vaelab(&["bench", "--model", "resnet"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("unknown reference model `resnet`"), "{}", text(&out));
}

/// `train.groups` gives one parameter group its own Adam settings. One step of FactorVAE with the
/// discriminator's rate at 1e-9 against one at the default 1e-3: the discriminator's weights differ by Adam's
/// first step (|Δ| = lr per element where the gradient is non-zero, so up to ≈ 1e-3), while the VAE's weights —
/// updated first, against the same initial discriminator — are identical. A group the model lacks is refused.
#[test]
fn a_parameter_group_gets_its_own_learning_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let body = |extra: &str| {
        format!(
            "name: groups\nseed: 1\ndata: {{kind: dsprites, image_size: 32, n_train: 256, n_test: 64}}\n\
             model: {{kind: factor_vae, backbone: mlp, hidden: [32], latent_dim: 4, disc_hidden: [16]}}\n\
             train: {{steps: 1, batch_size: 32, eval_every: 1{extra}}}\n"
        )
    };
    let weights = |runs: &str, extra: &str| -> Vec<(String, Vec<f32>)> {
        let spec = write_spec(tmp.path(), &format!("{runs}.yaml"), &body(extra));
        let out = vaelab(&["run", spec.to_str().unwrap(), "--runs-dir", runs], tmp.path());
        assert!(out.status.success(), "{}", text(&out));
        let sweep = sweep_dir(&tmp.path().join(runs), "groups");
        let trial = std::fs::read_dir(&sweep).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
        let bytes = std::fs::read(trial.join("checkpoint.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut w: Vec<(String, Vec<f32>)> = st
            .tensors()
            .into_iter()
            .filter(|(name, _)| !name.starts_with("optim."))
            .map(|(name, t)| (name, t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()))
            .collect();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        w
    };
    let default = weights("runs_default", "");
    let slow = weights("runs_slow", ", groups: {tc_discriminator: {lr: 1.0e-9, beta1: 0.5, beta2: 0.9}}");
    assert_eq!(default.len(), slow.len());
    let (mut disc, mut vae) = (0, 0);
    for ((name, a), (_, b)) in default.iter().zip(&slow) {
        let max = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        if name.starts_with("tc_discriminator.") {
            disc += 1;
            assert!(max > 5e-4 && max < 1.1e-3, "{name}: the discriminator's first step should differ by ≈ 1e-3, got {max}");
        } else {
            vae += 1;
            assert_eq!(max, 0.0, "{name}: the VAE's weights should not depend on the discriminator's rate");
        }
    }
    assert!(disc >= 4 && vae >= 4, "{disc} discriminator and {vae} VAE tensors");
    // A misspelt group fails the trial with the key and the groups the model has.
    let spec = write_spec(tmp.path(), "typo.yaml", &body(", groups: {discriminator: {lr: 1.0e-4}}"));
    let out = vaelab(&["run", spec.to_str().unwrap(), "--runs-dir", "runs_typo"], tmp.path());
    let all = text(&out) + &std::fs::read_dir(sweep_dir(&tmp.path().join("runs_typo"), "groups")).unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("status.yaml")).ok()).collect::<String>();
    assert!(all.contains("train.groups.discriminator") && all.contains("tc_discriminator"), "{all}");
}

/// `train.shards: 2` (data parallelism inside a trial) gives the same numbers whether the shards run on two
/// kernel threads at once (`--jobs 1`) or one after the other (`--jobs 2`: one thread per trial); an AE, which
/// draws no noise, matches its unsharded run up to float rounding; a model whose objective couples the batch
/// is refused with the key named.
#[test]
fn sharded_trials_match_across_thread_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let body = SMALL.replace("steps: 60", "steps: 20").replace("  batch_size: 32\n", "  batch_size: 32\n  shards: 2\n");
    let spec = write_spec(tmp.path(), "small.yaml", &body);
    let finals = |spec: &Path, runs: &str, jobs: &str| {
        let out = vaelab(&["run", spec.to_str().unwrap(), "--runs-dir", runs, "--jobs", jobs], tmp.path());
        assert!(out.status.success(), "{}", text(&out));
        let df = read(&sweep_dir(&tmp.path().join(runs), "small").join("trials.parquet"));
        let cols: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).filter(|c| c.starts_with("final_") || c == "model.kind" || c == "model.latent_dim").collect();
        df.select(cols).unwrap().sort(["model.kind", "model.latent_dim"], Default::default()).unwrap()
    };
    let (a, b) = (finals(&spec, "runs_a", "1"), finals(&spec, "runs_b", "2"));
    assert!(a.equals_missing(&b), "two threads:\n{a}\none thread:\n{b}");

    let whole = write_spec(tmp.path(), "whole.yaml", &body.replace("  shards: 2\n", ""));
    let c = finals(&whole, "runs_c", "2");
    let recon = |df: &DataFrame| -> Vec<f64> { df.column("final_recon").unwrap().f64().unwrap().into_no_null_iter().collect() };
    let kinds = strings(&a, "model.kind");
    for (i, (x, y)) in recon(&a).iter().zip(recon(&c)).enumerate().filter(|(i, _)| kinds[*i].as_deref() == Some("ae")) {
        assert!((x - y).abs() < 1e-3 * y.abs(), "AE trial {i}: sharded recon {x} vs whole-batch {y}");
        assert_ne!(*x, 0.0);
    }

    let factor = write_spec(tmp.path(), "factor.yaml", &body.replace("    model.kind: [ae, vae]", "    model.kind: [factor_vae]"));
    let out = vaelab(&["run", factor.to_str().unwrap(), "--runs-dir", "runs_d"], tmp.path());
    assert!(!out.status.success(), "a sweep whose trials all fail exits non-zero: {}", text(&out));
    assert!(text(&out).contains("train.shards: 2 needs a model whose objective is a mean of per-example terms"), "the refusal names the key: {}", text(&out));
}

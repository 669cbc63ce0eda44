//! What vaelab writes, read back by the real tools: TensorBoard's own event readers and hparams parsers,
//! Python Polars and PyArrow, run by `common::python3` (the system `python3` where it has
//! `scripts/requirements.txt`, as `.ci/run` installs it; otherwise a virtual environment the tests make once).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{python3, text, vaelab};

fn python(script: &str, arg: &Path) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts").join(script);
    let out = Command::new(python3()).arg(path).arg(arg).output().expect("python3 runs");
    assert!(out.status.success(), "{script}: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

/// A 2 × 2 sweep with images: conv VAE on 32-px shapes, latent size × seed.
const SWEEP: &str = "\
name: readers
data: {kind: dsprites, image_size: 32, n_train: 512, n_test: 128}
model: {kind: vae, backbone: conv, channels: [8, 16]}
train: {steps: 24, batch_size: 32, eval_every: 12, log_every: 6}
sweep:
  grid: {model.latent_dim: [2, 5]}
  seeds: [0, 1]
";

fn run_sweep(tmp: &Path) -> PathBuf {
    std::fs::write(tmp.join("readers.yaml"), SWEEP).unwrap();
    let out = vaelab(&["run", "readers.yaml"], tmp);
    assert!(out.status.success(), "{}", text(&out));
    let exp = tmp.join("runs/readers");
    std::fs::read_dir(&exp).unwrap().next().unwrap().unwrap().path()
}

#[test]
fn tensorboard_reads_scalars_images_and_hparams() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = run_sweep(tmp.path());
    let tb = python("check_tensorboard.py", &sweep);
    let exp = &tb["experiment"];
    assert_eq!(exp["hparams"]["model.latent_dim"]["values"], serde_json::json!([2.0, 5.0]), "{exp}");
    assert_eq!(exp["hparams"]["seed"]["values"], serde_json::json!([0.0, 1.0]));
    assert_eq!(exp["hparams"]["seed"]["type"], 3, "DATA_TYPE_FLOAT64");
    for m in ["test/neg_elbo", "test/recon", "test/kl"] {
        assert!(exp["metrics"].as_array().unwrap().contains(&serde_json::json!(m)), "{m} in {exp}");
    }
    let trials = tb["trials"].as_object().unwrap();
    assert_eq!(trials.len(), 4);
    for (id, t) in trials {
        let status: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(sweep.join(id).join("status.yaml")).unwrap()).unwrap();
        // HParams row: the trial's swept values, and a successful end.
        assert_eq!(t["hparams"]["model.latent_dim"].as_f64(), status["hparams"]["model.latent_dim"].as_f64(), "{id}");
        assert_eq!(t["hparams"]["seed"].as_f64(), status["hparams"]["seed"].as_f64(), "{id}");
        assert_eq!(t["status"], 1, "{id}: STATUS_SUCCESS");
        // Scalars: the last test/neg_elbo is the final metric in status.yaml (f32 in the event file).
        let last = t["scalars"]["test/neg_elbo"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last[0], 24);
        let want = status["final_metrics"]["neg_elbo"].as_f64().unwrap();
        assert!((last[1].as_f64().unwrap() - want).abs() < 1e-3 * want.abs(), "{id}: {last} vs {want}");
        assert!(t["scalars"]["train/images_per_sec"].as_array().unwrap().len() >= 4);
        // Images: one per evaluation; the reconstruction grid is 8 columns × 2 rows of 32-px tiles with
        // 1-px gaps, the sample grid 8 × 8.
        let rec = t["images"]["images/reconstruction"].as_array().unwrap();
        assert_eq!(rec.len(), 2, "{id}");
        let (w, h) = (rec[0][1].as_u64().unwrap(), rec[0][2].as_u64().unwrap());
        assert!(w >= 8 * 32 && w < 8 * 36 && h >= 2 * 32 && h < 2 * 36, "{id}: reconstruction grid {w}×{h}");
        let smp = t["images"]["images/samples"].as_array().unwrap();
        assert!(smp[0][1].as_u64().unwrap() >= 8 * 32 && smp[0][2].as_u64().unwrap() >= 8 * 32);
    }
}

#[test]
fn polars_and_pyarrow_read_every_parquet_file_with_the_documented_types() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = run_sweep(tmp.path());
    let files = python("check_parquet.py", &sweep);
    let files = files.as_object().unwrap();
    assert_eq!(files.len(), 5, "trials.parquet and four metrics.parquet");
    let metrics = [("trial_id", "String"), ("step", "UInt64"), ("epoch", "Float64"), ("split", "String"), ("metric", "String"), ("value", "Float64"), ("wall_time", "Float64")];
    for (path, f) in files {
        let want: &[(&str, &str)] = if path == "trials.parquet" {
            &[
                ("trial_id", "String"),
                ("index", "UInt64"),
                ("status", "String"),
                ("model.latent_dim", "Int64"),
                ("seed", "Int64"),
                ("final_neg_elbo", "Float64"),
                ("best_neg_elbo", "Float64"),
                ("steps", "UInt64"),
                ("wall_time_s", "Float64"),
                ("step_time_s", "Float64"),
                ("other_time_s", "Float64"),
                ("images_per_sec", "Float64"),
                ("reason", "String"),
            ]
        } else {
            &metrics
        };
        for (col, ty) in want {
            assert_eq!(f["polars"][col], *ty, "{path}: column {col} in {}", f["polars"]);
            assert!(f["arrow"][col].is_string(), "{path}: pyarrow sees {col}");
        }
        assert!(f["rows"].as_u64().unwrap() > 0);
    }
}

/// The `tensorboard` server itself, queried over HTTP as its web page does: scalars, images and the HParams
/// table (one session group per trial, with its hyperparameters and final metrics).
#[test]
fn the_tensorboard_server_serves_the_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = run_sweep(tmp.path());
    let s = python("check_tensorboard_server.py", &sweep);
    for plugin in ["scalars", "images", "hparams"] {
        assert_eq!(s["plugins"][plugin], true, "{plugin} enabled: {}", s["plugins"]);
    }
    let groups = s["session_groups"]["sessionGroups"].as_array().unwrap();
    assert_eq!(groups.len(), 4, "{}", s["session_groups"]);
    let mut latent: Vec<f64> = groups.iter().map(|g| g["hparams"]["model.latent_dim"].as_f64().unwrap()).collect();
    latent.sort_by(f64::total_cmp);
    assert_eq!(latent, [2.0, 2.0, 5.0, 5.0]);
    for g in groups {
        let id = g["name"].as_str().unwrap();
        let status: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(sweep.join(id).join("status.yaml")).unwrap()).unwrap();
        let v = g["metricValues"].as_array().unwrap().iter().find(|m| m["name"]["tag"] == "test/neg_elbo").expect("neg_elbo in the table");
        let want = status["final_metrics"]["neg_elbo"].as_f64().unwrap();
        assert!((v["value"].as_f64().unwrap() - want).abs() < 1e-3 * want, "{id}");
        assert_eq!(g["sessions"][0]["status"], "STATUS_SUCCESS");
    }
    let runs = s["scalar_tags"].as_object().unwrap();
    assert_eq!(runs.len(), 4, "one scalar run per trial");
    for (_, tags) in runs {
        assert!(tags.get("test/neg_elbo").is_some() && tags.get("train/loss").is_some());
    }
    for (_, tags) in s["image_tags"].as_object().unwrap() {
        assert!(tags.get("images/reconstruction").is_some() && tags.get("images/samples").is_some());
    }
}

/// `vaelab compare` (Rust Polars) and scripts/analyze.py (Python Polars) give the same table on a 2-setting ×
/// 2-seed sweep, and the script draws its plots.
#[test]
fn compare_equals_the_python_analysis() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = run_sweep(tmp.path());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/analyze.py");
    let plots = tmp.path().join("plots");
    // The primary metric (lower is better) and a throughput (higher is better: best = max, best first).
    for (metric, higher) in [(None, false), (Some("images_per_sec"), true)] {
        let mut args = vec!["compare", sweep.to_str().unwrap(), "--format", "csv"];
        args.extend(metric.map(|m| ["--metric", m]).into_iter().flatten());
        let out = vaelab(&args, tmp.path());
        assert!(out.status.success(), "{}", text(&out));
        let ours = String::from_utf8(out.stdout).unwrap();
        let mut py = Command::new(python3());
        py.arg(&script).arg(&sweep).arg("--plots").arg(&plots);
        if let Some(m) = metric {
            py.args(["--metric", m]);
        }
        let py = py.output().unwrap();
        assert!(py.status.success(), "{}", text(&py));
        let theirs = String::from_utf8(py.stdout).unwrap();
        let rows = |s: &str| s.lines().map(|l| l.split(',').map(String::from).collect::<Vec<_>>()).collect::<Vec<_>>();
        let (a, b) = (rows(&ours), rows(&theirs));
        assert_eq!(a[0], ["model.latent_dim", "mean", "std", "n", "best", "best_trial"], "{ours}");
        assert_eq!(a.len(), 3, "two settings:\n{ours}");
        assert_eq!(a.len(), b.len(), "{ours}\nvs\n{theirs}");
        for (ra, rb) in a.iter().zip(&b) {
            for (x, y) in ra.iter().zip(rb) {
                match (x.parse::<f64>(), y.parse::<f64>()) {
                    (Ok(x), Ok(y)) => assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{x} vs {y}"),
                    _ => assert_eq!(x, y),
                }
            }
            if ra[3] == "2" {
                assert!(ra[2].parse::<f64>().unwrap() > 0.0, "two seeds give a spread");
            }
        }
        for r in &a[1..] {
            let (m, b) = (r[1].parse::<f64>().unwrap(), r[4].parse::<f64>().unwrap());
            assert!(if higher { b >= m } else { b <= m }, "{metric:?}: best {b} vs mean {m}");
        }
        let means: Vec<f64> = a[1..].iter().map(|r| r[1].parse().unwrap()).collect();
        assert!(if higher { means[0] >= means[1] } else { means[0] <= means[1] }, "best setting first: {ours}");
    }
    for png in ["metric_vs_hparams.png", "learning_curves.png"] {
        assert!(std::fs::metadata(plots.join(png)).unwrap().len() > 5000, "{png} drawn");
    }
    // Markdown and Parquet outputs.
    let md = vaelab(&["compare", sweep.to_str().unwrap(), "--format", "markdown"], tmp.path());
    assert!(String::from_utf8_lossy(&md.stdout).starts_with("| model.latent_dim | mean | std | n | best | best_trial |"));
    let pq = tmp.path().join("cmp.parquet");
    let out = vaelab(&["compare", sweep.to_str().unwrap(), "--format", "parquet", "-o", pq.to_str().unwrap()], tmp.path());
    assert!(out.status.success() && pq.exists(), "{}", text(&out));
}

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{} is a PNG", path.display());
    (u32::from_be_bytes(b[16..20].try_into().unwrap()), u32::from_be_bytes(b[20..24].try_into().unwrap()))
}

/// A trained trial's checkpoint read by Python's `safetensors` (names and shapes as documented), and the
/// picture commands drawing from it.
#[test]
fn checkpoints_load_in_python_and_draw_pictures() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("cvae.yaml"),
        "name: cvae\ndata: {kind: dsprites, image_size: 32, n_train: 512, n_test: 64}\n\
         model: {kind: cvae, backbone: conv, latent_dim: 3, channels: [8, 16]}\ntrain: {steps: 10, batch_size: 32}\n",
    )
    .unwrap();
    let out = vaelab(&["run", "cvae.yaml"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let sweep = std::fs::read_dir(tmp.path().join("runs/cvae")).unwrap().next().unwrap().unwrap().path();
    let trial = std::fs::read_dir(&sweep).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
    let ckpt = trial.join("checkpoint.safetensors");
    let py = Command::new(python3())
        .args(["-c", "import json,sys; from safetensors import safe_open\nf=safe_open(sys.argv[1],'np')\nprint(json.dumps({'shapes':{k:list(f.get_tensor(k).shape) for k in f.keys()},'meta':f.metadata()}))"])
        .arg(&ckpt)
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py));
    let v: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    let shapes = &v["shapes"];
    // Encoder: conv (1 + 3 label planes)→8, 8→16 (4×4), then 16·8·8 features → 2·3; decoder mirrors and
    // takes z and the one-hot label.
    assert_eq!(shapes["encoder.conv0.weight"], serde_json::json!([8, 1 + 3, 4, 4]));
    assert_eq!(shapes["encoder.conv1.weight"], serde_json::json!([16, 8, 4, 4]));
    assert_eq!(shapes["encoder.out.weight"], serde_json::json!([6, 16 * 8 * 8]));
    assert_eq!(shapes["decoder.fc.weight"], serde_json::json!([16 * 8 * 8, 3 + 3]));
    assert_eq!(shapes["decoder.deconv1.weight"], serde_json::json!([8, 1, 4, 4]));
    assert_eq!(shapes["optim.0.0.m"], shapes["decoder.deconv0.bias"], "Adam moments beside the weights, name-sorted");
    let state: serde_yaml::Value = serde_yaml::from_str(v["meta"]["vaelab.state"].as_str().unwrap()).unwrap();
    assert_eq!(state["step"], 10);
    assert!(v["meta"]["vaelab.checksum"].is_string());

    let t = trial.to_str().unwrap();
    for (cmd, extra, (w, h)) in [
        ("sample", vec!["--n", "4"], (4 * 34 + 2, 3 * 34 + 2)),
        ("reconstruct", vec![], (8 * 34 + 2, 2 * 34 + 2)),
        ("traverse", vec![], (9 * 34 + 2, 3 * 34 + 2)),
        ("interpolate", vec![], (10 * 34 + 2, 4 * 34 + 2)),
    ] {
        let png = tmp.path().join(format!("{cmd}.png"));
        let mut args = vec![cmd, t, "-o", png.to_str().unwrap()];
        args.extend(extra);
        let out = vaelab(&args, tmp.path());
        assert!(out.status.success(), "{cmd}: {}", text(&out));
        assert_eq!(png_size(&png), (w, h), "{cmd}");
    }
    let out = vaelab(&["sample", t, "--class", "7", "-o", "x.png"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("class 7: the model has classes 0..3"), "{}", text(&out));
}

/// `vaelab encode` writes a trial's posterior means and log-variances beside the factors as Parquet that
/// Polars reads, and the codes are the ones the `mig` metric scores: an independent NumPy MIG of the file
/// (scripts/mig_from_codes.py, disentanglement_lib's histogram recipe) equals `vaelab evaluate --metric mig`.
#[test]
fn encoded_codes_reproduce_the_mig_in_numpy() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = "\
name: codes
data: {kind: dsprites, image_size: 32, n_train: 600, n_test: 100}
model: {kind: beta_vae, beta: 4.0, latent_dim: 5, hidden: [64]}
train: {steps: 60, batch_size: 32, eval_every: 60}
";
    std::fs::write(tmp.path().join("codes.yaml"), spec).unwrap();
    let out = vaelab(&["run", "codes.yaml"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let sweep = std::fs::read_dir(tmp.path().join("runs/codes")).unwrap().next().unwrap().unwrap().path();
    let trial = std::fs::read_dir(&sweep).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
    let t = trial.to_str().unwrap();
    let out = vaelab(&["encode", t, "-o", "codes.parquet"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let numpy = python("mig_from_codes.py", &tmp.path().join("codes.parquet"));
    assert_eq!(numpy["n"], 600, "every training example (fewer than --n)");
    let out = vaelab(&["evaluate", t, "--metric", "mig"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let ours: std::collections::HashMap<String, f64> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_once('\t')).map(|(k, v)| (k.to_string(), v.parse().unwrap())).collect();
    assert!(ours["mig"] > 0.0, "the trained codes carry some factor: {ours:?}");
    assert!((numpy["mig"].as_f64().unwrap() - ours["mig"]).abs() < 1e-5, "{numpy} vs {ours:?}");
    for f in ["shape", "scale", "orientation", "pos_x", "pos_y"] {
        let gap = numpy["factors"][f]["gap"].as_f64().unwrap();
        assert!((gap - ours[&format!("mig_gap_{f}")]).abs() < 1e-5, "{f}: {numpy} vs {ours:?}");
    }
    // The test split, the first 40 examples; the column layout.
    let out = vaelab(&["encode", t, "--split", "test", "--n", "40", "-o", "test.parquet"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let cols = Command::new(python3())
        .args(["-c", "import sys, polars as pl; d = pl.read_parquet(sys.argv[1]); print(d.height, ','.join(d.columns))"])
        .arg(tmp.path().join("test.parquet"))
        .output()
        .unwrap();
    assert!(cols.status.success(), "{}", text(&cols));
    let want = "40 index,label,factor_shape,factor_scale,factor_orientation,factor_pos_x,factor_pos_y,mu_0,mu_1,mu_2,mu_3,mu_4,logvar_0,logvar_1,logvar_2,logvar_3,logvar_4";
    assert_eq!(String::from_utf8_lossy(&cols.stdout).trim(), want);
    let out = vaelab(&["encode", t, "--split", "val", "-o", "x.parquet"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--split must be train or test"), "{}", text(&out));
}

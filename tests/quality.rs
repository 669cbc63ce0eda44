//! Quality targets checked by real training runs — too long for the default suite (minutes to tens of minutes
//! on 2 cores), so `#[ignore]`d; run them with
//!     cargo test --release --test quality -- --ignored --nocapture

use std::process::Command;

mod common;
use common::{repo, status, sweep_dir, trials, write_spec};

/// #7: the β-VAE's best setting on procedural dSprites — β 14, 64,000 steps, learning rate decayed to 0 along
/// a cosine (`experiments/dsprites-beta-64k-cosine.yaml`, its β 14 trials) — reaches a mean MIG of at least
/// 0.3 over seeds 0–2. ≈ 13 minutes on 2 cores.
#[test]
#[ignore]
fn beta_vae_best_setting_reaches_mig_0_3_on_dsprites() {
    let spec = std::fs::read_to_string(repo().join("experiments/dsprites-beta-64k-cosine.yaml")).unwrap();
    let only_14 = spec.replace("model.beta: [14.0, 12.0]", "model.beta: [14.0]");
    assert_ne!(only_14, spec, "the spec's β grid changed; update this test");
    let tmp = tempfile::tempdir().unwrap();
    let path = write_spec(tmp.path(), "dsprites-beta-64k-cosine.yaml", &only_14);
    let runs = tmp.path().join("runs");
    let run = Command::new(env!("CARGO_BIN_EXE_vaelab"))
        .args(["run", path.to_str().unwrap(), "--runs-dir", runs.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(run.success());
    let mut migs = vec![];
    for t in trials(&sweep_dir(&runs, "dsprites-beta-64k-cosine")) {
        let s = status(&t);
        assert_eq!(s["status"], "completed", "{}", t.display());
        assert_eq!(s["steps"].as_u64(), Some(64_000));
        migs.push(s["final_metrics"]["mig"].as_f64().unwrap());
    }
    assert_eq!(migs.len(), 3);
    let mean = migs.iter().sum::<f64>() / 3.0;
    eprintln!("MIG per seed {migs:?}, mean {mean:.3}");
    assert!(mean >= 0.3, "mean MIG {mean:.3} over seeds 0–2 (per seed {migs:?}) is below 0.3");
}

/// #10: β-TCVAE and FactorVAE at their best settings (`experiments/dsprites-tc-best.yaml`, 64,000 steps, cosine
/// decay, seeds 0–2) find the axis-aligned code on every seed — each seed's MIG ≥ 0.3, as the β-VAE's best
/// (0.326, the test above) — where a rotated code ends near 0.03–0.14. ≈ 40 minutes on 2 cores.
#[test]
#[ignore]
fn total_correlation_models_reach_the_beta_vae_on_dsprites() {
    let runs = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_vaelab"))
        .args(["run", repo().join("experiments/dsprites-tc-best.yaml").to_str().unwrap(), "--runs-dir"])
        .arg(runs.path())
        .status()
        .unwrap();
    assert!(run.success());
    let mut by_kind: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for t in trials(&sweep_dir(runs.path(), "dsprites-tc-best")) {
        let s = status(&t);
        assert_eq!(s["status"], "completed", "{}", t.display());
        assert_eq!(s["steps"].as_u64(), Some(64_000));
        let spec: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(t.join("spec.yaml")).unwrap()).unwrap();
        let kind = spec["model"]["kind"].as_str().unwrap().to_string();
        by_kind.entry(kind).or_default().push(s["final_metrics"]["mig"].as_f64().unwrap());
    }
    assert_eq!(by_kind.keys().collect::<Vec<_>>(), ["beta_tc_vae", "factor_vae"]);
    for (kind, migs) in &by_kind {
        let mean = migs.iter().sum::<f64>() / migs.len() as f64;
        eprintln!("{kind}: MIG per seed {migs:?}, mean {mean:.3} (β-VAE β 14: 0.326)");
        assert_eq!(migs.len(), 3, "{kind}");
        assert!(migs.iter().all(|&m| m >= 0.3), "{kind}: a seed below MIG 0.3 (rotated code?): {migs:?}");
    }
}

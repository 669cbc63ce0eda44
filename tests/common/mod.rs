//! Helpers shared by the end-to-end tests: run the binary, write a spec, find a sweep's trials.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod python;
#[allow(unused_imports)] // as dead_code above: not every test file runs Python
pub use python::python3;

pub fn vaelab(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vaelab")).args(args).current_dir(cwd).output().expect("vaelab runs")
}

/// stdout then stderr of a finished command.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Write a spec file `name` with `body` into `dir`.
pub fn write_spec(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// The one sweep directory `runs/<experiment>/<sweep-id>`.
pub fn sweep_dir(runs: &Path, experiment: &str) -> PathBuf {
    let exp = runs.join(experiment);
    let mut dirs: Vec<_> = std::fs::read_dir(&exp).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    assert_eq!(dirs.len(), 1, "one sweep directory under {}", exp.display());
    dirs.pop().unwrap()
}

/// A sweep's trial directories, in index order.
pub fn trials(sweep: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(sweep).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    v.sort();
    v
}

pub fn status(trial: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(trial.join("status.yaml")).unwrap()).unwrap()
}

//! The Python interpreter the cross-checks run: one that imports every package in `scripts/requirements.txt`.
//! `.ci/run` installs them into the system `python3`; on a fresh machine without them the first test that needs
//! Python makes a virtual environment under the build directory (`target/tmp/python-env`) and pip-installs
//! the list there, once — so the README's test command works from a fresh clone with only `python3` present.
//! `VAELAB_PYTHON` names another interpreter. Shared by the root package's tests and `crates/data`'s.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The import names of the packages in `scripts/requirements.txt`.
const MODULES: &str = "numpy, tensorboard, polars, pyarrow, matplotlib, safetensors";

fn imports_all(python: &Path) -> bool {
    Command::new(python).args(["-c", &format!("import {MODULES}")]).output().is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

pub fn python3() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(p) = std::env::var_os("VAELAB_PYTHON") {
            return p.into();
        }
        let system = PathBuf::from("python3");
        if imports_all(&system) {
            return system;
        }
        let env = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-env");
        let python = env.join("bin").join("python3");
        if imports_all(&python) {
            return python;
        }
        // The workspace root: this package's directory or one above it.
        let requirements = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|d| d.join("scripts/requirements.txt"))
            .find(|r| r.is_file())
            .expect("scripts/requirements.txt in the workspace");
        eprintln!("python3 lacks {MODULES}: installing {} into {}", requirements.display(), env.display());
        run(Command::new("python3").args(["-m", "venv", "--clear"]).arg(&env));
        run(Command::new(&python).args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"]).arg(&requirements));
        assert!(imports_all(&python), "{} still cannot import {MODULES}", python.display());
        python
    })
}

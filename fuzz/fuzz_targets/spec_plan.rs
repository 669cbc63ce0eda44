//! Any bytes as a spec file: parsing, validation and sweep expansion return a located error or a plan —
//! never a panic, never a hang — and a plan keeps its invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use vaelab_runner::plan::{SweepPlan, MAX_TRIALS};
use vaelab_runner::spec::SpecFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = match SpecFile::parse(Path::new("fuzz.yaml"), text) {
        Ok(file) => file,
        Err(e) => {
            // Rendering the error runs the locator over arbitrary text too.
            let _ = e.to_string();
            return;
        }
    };
    match SweepPlan::expand(&file) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(plan) => {
            assert!(!plan.trials.is_empty() && plan.trials.len() <= MAX_TRIALS);
            let mut ids: Vec<&str> = plan.trials.iter().map(|t| t.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), plan.trials.len(), "trial ids are unique");
            // The experiment name becomes a directory: it never escapes the runs directory.
            assert!(!plan.experiment.contains('/') && !plan.experiment.starts_with('.') && !plan.experiment.contains('\0'));
        }
    }
});

//! Sweep expansion: a spec becomes a [`SweepPlan`] of fully resolved trials with stable ids.

use crate::spec::{from_serde, ExperimentSpec, SpecError, SpecFile};
use serde_yaml::Value;

/// Refuse sweeps larger than this: almost certainly a typo, and expanding it would exhaust memory.
pub const MAX_TRIALS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Trial {
    /// Position in the expansion (the `--trial K` index).
    pub index: usize,
    /// Stable id: `t<index>-<hash of the overrides>`; the same spec always gives the same ids.
    pub id: String,
    /// The swept keys and their values for this trial, in grid order, `seed` last.
    pub overrides: Vec<(String, Value)>,
    pub spec: ExperimentSpec,
}

#[derive(Debug, Clone)]
pub struct SweepPlan {
    pub experiment: String,
    /// Hash of the whole resolved spec: re-running an unchanged spec finds the same sweep directory.
    pub sweep_id: String,
    /// The swept keys (grid keys, then `seed`).
    pub keys: Vec<String>,
    pub trials: Vec<Trial>,
}

/// FNV-1a, 64 bit: a stable hash (std's hasher may change between Rust releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn get_mut<'a>(v: &'a mut Value, dotted: &str) -> Option<&'a mut Value> {
    dotted.split('.').try_fold(v, |cur, part| cur.as_mapping_mut()?.get_mut(part))
}

pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

impl SweepPlan {
    pub fn expand(file: &SpecFile) -> Result<SweepPlan, SpecError> {
        let spec = &file.spec;
        let mut base_spec = spec.clone();
        base_spec.sweep = Default::default();
        let base = serde_yaml::to_value(&base_spec).expect("a parsed spec serializes");

        let mut axes: Vec<(String, Vec<Value>)> = vec![];
        for (k, v) in &spec.sweep.grid {
            let Some(key) = k.as_str() else {
                return Err(file.error_at("sweep.grid", "grid keys must be dotted key names such as `model.latent_dim`"));
            };
            let err = |m: &str| file.error_at(key, m.to_string());
            if key == "name" || key == "seed" || key.starts_with("sweep") {
                return Err(err("this key cannot be swept (use `sweep.seeds` for seeds)"));
            }
            if get_mut(&mut base.clone(), key).is_none() {
                return Err(err(&format!("unknown key `{key}`: the sweep can only vary keys the spec has")));
            }
            let values = match v {
                Value::Sequence(s) if !s.is_empty() => s.clone(),
                _ => return Err(err("expected a non-empty list of values")),
            };
            axes.push((key.to_string(), values));
        }
        let seeds = if spec.sweep.seeds.is_empty() { vec![spec.seed] } else { spec.sweep.seeds.clone() };
        let count = axes.iter().try_fold(seeds.len(), |acc, (_, v)| acc.checked_mul(v.len()));
        match count {
            Some(c) if c <= MAX_TRIALS => {}
            _ => {
                let shown = count.map(|c| c.to_string()).unwrap_or_else(|| "more than 2^64".into());
                return Err(file.error_at("sweep", format!("the sweep expands to {shown} trials; at most {MAX_TRIALS} are allowed")));
            }
        }
        let count = count.unwrap();

        let mut trials = Vec::with_capacity(count);
        for index in 0..count {
            // Mixed-radix decode of `index`: the last grid key varies fastest, seeds fastest of all.
            let mut rest = index;
            let seed = seeds[rest % seeds.len()];
            rest /= seeds.len();
            let mut picks = vec![Value::Null; axes.len()];
            for (i, (_, vals)) in axes.iter().enumerate().rev() {
                picks[i] = vals[rest % vals.len()].clone();
                rest /= vals.len();
            }
            let mut v = base.clone();
            let mut overrides = vec![];
            for ((key, _), val) in axes.iter().zip(picks) {
                *get_mut(&mut v, key).expect("checked above") = val.clone();
                overrides.push((key.clone(), val));
            }
            *get_mut(&mut v, "seed").expect("seed is always present") = Value::from(seed);
            overrides.push(("seed".into(), Value::from(seed)));

            let trial_spec: ExperimentSpec = serde_yaml::from_value(v).map_err(|e| {
                let culprit = axes.iter().map(|(k, _)| k.as_str()).find(|k| e.to_string().starts_with(&format!("{k}:")));
                from_serde(&file.path, &file.source, &e, culprit.or(axes.first().map(|a| a.0.as_str())))
            })?;
            file.check(&trial_spec)?;
            let canon: Vec<String> = overrides.iter().map(|(k, v)| format!("{k}={}", value_text(v))).collect();
            let id = format!("t{index:03}-{:06x}", fnv1a(canon.join(";").as_bytes()) & 0xff_ffff);
            trials.push(Trial { index, id, overrides, spec: trial_spec });
        }
        let full = serde_yaml::to_string(spec).expect("a parsed spec serializes");
        let mut keys: Vec<String> = axes.iter().map(|(k, _)| k.clone()).collect();
        keys.push("seed".into());
        Ok(SweepPlan { experiment: spec.name.clone(), sweep_id: format!("sweep-{:08x}", fnv1a(full.as_bytes()) as u32), keys, trials })
    }
}

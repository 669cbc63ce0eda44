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

/// Options added to the spec after sweeps were already being run, each with its default as written in YAML.
/// The sweep id hashes the expanded spec; these are left out of that text while at their default, so that a
/// sweep started before an upgrade resumes in its own directory after it. A new option adds a line here
/// (`sweep_ids_survive_new_options` fails until it does).
const LATE_OPTIONS: &[(&str, &str)] = &[("model.batch_norm", "false"), ("model.init", "default"), ("model.tc_estimator", "mws"), ("model.kl_beta", "1.0"), ("train.shards", "1")];

/// The spec as the sweep id sees it: its YAML text with [`LATE_OPTIONS`] at their defaults removed. (Edited as
/// text: a round trip through `Value` would print the f32 fields widened, changing every id.)
fn id_text(spec: &ExperimentSpec) -> String {
    let full = serde_yaml::to_string(spec).expect("a parsed spec serializes");
    let mut section = "";
    let mut out = String::with_capacity(full.len());
    for line in full.lines() {
        if !line.starts_with(' ') {
            section = line.split(':').next().unwrap_or("");
        }
        let late = LATE_OPTIONS.iter().any(|(key, default)| {
            key.split_once('.').is_some_and(|(sec, leaf)| sec == section && line == format!("  {leaf}: {default}"))
        });
        if !late {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// FNV-1a, 64 bit: a stable hash (std's hasher may change between Rust releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn get_mut<'a>(v: &'a mut Value, dotted: &str) -> Option<&'a mut Value> {
    dotted.split('.').try_fold(v, |cur, part| cur.as_mapping_mut()?.get_mut(part))
}

/// A value as one line for people (tables, `vaelab validate`, HParams): flow style for lists and maps too,
/// `{tc_discriminator: {lr: 0.0001}}` rather than YAML's indented block.
pub fn value_flow(v: &Value) -> String {
    match v {
        Value::Sequence(items) => format!("[{}]", items.iter().map(value_flow).collect::<Vec<_>>().join(", ")),
        Value::Mapping(m) => {
            format!("{{{}}}", m.iter().map(|(k, v)| format!("{}: {}", value_flow(k), value_flow(v))).collect::<Vec<_>>().join(", "))
        }
        other => value_text(other),
    }
}

/// A value's text in trial ids: fixed, since a sweep's trial ids must not change between releases (a maps's
/// block-style text is kept for that reason; `value_flow` is the display form).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        // Flow style, one line: `[256, 256]` rather than YAML's block list.
        Value::Sequence(items) => format!("[{}]", items.iter().map(value_text).collect::<Vec<_>>().join(", ")),
        other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

/// A distribution of `sweep.random.params`.
enum Dist {
    Choice(Vec<Value>),
    Uniform(f64, f64),
    LogUniform(f64, f64),
    Int(i64, i64),
}

impl Dist {
    fn parse(v: &Value) -> Result<Dist, String> {
        let m = v.as_mapping().filter(|m| m.len() == 1).ok_or("expected one distribution: {choice: [...]}, {uniform: [lo, hi]}, {log_uniform: [lo, hi]} or {int: [lo, hi]}")?;
        let (k, arg) = m.iter().next().expect("len 1");
        let pair = |arg: &Value| -> Result<(f64, f64), String> {
            match arg.as_sequence().map(|s| s.iter().map(|x| x.as_f64()).collect::<Option<Vec<_>>>()) {
                Some(Some(v)) if v.len() == 2 && v[0] <= v[1] && v.iter().all(|x| x.is_finite()) => Ok((v[0], v[1])),
                _ => Err("expected [lo, hi] with lo ≤ hi".into()),
            }
        };
        match k.as_str() {
            Some("choice") => match arg.as_sequence() {
                Some(s) if !s.is_empty() => Ok(Dist::Choice(s.clone())),
                _ => Err("choice: expected a non-empty list".into()),
            },
            Some("uniform") => pair(arg).map(|(a, b)| Dist::Uniform(a, b)),
            Some("log_uniform") => match pair(arg)? {
                (a, b) if a > 0.0 => Ok(Dist::LogUniform(a, b)),
                _ => Err("log_uniform: bounds must be positive".into()),
            },
            Some("int") => match arg.as_sequence().map(|s| s.iter().map(|x| x.as_i64()).collect::<Option<Vec<_>>>()) {
                Some(Some(v)) if v.len() == 2 && v[0] <= v[1] => Ok(Dist::Int(v[0], v[1])),
                _ => Err("int: expected [lo, hi] integers with lo ≤ hi".into()),
            },
            _ => Err(format!("unknown distribution `{}`: use choice, uniform, log_uniform or int", value_text(k))),
        }
    }

    fn draw(&self, rng: &mut rand_chacha::ChaCha8Rng) -> Value {
        use rand::Rng;
        match self {
            Dist::Choice(v) => v[rng.random_range(0..v.len())].clone(),
            Dist::Uniform(a, b) => Value::from(a + (b - a) * rng.random::<f64>()),
            Dist::LogUniform(a, b) => Value::from((a.ln() + (b.ln() - a.ln()) * rng.random::<f64>()).exp()),
            Dist::Int(a, b) => Value::from(rng.random_range(*a..=*b)),
        }
    }
}

/// Set a dotted key, creating mappings where the spec has `null` (an unset optional section such as
/// `model.capacity`); serde then checks the field names.
fn set_path(v: &mut Value, dotted: &str, val: Value) -> bool {
    let parts: Vec<&str> = dotted.split('.').collect();
    let mut cur = v;
    for (i, part) in parts.iter().enumerate() {
        if cur.is_null() {
            *cur = Value::Mapping(Default::default());
        }
        let Some(m) = cur.as_mapping_mut() else { return false };
        let last = i + 1 == parts.len();
        if !m.contains_key(*part) {
            // Only unset optional sections may gain keys; a typo in an existing section is an error.
            if !last && i > 0 {
                return false;
            }
            if last && i > 0 {
                m.insert(Value::from(*part), Value::Null);
            } else {
                return false;
            }
        }
        cur = m.get_mut(*part).expect("present");
    }
    *cur = val;
    true
}

/// Whether a dotted key can be set on the base spec.
fn settable(base: &Value, dotted: &str) -> bool {
    if get_mut(&mut base.clone(), dotted).is_some() {
        return true;
    }
    // A key under an optional section that is unset (null) in the base spec.
    let parts: Vec<&str> = dotted.split('.').collect();
    (1..parts.len()).any(|n| get_mut(&mut base.clone(), &parts[..n].join(".")).is_some_and(|v| v.is_null()))
}

impl SweepPlan {
    pub fn expand(file: &SpecFile) -> Result<SweepPlan, SpecError> {
        let spec = &file.spec;
        let mut base_spec = spec.clone();
        base_spec.sweep = Default::default();
        let base = serde_yaml::to_value(&base_spec).expect("a parsed spec serializes");
        let check_key = |key: &str| -> Result<(), SpecError> {
            let err = |m: &str| file.error_at(key, m.to_string());
            if key == "name" || key == "seed" || key.starts_with("sweep") {
                return Err(err("this key cannot be swept (use `sweep.seeds` for seeds)"));
            }
            if !settable(&base, key) {
                return Err(err(&format!("unknown key `{key}`: the sweep can only vary keys the spec has")));
            }
            Ok(())
        };

        // Points before seeds: explicit trials × grid × random draws, each a list of (key, value).
        let mut points: Vec<Vec<(String, Value)>> = vec![vec![]];
        if !spec.sweep.trials.is_empty() {
            let mut explicit = vec![];
            for entry in &spec.sweep.trials {
                let mut point = vec![];
                for (k, v) in entry {
                    let Some(key) = k.as_str() else {
                        return Err(file.error_at("sweep.trials", "trial keys must be dotted key names such as `model.kind`"));
                    };
                    check_key(key)?;
                    point.push((key.to_string(), v.clone()));
                }
                explicit.push(point);
            }
            points = explicit;
        }
        let mut axes: Vec<(String, Vec<Value>)> = vec![];
        for (k, v) in &spec.sweep.grid {
            let Some(key) = k.as_str() else {
                return Err(file.error_at("sweep.grid", "grid keys must be dotted key names such as `model.latent_dim`"));
            };
            check_key(key)?;
            let values = match v {
                Value::Sequence(s) if !s.is_empty() => s.clone(),
                _ => return Err(file.error_at(key, "expected a non-empty list of values")),
            };
            axes.push((key.to_string(), values));
        }
        let mut dists = vec![];
        if let Some(r) = &spec.sweep.random {
            if r.n == 0 {
                return Err(file.error_at("sweep.random.n", "must be at least 1"));
            }
            for (k, v) in &r.params {
                let Some(key) = k.as_str() else {
                    return Err(file.error_at("sweep.random.params", "keys must be dotted key names such as `train.lr`"));
                };
                check_key(key)?;
                dists.push((key.to_string(), Dist::parse(v).map_err(|m| file.error_at(key, m))?));
            }
        }
        let seeds = if spec.sweep.seeds.is_empty() { vec![spec.seed] } else { spec.sweep.seeds.clone() };
        let random_n = spec.sweep.random.as_ref().map(|r| r.n).unwrap_or(1);
        let count = axes
            .iter()
            .try_fold(seeds.len().checked_mul(points.len()).and_then(|c| c.checked_mul(random_n)), |acc, (_, v)| acc?.checked_mul(v.len()).map(Some))
            .flatten();
        match count {
            Some(c) if c <= MAX_TRIALS => {}
            _ => {
                let shown = count.map(|c| c.to_string()).unwrap_or_else(|| "more than 2^64".into());
                return Err(file.error_at("sweep", format!("the sweep expands to {shown} trials; at most {MAX_TRIALS} are allowed")));
            }
        }
        // Grid: the last key varies fastest.
        for (key, vals) in &axes {
            points = points.iter().flat_map(|p| vals.iter().map(move |v| {
                let mut q = p.clone();
                q.push((key.clone(), v.clone()));
                q
            })).collect();
        }
        if let Some(r) = &spec.sweep.random {
            use rand::SeedableRng;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(r.seed.unwrap_or(spec.seed));
            let draws: Vec<Vec<(String, Value)>> = (0..r.n).map(|_| dists.iter().map(|(k, d)| (k.clone(), d.draw(&mut rng))).collect()).collect();
            points = points.iter().flat_map(|p| draws.iter().map(move |d| {
                let mut q = p.clone();
                q.extend(d.iter().cloned());
                q
            })).collect();
        }

        let mut trials = Vec::with_capacity(points.len() * seeds.len());
        let mut keys: Vec<String> = vec![];
        for point in &points {
            for seed in &seeds {
                let index = trials.len();
                let mut v = base.clone();
                let mut overrides = point.clone();
                overrides.push(("seed".into(), Value::from(*seed)));
                for (key, val) in &overrides {
                    if !keys.contains(key) && key != "seed" {
                        keys.push(key.clone());
                    }
                    if !set_path(&mut v, key, val.clone()) {
                        return Err(file.error_at(key, format!("cannot set `{key}` on this spec")));
                    }
                }
                let trial_spec: ExperimentSpec = serde_yaml::from_value(v).map_err(|e| {
                    // Values deserialized from a `Value` carry no path: find the override that breaks the
                    // spec on its own and blame it.
                    let culprit = overrides.iter().map(|(k, _)| k.as_str()).find(|k| {
                        let mut alone = base.clone();
                        let val = overrides.iter().find(|(kk, _)| kk == k).map(|x| x.1.clone()).unwrap_or_default();
                        !set_path(&mut alone, k, val) || serde_yaml::from_value::<ExperimentSpec>(alone).is_err()
                    });
                    from_serde(&file.path, &file.source, &e, culprit.or(overrides.first().map(|a| a.0.as_str())))
                })?;
                file.check(&trial_spec)?;
                let canon: Vec<String> = overrides.iter().map(|(k, v)| format!("{k}={}", value_text(v))).collect();
                let id = format!("t{index:03}-{:06x}", fnv1a(canon.join(";").as_bytes()) & 0xff_ffff);
                trials.push(Trial { index, id, overrides, spec: trial_spec });
            }
        }
        let full = id_text(spec);
        keys.push("seed".into());
        Ok(SweepPlan { experiment: spec.name.clone(), sweep_id: format!("sweep-{:08x}", fnv1a(full.as_bytes()) as u32), keys, trials })
    }
}

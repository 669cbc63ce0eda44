//! Properties of sweep expansion over generated specs: deterministic, unique ids, `--trial K` is the K-th
//! trial, the count is the product of the axes, ids do not depend on anything but the trial's own values.

use proptest::prelude::*;
use std::path::Path;
use vaelab_runner::spec::SpecFile;
use vaelab_runner::SweepPlan;

/// Keys that every spec below has, with a generator of valid values for each.
fn value(key: usize, v: u32) -> String {
    match key {
        0 => format!("{}", 1 + v % 12),                 // model.latent_dim
        1 => format!("{}", 1e-4 * (1 + v % 50) as f64),  // train.lr
        2 => format!("{}", 8 + v % 64),                  // train.batch_size
        _ => ["ae", "vae", "beta_vae"][v as usize % 3].to_string(), // model.kind
    }
}
const KEYS: [&str; 4] = ["model.latent_dim", "train.lr", "train.batch_size", "model.kind"];

fn spec(grid: &[(usize, Vec<u32>)], seeds: &[u64], random: Option<(usize, u64)>) -> String {
    let mut s = String::from("name: p\ndata: {kind: ring8}\nmodel: {kind: vae, likelihood: gaussian}\nsweep:\n");
    if !grid.is_empty() {
        s += "  grid:\n";
        for (k, vals) in grid {
            let mut seen = vec![];
            for v in vals {
                let t = value(*k, *v);
                if !seen.contains(&t) {
                    seen.push(t);
                }
            }
            s += &format!("    {}: [{}]\n", KEYS[*k], seen.join(", "));
        }
    }
    if !seeds.is_empty() {
        s += &format!("  seeds: [{}]\n", seeds.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "));
    }
    if let Some((n, seed)) = random {
        s += &format!("  random:\n    n: {n}\n    seed: {seed}\n    params:\n      model.hidden: {{choice: [[8], [16, 16], [32]]}}\n      train.beta1: {{uniform: [0.5, 0.95]}}\n");
    }
    s
}

fn expand(text: &str) -> SweepPlan {
    let file = SpecFile::parse(Path::new("p.yaml"), text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    SweepPlan::expand(&file).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn expansion_is_deterministic_with_unique_ids(
        keys in proptest::sample::subsequence(vec![0usize, 1, 2, 3], 0..=3),
        vals in proptest::collection::vec(proptest::collection::vec(any::<u32>(), 1..4), 4),
        seeds in proptest::collection::btree_set(0u64..1000, 0..4),
        random in proptest::option::of((1usize..5, any::<u64>())),
    ) {
        let grid: Vec<(usize, Vec<u32>)> = keys.iter().map(|&k| (k, vals[k].clone())).collect();
        let seeds: Vec<u64> = seeds.into_iter().collect();
        let text = spec(&grid, &seeds, random);
        let (a, b) = (expand(&text), expand(&text));
        prop_assert_eq!(&a.sweep_id, &b.sweep_id);
        let ids: Vec<&String> = a.trials.iter().map(|t| &t.id).collect();
        prop_assert_eq!(ids.clone(), b.trials.iter().map(|t| &t.id).collect::<Vec<_>>());
        let unique: std::collections::HashSet<&&String> = ids.iter().collect();
        prop_assert_eq!(unique.len(), ids.len());
        // `--trial K` runs plan.trials[K]: indices are positions.
        for (k, t) in a.trials.iter().enumerate() {
            prop_assert_eq!(t.index, k);
            let prefix = format!("t{:03}-", k);
            prop_assert!(t.id.starts_with(&prefix));
        }
        // The count is the product of the axes.
        let distinct = |k: usize| { let mut s: Vec<String> = vals[k].iter().map(|v| value(k, *v)).collect(); s.sort(); s.dedup(); s.len() };
        let want = grid.iter().map(|(k, _)| distinct(*k)).product::<usize>() * seeds.len().max(1) * random.map(|r| r.0).unwrap_or(1);
        prop_assert_eq!(a.trials.len(), want);
    }

    /// A trial's id depends on its own values: adding seeds to the sweep keeps the first seed's trials'
    /// hash part (the `t<index>` prefix may shift).
    #[test]
    fn ids_hash_only_the_trial_values(v in 1u32..12, extra in 1u64..100) {
        let one = expand(&spec(&[(0, vec![v])], &[0], None));
        let two = expand(&spec(&[(0, vec![v])], &[0, 1000 + extra], None));
        let hash = |id: &str| id.split('-').nth(1).unwrap().to_string();
        prop_assert_eq!(hash(&one.trials[0].id), hash(&two.trials[0].id));
    }
}

/// Sweep ids must not move when vaelab gains an option: a sweep started before an upgrade is resumed in its own
/// directory after it. The id hashes the fully expanded spec, so every option added after the first release is
/// left out of that text at its default (`LATE_OPTIONS` in plan.rs). This literal is the quickstart's id as
/// released; a new option serialized at its default changes it and fails here.
#[test]
fn sweep_ids_survive_new_options() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/quickstart.yaml");
    let file = SpecFile::load(&root).unwrap();
    assert_eq!(SweepPlan::expand(&file).unwrap().sweep_id, "sweep-db3c74ed");
    // The options added since (all at their defaults, written out) give the same id.
    let explicit = std::fs::read_to_string(&root).unwrap().replace("model:\n", "model:\n  batch_norm: false\n  init: default\n").replace("train:\n", "train:\n  shards: 1\n");
    assert!(explicit.contains("init: default") && explicit.contains("shards: 1"), "the quickstart has `model:` and `train:` blocks");
    let file = SpecFile::parse(&root, &explicit).unwrap();
    assert_eq!(SweepPlan::expand(&file).unwrap().sweep_id, "sweep-db3c74ed");
}

/// A map-valued override (`train.groups: {...}`) is shown on one line in flow style, while the trial's id keeps
/// hashing the text it hashed when such sweeps were first run (here: `dsprites-factor-64k-joint`'s trial 6),
/// so those sweeps still resume in place.
#[test]
fn map_overrides_display_on_one_line_and_keep_their_ids() {
    let text = "name: p\ndata: {kind: ring8}\nmodel: {kind: factor_vae, likelihood: gaussian}\nsweep:\n  trials:\n    \
                - {model.gamma: 5.0, train.groups: {tc_discriminator: {lr: 1.0e-4, beta1: 0.5, beta2: 0.9}}}\n";
    let plan = expand(text);
    let (key, value) = &plan.trials[0].overrides[1];
    assert_eq!(key, "train.groups");
    assert_eq!(vaelab_runner::plan::value_flow(value), "{tc_discriminator: {lr: 0.0001, beta1: 0.5, beta2: 0.9}}");
    assert_eq!(plan.trials[0].id, "t000-7ebcca");
}

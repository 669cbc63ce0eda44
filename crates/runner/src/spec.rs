//! The experiment spec: one YAML file with `data`, `model`, `train`, `metrics`, `log` and `sweep` sections.
//!
//! Parsing is strict (unknown keys are errors) and every error is a [`SpecError`] naming the file, line,
//! column and dotted key. Later sections and fields are added with defaults, so old specs keep working.

use crate::locate::locate;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use vaelab_data::DataSpec;
use vaelab_models::ModelSpec;
use vaelab_train::TrainSpec;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Experiment name: the directory under the runs directory (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Seed of model initialisation and training randomness (a sweep's `seeds` override it per trial).
    #[serde(default)]
    pub seed: u64,
    pub data: DataSpec,
    pub model: ModelSpec,
    #[serde(default = "default_train")]
    pub train: TrainSpec,
    /// Extra metrics computed at each evaluation, besides the model's own loss terms.
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    #[serde(default)]
    pub log: LogSpec,
    #[serde(default)]
    pub sweep: SweepSpec,
}

fn default_train() -> TrainSpec {
    serde_yaml::from_str("{}").expect("every train field has a default")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    /// Modes covered and share of high-quality samples (2D toy data with known modes).
    ModeCoverage,
    /// Conditional models on labelled images: the share of class-k samples that vaelab's feature net
    /// (trained on the real training split, cached under `<runs>/.feature-nets/`) classifies as k.
    /// Models without class conditioning skip it.
    ClassAccuracy,
    /// Importance-weighted NLL bound (Burda et al.): `k` samples (default 100) on the first `n` test
    /// examples (default 1000), binarized once with a fixed seed.
    IwaeNll,
    /// Analytic KL of each latent dimension over the test split (`kl_dim_00`, …).
    KlPerDim,
    /// Active units (Burda et al.): latent dimensions whose posterior mean varies, Cov_x(E_q[z]) > 0.01.
    ActiveUnits,
    /// Fréchet distance between `n` samples (default 5000) and `n` test images in the feature net's
    /// space: FID-LeNet, not comparable with Inception FID.
    FidLenet,
    /// Precision and recall (Kynkäänniemi et al.) of `n` samples (default 2000), k-NN radius `k` (3), in the
    /// feature net's space.
    PrecisionRecall,
    /// Mean SSIM of reconstructions of the first `n` test images (default 1000).
    Ssim,
    /// Mutual information gap over `n` training points (default 10000), 20 bins per code.
    Mig,
    /// DCI disentanglement / completeness / informativeness: predictors fit on `n` training points
    /// (default 5000), scored on the test split.
    Dci,
    /// BetaVAE score: `n` classifier training points (default 500, half as many to evaluate), batch 64.
    BetaVaeScore,
    /// FactorVAE score: `n` votes to fit (default 500, half as many to evaluate), batch 64.
    FactorVaeScore,
}

/// One entry of `metrics:` — a name, or a one-key map from the name to its options:
/// `metrics: [mig, {iwae_nll: {k: 1000, final_only: true}}]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    pub name: MetricName,
    pub options: MetricOptions,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricOptions {
    /// How many examples, samples or points (each metric's default is in its description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// IWAE: importance samples; precision/recall: the k of the k-NN radius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// Compute only at the last evaluation (costly metrics); default: at every evaluation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub final_only: bool,
}

impl MetricName {
    /// Metrics computed in the space of vaelab's feature net (a classifier trained on the real data).
    pub fn needs_feature_net(self) -> bool {
        matches!(self, MetricName::ClassAccuracy | MetricName::FidLenet | MetricName::PrecisionRecall)
    }

    /// The name as written in specs (and in the `seconds_<name>` cost column).
    pub fn as_str(self) -> String {
        serde_yaml::to_string(&self).map(|s| s.trim().to_string()).unwrap_or_default()
    }
}

impl MetricSpec {
    /// One entry as written in a spec's `metrics:` list (a name, or `{name: {options}}`).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(serde_yaml::from_str(text)?)
    }

    pub fn named(name: MetricName) -> Self {
        MetricSpec { name, options: MetricOptions::default() }
    }
}

impl<'de> Deserialize<'de> for MetricSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IntoDeserializer, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetricSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a metric name (e.g. `mig`) or a one-key map from a name to options, e.g. `{iwae_nll: {k: 1000}}`")
            }
            fn visit_str<E: Error>(self, s: &str) -> Result<MetricSpec, E> {
                let d: serde::de::value::StrDeserializer<E> = s.into_deserializer();
                Ok(MetricSpec::named(MetricName::deserialize(d)?))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<MetricSpec, A::Error> {
                let (name, options): (MetricName, Option<MetricOptions>) = m.next_entry()?.ok_or_else(|| A::Error::custom("an empty map names no metric"))?;
                if m.next_key::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::custom("one metric per list entry: write each as its own `- name: {options}`"));
                }
                Ok(MetricSpec { name, options: options.unwrap_or_default() })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for MetricSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.options == MetricOptions::default() {
            return self.name.serialize(s);
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(&self.name, &self.options)?;
        m.end()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// Write reconstruction and sample grids to TensorBoard at each evaluation.
    #[serde(default = "yes")]
    pub images: bool,
}

fn yes() -> bool {
    true
}

impl Default for LogSpec {
    fn default() -> Self {
        Self { images: true }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Dotted spec keys → lists of values; the sweep is their Cartesian product (keys in file order,
    /// the last varying fastest).
    #[serde(default)]
    pub grid: serde_yaml::Mapping,
    /// Seeds to repeat every grid point with (default: the spec's `seed`).
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// Explicit trials: each entry maps dotted keys to values (e.g. one entry per model with its own
    /// optimizer settings). Crossed with the grid and the seeds.
    #[serde(default)]
    pub trials: Vec<serde_yaml::Mapping>,
    /// Random search: `n` points drawn from per-key distributions, crossed with the rest.
    #[serde(default)]
    pub random: Option<RandomSearch>,
    /// Trials run at the same time (default: 2, capped by the number of cores).
    #[serde(default)]
    pub jobs: Option<usize>,
    /// Asynchronous successive halving (ASHA, Li et al. 2020): stop trials that fall behind at rungs.
    #[serde(default)]
    pub early_stop: Option<EarlyStop>,
    /// Resources of each trial when the sweep runs as a Slurm array (`vaelab slurm`).
    #[serde(default)]
    pub slurm: Option<crate::slurm::SlurmSpec>,
}

/// `sweep.early_stop`: rungs at `min_steps · eta^k` steps; at each rung a trial goes on only if its
/// `metric` (an evaluation metric, lower is better, e.g. `neg_elbo` or `val_neg_elbo`) is among the best
/// 1/eta of the values recorded at that rung so far; otherwise it ends `pruned`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStop {
    pub metric: String,
    pub min_steps: u64,
    #[serde(default = "default_eta")]
    pub eta: u64,
}

fn default_eta() -> u64 {
    3
}

impl EarlyStop {
    /// Rung steps below `total`.
    pub fn rungs(&self, total: u64) -> Vec<u64> {
        let mut out = vec![];
        let mut r = self.min_steps;
        while r < total {
            out.push(r);
            r = r.saturating_mul(self.eta);
        }
        out
    }
}

/// `sweep.random`: `n` draws; `params` maps dotted keys to one distribution each:
/// `{choice: [a, b, …]}`, `{uniform: [lo, hi]}`, `{log_uniform: [lo, hi]}` or `{int: [lo, hi]}` (inclusive).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RandomSearch {
    pub n: usize,
    /// Seed of the draws (default: the spec's `seed`), so the same spec always draws the same trials.
    #[serde(default)]
    pub seed: Option<u64>,
    pub params: serde_yaml::Mapping,
}

/// A spec problem, located in its file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}:{}: key `{}`: {}", self.file.display(), self.line, self.column, self.key, self.message)
    }
}

/// A parsed spec together with its file and text, so later checks can point into it.
#[derive(Debug, Clone)]
pub struct SpecFile {
    pub path: PathBuf,
    pub source: String,
    pub spec: ExperimentSpec,
}

impl SpecFile {
    pub fn load(path: &Path) -> Result<SpecFile, SpecError> {
        let source = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: "".into(),
            message: format!("cannot read spec: {e}"),
        })?;
        Self::parse(path, &source)
    }

    pub fn parse(path: &Path, source: &str) -> Result<SpecFile, SpecError> {
        let spec: ExperimentSpec = serde_yaml::from_str(source).map_err(|e| from_serde(path, source, &e, None))?;
        let file = SpecFile { path: path.to_path_buf(), source: source.to_string(), spec };
        file.check(&file.spec)?;
        Ok(file)
    }

    /// An error about `key` (dotted), located in this file.
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> SpecError {
        let parts: Vec<&str> = key.split('.').collect();
        // A key set by the sweep is reported where the sweep sets it.
        let (line, column) = locate(&self.source, &["sweep", "grid", key])
            .or_else(|| locate(&self.source, &["sweep", "random", "params", key]))
            .or_else(|| locate(&self.source, &parts))
            .or_else(|| (1..parts.len()).rev().find_map(|n| locate(&self.source, &parts[..n])))
            .unwrap_or((1, 1));
        SpecError { file: self.path.clone(), line, column, key: key.into(), message: message.into() }
    }

    /// Range and consistency checks beyond what the types say.
    pub fn check(&self, spec: &ExperimentSpec) -> Result<(), SpecError> {
        let split = |e: anyhow::Error| {
            let msg = e.to_string();
            match msg.split_once(": ") {
                Some((key, rest)) if key.contains('.') && !key.contains(' ') => (key.to_string(), rest.to_string()),
                _ => ("".to_string(), msg),
            }
        };
        for r in [spec.data.validate(), spec.model.validate(), spec.train.validate()] {
            if let Err(e) = r {
                let (key, msg) = split(e);
                let key = key.split(" / ").next().unwrap_or("").to_string();
                return Err(self.error_at(&key, msg));
            }
        }
        if spec.name.is_empty()
            || spec.name.starts_with('.')
            || !spec.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(self.error_at("name", format!("`{}` is not a valid experiment name: use letters, digits, `-`, `_` and `.` (it becomes a directory under the runs directory)", spec.name)));
        }
        if let Some(es) = &spec.sweep.early_stop {
            if es.min_steps == 0 {
                return Err(self.error_at("sweep.early_stop.min_steps", "must be at least 1"));
            }
            if es.eta < 2 {
                return Err(self.error_at("sweep.early_stop.eta", "must be at least 2"));
            }
        }
        if spec.sweep.jobs == Some(0) {
            return Err(self.error_at("sweep.jobs", "must be at least 1"));
        }
        Ok(())
    }
}

/// Turn a serde_yaml error into a located [`SpecError`]. `sweep_key` is set when the error came from
/// applying a sweep override, whose location is the sweep entry.
pub fn from_serde(path: &Path, source: &str, e: &serde_yaml::Error, sweep_key: Option<&str>) -> SpecError {
    let full = e.to_string();
    // serde_yaml appends " at line L column C"; we report the location ourselves.
    let msg = match full.find(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full.clone(),
    };
    let (prefix, detail) = match msg.split_once(": ") {
        Some((p, d)) if !p.contains(' ') => (p.to_string(), d.to_string()),
        _ => (String::new(), msg.clone()),
    };
    let mut key = prefix.clone();
    if let Some(rest) = detail.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("");
        key = if prefix.is_empty() { field.to_string() } else { format!("{prefix}.{field}") };
    } else if let Some(rest) = detail.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or("");
        key = if prefix.is_empty() { field.to_string() } else { format!("{prefix}.{field}") };
    }
    let (line, column) = match (sweep_key, e.location()) {
        (Some(k), _) => locate(source, &["sweep", "grid", k])
            .or_else(|| locate(source, &["sweep", "random", "params", k]))
            .or_else(|| source.lines().enumerate().find_map(|(ln, l)| l.find(k).map(|c| (ln + 1, c + 1))))
            .unwrap_or((1, 1)),
        (None, Some(loc)) => (loc.line(), loc.column()),
        (None, None) => locate(source, &key.split('.').collect::<Vec<_>>()).unwrap_or((1, 1)),
    };
    let key = sweep_key.map(|s| s.to_string()).unwrap_or(key);
    SpecError { file: path.to_path_buf(), line, column, key, message: detail }
}

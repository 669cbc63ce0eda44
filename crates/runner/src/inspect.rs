//! Using a trained trial: `vaelab sample | reconstruct | traverse | interpolate TRIAL_DIR -o out.png` load its
//! resolved spec and checkpoint and draw the same pictures as its logs.

use anyhow::Context;
use std::path::Path;
use vaelab_data::Dataset;
use vaelab_models::GenerativeModel;
use vaelab_track::image::Image;

pub struct LoadedTrial {
    pub spec: crate::spec::ExperimentSpec,
    pub data: Dataset,
    pub model: Box<dyn GenerativeModel>,
}

/// Rebuild a trial's model from `TRIAL_DIR/spec.yaml` and load `TRIAL_DIR/checkpoint.safetensors` into it.
pub fn load_trial(dir: &Path) -> anyhow::Result<LoadedTrial> {
    let spec_path = dir.join("spec.yaml");
    let text = std::fs::read_to_string(&spec_path).with_context(|| format!("{} is not a trial directory (no spec.yaml)", dir.display()))?;
    let spec: crate::spec::ExperimentSpec = serde_yaml::from_str(&text).with_context(|| format!("parsing {}", spec_path.display()))?;
    let data = vaelab_data::load(&spec.data, spec.data.split_seed)?;
    let varmap = candle_nn::VarMap::new();
    let info = vaelab_models::DataInfo { shape: &data.sample_shape, num_classes: data.num_classes, train_size: data.train.n };
    let model = vaelab_models::build(&spec.model, &info, &varmap, spec.seed, &candle_core::Device::Cpu)?;
    let ckpt = dir.join("checkpoint.safetensors");
    anyhow::ensure!(ckpt.exists(), "{} has no checkpoint yet", dir.display());
    let state = vaelab_train::load_checkpoint(&varmap, &ckpt)?;
    eprintln!("loaded {} (step {})", ckpt.display(), state.step);
    Ok(LoadedTrial { spec, data, model })
}

pub enum Picture {
    Sample { n: usize, class: Option<usize> },
    Reconstruct,
    Traverse,
    Interpolate,
}

/// Draw `what` for the trial in `dir` and write it to `out` as PNG.
pub fn draw(dir: &Path, what: Picture, out: &Path) -> anyhow::Result<()> {
    use vaelab_train::figures;
    let t = load_trial(dir)?;
    let (m, d, b, seed) = (t.model.as_ref(), &t.data, t.spec.data.binarize, t.spec.seed);
    let (name, img): (&str, Option<Image>) = match what {
        Picture::Sample { n, class } => match d.is_image() {
            true => ("samples", figures::samples(m, d, seed, n, class)?),
            false => ("samples", figures::scatter(m, d, seed)?),
        },
        Picture::Reconstruct => ("reconstructions", figures::reconstructions(m, d, b, seed, 8)?),
        Picture::Traverse => ("latent traversals", figures::traversal(m, d, b, seed)?),
        Picture::Interpolate => ("interpolations", figures::interpolation(m, d, b, seed)?),
    };
    let img = img.with_context(|| format!("a `{}` model on {} data has no {name}", t.spec.model.kind, d.name))?;
    img.save_png(out).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {} ({}×{})", out.display(), img.width, img.height);
    Ok(())
}

/// Compute `metrics` on the trial in `dir` as it stands (its last checkpoint), e.g. a costly IWAE bound
/// after training. Feature nets are cached under `runs_dir/.feature-nets/` as during runs.
/// Returns each metric's values followed by `seconds_<name>`.
pub fn evaluate(dir: &Path, metrics: &[crate::spec::MetricSpec], runs_dir: &Path) -> anyhow::Result<Vec<(String, f64)>> {
    let t = load_trial(dir)?;
    let data = std::sync::Arc::new(t.data);
    let net = match metrics.iter().any(|m| m.name.needs_feature_net()) {
        true => Some(crate::schedule::LazyFeatureNet::for_data(&t.spec.data, data.clone(), runs_dir)?),
        false => None,
    };
    let inputs = crate::evaluation::MetricInputs { data: &data, binarize: t.spec.data.binarize, seed: t.spec.seed, feature_net: net.as_ref() };
    let mut out = vec![];
    for m in metrics {
        let started = std::time::Instant::now();
        let values = crate::evaluation::compute(m, t.model.as_ref(), &inputs).with_context(|| format!("metric {}", m.name.as_str()))?;
        anyhow::ensure!(!values.is_empty(), "a `{}` model has nothing that metric {} measures", t.spec.model.kind, m.name.as_str());
        out.extend(values);
        out.push((format!("seconds_{}", m.name.as_str()), started.elapsed().as_secs_f64()));
    }
    Ok(out)
}

/// Write the codes of the first `n` examples of a trial's `split` (`train` or `test`) to `out` as Parquet, one
/// row per example: `index`, `label` (classed data), `factor_<name>` (factor indices, where known), then the
/// posterior's `mu_<j>` and `logvar_<j>` (or `z_<j>` for a model with a deterministic code), so codes can be
/// studied with Polars beside the factors — e.g. why a MIG is low. Returns the number of rows.
pub fn encode(dir: &Path, split: &str, n: usize, out: &Path) -> anyhow::Result<usize> {
    use polars::prelude::{Column, DataFrame};
    let t = load_trial(dir)?;
    let d = &t.data;
    let s = match split {
        "train" => &d.train,
        "test" => &d.test,
        other => anyhow::bail!("--split must be train or test, not {other:?}"),
    };
    let n = n.min(s.n);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(t.spec.seed);
    let (mut first, mut second): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (vec![], vec![]);
    let mut gaussian = true;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let b = vaelab_train::make_batch(s, d, chunk, t.spec.data.binarize, &mut rng, &candle_core::Device::Cpu)?;
        if let Some((mu, logvar)) = t.model.posterior_params(&b)? {
            first.extend(mu.flatten_from(1)?.to_vec2::<f32>()?);
            second.extend(logvar.flatten_from(1)?.to_vec2::<f32>()?);
        } else if let Some(z) = t.model.encode(&b)? {
            gaussian = false;
            first.extend(z.flatten_from(1)?.to_vec2::<f32>()?);
        } else {
            anyhow::bail!("a `{}` model has no encoder", t.spec.model.kind);
        }
    }
    let mut cols = vec![Column::new("index".into(), (0..n as u32).collect::<Vec<_>>())];
    if let Some(l) = &s.labels {
        cols.push(Column::new("label".into(), l[..n].to_vec()));
    }
    if let Some(f) = &s.factors {
        let nf = d.factor_sizes.len();
        for (k, name) in d.factor_names.iter().enumerate() {
            cols.push(Column::new(format!("factor_{name}").into(), (0..n).map(|i| f[i * nf + k]).collect::<Vec<_>>()));
        }
    }
    let dim = first.first().map_or(0, |r| r.len());
    let (first_name, second_name) = if gaussian { ("mu", "logvar") } else { ("z", "") };
    for (name, rows) in [(first_name, &first), (second_name, &second)] {
        for j in 0..rows.first().map_or(0, |r| r.len()) {
            cols.push(Column::new(format!("{name}_{j}").into(), rows.iter().map(|r| r[j]).collect::<Vec<_>>()));
        }
    }
    let mut df = DataFrame::new(n, cols)?;
    vaelab_track::parquet::write_parquet(&mut df, out)?;
    eprintln!("wrote {} ({n} rows, {dim}-d codes)", out.display());
    Ok(n)
}

//! The spec's `metrics:` computed on a model at an evaluation: this module draws what each metric needs
//! from the model (samples, codes, log-weights, reconstructions) and the data (test images, factors,
//! renderings), and hands the numbers to `vaelab_metrics`. Every metric's randomness is seeded by the trial
//! seed alone, so two evaluations of the same weights give the same value.

use crate::schedule::LazyFeatureNet;
use crate::spec::{MetricName, MetricSpec};
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vaelab_data::{Binarize, Dataset, Split};
use vaelab_metrics::disentangle::{self, ScoreSizes};
use vaelab_models::{Batch, GenerativeModel, ModelCtx};

/// What the metrics of one trial share.
pub struct MetricInputs<'a> {
    pub data: &'a Dataset,
    pub binarize: Binarize,
    pub seed: u64,
    pub feature_net: Option<&'a LazyFeatureNet>,
}

fn rng(seed: u64, purpose: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// The first `n` examples of `split` in batches of `size` (binarized once, with a fixed seed).
fn batches(m: &MetricInputs, split: &Split, n: usize, size: usize, purpose: u64) -> Result<Vec<Batch>> {
    let mut r = rng(m.seed, purpose);
    let idx: Vec<usize> = (0..n.min(split.n)).collect();
    idx.chunks(size).map(|c| Ok(vaelab_train::make_batch(split, m.data, c, m.binarize, &mut r, &Device::Cpu)?)).collect()
}

fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(t.flatten_from(1)?.to_vec2::<f32>()?)
}

/// One metric's values (empty when the model lacks what the metric measures, e.g. IWAE of a GAN).
pub fn compute(spec: &MetricSpec, model: &dyn GenerativeModel, m: &MetricInputs) -> Result<Vec<(String, f64)>> {
    let o = &spec.options;
    let d = m.data;
    match spec.name {
        MetricName::ModeCoverage => mode_coverage(model, m),
        MetricName::ClassAccuracy => match (model.classes(), m.feature_net) {
            (Some(k), Some(net)) => class_accuracy(model, net.get()?.as_ref(), k, m.seed),
            _ => Ok(vec![]),
        },
        MetricName::IwaeNll => {
            let k = o.k.unwrap_or(100);
            let mut noise = rng(m.seed, 0x1_7a3);
            let mut nll = vec![];
            for b in batches(m, &d.test, o.n.unwrap_or(1000), 100, 0x1_7a4)? {
                let Some(w) = model.log_importance_weights(&b, k, &mut ModelCtx { rng: &mut noise, step: 0 })? else {
                    return Ok(vec![]);
                };
                for row in w.to_vec2::<f32>()? {
                    nll.push(vaelab_metrics::likelihood::iwae_nll(&row.iter().map(|&v| v as f64).collect::<Vec<_>>()));
                }
            }
            let mean = nll.iter().sum::<f64>() / nll.len().max(1) as f64;
            let se = (nll.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (nll.len() as f64 - 1.0).max(1.0)).sqrt() / (nll.len() as f64).sqrt();
            Ok(vec![("iwae_nll".into(), mean), ("iwae_nll_se".into(), se)])
        }
        MetricName::KlPerDim | MetricName::ActiveUnits => {
            let (mut mu, mut lv, mut width) = (vec![], vec![], 0);
            for b in batches(m, &d.test, o.n.unwrap_or(usize::MAX), 500, 0x1_7a5)? {
                let Some((a, l)) = model.posterior_params(&b)? else {
                    return Ok(vec![]);
                };
                width = a.dim(1)?;
                mu.extend(a.flatten_all()?.to_vec1::<f32>()?);
                lv.extend(l.flatten_all()?.to_vec1::<f32>()?);
            }
            Ok(if spec.name == MetricName::KlPerDim {
                vaelab_metrics::likelihood::kl_per_dim(&mu, &lv, width).into_iter().enumerate().map(|(j, v)| (format!("kl_dim_{j:02}"), v)).collect()
            } else {
                vec![("active_units".into(), vaelab_metrics::likelihood::active_units(&mu, width, 0.01).len() as f64)]
            })
        }
        MetricName::FidLenet | MetricName::PrecisionRecall => {
            let Some(net) = m.feature_net else { bail!("metric {} needs a labelled image dataset", spec.name.as_str()) };
            let net = net.get()?;
            let fid = spec.name == MetricName::FidLenet;
            let n = o.n.unwrap_or(if fid { 5000 } else { 2000 }).min(d.test.n);
            let features = |x: &Tensor| -> Result<Vec<f32>> {
                let mut out = vec![];
                for s in (0..x.dim(0)?).step_by(500) {
                    out.extend(net.features(&x.narrow(0, s, 500.min(x.dim(0)? - s))?)?.flatten_all()?.to_vec1::<f32>()?);
                }
                Ok(out)
            };
            // Real: the first n test images as they are (grey levels), the space the net was trained in.
            let mut shape = vec![n];
            shape.extend_from_slice(&d.sample_shape);
            let real = features(&Tensor::from_slice(&d.test.x[..n * d.dim()], shape, &Device::Cpu)?)?;
            let mut r = rng(m.seed, 0x1_7a6);
            let mut fake = vec![];
            for s in (0..n).step_by(500) {
                let Some(x) = model.sample(500.min(n - s), None, &mut ModelCtx { rng: &mut r, step: 0 })? else {
                    return Ok(vec![]);
                };
                fake.extend(features(&x)?);
            }
            let w = 128;
            Ok(if fid {
                vec![("fid_lenet".into(), vaelab_metrics::frechet::frechet_distance_of(&real, &fake, w))]
            } else {
                let (p, rc) = vaelab_metrics::frechet::precision_recall(&real, &fake, w, o.k.unwrap_or(3));
                vec![("precision_lenet".into(), p), ("recall_lenet".into(), rc)]
            })
        }
        MetricName::Ssim => {
            if !d.is_image() || d.sample_shape[1] < 11 || d.sample_shape[2] < 11 {
                bail!("metric ssim needs images of at least 11×11 pixels");
            }
            let (c, h, w) = (d.sample_shape[0], d.sample_shape[1], d.sample_shape[2]);
            let mut r = rng(m.seed, 0x1_7a7);
            let (mut total, mut count) = (0.0, 0usize);
            for b in batches(m, &d.test, o.n.unwrap_or(1000), 200, 0x1_7a8)? {
                let Some(rec) = model.reconstruct(&b, &mut ModelCtx { rng: &mut r, step: 0 })? else {
                    return Ok(vec![]);
                };
                for (x, y) in rows(&b.x)?.iter().zip(rows(&rec)?) {
                    for ch in 0..c {
                        let p = ch * h * w..(ch + 1) * h * w;
                        total += vaelab_metrics::ssim::ssim(&x[p.clone()], &y[p], h, w) / c as f64;
                    }
                    count += 1;
                }
            }
            Ok(vec![("ssim".into(), total / count.max(1) as f64)])
        }
        MetricName::Mig | MetricName::Dci => {
            if d.factor_sizes.is_empty() || d.train.factors.is_none() {
                bail!("metric {} needs data with ground-truth factors (dsprites)", spec.name.as_str());
            }
            let nf = d.factor_sizes.len();
            let codes_of = |split: &Split, n: usize, purpose: u64| -> Result<Option<(Vec<Vec<f32>>, Vec<Vec<u32>>)>> {
                let mut codes = vec![];
                for b in batches(m, split, n, 500, purpose)? {
                    let Some(z) = model.encode(&b)? else { return Ok(None) };
                    codes.extend(rows(&z)?);
                }
                let f = split.factors.as_ref().unwrap();
                Ok(Some((codes.clone(), (0..codes.len()).map(|i| f[i * nf..(i + 1) * nf].to_vec()).collect())))
            };
            if spec.name == MetricName::Mig {
                let Some((codes, factors)) = codes_of(&d.train, o.n.unwrap_or(10_000), 0x1_7a9)? else { return Ok(vec![]) };
                // The mean, then each factor's gap and its best dimension's information (both over H(factor)),
                // so a low score says whether a factor is missing or split.
                let per = disentangle::mig_per_factor(&codes, &factors, &d.factor_sizes, 20);
                let mut out = vec![("mig".to_string(), disentangle::mig_of(&per))];
                for (f, name) in per.iter().zip(&d.factor_names) {
                    out.push((format!("mig_gap_{name}"), f.gap));
                    out.push((format!("mig_top_{name}"), f.top));
                }
                return Ok(out);
            }
            let Some(train) = codes_of(&d.train, o.n.unwrap_or(5000), 0x1_7aa)? else { return Ok(vec![]) };
            let Some(test) = codes_of(&d.test, usize::MAX, 0x1_7ab)? else { return Ok(vec![]) };
            let r = disentangle::dci((&train.0, &train.1), (&test.0, &test.1), nf)?;
            Ok(vec![("dci_disentanglement".into(), r.disentanglement), ("dci_completeness".into(), r.completeness), ("dci_informativeness".into(), r.informativeness)])
        }
        MetricName::BetaVaeScore | MetricName::FactorVaeScore => {
            let Some(observe) = &d.observe else {
                bail!("metric {} needs data that can render any factor combination (dsprites)", spec.name.as_str());
            };
            if model.latent_dim() == 0 || model.encode(&batches(m, &d.test, 1, 1, 0x1_7ac)?[0])?.is_none() {
                return Ok(vec![]);
            }
            let dim = d.dim();
            let mut shape = vec![0];
            shape.extend_from_slice(&d.sample_shape);
            let mut represent = |factors: &[Vec<u32>]| -> Result<Vec<Vec<f32>>> {
                let mut x = vec![0f32; factors.len() * dim];
                for (f, out) in factors.iter().zip(x.chunks_mut(dim)) {
                    (observe.0)(f, out);
                }
                shape[0] = factors.len();
                let batch = Batch { x: Tensor::from_vec(x, shape.clone(), &Device::Cpu)?, labels: None };
                rows(&model.encode(&batch)?.expect("checked above"))
            };
            let n_train = o.n.unwrap_or(500);
            let sizes = ScoreSizes { train: n_train, eval: (n_train / 2).max(1), batch: 64 };
            let mut r = rng(m.seed, 0x1_7ad);
            Ok(if spec.name == MetricName::BetaVaeScore {
                vec![("beta_vae_score".into(), disentangle::beta_vae_score(&d.factor_sizes, &mut represent, sizes, &mut r)?)]
            } else {
                vec![("factor_vae_score".into(), disentangle::factor_vae_score(&d.factor_sizes, &mut represent, sizes, 5000, &mut r)?)]
            })
        }
    }
}

/// VEEGAN-style mode coverage of 2,500 prior samples (2D data with known modes only).
fn mode_coverage(model: &dyn GenerativeModel, m: &MetricInputs) -> Result<Vec<(String, f64)>> {
    let (Some(modes), Some(std)) = (&m.data.modes, m.data.mode_std) else {
        bail!("metric mode_coverage needs 2D data with known modes (ring8, grid25)");
    };
    let mut r = ChaCha8Rng::seed_from_u64(m.seed ^ 0xc0e5);
    let Some(s) = model.sample(2500, None, &mut ModelCtx { rng: &mut r, step: 0 })? else {
        bail!("metric mode_coverage needs a model that can sample");
    };
    let pts: Vec<[f32; 2]> = s.to_vec2::<f32>()?.into_iter().map(|p| [p[0], p[1]]).collect();
    let (covered, hq) = vaelab_metrics::mode_coverage(&pts, modes, std, 20);
    Ok(vec![("modes_covered".into(), covered as f64), ("high_quality_frac".into(), hq)])
}

/// Class accuracy of 100 class-conditional samples per class, judged by the feature net.
fn class_accuracy(model: &dyn GenerativeModel, net: &vaelab_metrics::FeatureNet, classes: usize, seed: u64) -> Result<Vec<(String, f64)>> {
    let per = 100;
    let n = per * classes;
    let mut onehot = vec![0f32; n * classes];
    let want: Vec<u32> = (0..n).map(|i| (i / per) as u32).collect();
    for (i, &k) in want.iter().enumerate() {
        onehot[i * classes + k as usize] = 1.0;
    }
    let labels = Tensor::from_vec(onehot, (n, classes), &Device::Cpu)?;
    let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0xc1a5);
    let Some(s) = model.sample(n, Some(&labels), &mut ModelCtx { rng: &mut r, step: 0 })? else {
        return Ok(vec![]);
    };
    let acc = net.accuracy(&s.flatten_all()?.to_vec1::<f32>()?, &want)?;
    Ok(vec![("class_accuracy".into(), acc)])
}

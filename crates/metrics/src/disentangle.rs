//! Disentanglement scores on data with known generative factors, following the protocols of
//! disentanglement_lib (Locatello et al. 2019): BetaVAE score (Higgins et al. 2017), FactorVAE score (Kim &
//! Mnih 2018), MIG (Chen et al. 2018) and DCI (Eastwood & Williams 2018).
//!
//! A representation is a function from factor rows (one `u32` index per factor) to codes: the caller renders
//! the observations and encodes them (posterior means), so these functions never see images and are tested
//! on representations built directly from the factors. Sample counts are parameters: disentanglement_lib's
//! defaults (10,000 training points of 64-pair batches for the BetaVAE score) are GPU-sized; vaelab's
//! defaults in the runner are smaller and written in the README.
//!
//! Deviation, stated: DCI's importance matrix comes from one Gini decision tree per factor (linfa-trees)
//! instead of scikit-learn's gradient-boosted ensemble; both give impurity-based importances, the tree's are
//! noisier. Logistic regression for the BetaVAE score is linfa-logistic's multinomial model.

use anyhow::Result;
use linfa::prelude::*;
use ndarray::{Array1, Array2};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Maps factor rows to codes (one row each, all the same width).
pub type Represent<'a> = dyn FnMut(&[Vec<u32>]) -> Result<Vec<Vec<f32>>> + 'a;

/// `n` factor rows drawn uniformly and independently per factor.
pub fn sample_factors(sizes: &[usize], n: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<u32>> {
    (0..n).map(|_| sizes.iter().map(|&s| rng.random_range(0..s as u32)).collect()).collect()
}

fn entropy(counts: &[usize]) -> f64 {
    let n: usize = counts.iter().sum();
    counts.iter().filter(|&&c| c > 0).map(|&c| {
        let p = c as f64 / n as f64;
        -p * p.ln()
    }).sum()
}

/// Discrete mutual information (nats) between two label vectors.
fn mutual_info(a: &[usize], na: usize, b: &[usize], nb: usize) -> f64 {
    let n = a.len() as f64;
    let mut joint = vec![0usize; na * nb];
    let (mut ca, mut cb) = (vec![0usize; na], vec![0usize; nb]);
    for (&x, &y) in a.iter().zip(b) {
        joint[x * nb + y] += 1;
        ca[x] += 1;
        cb[y] += 1;
    }
    let mut mi = 0.0;
    for x in 0..na {
        for y in 0..nb {
            let c = joint[x * nb + y];
            if c > 0 {
                mi += c as f64 / n * ((c as f64 * n) / (ca[x] as f64 * cb[y] as f64)).ln();
            }
        }
    }
    mi
}

/// Each code dimension cut into `bins` equal-width bins between its minimum and maximum (as
/// disentanglement_lib's histogram discretizer).
fn discretize(codes: &[Vec<f32>], bins: usize) -> Vec<Vec<usize>> {
    let d = codes.first().map_or(0, |c| c.len());
    (0..d)
        .map(|j| {
            let (lo, hi) = codes.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), c| (l.min(c[j]), h.max(c[j])));
            let w = (hi - lo) / bins as f32;
            codes.iter().map(|c| if w > 0.0 { (((c[j] - lo) / w) as usize).min(bins - 1) } else { 0 }).collect()
        })
        .collect()
}

/// Mutual information gap: for each factor, the gap between the two code dimensions sharing the most
/// information with it, over the factor's entropy; averaged over factors.
pub fn mig(codes: &[Vec<f32>], factors: &[Vec<u32>], sizes: &[usize], bins: usize) -> f64 {
    mig_of(&mig_per_factor(codes, factors, sizes, bins))
}

/// MIG from its per-factor terms: the mean gap.
pub fn mig_of(per_factor: &[FactorMig]) -> f64 {
    per_factor.iter().map(|f| f.gap).sum::<f64>() / per_factor.len().max(1) as f64
}

/// One factor's share of MIG: why a score is low — the factor not encoded (small `top`) or spread over two
/// dimensions (`top` large, `gap` small).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FactorMig {
    /// (I(factor; best dim) − I(factor; second dim)) / H(factor).
    pub gap: f64,
    /// I(factor; best dim) / H(factor).
    pub top: f64,
    /// The best dimension.
    pub dim: usize,
}

/// MIG's terms, one per factor (all zero with fewer than two code dimensions).
pub fn mig_per_factor(codes: &[Vec<f32>], factors: &[Vec<u32>], sizes: &[usize], bins: usize) -> Vec<FactorMig> {
    let disc = discretize(codes, bins);
    let zero = FactorMig { gap: 0.0, top: 0.0, dim: 0 };
    if disc.len() < 2 {
        return vec![zero; sizes.len()];
    }
    sizes
        .iter()
        .enumerate()
        .map(|(k, &size)| {
            let f: Vec<usize> = factors.iter().map(|r| r[k] as usize).collect();
            let mut counts = vec![0usize; size];
            f.iter().for_each(|&v| counts[v] += 1);
            let h = entropy(&counts);
            let mut mi: Vec<(usize, f64)> = disc.iter().map(|c| mutual_info(c, bins, &f, size)).enumerate().collect();
            mi.sort_by(|a, b| b.1.total_cmp(&a.1));
            if h > 0.0 { FactorMig { gap: (mi[0].1 - mi[1].1) / h, top: mi[0].1 / h, dim: mi[0].0 } } else { zero }
        })
        .collect()
}

/// DCI disentanglement, completeness and informativeness.
#[derive(Debug, Clone, Copy)]
pub struct Dci {
    pub disentanglement: f64,
    pub completeness: f64,
    /// Mean test accuracy of the per-factor predictors.
    pub informativeness: f64,
}

fn matrix(codes: &[Vec<f32>]) -> Array2<f64> {
    let d = codes.first().map_or(0, |c| c.len());
    Array2::from_shape_fn((codes.len(), d), |(i, j)| codes[i][j] as f64)
}

/// A tree's feature importances as scikit-learn defines them (what disentanglement_lib's DCI reads): each
/// split's impurity decrease weighted by the share of training samples that reach it, normalized to sum to 1.
/// linfa's own `feature_importance` averages the decrease over nodes unweighted, so a deep split on a handful
/// of samples — typically on an uninformative dimension — would count as much as the root split.
fn weighted_importance(tree: &linfa_trees::DecisionTree<f64, usize>, x: &Array2<f64>) -> Vec<f64> {
    fn walk(node: &linfa_trees::TreeNode<f64, usize>, rows: Vec<usize>, x: &Array2<f64>, imp: &mut [f64]) {
        if node.is_leaf() || rows.is_empty() {
            return;
        }
        let (feature, threshold, decrease) = node.split();
        imp[feature] += rows.len() as f64 * decrease;
        // Training sends `value <= threshold` left.
        let (left, right): (Vec<usize>, Vec<usize>) = rows.into_iter().partition(|&i| x[(i, feature)] <= threshold);
        let children = node.children();
        for (child, rows) in children.into_iter().zip([left, right]) {
            if let Some(child) = child {
                walk(child, rows, x, imp);
            }
        }
    }
    let mut imp = vec![0.0; x.ncols()];
    walk(tree.root_node(), (0..x.nrows()).collect(), x, &mut imp);
    let total: f64 = imp.iter().filter(|v| v.is_finite()).sum();
    imp.iter().map(|v| if total > 0.0 && v.is_finite() { v.abs() / total } else { 0.0 }).collect()
}

/// DCI from predictors of each factor trained on (train codes, factors), scored on the test set.
pub fn dci(train: (&[Vec<f32>], &[Vec<u32>]), test: (&[Vec<f32>], &[Vec<u32>]), num_factors: usize) -> Result<Dci> {
    let (xtr, xte) = (matrix(train.0), matrix(test.0));
    let d = xtr.ncols();
    // importance[code][factor]
    let mut imp = vec![vec![0f64; num_factors]; d];
    let mut acc = 0.0;
    for k in 0..num_factors {
        let ytr = Array1::from_iter(train.1.iter().map(|r| r[k] as usize));
        let yte: Vec<usize> = test.1.iter().map(|r| r[k] as usize).collect();
        let tree = linfa_trees::DecisionTree::params().max_depth(Some(8)).min_weight_leaf(5.0).fit(&Dataset::new(xtr.clone(), ytr))?;
        for (j, v) in weighted_importance(&tree, &xtr).into_iter().enumerate() {
            imp[j][k] = v;
        }
        let pred = tree.predict(&xte);
        acc += pred.iter().zip(&yte).filter(|(a, b)| a == b).count() as f64 / yte.len().max(1) as f64;
    }
    let total: f64 = imp.iter().flatten().sum();
    if total <= 0.0 {
        return Ok(Dci { disentanglement: 0.0, completeness: 0.0, informativeness: acc / num_factors as f64 });
    }
    // 1 − entropy of a row (column), base = its length; weighted by the row's (column's) share of importance.
    let one_minus_h = |p: &[f64]| {
        let s: f64 = p.iter().sum();
        if s <= 0.0 || p.len() < 2 {
            return 0.0;
        }
        1.0 - p.iter().filter(|&&v| v > 0.0).map(|&v| -(v / s) * (v / s).ln()).sum::<f64>() / (p.len() as f64).ln()
    };
    let disentanglement = imp.iter().map(|row| one_minus_h(row) * row.iter().sum::<f64>() / total).sum();
    let completeness = (0..num_factors)
        .map(|k| {
            let col: Vec<f64> = imp.iter().map(|r| r[k]).collect();
            one_minus_h(&col) * col.iter().sum::<f64>() / total
        })
        .sum();
    Ok(Dci { disentanglement, completeness, informativeness: acc / num_factors as f64 })
}

/// Sample sizes of the two classifier-based scores.
#[derive(Debug, Clone, Copy)]
pub struct ScoreSizes {
    /// Points to fit the classifier on, and to evaluate it on.
    pub train: usize,
    pub eval: usize,
    /// Observations per point.
    pub batch: usize,
}

/// BetaVAE score: each point is the mean |z₁ − z₂| over `batch` pairs of observations that share one
/// randomly chosen factor; a linear classifier predicts which factor it was. Returns its eval accuracy.
pub fn beta_vae_score(sizes: &[usize], represent: &mut Represent, n: ScoreSizes, rng: &mut ChaCha8Rng) -> Result<f64> {
    let mut points = |count: usize, rng: &mut ChaCha8Rng| -> Result<(Array2<f64>, Array1<usize>)> {
        let mut rows = vec![];
        let mut labels = vec![];
        for _ in 0..count {
            let k = rng.random_range(0..sizes.len());
            let a = sample_factors(sizes, n.batch, rng);
            let mut b = sample_factors(sizes, n.batch, rng);
            for (x, y) in a.iter().zip(b.iter_mut()) {
                y[k] = x[k];
            }
            let (za, zb) = (represent(&a)?, represent(&b)?);
            let d = za[0].len();
            let mut diff = vec![0f64; d];
            for (p, q) in za.iter().zip(&zb) {
                for j in 0..d {
                    diff[j] += (p[j] - q[j]).abs() as f64 / n.batch as f64;
                }
            }
            rows.push(diff);
            labels.push(k);
        }
        let d = rows[0].len();
        Ok((Array2::from_shape_fn((count, d), |(i, j)| rows[i][j]), Array1::from_vec(labels)))
    };
    let (xtr, ytr) = points(n.train, rng)?;
    let (xte, yte) = points(n.eval, rng)?;
    let model = linfa_logistic::MultiLogisticRegression::default().max_iterations(200).fit(&Dataset::new(xtr, ytr))?;
    let pred = model.predict(&xte);
    Ok(pred.iter().zip(yte.iter()).filter(|(a, b)| a == b).count() as f64 / n.eval as f64)
}

/// FactorVAE score: codes are normalised by their standard deviation over `n_variance` observations and
/// collapsed dimensions (std < 0.05) dropped; for a batch sharing one fixed factor, the dimension with the
/// least variance votes for that factor; a majority-vote classifier's eval accuracy is the score.
pub fn factor_vae_score(sizes: &[usize], represent: &mut Represent, n: ScoreSizes, n_variance: usize, rng: &mut ChaCha8Rng) -> Result<f64> {
    let var = |codes: &[Vec<f32>]| -> Vec<f64> {
        let d = codes[0].len();
        let m = codes.len() as f64;
        (0..d)
            .map(|j| {
                let mean = codes.iter().map(|c| c[j] as f64).sum::<f64>() / m;
                codes.iter().map(|c| (c[j] as f64 - mean).powi(2)).sum::<f64>() / (m - 1.0).max(1.0)
            })
            .collect()
    };
    let global = var(&represent(&sample_factors(sizes, n_variance, rng))?);
    let active: Vec<usize> = (0..global.len()).filter(|&j| global[j].sqrt() >= 0.05).collect();
    if active.is_empty() {
        return Ok(0.0);
    }
    let mut votes = |count: usize, rng: &mut ChaCha8Rng| -> Result<Vec<Vec<usize>>> {
        let mut v = vec![vec![0usize; sizes.len()]; active.len()];
        for _ in 0..count {
            let k = rng.random_range(0..sizes.len());
            let mut f = sample_factors(sizes, n.batch, rng);
            let fixed = f[0][k];
            f.iter_mut().for_each(|r| r[k] = fixed);
            let local = var(&represent(&f)?);
            let best = (0..active.len()).min_by(|&a, &b| (local[active[a]] / global[active[a]]).total_cmp(&(local[active[b]] / global[active[b]]))).unwrap();
            v[best][k] += 1;
        }
        Ok(v)
    };
    let train = votes(n.train, rng)?;
    let eval = votes(n.eval, rng)?;
    let classifier: Vec<usize> = train.iter().map(|row| (0..row.len()).max_by_key(|&k| (row[k], std::cmp::Reverse(k))).unwrap()).collect();
    let right: usize = eval.iter().zip(&classifier).map(|(row, &k)| row[k]).sum();
    Ok(right as f64 / n.eval as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const SIZES: [usize; 4] = [3, 6, 10, 8];

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(11)
    }

    /// Codes = the factors themselves (plus tiny noise so every dimension has a spread inside a batch).
    fn truth(f: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        Ok(f.iter().map(|r| r.iter().map(|&v| v as f32).collect()).collect())
    }

    /// The factors permuted (code j = factor perm[j]) and rescaled/shifted per dimension.
    fn permuted(f: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let perm = [2usize, 0, 3, 1];
        let scale = [0.5f32, -3.0, 7.0, 0.1];
        Ok(f.iter().map(|r| (0..4).map(|j| r[perm[j]] as f32 * scale[j] + j as f32).collect()).collect())
    }

    fn noise(seed: u64) -> impl FnMut(&[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        move |f: &[Vec<u32>]| Ok(f.iter().map(|_| (0..4).map(|_| rng.random::<f32>()).collect()).collect())
    }

    #[test]
    fn mig_is_one_for_the_factors_zero_for_noise_and_blind_to_permutation() {
        let mut r = rng();
        let f = sample_factors(&SIZES, 5000, &mut r);
        let t = mig(&truth(&f).unwrap(), &f, &SIZES, 20);
        let p = mig(&permuted(&f).unwrap(), &f, &SIZES, 20);
        let n = mig(&noise(1)(&f).unwrap(), &f, &SIZES, 20);
        assert!(t > 0.99, "truth {t}");
        assert!((t - p).abs() < 1e-9, "permuted {p} vs {t}");
        assert!(n < 0.02, "noise {n}");
    }

    /// A factor copied into two dimensions is fully encoded (top 1) with no gap; the permuted code names the
    /// dimension each factor went to.
    #[test]
    fn mig_per_factor_tells_a_split_factor_from_a_missing_one() {
        let mut r = rng();
        let f = sample_factors(&SIZES, 5000, &mut r);
        let per = mig_per_factor(&permuted(&f).unwrap(), &f, &SIZES, 20);
        assert_eq!(per.iter().map(|p| p.dim).collect::<Vec<_>>(), vec![1, 3, 0, 2]);
        assert!(per.iter().all(|p| p.gap > 0.99 && p.top > 0.99), "{per:?}");
        // Factor 2 in dimensions 0 and 1, factor 3 nowhere (noise in its place).
        let codes: Vec<Vec<f32>> = f.iter().enumerate().map(|(i, r)| vec![r[2] as f32, r[2] as f32 * 2.0, r[0] as f32, (i * 7919 % 101) as f32]).collect();
        let per = mig_per_factor(&codes, &f, &SIZES, 20);
        assert!(per[2].top > 0.99 && per[2].gap < 1e-9, "split {:?}", per[2]);
        assert!(per[3].top < 0.05, "missing {:?}", per[3]);
        assert!(per[0].gap > 0.99, "kept {:?}", per[0]);
    }

    #[test]
    fn dci_is_one_for_the_factors_zero_for_noise_and_blind_to_permutation() {
        let mut r = rng();
        let (ftr, fte) = (sample_factors(&SIZES, 2000, &mut r), sample_factors(&SIZES, 1000, &mut r));
        let t = dci((&truth(&ftr).unwrap(), &ftr), (&truth(&fte).unwrap(), &fte), 4).unwrap();
        let p = dci((&permuted(&ftr).unwrap(), &ftr), (&permuted(&fte).unwrap(), &fte), 4).unwrap();
        let mut nz = noise(2);
        let n = dci((&nz(&ftr).unwrap(), &ftr), (&nz(&fte).unwrap(), &fte), 4).unwrap();
        assert!(t.disentanglement > 0.99 && t.completeness > 0.99 && t.informativeness > 0.99, "{t:?}");
        assert!((t.disentanglement - p.disentanglement).abs() < 1e-6 && (t.completeness - p.completeness).abs() < 1e-6, "{p:?} vs {t:?}");
        assert!(n.disentanglement < 0.15 && n.completeness < 0.15, "{n:?}");
        // Chance accuracy is mean(1/size) ≈ 0.17 for these factors.
        assert!(n.informativeness < 0.3, "{n:?}");
    }

    /// Like a trained VAE: each factor blurred into its own code dimension, plus collapsed dimensions of pure
    /// noise. Deep splits on the noise fit leftovers of a few samples; weighted by the samples they see (as
    /// scikit-learn's importances are) they barely count, so DCI stays high.
    #[test]
    fn dci_discounts_splits_on_uninformative_dimensions() {
        let mut r = rng();
        let mut blurred = {
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            move |f: &[Vec<u32>]| -> Result<Vec<Vec<f32>>> {
                Ok(f.iter().map(|row| {
                    let mut c: Vec<f32> = row.iter().map(|&v| v as f32 + 1.6 * rng.random::<f32>()).collect();
                    c.extend((0..4).map(|_| rng.random::<f32>() * 0.01));
                    c
                }).collect())
            }
        };
        let (ftr, fte) = (sample_factors(&SIZES, 3000, &mut r), sample_factors(&SIZES, 1000, &mut r));
        let d = dci((&blurred(&ftr).unwrap(), &ftr), (&blurred(&fte).unwrap(), &fte), 4).unwrap();
        // (linfa's unweighted importances give D 0.08, C 0.09 here; the weighted ones 0.82, 0.84.)
        assert!(d.disentanglement > 0.7 && d.completeness > 0.7, "{d:?}");
    }

    #[test]
    fn beta_vae_score_is_one_for_the_factors_chance_for_noise() {
        let n = ScoreSizes { train: 300, eval: 200, batch: 32 };
        let t = beta_vae_score(&SIZES, &mut truth, n, &mut rng()).unwrap();
        let p = beta_vae_score(&SIZES, &mut permuted, n, &mut rng()).unwrap();
        let z = beta_vae_score(&SIZES, &mut noise(3), n, &mut rng()).unwrap();
        assert!(t > 0.97 && p > 0.97, "truth {t}, permuted {p}");
        assert!(z < 0.45, "noise {z} (chance 0.25)");
    }

    #[test]
    fn factor_vae_score_is_one_for_the_factors_chance_for_noise() {
        let n = ScoreSizes { train: 300, eval: 200, batch: 32 };
        let t = factor_vae_score(&SIZES, &mut truth, n, 2000, &mut rng()).unwrap();
        let p = factor_vae_score(&SIZES, &mut permuted, n, 2000, &mut rng()).unwrap();
        let z = factor_vae_score(&SIZES, &mut noise(4), n, 2000, &mut rng()).unwrap();
        assert_eq!(t, 1.0);
        assert_eq!(p, 1.0);
        assert!(z < 0.45, "noise {z} (chance 0.25)");
    }
}

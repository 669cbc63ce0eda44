//! The pictures people look at instead of numbers, shared by the training logs and the `vaelab sample /
//! reconstruct / traverse / interpolate` commands. Each returns `None` when the model or data has no such
//! picture (a GAN has no reconstructions; 2D toy data has a scatter plot instead of image grids).

use crate::trainer::make_batch;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vaelab_data::{Binarize, Dataset};
use vaelab_models::{GenerativeModel, ModelCtx};
use vaelab_track::image::Image;

type Fig = anyhow::Result<Option<Image>>;

fn chw(data: &Dataset) -> Option<[usize; 3]> {
    data.is_image().then(|| [data.sample_shape[0], data.sample_shape[1], data.sample_shape[2]])
}

fn grid(t: &Tensor, n: usize, [c, h, w]: [usize; 3], cols: usize) -> anyhow::Result<Image> {
    Ok(Image::grid(&t.flatten_all()?.to_vec1::<f32>()?, n, c, h, w, cols))
}

/// `k` test images (top row) and their reconstructions (bottom row).
pub fn reconstructions(model: &dyn GenerativeModel, data: &Dataset, binarize: Binarize, seed: u64, k: usize) -> Fig {
    let Some(shape) = chw(data) else { return Ok(None) };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1a6e);
    let k = data.test.n.min(k).max(1);
    let idx: Vec<usize> = (0..k).collect();
    let batch = make_batch(&data.test, data, &idx, binarize, &mut rng, &Device::Cpu)?;
    let Some(rec) = model.reconstruct(&batch, &mut ModelCtx { rng: &mut rng, step: 0 })? else { return Ok(None) };
    Ok(Some(grid(&Tensor::cat(&[&batch.x, &rec], 0)?, 2 * k, shape, k)?))
}

/// `n` prior samples (8 per row); for conditional models, `n` per class in one row each, or only `class`.
pub fn samples(model: &dyn GenerativeModel, data: &Dataset, seed: u64, n: usize, class: Option<usize>) -> Fig {
    let Some(shape) = chw(data) else { return Ok(None) };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5a3e);
    let mut ctx = ModelCtx { rng: &mut rng, step: 0 };
    match model.classes() {
        Some(k) => {
            let classes: Vec<usize> = match class {
                Some(c) if c < k => vec![c],
                Some(c) => anyhow::bail!("class {c}: the model has classes 0..{k}"),
                None => (0..k).collect(),
            };
            let total = classes.len() * n;
            let mut onehot = vec![0f32; total * k];
            for (i, c) in classes.iter().flat_map(|&c| std::iter::repeat_n(c, n)).enumerate() {
                onehot[i * k + c] = 1.0;
            }
            let labels = Tensor::from_vec(onehot, (total, k), &Device::Cpu)?;
            let Some(s) = model.sample(total, Some(&labels), &mut ctx)? else { return Ok(None) };
            Ok(Some(grid(&s, total, shape, n.min(16))?))
        }
        None => {
            if class.is_some() {
                anyhow::bail!("--class: this model is not conditional");
            }
            let Some(s) = model.sample(n, None, &mut ctx)? else { return Ok(None) };
            Ok(Some(grid(&s, n, shape, 8)?))
        }
    }
}

/// Latent traversal: the code of a test image with one dimension swept over −3…3 (9 steps), one row per
/// dimension (at most 16).
pub fn traversal(model: &dyn GenerativeModel, data: &Dataset, binarize: Binarize, seed: u64) -> Fig {
    let Some(shape) = chw(data) else { return Ok(None) };
    let d = model.latent_dim();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7a7e);
    let batch = make_batch(&data.test, data, &[0], binarize, &mut rng, &Device::Cpu)?;
    let base: Vec<f32> = match model.encode(&batch)? {
        Some(z) => z.flatten_all()?.to_vec1()?,
        None => vec![0.0; d],
    };
    let (rows, steps) = (d.min(16), 9);
    let mut z = Vec::with_capacity(rows * steps * d);
    for dim in 0..rows {
        for s in 0..steps {
            let mut v = base.clone();
            v[dim] = -3.0 + 6.0 * s as f32 / (steps - 1) as f32;
            z.extend(v);
        }
    }
    let labels = batch.labels.as_ref().map(|l| l.repeat((rows * steps, 1))).transpose()?;
    let z = Tensor::from_vec(z, (rows * steps, d), &Device::Cpu)?;
    let Some(x) = model.decode(&z, labels.as_ref())? else { return Ok(None) };
    Ok(Some(grid(&x, rows * steps, shape, steps)?))
}

/// Interpolations: 4 pairs of test images, their codes joined by 10 evenly spaced points (one row each).
pub fn interpolation(model: &dyn GenerativeModel, data: &Dataset, binarize: Binarize, seed: u64) -> Fig {
    let Some(shape) = chw(data) else { return Ok(None) };
    let pairs = (data.test.n / 2).min(4);
    if pairs == 0 {
        return Ok(None);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1e7b);
    let idx: Vec<usize> = (0..2 * pairs).collect();
    let batch = make_batch(&data.test, data, &idx, binarize, &mut rng, &Device::Cpu)?;
    let Some(z) = model.encode(&batch)? else { return Ok(None) };
    let z = z.to_vec2::<f32>()?;
    let steps = 10;
    let mut out = vec![];
    for p in 0..pairs {
        let (a, b) = (&z[2 * p], &z[2 * p + 1]);
        for s in 0..steps {
            let t = s as f32 / (steps - 1) as f32;
            out.extend(a.iter().zip(b).map(|(x, y)| x + t * (y - x)));
        }
    }
    let labels = match &batch.labels {
        // Conditional models keep the first image's label along each row.
        Some(l) => Some(Tensor::cat(&(0..pairs).map(|p| l.narrow(0, 2 * p, 1)?.repeat((steps, 1))).collect::<candle_core::Result<Vec<_>>>()?, 0)?),
        None => None,
    };
    let zt = Tensor::from_vec(out, (pairs * steps, model.latent_dim()), &Device::Cpu)?;
    let Some(x) = model.decode(&zt, labels.as_ref())? else { return Ok(None) };
    Ok(Some(grid(&x, pairs * steps, shape, steps)?))
}

/// For 2-d latents: decodings of a 15 × 15 grid of codes over [−3, 3]².
pub fn manifold(model: &dyn GenerativeModel, data: &Dataset) -> Fig {
    let Some(shape) = chw(data) else { return Ok(None) };
    if model.latent_dim() != 2 || model.classes().is_some() {
        return Ok(None);
    }
    let k = 15;
    let z: Vec<f32> = (0..k * k).flat_map(|i| [-3.0 + 6.0 * (i % k) as f32 / (k - 1) as f32, 3.0 - 6.0 * (i / k) as f32 / (k - 1) as f32]).collect();
    let Some(x) = model.decode(&Tensor::from_vec(z, (k * k, 2), &Device::Cpu)?, None)? else { return Ok(None) };
    Ok(Some(grid(&x, k * k, shape, k)?))
}

/// 2D data: 1,000 test points (grey) and 1,000 model samples (red) on a 256 × 256 canvas.
pub fn scatter(model: &dyn GenerativeModel, data: &Dataset, seed: u64) -> Fig {
    if data.sample_shape != [2] {
        return Ok(None);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5ca7);
    let Some(s) = model.sample(1000, None, &mut ModelCtx { rng: &mut rng, step: 0 })? else { return Ok(None) };
    let samples = s.flatten_all()?.to_vec1::<f32>()?;
    let real = &data.test.x[..data.test.n.min(1000) * 2];
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for v in real {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    let margin = 0.15 * (hi - lo).max(1e-3);
    let (lo, hi) = (lo - margin, hi + margin);
    let size = 256usize;
    let mut img = Image { width: size, height: size, channels: 3, data: vec![255u8; size * size * 3] };
    let mut dot = |x: f32, y: f32, rgb: [u8; 3]| {
        if !(x.is_finite() && y.is_finite()) {
            return;
        }
        let px = ((x - lo) / (hi - lo) * (size - 1) as f32).round() as isize;
        let py = ((hi - y) / (hi - lo) * (size - 1) as f32).round() as isize;
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let (u, v) = (px + dx, py + dy);
            if u >= 0 && v >= 0 && (u as usize) < size && (v as usize) < size {
                let o = (v as usize * size + u as usize) * 3;
                img.data[o..o + 3].copy_from_slice(&rgb);
            }
        }
    };
    for p in real.chunks(2) {
        dot(p[0], p[1], [160, 160, 160]);
    }
    for p in samples.chunks(2) {
        dot(p[0], p[1], [220, 30, 30]);
    }
    Ok(Some(img))
}

//! A small LeNet-style classifier that vaelab trains itself on a dataset's real training split.
//!
//! It scores generated images: class accuracy of class-conditional samples (a CVAE's samples of class k should
//! be classified as k), and its 128-d hidden layer is the feature space of FID-LeNet. Trained once per
//! dataset and cached as safetensors, so every trial of every sweep is scored by the same network.
//!
//! Architecture: conv 4×4/2 (32) → ReLU → conv 4×4/2 (64) → ReLU → linear 128 → ReLU → linear K.

use anyhow::Context;
use candle_core::{Device, Tensor, D};
use candle_nn::{Linear, Module, Optimizer, VarBuilder, VarMap};
use vaelab_models::fastconv::{down, Down};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

pub struct FeatureNet {
    conv1: Down,
    conv2: Down,
    fc: Linear,
    out: Linear,
    varmap: VarMap,
    /// `[C, H, W]` of the images it was built for.
    pub shape: [usize; 3],
    pub classes: usize,
}


impl FeatureNet {
    pub fn new(shape: [usize; 3], classes: usize, seed: u64) -> anyhow::Result<Self> {
        if shape[1] % 4 != 0 || shape[2] % 4 != 0 {
            anyhow::bail!("the feature net halves the image twice: {}×{} is not divisible by 4", shape[1], shape[2]);
        }
        let varmap = VarMap::new();
        let vb: VarBuilder = vaelab_models::init::SeededInit::var_builder(&varmap, seed, &Device::Cpu);
        let flat = 64 * (shape[1] / 4) * (shape[2] / 4);
        Ok(Self {
            conv1: down(shape[0], 32, vb.pp("conv1"))?,
            conv2: down(32, 64, vb.pp("conv2"))?,
            fc: candle_nn::linear(flat, 128, vb.pp("fc"))?,
            out: candle_nn::linear(128, classes, vb.pp("out"))?,
            varmap,
            shape,
            classes,
        })
    }

    /// The 128-d penultimate features of images `[B, C, H, W]` in [0, 1].
    pub fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.conv2.forward(&self.conv1.forward(x)?.relu()?)?.relu()?;
        self.fc.forward(&h.flatten_from(1)?)?.relu()
    }

    pub fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.out.forward(&self.features(x)?)
    }

    /// Predicted class of each image.
    pub fn predict(&self, x: &Tensor) -> candle_core::Result<Vec<u32>> {
        let mut out = vec![];
        let n = x.dim(0)?;
        for start in (0..n).step_by(1000) {
            let len = 1000.min(n - start);
            out.extend(self.logits(&x.narrow(0, start, len)?)?.argmax(D::Minus1)?.to_vec1::<u32>()?);
        }
        Ok(out)
    }

    /// Fraction of `x` (flat images, `n × C·H·W`) predicted as `labels`.
    pub fn accuracy(&self, x: &[f32], labels: &[u32]) -> anyhow::Result<f64> {
        let [c, h, w] = self.shape;
        let t = Tensor::from_slice(x, (labels.len(), c, h, w), &Device::Cpu)?;
        let pred = self.predict(&t)?;
        Ok(pred.iter().zip(labels).filter(|(p, l)| **p == **l).count() as f64 / labels.len().max(1) as f64)
    }

    /// Train on flat images `x` (`n × C·H·W`, values in [0, 1]) with `labels`: Adam 1e-3, batch 128, seeded.
    pub fn train(shape: [usize; 3], classes: usize, x: &[f32], labels: &[u32], epochs: usize, seed: u64) -> anyhow::Result<Self> {
        let net = Self::new(shape, classes, seed)?;
        let d = shape.iter().product::<usize>();
        let n = labels.len();
        anyhow::ensure!(x.len() == n * d, "feature net: {} values for {n} images of {d}", x.len());
        let mut opt = candle_nn::AdamW::new(net.varmap.all_vars(), candle_nn::ParamsAdamW { lr: 1e-3, weight_decay: 0.0, ..Default::default() })?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..n).collect();
        for _ in 0..epochs {
            order.shuffle(&mut rng);
            for chunk in order.chunks(128) {
                let mut bx = Vec::with_capacity(chunk.len() * d);
                for &i in chunk {
                    bx.extend_from_slice(&x[i * d..(i + 1) * d]);
                }
                let by: Vec<u32> = chunk.iter().map(|&i| labels[i]).collect();
                let xt = Tensor::from_vec(bx, (chunk.len(), shape[0], shape[1], shape[2]), &Device::Cpu)?;
                let yt = Tensor::from_vec(by, chunk.len(), &Device::Cpu)?;
                let loss = candle_nn::loss::cross_entropy(&net.logits(&xt)?, &yt)?;
                opt.backward_step(&loss)?;
            }
        }
        Ok(net)
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        // candle's VarMap::save creates its file mode 0600; the cache is written like every other output
        // (atomically, with the user's umask) from those bytes.
        let tmp = path.with_extension("tmp");
        self.varmap.save(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        let bytes = std::fs::read(&tmp);
        let _ = std::fs::remove_file(&tmp);
        vaelab_track::fsutil::write_atomic(path, &bytes?).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    pub fn load(path: &Path, shape: [usize; 3], classes: usize) -> anyhow::Result<Self> {
        let mut net = Self::new(shape, classes, 0)?;
        net.varmap.load(path).with_context(|| format!("loading the feature net {}", path.display()))?;
        Ok(net)
    }
}

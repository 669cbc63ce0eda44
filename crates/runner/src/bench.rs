//! `vaelab bench`: training throughput of the reference models (issue #8), measured the way the PyTorch peer
//! (`scripts/peer/bench.py`) measures the same models: a fixed number of timed optimizer steps after a
//! warm-up, each step = draw a batch of real MNIST digits, binarize it afresh, forward, backward, Adam.
//! `scripts/bench.sh` runs both, alternating, and prints the comparison table.

use anyhow::{Context, Result};
use candle_core::Device;
use rand::{Rng, SeedableRng};
use std::time::Instant;
use vaelab_data::{Binarize, DataSpec};
use vaelab_models::{DataInfo, ModelCtx, ModelSpec};
use vaelab_train::{make_batch, Adam, AdamConfig};

/// The reference models of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefModel {
    /// MLP VAE 784-400-20, decoder the mirror image.
    Mlp,
    /// Conv VAE: conv 1→32 k4 s2 p1, conv 32→64 k4 s2 p1, linear 3136→2×16; decoder the mirror image.
    Conv,
}

impl RefModel {
    pub fn spec(self) -> ModelSpec {
        let yaml = match self {
            RefModel::Mlp => "{kind: vae, backbone: mlp, hidden: [400], latent_dim: 20}",
            RefModel::Conv => "{kind: vae, backbone: conv, channels: [32, 64], latent_dim: 16}",
        };
        serde_yaml::from_str(yaml).expect("reference model spec")
    }
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "mlp" | "mlp_vae" => Ok(RefModel::Mlp),
            "conv" | "conv_vae" => Ok(RefModel::Conv),
            other => anyhow::bail!("unknown reference model `{other}` (mlp or conv)"),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            RefModel::Mlp => "mlp_vae",
            RefModel::Conv => "conv_vae",
        }
    }
}

/// One benchmark measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    pub impl_: &'static str,
    pub model: &'static str,
    pub batch: usize,
    /// `cpu` or `cuda:N`.
    pub device: String,
    pub threads: usize,
    /// Data-parallel shards per batch (`train.shards`; 1: none).
    pub shards: usize,
    /// Trials trained together as one stacked computation (`--stack K`; 0: one trial, the zoo's model).
    /// `images_per_sec` counts every trial's images.
    pub stack: usize,
    pub steps: usize,
    pub images_per_sec: f64,
    pub step_ms_p50: f64,
    pub step_ms_p90: f64,
    pub step_ms_p99: f64,
    /// Peak resident set of the whole process (getrusage), MiB.
    pub peak_rss_mib: f64,
}

/// Train `model` for `warmup + steps` steps at `batch` on MNIST from `data_dir` (binarized afresh per batch)
/// and time the last `steps`. Threads are candle's (`RAYON_NUM_THREADS`, set by the caller before any work).
#[allow(clippy::too_many_arguments)]
pub fn run(model: RefModel, batch: usize, steps: usize, warmup: usize, shards: usize, data_dir: &str, seed: u64, dev: &Device) -> Result<BenchResult> {
    if shards > 1 && !dev.is_cpu() {
        anyhow::bail!("--shards {shards}: data-parallel shards split a batch over CPU threads; use --shards 1 on {dev:?}");
    }
    let data = load_mnist(data_dir)?;
    let varmap = candle_nn::VarMap::new();
    let info = DataInfo { shape: &data.sample_shape, num_classes: data.num_classes, train_size: data.train.n };
    let net = vaelab_models::build(&model.spec(), &info, &varmap, seed, dev)?;
    let config = REF_ADAM;
    let mut opts: Vec<Adam> = net.param_groups().into_iter().map(|g| Adam::new(g.vars, config)).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = data.train.n;
    let mut times = Vec::with_capacity(steps);
    for step in 0..warmup + steps {
        let t = Instant::now();
        let idx: Vec<usize> = (0..batch).map(|_| rng.random_range(0..n)).collect();
        let b = make_batch(&data.train, &data, &idx, Binarize::Dynamic, &mut rng, dev)?;
        if shards > 1 {
            let s = vaelab_train::shards::sharded_loss(&*net, 0, &b, shards, &mut rng, step as u64 + 1)?;
            opts[0].step_sum(&s.grads)?;
        } else {
            let losses = net.loss(0, &b, &mut ModelCtx { rng: &mut rng, step: step as u64 + 1 })?;
            opts[0].backward_step(&losses.objective)?;
            // Reading the loss back is what a training loop does (and PyTorch's `loss.item()` in the peer).
            let _ = losses.objective.to_scalar::<f32>()?;
        }
        if step >= warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(result(model, batch, dev, shards, 0, times))
}

/// The reference models' optimizer: Adam, lr 1e-3.
const REF_ADAM: AdamConfig = AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 };

/// MNIST from `data_dir`, binarized afresh per batch.
fn load_mnist(data_dir: &str) -> Result<vaelab_data::Dataset> {
    let data_spec: DataSpec = serde_yaml::from_str(&format!("{{kind: mnist, dir: {data_dir:?}, binarize: dynamic}}"))?;
    vaelab_data::load(&data_spec, 0).with_context(|| format!("loading MNIST from {data_dir}"))
}

/// `k` trials of `model`, seeds `seed, seed + 1, …`, trained as one stacked computation
/// ([`vaelab_models::stacked::StackedVae`]; #8's batched-trial sweep). Each trial draws its own batches and
/// noise from its own generator, as it would alone; a step is every trial's step, and its objectives are read
/// back to the host.
#[allow(clippy::too_many_arguments)]
pub fn run_stacked(model: RefModel, batch: usize, steps: usize, warmup: usize, k: usize, data_dir: &str, seed: u64, dev: &Device) -> Result<BenchResult> {
    use vaelab_models::stacked::StackedVae;
    if k == 0 {
        anyhow::bail!("--stack 0: a stack needs at least one trial");
    }
    let data = load_mnist(data_dir)?;
    let info = DataInfo { shape: &data.sample_shape, num_classes: data.num_classes, train_size: data.train.n };
    let spec = model.spec();
    let varmaps: Vec<candle_nn::VarMap> = (0..k).map(|_| candle_nn::VarMap::new()).collect();
    for (j, vm) in varmaps.iter().enumerate() {
        vaelab_models::build(&spec, &info, vm, seed + j as u64, &Device::Cpu)?;
    }
    let stack = StackedVae::new(&vec![spec; k], &data.sample_shape, &varmaps.iter().collect::<Vec<_>>(), dev)?;
    let mut adam = vaelab_train::stacked::StackedAdam::new(stack.vars(), k, REF_ADAM)?;
    let latent = stack.noise_dim().context("the reference models are VAEs")?;
    let mut rngs: Vec<rand_chacha::ChaCha8Rng> = (0..k).map(|j| rand_chacha::ChaCha8Rng::seed_from_u64(seed + j as u64)).collect();
    let n = data.train.n;
    let mut times = Vec::with_capacity(steps);
    for step in 0..warmup + steps {
        let t = Instant::now();
        let (mut xs, mut eps) = (Vec::with_capacity(k), Vec::with_capacity(k));
        for rng in rngs.iter_mut() {
            let idx: Vec<usize> = (0..batch).map(|_| rng.random_range(0..n)).collect();
            xs.push(make_batch(&data.train, &data, &idx, Binarize::Dynamic, rng, &Device::Cpu)?.x);
            eps.push(vaelab_models::init::randn(rng, (batch, latent), &Device::Cpu)?);
        }
        // One host-to-device copy each for the batches and the noise of all trials.
        let (x, eps) = (candle_core::Tensor::stack(&xs, 0)?.to_device(dev)?, candle_core::Tensor::stack(&eps, 0)?.to_device(dev)?);
        let losses = stack.loss(&x, Some(&eps))?;
        adam.step(&losses.objective.sum_all()?.backward()?, &vec![REF_ADAM.lr; k], &vec![true; k])?;
        let _ = losses.objective.to_vec1::<f32>()?;
        if step >= warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(result(model, batch, dev, 1, k, times))
}

/// A measurement from its step times: a batch of `batch` per trial, `stack.max(1)` trials a step.
fn result(model: RefModel, batch: usize, dev: &Device, shards: usize, stack: usize, mut times: Vec<f64>) -> BenchResult {
    let steps = times.len();
    let total: f64 = times.iter().sum();
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize] * 1e3;
    BenchResult {
        impl_: "vaelab",
        model: model.name(),
        batch,
        device: match dev.location() {
            candle_core::DeviceLocation::Cpu => "cpu".into(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            other => format!("{other:?}"),
        },
        threads: candle_core::utils::get_num_threads(),
        shards,
        stack,
        steps,
        images_per_sec: (steps * batch * stack.max(1)) as f64 / total,
        step_ms_p50: pct(0.5),
        step_ms_p90: pct(0.9),
        step_ms_p99: pct(0.99),
        peak_rss_mib: peak_rss_mib(),
    }
}

/// `cpu`, `cuda` or `cuda:N`. A build without the `cuda` feature answers `cuda` with candle's error.
pub fn parse_device(name: &str) -> Result<Device> {
    let cuda = |i: usize| Device::new_cuda(i).with_context(|| format!("--device {name} (vaelab built with `--features cuda`? see scripts/build-cuda.sh)"));
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => cuda(i),
            _ => anyhow::bail!("--device {name}: expected cpu, cuda or cuda:N"),
        },
    }
}

/// Peak resident set size of this process in MiB.
pub fn peak_rss_mib() -> f64 {
    // /proc/self/status's VmHWM is the kernel's high-water mark of the resident set (kB).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// On a GPU, let candle's f32 matmuls run on TF32 tensor cores (`--tf32`; PyTorch runs convolutions so by
/// default, `torch.backends.cudnn.allow_tf32`). A no-op in a CPU build.
pub fn use_tf32(on: bool) {
    candle_core::cuda::set_gemm_reduced_precision_f32(on);
}

//! The trait every model implements, and the values it exchanges with the trainer.

use candle_core::{Result, Tensor, Var};
use rand_chacha::ChaCha8Rng;

/// A mini-batch: `x` is `[B, C, H, W]` for images or `[B, D]` for vectors; `labels` one-hot `[B, K]`.
pub struct Batch {
    pub x: Tensor,
    pub labels: Option<Tensor>,
}

/// What a model is built for: one sample's shape (`[C, H, W]` or `[D]`) and, for labelled data, the classes.
#[derive(Debug, Clone, Copy)]
pub struct DataInfo<'a> {
    pub shape: &'a [usize],
    pub num_classes: Option<usize>,
    /// Training examples (β-TCVAE's stratified estimate weighs the batch by it; 0 where unknown).
    pub train_size: usize,
}

/// What a model gets besides the batch: the trial's seeded generator (all noise comes from it) and the step.
pub struct ModelCtx<'a> {
    pub rng: &'a mut ChaCha8Rng,
    pub step: u64,
}

/// Parameters trained together by one optimizer.
pub struct ParamGroup {
    pub name: &'static str,
    pub vars: Vec<Var>,
}

/// One optimisation phase of a training step: which group it updates and how many times in a row
/// (a GAN's discriminator may take several steps per generator step).
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub group: usize,
    pub repeats: usize,
}

/// A phase's objective and the named scalars to log with it (batch means).
pub struct Losses {
    pub objective: Tensor,
    pub terms: Vec<(&'static str, Tensor)>,
}

pub trait GenerativeModel: Send + Sync {
    /// Parameter groups, each with its own optimizer. Most models have one.
    fn param_groups(&self) -> Vec<ParamGroup>;

    /// Variables the model updates itself rather than through an optimizer (e.g. a VQ-VAE's EMA codebook):
    /// checkpointed with the weights, in no parameter group. Default: none.
    fn buffers(&self) -> Vec<Var> {
        vec![]
    }

    /// The phases of one training step, in order. Default: one phase updating group 0.
    fn phases(&self) -> Vec<Phase> {
        vec![Phase { group: 0, repeats: 1 }]
    }

    /// The objective of `phase` (an index into `phases()`) on `batch`.
    fn loss(&self, phase: usize, batch: &Batch, ctx: &mut ModelCtx) -> Result<Losses>;

    /// Every phase's objective from one forward pass, for models whose networks are updated simultaneously
    /// (VAE-GAN, as in Larsen et al.): the trainer computes all gradients before applying any update, so all
    /// phases see the same parameters. `None` (the default): phases run one after another, each with its own
    /// pass through `loss`. Only used when every phase has `repeats: 1`.
    fn joint_losses(&self, _batch: &Batch, _ctx: &mut ModelCtx) -> Result<Option<Vec<Losses>>> {
        Ok(None)
    }

    /// Whether the objective (one phase, no joint losses) is the batch mean of per-example terms that never see
    /// the other examples: no batch statistics, no pairs across the batch, no |mean − C|. Then a batch's gradient
    /// is the size-weighted sum of its shards' gradients, and the trainer may compute shards on separate threads
    /// (`train.shards`). Default: false.
    fn per_example_objective(&self) -> bool {
        false
    }

    /// Evaluation metrics per example, shape `[B]` each; the trainer averages them over the test split.
    fn eval(&self, batch: &Batch, ctx: &mut ModelCtx) -> Result<Vec<(&'static str, Tensor)>>;

    /// The metric that says how well the model does (lower is better), e.g. `neg_elbo`.
    fn primary_metric(&self) -> &'static str;

    /// Reconstructions of `batch.x` in data space (probabilities or means), if the model has an encoder.
    fn reconstruct(&self, batch: &Batch, ctx: &mut ModelCtx) -> Result<Option<Tensor>>;

    /// `n` samples in data space from the model's prior, if it has one.
    fn sample(&self, n: usize, labels: Option<&Tensor>, ctx: &mut ModelCtx) -> Result<Option<Tensor>>;

    /// Latent codes (posterior means) of `batch.x`, if the model has an encoder.
    fn encode(&self, batch: &Batch) -> Result<Option<Tensor>>;

    /// Decode latent codes `z` (`[n, latent_dim]`) to data space (probabilities or means), if the model has a
    /// decoder or generator. Conditional models take one-hot `labels`. Used for traversals, interpolations and
    /// latent manifolds.
    fn decode(&self, _z: &Tensor, _labels: Option<&Tensor>) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// Parameters (μ, log σ²) of a Gaussian posterior q(z|x), `[B, latent_dim]` each, for models that have
    /// one. Feeds KL per dimension and active units.
    fn posterior_params(&self, _batch: &Batch) -> Result<Option<(Tensor, Tensor)>> {
        Ok(None)
    }

    /// `k` log importance weights log p(x, z_i) − log q(z_i | x), z_i ~ q(z|x), per example: `[B, k]`. For
    /// models with an explicit likelihood and posterior; the IWAE bound (Burda et al.) reduces them.
    fn log_importance_weights(&self, _batch: &Batch, _k: usize, _ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// Width of the latent code `encode` returns and `decode` takes.
    fn latent_dim(&self) -> usize;

    /// Conditional models: the number of classes `sample` can be conditioned on (image logs then show one
    /// row per class).
    fn classes(&self) -> Option<usize> {
        None
    }
}

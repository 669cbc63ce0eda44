//! Checkpoints: one safetensors file holding a trial's weights, its optimizers' moments and, in the header
//! metadata, the step, optimizer step counts, evaluation history and a checksum of every tensor byte.
//!
//! Written atomically (temp file, fsync, rename): a checkpoint is either the old one or the new one, never
//! half of each. The checksum catches what the safetensors format itself does not (flipped bytes inside
//! tensor data); a checkpoint that fails it is refused, never loaded.
//!
//! Tensor names: model weights under their layer paths (`encoder.conv0.weight`, …); Adam moments under
//! `optim.<group>.<index>.m` / `.v` (index = position in the group's name-sorted parameter list).

use crate::adam::{Adam, Moments};
use anyhow::Context;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Everything besides the weights that a resumed trial needs to continue exactly.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Steps completed when the checkpoint was written.
    pub step: u64,
    /// Adam's update count per parameter group.
    pub optim_t: Vec<u64>,
    /// Evaluations so far: (step, metrics).
    pub evals: Vec<(u64, Vec<(String, f64)>)>,
    /// Wall-clock seconds of training behind `step`, summed over the runs that made them, so a resumed
    /// trial reports its whole time, not only its last run's. (0 in checkpoints written before it existed.)
    #[serde(default)]
    pub seconds: f64,
    #[serde(skip)]
    pub moments: Vec<Vec<Moments>>,
}

const STATE_KEY: &str = "vaelab.state";
const SUM_KEY: &str = "vaelab.checksum";

fn checksum<'a>(tensors: impl Iterator<Item = (&'a String, &'a [u8])>) -> String {
    // FNV-1a over names and bytes in name order (the iterator comes from a BTreeMap).
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for (name, bytes) in tensors {
        for &b in name.as_bytes().iter().chain(bytes) {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Save weights, optimizer state and `state` to `path`, atomically.
pub fn save_checkpoint(varmap: &VarMap, optims: &[Adam], state: &TrainState, path: &Path) -> anyhow::Result<()> {
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let t = var.as_tensor();
        tensors.insert(name.clone(), (t.dims().to_vec(), f32_bytes(&t.flatten_all()?.to_vec1::<f32>()?)));
    }
    let mut state = state.clone();
    state.optim_t = optims.iter().map(|o| o.t).collect();
    for (g, opt) in optims.iter().enumerate() {
        for (i, (var, m)) in opt.state().enumerate() {
            if m.m.is_empty() {
                continue; // never updated
            }
            tensors.insert(format!("optim.{g}.{i}.m"), (var.dims().to_vec(), f32_bytes(&m.m)));
            tensors.insert(format!("optim.{g}.{i}.v"), (var.dims().to_vec(), f32_bytes(&m.v)));
        }
    }
    let sum = checksum(tensors.iter().map(|(k, (_, b))| (k, b.as_slice())));
    let meta: HashMap<String, String> = [(STATE_KEY.to_string(), serde_yaml::to_string(&state)?), (SUM_KEY.to_string(), sum)].into();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, (shape, bytes))| Ok((k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let bytes = safetensors::serialize(views, Some(meta))?;
    vaelab_track::fsutil::write_atomic(path, &bytes).with_context(|| format!("writing checkpoint {}", path.display()))?;
    Ok(())
}

/// Load a checkpoint into an already built model's variables and return its training state (optimizer
/// moments included). Refuses a file whose checksum does not match.
pub fn load_checkpoint(varmap: &VarMap, path: &Path) -> anyhow::Result<TrainState> {
    let bytes = std::fs::read(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| anyhow::anyhow!("checkpoint {} is corrupt: {e}", path.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| anyhow::anyhow!("checkpoint {} is corrupt: {e}", path.display()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let views: Vec<(String, safetensors::tensor::TensorView)> = names.iter().map(|n| (n.clone(), st.tensor(n).expect("listed"))).collect();
    let sum = checksum(views.iter().map(|(k, v)| (k, v.data())));
    match meta.get(SUM_KEY) {
        Some(s) if *s == sum => {}
        Some(_) => anyhow::bail!("checkpoint {} is corrupt: checksum mismatch", path.display()),
        None => anyhow::bail!("checkpoint {} has no vaelab checksum", path.display()),
    }
    let mut state: TrainState = serde_yaml::from_str(meta.get(STATE_KEY).context("checkpoint without training state")?)?;
    let to_vec = |v: &safetensors::tensor::TensorView| -> Vec<f32> { v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect() };
    let lookup: HashMap<&str, &safetensors::tensor::TensorView> = views.iter().map(|(k, v)| (k.as_str(), v)).collect();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let v = lookup.get(name.as_str()).with_context(|| format!("checkpoint {} lacks `{name}`", path.display()))?;
        if v.shape() != var.dims() {
            anyhow::bail!("checkpoint {}: `{name}` is {:?}, the model's is {:?}", path.display(), v.shape(), var.dims());
        }
        var.set(&Tensor::from_vec(to_vec(v), v.shape(), &Device::Cpu)?)?;
    }
    state.moments = (0..state.optim_t.len())
        .map(|g| {
            (0..)
                .map_while(|i| Some((lookup.get(format!("optim.{g}.{i}.m").as_str())?, lookup.get(format!("optim.{g}.{i}.v").as_str())?)))
                .map(|(m, v)| Moments { m: to_vec(m), v: to_vec(v) })
                .collect()
        })
        .collect();
    Ok(state)
}

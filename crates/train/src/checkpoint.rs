//! safetensors checkpoints of a model's variables, written atomically.

use candle_core::Tensor;
use candle_nn::VarMap;
use std::collections::HashMap;
use std::path::Path;

/// Save every variable of `varmap` under its layer path (e.g. `encoder.conv0.weight`).
pub fn save_checkpoint(varmap: &VarMap, path: &Path) -> anyhow::Result<()> {
    let tensors: HashMap<String, Tensor> =
        varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
    let tmp = path.with_file_name(format!(".{}.tmp{}", path.file_name().unwrap().to_string_lossy(), std::process::id()));
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Load a checkpoint into the variables of an already built model.
pub fn load_checkpoint(varmap: &mut VarMap, path: &Path) -> anyhow::Result<()> {
    varmap.load(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

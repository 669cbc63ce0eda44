//! `source: hub`: MNIST and Fashion-MNIST downloaded from the Hugging Face hub by candle-datasets
//! (parquet files, cached under ~/.cache/huggingface). Built only with the `hub` feature: it pulls arrow's
//! parquet, hf-hub and image into the build, and needs internet at run time, so tests never call it.

use crate::idx::IdxSplit;
use anyhow::Result;

#[cfg(feature = "hub")]
pub fn load(mnist: bool) -> Result<(IdxSplit, IdxSplit)> {
    let d = if mnist { candle_datasets::vision::mnist::load() } else { candle_datasets::vision::fashion_mnist::load() }
        .map_err(|e| anyhow::anyhow!("downloading {} from the hub: {e}", if mnist { "MNIST" } else { "Fashion-MNIST" }))?;
    // candle-datasets gives images as f32 [n, 784] in [0, 1] and labels as u8 [n].
    let split = |x: &candle_core::Tensor, l: &candle_core::Tensor| -> Result<IdxSplit> {
        let n = x.dim(0)?;
        Ok(IdxSplit {
            rows: 28,
            cols: 28,
            n,
            pixels: x.flatten_all()?.to_vec1::<f32>()?,
            labels: l.to_vec1::<u8>()?.into_iter().map(u32::from).collect(),
        })
    };
    Ok((split(&d.train_images, &d.train_labels)?, split(&d.test_images, &d.test_labels)?))
}

#[cfg(not(feature = "hub"))]
pub fn load(_mnist: bool) -> Result<(IdxSplit, IdxSplit)> {
    anyhow::bail!("data.source: `hub` needs vaelab built with the `hub` feature (`cargo build --release --features hub`); or point `data.dir` at the IDX files")
}

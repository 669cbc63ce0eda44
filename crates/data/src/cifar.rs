//! CIFAR-10, binary version: `data_batch_1..5.bin` and `test_batch.bin`, each a run of 3,073-byte records
//! (1 label byte, then 3×32×32 pixels, channel-planar).
//!
//! candle-datasets' `cifar::load_dir` reads the same files but assumes exactly 10,000 records per file and
//! does not check labels, so a truncated file becomes a short read without the file's name; this reader
//! validates sizes and labels and names the file.

use std::path::Path;

pub const RECORD: usize = 1 + 3 * 32 * 32;

/// (pixels in [0, 1], labels) of one binary batch file.
pub fn read_batch(path: &Path) -> anyhow::Result<(Vec<f32>, Vec<u32>)> {
    let b = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if b.is_empty() || b.len() % RECORD != 0 {
        anyhow::bail!("{}: size {} bytes is not a multiple of the 3073-byte CIFAR-10 record (truncated or not a CIFAR-10 binary file)", path.display(), b.len());
    }
    let n = b.len() / RECORD;
    let mut x = Vec::with_capacity(n * (RECORD - 1));
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in b.chunks_exact(RECORD).enumerate() {
        if rec[0] > 9 {
            anyhow::bail!("{}: record {i} has label {}, CIFAR-10 labels are 0..9", path.display(), rec[0]);
        }
        labels.push(rec[0] as u32);
        x.extend(rec[1..].iter().map(|&p| p as f32 / 255.0));
    }
    Ok((x, labels))
}

/// Load the five training batches and the test batch from `dir`.
pub fn load_dir(dir: &Path) -> anyhow::Result<((Vec<f32>, Vec<u32>), (Vec<f32>, Vec<u32>))> {
    if !dir.is_dir() {
        anyhow::bail!("{}: dataset directory does not exist", dir.display());
    }
    let mut train = (vec![], vec![]);
    for k in 1..=5 {
        let (x, l) = read_batch(&dir.join(format!("data_batch_{k}.bin")))?;
        train.0.extend(x);
        train.1.extend(l);
    }
    let test = read_batch(&dir.join("test_batch.bin"))?;
    Ok((train, test))
}

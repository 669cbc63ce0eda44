//! The real dSprites archive (`dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`, Matthey et al. 2017):
//! `imgs` u8 [737280, 64, 64], `latents_classes` i64 [737280, 6] (color, shape, scale, orientation, posX,
//! posY). Read with candle's npz reader, by name, which skips the pickled `metadata` entry.

use std::path::Path;

/// (images as 0/1 floats, factor indices without the constant colour factor: 5 per image).
pub fn read(path: &Path) -> anyhow::Result<(usize, usize, Vec<u8>, Vec<u32>)> {
    if !path.is_file() {
        anyhow::bail!("{}: dSprites archive not found", path.display());
    }
    let t = candle_core::Tensor::read_npz_by_name(path, &["imgs", "latents_classes"])
        .map_err(|e| anyhow::anyhow!("{}: not a readable dSprites .npz ({e})", path.display()))?;
    let (imgs, classes) = (&t[0], &t[1]);
    let dims = imgs.dims().to_vec();
    if dims.len() != 3 || dims[1] != dims[2] {
        anyhow::bail!("{}: imgs has shape {dims:?}, expected [N, 64, 64]", path.display());
    }
    if classes.dims() != [dims[0], 6] {
        anyhow::bail!("{}: latents_classes has shape {:?}, expected [{}, 6]", path.display(), classes.dims(), dims[0]);
    }
    let px = imgs.to_dtype(candle_core::DType::U8)?.flatten_all()?.to_vec1::<u8>()?;
    let cls = classes.to_dtype(candle_core::DType::I64)?.to_vec2::<i64>()?;
    let mut factors = Vec::with_capacity(dims[0] * 5);
    for (i, row) in cls.iter().enumerate() {
        for (k, &v) in row[1..].iter().enumerate() {
            if v < 0 || v as usize >= crate::dsprites::FACTOR_SIZES[k] {
                anyhow::bail!("{}: latents_classes[{i}][{}] = {v} is out of range", path.display(), k + 1);
            }
            factors.push(v as u32);
        }
    }
    Ok((dims[0], dims[1], px, factors))
}

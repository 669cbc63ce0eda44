//! MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST …), gzipped or raw.
//!
//! candle-datasets' `mnist::load_dir` reads only uncompressed files and trusts their headers, so a truncated
//! download surfaces as a bare I/O error without the file's name. This reader accepts `.gz` or raw files and
//! checks magic, dimensions, payload length and label range, naming the file in every error.

use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error("{dir}: missing dataset file {name}[.gz]")]
    Missing { dir: PathBuf, name: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn invalid(path: &Path, what: impl Into<String>) -> IdxError {
    IdxError::Invalid { path: path.to_path_buf(), what: what.into() }
}

/// The whole decompressed content of `dir/name` or `dir/name.gz`, and the path it came from.
pub fn read_maybe_gz(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), IdxError> {
    if !dir.is_dir() {
        return Err(IdxError::Invalid { path: dir.to_path_buf(), what: "dataset directory does not exist".into() });
    }
    let gz = dir.join(format!("{name}.gz"));
    let raw = dir.join(name);
    let (path, is_gz) = if gz.is_file() {
        (gz, true)
    } else if raw.is_file() {
        (raw, false)
    } else {
        return Err(IdxError::Missing { dir: dir.to_path_buf(), name: name.into() });
    };
    let bytes = std::fs::read(&path).map_err(|source| IdxError::Io { path: path.clone(), source })?;
    if !is_gz {
        return Ok((path, bytes));
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|e| invalid(&path, format!("corrupt gzip stream ({e}); the file is truncated or damaged")))?;
    Ok((path, out))
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parse an IDX image file (magic 0x00000803): returns (n, rows, cols, pixels).
pub fn parse_images(path: &Path, b: &[u8]) -> Result<(usize, usize, usize, Vec<u8>), IdxError> {
    if b.len() < 16 {
        return Err(invalid(path, format!("truncated header: {} bytes, an IDX image file needs 16", b.len())));
    }
    let magic = be_u32(b, 0);
    if magic != 0x0803 {
        return Err(invalid(path, format!("wrong magic number 0x{magic:08x}, expected 0x00000803 (IDX unsigned-byte images)")));
    }
    let (n, rows, cols) = (be_u32(b, 4) as usize, be_u32(b, 8) as usize, be_u32(b, 12) as usize);
    let want = n.checked_mul(rows).and_then(|v| v.checked_mul(cols)).ok_or_else(|| invalid(path, "header dimensions overflow"))?;
    let have = b.len() - 16;
    if have != want {
        return Err(invalid(path, format!("payload is {have} bytes but the header says {n}×{rows}×{cols} = {want} (truncated or corrupt)")));
    }
    Ok((n, rows, cols, b[16..].to_vec()))
}

/// Parse an IDX label file (magic 0x00000801).
pub fn parse_labels(path: &Path, b: &[u8], num_classes: usize) -> Result<Vec<u32>, IdxError> {
    if b.len() < 8 {
        return Err(invalid(path, format!("truncated header: {} bytes, an IDX label file needs 8", b.len())));
    }
    let magic = be_u32(b, 0);
    if magic != 0x0801 {
        return Err(invalid(path, format!("wrong magic number 0x{magic:08x}, expected 0x00000801 (IDX unsigned-byte labels)")));
    }
    let n = be_u32(b, 4) as usize;
    let have = b.len() - 8;
    if have != n {
        return Err(invalid(path, format!("payload is {have} bytes but the header says {n} labels (truncated or corrupt)")));
    }
    if let Some((i, &l)) = b[8..].iter().enumerate().find(|(_, &l)| l as usize >= num_classes) {
        return Err(invalid(path, format!("label {l} at index {i} is out of range 0..{num_classes}")));
    }
    Ok(b[8..].iter().map(|&l| l as u32).collect())
}

/// One split of an IDX dataset: images scaled to [0, 1] and labels.
pub struct IdxSplit {
    pub rows: usize,
    pub cols: usize,
    pub n: usize,
    pub pixels: Vec<f32>,
    pub labels: Vec<u32>,
}

/// Load `{prefix}-images-idx3-ubyte[.gz]` and `{prefix}-labels-idx1-ubyte[.gz]` from `dir`.
pub fn load_split(dir: &Path, prefix: &str) -> Result<IdxSplit, IdxError> {
    let (ipath, ib) = read_maybe_gz(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let (n, rows, cols, px) = parse_images(&ipath, &ib)?;
    let (lpath, lb) = read_maybe_gz(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let labels = parse_labels(&lpath, &lb, 10)?;
    if labels.len() != n {
        return Err(invalid(&lpath, format!("{} labels but {} has {n} images", labels.len(), ipath.display())));
    }
    let pixels = px.iter().map(|&p| p as f32 / 255.0).collect();
    Ok(IdxSplit { rows, cols, n, pixels, labels })
}

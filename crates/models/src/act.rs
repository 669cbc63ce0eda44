//! (Leaky) ReLU as one custom op each way.
//!
//! candle's `relu` backward builds `grad · (x ≥ 0)` from four tensor ops (zeros_like, ge, to_dtype, mul), each a
//! pass over the activation and a fresh buffer; `candle_nn::ops::leaky_relu` is a composite too. Here the
//! forward is one pass and the backward is one pass, `∂y · (1 if x > 0 else slope)`.

use crate::dense::contiguous_f32;
use crate::fastconv::pieces_uninit;

/// Floats per piece on candle's kernel threads: a conv VAE's activations (0.4–0.8 M floats at batch 128) ran
/// these maps on one thread while the other waited (perf: ≈ 5% of a two-thread step). Up to one piece (64 Ki
/// floats: the MLP's [128, 400] at batch 128) stays on the calling thread — tens of µs of work, where waking a
/// pool thread would cost about as much.
const PIECE: usize = 1 << 16;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

/// max(x, 0).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    leaky_relu(x, 0.0)
}

/// x if x > 0, else slope·x.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    if !crate::kernels::custom(x) {
        return if slope == 0.0 { x.relu() } else { candle_nn::ops::leaky_relu(x, slope) };
    }
    x.contiguous()?.apply_op1_arc(std::sync::Arc::new(Box::new(LeakyRelu(slope as f32))))
}

struct LeakyRelu(f32);
/// `(x, ∂y) → ∂y · (1 if x > 0 else slope)`.
struct LeakyReluGrad(f32);

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "leaky-relu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let slope = self.0;
        let x = contiguous_f32(s, l)?;
        // SAFETY: piece i is [i·PIECE, i·PIECE + len) of the output, and x has those elements: each is written.
        let y = unsafe {
            pieces_uninit(x.len(), PIECE, |i, out| {
                out.iter_mut().zip(&x[i * PIECE..]).for_each(|(o, &v)| {
                    o.write(if v > 0.0 { v } else { v * slope });
                })
            })
        };
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&dy.contiguous()?, &LeakyReluGrad(self.0))?))
    }
}

impl CustomOp2 for LeakyReluGrad {
    fn name(&self) -> &'static str {
        "leaky-relu-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, dy) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        if x.len() != dy.len() {
            candle_core::bail!("leaky-relu-grad: {} values, {} gradients", x.len(), dy.len());
        }
        let slope = self.0;
        // SAFETY: as in the forward; x and dy have the same length.
        let g = unsafe {
            pieces_uninit(x.len(), PIECE, |i, out| {
                let (x, dy) = (&x[i * PIECE..], &dy[i * PIECE..]);
                out.iter_mut().zip(x.iter().zip(dy)).for_each(|(o, (&v, &d))| {
                    o.write(if v > 0.0 { d } else { d * slope });
                })
            })
        };
        Ok((CpuStorage::F32(g), l1.shape().clone()))
    }
}

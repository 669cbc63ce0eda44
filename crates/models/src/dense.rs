//! A dense layer: candle-nn's `Linear` (same parameter names, shapes and initialisation, so checkpoints are the
//! same) as one custom op, y = x·Wᵀ + b, with its own backward.
//!
//! Why (perf, MLP VAE 784-400-20, batch 128, one thread): with `Linear`, the bias is a `broadcast_add` whose
//! backward reduces over dim 0 with candle's generic strided reduction (≈ 5% of the step) and the add itself
//! took ≈ 10%; and the weight gradient reaches W through the `t()` view, so candle accumulates it as a
//! *transposed* tensor, an element-by-element strided add (≈ 11%). Here every gradient comes out of a gemm or a
//! column sum already contiguous in W's own layout, and no input gradient is made for the data under the
//! first layer. An input that is mostly zeros (binarized images) takes [`crate::sparse`] for the forward product
//! and the weight gradient instead of the gemm.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use std::sync::{Arc, OnceLock};

use crate::sparse::{Panels, SparseRows};

pub struct Dense {
    weight: Tensor, // [out, in]
    bias: Tensor,   // [out]
}

/// `candle_nn::linear(in_dim, out_dim, vb)`, as a [`Dense`].
pub fn dense(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Dense> {
    let weight = vb.get_with_hints((out_dim, in_dim), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
    let bound = 1. / (in_dim as f64).sqrt();
    let bias = vb.get_with_hints(out_dim, "bias", Init::Uniform { lo: -bound, up: bound })?;
    Ok(Dense { weight, bias })
}

impl Dense {
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Dense {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 2 || !crate::kernels::custom(x) {
            // Batched matrices, or another device (`kernels`): candle-nn's path.
            return candle_nn::Linear::new(self.weight.clone(), Some(self.bias.clone())).forward(x);
        }
        x.contiguous()?.apply_op3_arc(&self.weight, &self.bias, Arc::new(Box::new(DenseOp::default())))
    }
}

/// `(x [N, I], W [O, I], b [O]) → x·Wᵀ + b [N, O]`.
#[derive(Default)]
struct DenseOp {
    /// A sparse input by rows, kept from the forward pass for the weight gradient (transposed there: a forward
    /// pass without a backward one, an evaluation's, does not pay for it).
    sparse_x: OnceLock<SparseRows>,
}
/// `dy [N, O] → dW = dyᵀ · x [O, I]` for a sparse x (given as xᵀ by rows).
struct SparseWeightGrad(SparseRows);
/// `[N, D] → [D]`: the sum of each column.
struct ColumnSum;

/// A custom op's input as a contiguous f32 slice (the ops here and in `act` accept nothing else).
pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("custom op: f32 only") };
    let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("custom op: contiguous inputs only") };
    Ok(&v[a..b])
}

impl CustomOp3 for DenseOp {
    fn name(&self) -> &'static str {
        "dense"
    }
    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (&[n, i], &[o, i2]) = (lx.dims(), lw.dims()) else { candle_core::bail!("dense: {:?} · {:?}ᵀ", lx.dims(), lw.dims()) };
        let bias = contiguous_f32(sb, lb)?;
        if i != i2 || bias.len() != o {
            candle_core::bail!("dense: {:?} · {:?}ᵀ + [{}]", lx.dims(), lw.dims(), bias.len());
        }
        let x = contiguous_f32(sx, lx)?;
        if let Some(xs) = (o >= crate::sparse::MIN_OUTPUTS).then(|| SparseRows::of(x, n, i)).flatten() {
            // y = b + x · Wᵀ over x's non-zeros, from Wᵀ's rows.
            let wt = Panels::of_transpose(contiguous_f32(sw, lw)?, o, i);
            let y = xs.times(&wt, Some(bias), false);
            let _ = self.sparse_x.set(xs);
            return Ok((CpuStorage::F32(y), Shape::from((n, o))));
        }
        // candle's own CPU gemm, reading W through a transposed layout (no copy).
        let CpuStorage::F32(mut y) = sx.matmul(sw, (1, n, o, i), lx, &lw.transpose(0, 1)?)? else {
            candle_core::bail!("dense: f32 only")
        };
        let add_bias = |rows: &mut [f32]| {
            for row in rows.chunks_exact_mut(o) {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            }
        };
        if candle_core::utils::get_num_threads() > 1 && y.len() >= 1 << 16 {
            use rayon::prelude::*;
            y.par_chunks_mut(64 * o).for_each(add_bias);
        } else {
            add_bias(&mut y);
        }
        Ok((CpuStorage::F32(y), Shape::from((n, o))))
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, _b: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = if x.track_op() { Some(dy.matmul(w)?) } else { None };
        let dw = match self.sparse_x.get() {
            Some(xs) => dy.apply_op1_arc(Arc::new(Box::new(SparseWeightGrad(xs.transposed()))))?,
            None => dy.t()?.matmul(x)?, // [O, I], contiguous
        };
        let db = dy.apply_op1_arc(Arc::new(Box::new(ColumnSum)))?;
        Ok((dx, Some(dw), Some(db)))
    }
}

impl CustomOp1 for SparseWeightGrad {
    fn name(&self) -> &'static str {
        "dense-sparse-weight-grad"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dy = contiguous_f32(s, l)?;
        let xt = &self.0;
        let &[n, o] = l.dims() else { candle_core::bail!("dense weight gradient: dy {:?}", l.dims()) };
        if n != xt.cols() {
            candle_core::bail!("dense weight gradient: dy {:?} for {} inputs", l.dims(), xt.cols());
        }
        // dW = (xᵀ · dy)ᵀ, written in W's own layout [O, I].
        let dw = xt.times(&Panels::of_rows(dy, n, o), None, true);
        Ok((CpuStorage::F32(dw), Shape::from((o, xt.rows()))))
    }
}

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "dense-column-sum"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = contiguous_f32(s, l)?;
        let d = l.dims()[1];
        let mut sums = vec![0f32; d];
        // A range of columns per kernel thread, each column summed over the rows in order (the same bits at any
        // thread count): one thread's pass over a 1024 × 784 gradient was ≈ 1% of an MLP VAE step. Wide ranges,
        // so that each row's part is a long run (64-column blocks read as short strided runs cost more in all).
        let threads = candle_core::utils::get_num_threads();
        let columns = if threads > 1 && y.len() >= 1 << 16 { d.div_ceil(threads).next_multiple_of(16) } else { d };
        let block = |(b, out): (usize, &mut [f32])| {
            for row in y.chunks_exact(d) {
                out.iter_mut().zip(&row[b * columns..]).for_each(|(s, v)| *s += v);
            }
        };
        if columns < d {
            use rayon::prelude::*;
            sums.par_chunks_mut(columns).enumerate().for_each(block);
        } else {
            sums.chunks_mut(columns.max(1)).enumerate().for_each(block);
        }
        Ok((CpuStorage::F32(sums), Shape::from(d)))
    }
    fn bwd(&self, y: &Tensor, _sums: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(g.reshape((1, ()))?.broadcast_as(y.shape())?))
    }
}

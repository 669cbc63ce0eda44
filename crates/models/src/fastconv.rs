//! The 4×4, stride-2, padding-1 convolutions of the conv backbone, as im2col / col2im + one gemm each.
//!
//! candle's CPU `conv_transpose2d` is a direct loop over output pixels (and conv2d's input gradient calls it),
//! which made it ≈ 55% of a conv VAE step (perf: `vec_dot_f32` plus conv closures); its gemm was < 10%.
//! Composing the layers from candle's differentiable view ops (pad / narrow / permute / cat) was tried first and
//! was 2× slower still: the backward of every strided view becomes an element-by-element strided add. So these
//! are custom ops with their own backward, each a gather/scatter plus a candle matmul:
//! - `down`:  y = conv(x, W)    = rows(im2col(x) · Wᵀ);     ∂W = rows(∂y)ᵀ · im2col(x)  (the forward's im2col, kept)
//! - `up`:    y = convᵀ(x, W)   = col2im(rows(x) · W);      ∂W = rows(x)ᵀ · im2col(∂y)
//! with `down`'s input gradient = `up`(∂y, W) and `up`'s = `down`(∂y, W) (sharing `up`'s ∂W im2col); an input
//! gradient is computed only where the input needs one (not for the data under the first layer). The conv
//! biases go through [`add_channel_bias`].
//!
//! Weights and biases have candle-nn's names, shapes and initialisation, so checkpoints are the same as with
//! `candle_nn::conv2d` / `conv_transpose2d`; the tests compare both layers and their gradients with candle's.

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};

/// 4×4 convolution, stride 2, padding 1: `[B, C, H, W] → [B, O, H/2, W/2]` (H, W even).
pub struct Down {
    weight: Tensor, // [O, C, 4, 4]
    bias: Tensor,   // [O]
}

/// 4×4 transposed convolution, stride 2, padding 1: `[B, C, H, W] → [B, O, 2H, 2W]`.
pub struct Up {
    weight: Tensor, // [C, O, 4, 4]
    bias: Tensor,   // [O]
}

pub fn down(c: usize, o: usize, vb: VarBuilder) -> Result<Down> {
    // candle_nn::conv2d's initialisation.
    let weight = vb.get_with_hints((o, c, 4, 4), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
    let bound = 1. / (c as f64).sqrt();
    let bias = vb.get_with_hints(o, "bias", Init::Uniform { lo: -bound, up: bound })?;
    Ok(Down { weight, bias })
}

pub fn up(c: usize, o: usize, vb: VarBuilder) -> Result<Up> {
    // candle_nn::conv_transpose2d's initialisation.
    let bound = 1. / (o as f64).sqrt() / 4.0;
    let init = Init::Uniform { lo: -bound, up: bound };
    let weight = vb.get_with_hints((c, o, 4, 4), "weight", init)?;
    let bias = vb.get_with_hints(o, "bias", init)?;
    Ok(Up { weight, bias })
}

impl Module for Down {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        if h % 2 != 0 || w % 2 != 0 {
            candle_core::bail!("stride-2 conv: {h}×{w} input is not even");
        }
        let y = x.contiguous()?.apply_op2_arc(&self.weight, down_op())?;
        add_channel_bias(&y, &self.bias)
    }
}

impl Down {
    /// The input gradient of this layer for an output gradient `g`: the transposed convolution with the same
    /// weights (no bias), itself differentiable in `g` and the weights.
    pub fn input_gradient(&self, g: &Tensor) -> Result<Tensor> {
        g.contiguous()?.apply_op2_arc(&self.weight, arc(UpOp))
    }
}

impl Module for Up {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.contiguous()?.apply_op2_arc(&self.weight, arc(UpOp))?;
        add_channel_bias(&y, &self.bias)
    }
}

/// `y [B, C, H, W] + bias [C]`. The bias gradient is a per-channel sum; `broadcast_add`'s backward computes it
/// with candle's generic reduction over dims (0, 2, 3), which walks the tensor by strided index arithmetic and
/// was ≈ 15% of a conv VAE step (perf). [`ChannelBias`] writes the sum as a loop over contiguous planes.
pub fn add_channel_bias(y: &Tensor, bias: &Tensor) -> Result<Tensor> {
    y.contiguous()?.apply_op2_arc(&bias.contiguous()?, std::sync::Arc::new(Box::new(ChannelBias)))
}

struct ChannelBias;
/// `[B, C, H, W] → [C]`: the sum of each channel over batch and pixels.
struct ChannelSum;

impl CustomOp2 for ChannelBias {
    fn name(&self) -> &'static str {
        "fastconv-bias"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, [b, c, h, w]) = slice4(s1, l1)?;
        let bias = slice1(s2, l2, c)?;
        let mut y = x.to_vec();
        per_image(&mut y, h * w, |i, plane| {
            let v = bias[i % c];
            plane.iter_mut().for_each(|p| *p += v);
        });
        Ok((CpuStorage::F32(y), Shape::from((b, c, h, w))))
    }
    fn bwd(&self, _x: &Tensor, _b: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let db = dy.contiguous()?.apply_op1_arc(std::sync::Arc::new(Box::new(ChannelSum)))?;
        Ok((Some(dy.clone()), Some(db)))
    }
}

impl candle_core::CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "fastconv-channel-sum"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, [_, c, h, w]) = slice4(s, l)?;
        let mut sums = vec![0f64; c];
        for (i, plane) in x.chunks_exact(h * w).enumerate() {
            sums[i % c] += plane.iter().map(|&v| v as f64).sum::<f64>();
        }
        Ok((CpuStorage::F32(sums.into_iter().map(|v| v as f32).collect()), Shape::from(c)))
    }
    fn bwd(&self, x: &Tensor, _sums: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(g.reshape((1, (), 1, 1))?.broadcast_as(x.shape())?))
    }
}

/// A contiguous f32 vector of length `n`.
fn slice1<'a>(s: &'a CpuStorage, l: &Layout, n: usize) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("fastconv: f32 only") };
    let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("fastconv: contiguous inputs only") };
    if b - a != n {
        candle_core::bail!("fastconv: bias of {} for {n} channels", b - a);
    }
    Ok(&v[a..b])
}

/// `x` as a contiguous f32 slice with its 4 dims.
fn slice4<'a>(s: &'a CpuStorage, l: &Layout) -> Result<(&'a [f32], [usize; 4])> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("fastconv: f32 only") };
    let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("fastconv: contiguous inputs only") };
    let d = l.dims();
    if d.len() != 4 {
        candle_core::bail!("fastconv: 4-d tensors only, got {d:?}");
    }
    Ok((&v[a..b], [d[0], d[1], d[2], d[3]]))
}

/// Runs `f(i, chunk)` over the `chunk`-sized pieces of `out` (one per image), on candle's kernel threads when
/// there are several (the gemms are parallel already; these gathers were the serial remainder of a step).
pub(crate) fn per_image(out: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    use rayon::prelude::*;
    if candle_core::utils::get_num_threads() > 1 {
        out.par_chunks_exact_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        out.chunks_exact_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// im2col for the stride-2 4×4 pad-1 geometry: rows (b, m, n) of the output grid, columns (c, ky, kx).
/// Written row by row, in memory order, reading from one image (C·H·W floats, in cache) at a time; each kernel
/// row (ky) is 4 consecutive input pixels, copied as one slice, and only the first and last output columns touch
/// the padding. (Per-element bounds checks, then a channel-major order that wrote 16 floats 2 KiB apart, each
/// cost 5–10% of a conv VAE step — perf.)
fn im2col(x: &[f32], [b, c, h, w]: [usize; 4]) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    let k = c * 16;
    let mut cols = vec![0f32; b * ho * wo * k];
    per_image(&mut cols, ho * wo * k, |bi, img_cols| {
        let img = &x[bi * c * h * w..][..c * h * w];
        for (r, row) in img_cols.chunks_exact_mut(k).enumerate() {
            let (m, n) = (r / wo, r % wo);
            let interior = n > 0 && n + 1 < wo;
            for (ci, kernel) in row.chunks_exact_mut(16).enumerate() {
                let plane = &img[ci * h * w..][..h * w];
                for ky in 0..4 {
                    let iy = (2 * m + ky) as isize - 1;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let src = &plane[iy as usize * w..][..w];
                    let dst = &mut kernel[ky * 4..][..4];
                    if interior {
                        dst.copy_from_slice(&src[2 * n - 1..2 * n + 3]);
                    } else {
                        for (kx, d) in dst.iter_mut().enumerate() {
                            let ix = (2 * n + kx) as isize - 1;
                            if ix >= 0 && ix < w as isize {
                                *d = src[ix as usize];
                            }
                        }
                    }
                }
            }
        }
    });
    cols
}

/// The adjoint of [`im2col`]: scatter-add columns back to an image `[b, c, h, w]` (same order and slicing:
/// columns read in memory order, the sums land in one image at a time).
fn col2im(cols: &[f32], [b, c, h, w]: [usize; 4]) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    let k = c * 16;
    let mut x = vec![0f32; b * c * h * w];
    per_image(&mut x, c * h * w, |bi, img| {
        let img_cols = &cols[bi * ho * wo * k..][..ho * wo * k];
        for (r, row) in img_cols.chunks_exact(k).enumerate() {
            let (m, n) = (r / wo, r % wo);
            let interior = n > 0 && n + 1 < wo;
            for (ci, kernel) in row.chunks_exact(16).enumerate() {
                let plane = &mut img[ci * h * w..][..h * w];
                for ky in 0..4 {
                    let iy = (2 * m + ky) as isize - 1;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * w..][..w];
                    let src = &kernel[ky * 4..][..4];
                    if interior {
                        for (d, s) in dst[2 * n - 1..2 * n + 3].iter_mut().zip(src) {
                            *d += s;
                        }
                    } else {
                        for (kx, s) in src.iter().enumerate() {
                            let ix = (2 * n + kx) as isize - 1;
                            if ix >= 0 && ix < w as isize {
                                dst[ix as usize] += s;
                            }
                        }
                    }
                }
            }
        }
    });
    x
}

/// `[b, c, h, w]` → rows `(b, y, x)` × columns `c`.
fn to_rows(x: &[f32], [b, c, h, w]: [usize; 4]) -> Vec<f32> {
    let hw = h * w;
    let mut out = vec![0f32; b * c * hw];
    per_image(&mut out, c * hw, |bi, dst| {
        for (ci, plane) in x[bi * c * hw..][..c * hw].chunks_exact(hw).enumerate() {
            for (p, v) in plane.iter().enumerate() {
                dst[p * c + ci] = *v;
            }
        }
    });
    out
}

/// Rows `(b, y, x)` × columns `c` → `[b, c, h, w]`.
fn from_rows(r: &[f32], [b, c, h, w]: [usize; 4]) -> Vec<f32> {
    let hw = h * w;
    let mut out = vec![0f32; b * c * hw];
    per_image(&mut out, c * hw, |bi, dst| {
        for (p, row) in r[bi * c * hw..][..c * hw].chunks_exact(c).enumerate() {
            for (ci, v) in row.iter().enumerate() {
                dst[ci * hw + p] = *v;
            }
        }
    });
    out
}

fn matmul(a: Vec<f32>, ash: (usize, usize), b: &Tensor) -> Result<Vec<f32>> {
    Tensor::from_vec(a, ash, &Device::Cpu)?.matmul(b)?.flatten_all()?.to_vec1::<f32>()
}

fn weight_tensor(s: &CpuStorage, l: &Layout, rows: usize, cols: usize) -> Result<Tensor> {
    let (w, _) = slice4(s, l)?;
    Tensor::from_slice(w, (rows, cols), &Device::Cpu)
}

fn arc<T: CustomOp2 + Send + Sync + 'static>(op: T) -> std::sync::Arc<Box<dyn CustomOp2 + Send + Sync>> {
    std::sync::Arc::new(Box::new(op))
}

/// conv(x [B, C, H, W], W [O, C, 4, 4]) → [B, O, H/2, W/2]. Keeps the im2col of `x` it made for the forward
/// pass until the backward pass has used it for the weight gradient (one im2col per layer and step, not two).
#[derive(Default)]
struct DownOp {
    cols: std::sync::Mutex<Option<Tensor>>,
}
/// convᵀ(x [B, C, h, w], W [C, O, 4, 4]) → [B, O, 2h, 2w].
struct UpOp;
/// `[B, C, H, W]` → its im2col, `[B·H/2·W/2, C·16]` (no gradient: used inside backward passes).
struct Im2Col;
/// `[B, C, H, W]` → rows `[B·H·W, C]` (no gradient).
struct ToRows;
/// Rows `[B·H·W, C]` → `[B, C, H, W]` for the given `(B, H, W)` (no gradient).
struct FromRows(usize, usize, usize);

fn down_op() -> std::sync::Arc<Box<dyn CustomOp2 + Send + Sync>> {
    arc(DownOp::default())
}

impl CustomOp2 for DownOp {
    fn name(&self) -> &'static str {
        "fastconv-down"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, [b, c, h, w]) = slice4(s1, l1)?;
        let o = l2.dims()[0];
        let (ho, wo) = (h / 2, w / 2);
        let wt = weight_tensor(s2, l2, o, c * 16)?.t()?;
        let cols = Tensor::from_vec(im2col(x, [b, c, h, w]), (b * ho * wo, c * 16), &Device::Cpu)?;
        let y = cols.matmul(&wt)?.flatten_all()?.to_vec1::<f32>()?;
        *self.cols.lock().unwrap() = Some(cols);
        Ok((CpuStorage::F32(from_rows(&y, [b, o, ho, wo])), Shape::from((b, o, ho, wo))))
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        // The input gradient only where the input needs one: not for the first layer, whose input is the data.
        let dx = if x.track_op() { Some(dy.apply_op2_arc(w, arc(UpOp))?) } else { None };
        let cols = match self.cols.lock().unwrap().take() {
            Some(c) => c,
            None => x.contiguous()?.apply_op1_no_bwd(&Im2Col)?, // a second backward through the same node
        };
        let (o, c) = (w.dims()[0], w.dims()[1]);
        let dw = dy.apply_op1_no_bwd(&ToRows)?.t()?.matmul(&cols)?.reshape((o, c, 4, 4))?;
        Ok((dx, Some(dw)))
    }
}

impl CustomOp2 for UpOp {
    fn name(&self) -> &'static str {
        "fastconv-up"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, [b, c, h, w]) = slice4(s1, l1)?;
        let o = l2.dims()[1];
        let wm = weight_tensor(s2, l2, c, o * 16)?;
        let cols = matmul(to_rows(x, [b, c, h, w]), (b * h * w, c), &wm)?;
        let y = col2im(&cols, [b, o, 2 * h, 2 * w]);
        Ok((CpuStorage::F32(y), Shape::from((b, o, 2 * h, 2 * w))))
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // Up is Down's adjoint with the same weight tensor read as [O_down = C, C_down = O, 4, 4]: both gradients
        // are products with the im2col of ∂L/∂y, made once here.
        let (b, c, h, w_) = x.dims4()?;
        let o = w.dims()[1];
        let cols = dy.contiguous()?.apply_op1_no_bwd(&Im2Col)?; // [B·h·w, O·16]
        let wm = w.reshape((c, o * 16))?;
        let dx = if x.track_op() {
            Some(cols.matmul(&wm.t()?)?.apply_op1_no_bwd(&FromRows(b, h, w_))?)
        } else {
            None
        };
        let dw = x.contiguous()?.apply_op1_no_bwd(&ToRows)?.t()?.matmul(&cols)?.reshape((c, o, 4, 4))?;
        Ok((dx, Some(dw)))
    }
}

impl candle_core::CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "fastconv-im2col"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, [b, c, h, w]) = slice4(s, l)?;
        Ok((CpuStorage::F32(im2col(x, [b, c, h, w])), Shape::from((b * (h / 2) * (w / 2), c * 16))))
    }
}

impl candle_core::CustomOp1 for ToRows {
    fn name(&self) -> &'static str {
        "fastconv-to-rows"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, [b, c, h, w]) = slice4(s, l)?;
        Ok((CpuStorage::F32(to_rows(x, [b, c, h, w])), Shape::from((b * h * w, c))))
    }
}

impl candle_core::CustomOp1 for FromRows {
    fn name(&self) -> &'static str {
        "fastconv-from-rows"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(v) = s else { candle_core::bail!("fastconv: f32 only") };
        let Some((a, e)) = l.contiguous_offsets() else { candle_core::bail!("fastconv: contiguous inputs only") };
        let (FromRows(b, h, w), c) = (self, l.dims()[1]);
        Ok((CpuStorage::F32(from_rows(&v[a..e], [*b, c, *h, *w])), Shape::from((*b, c, *h, *w))))
    }
}

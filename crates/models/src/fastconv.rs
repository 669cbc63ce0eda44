//! The 4×4, stride-2, padding-1 convolutions of the conv backbone, as im2col / col2im + one gemm each.
//!
//! candle's CPU `conv_transpose2d` is a direct loop over output pixels (and conv2d's input gradient calls it),
//! which made it ≈ 55% of a conv VAE step (perf: `vec_dot_f32` plus conv closures); its gemm was < 10%.
//! Composing the layers from candle's differentiable view ops (pad / narrow / permute / cat) was tried first and
//! was 2× slower still: the backward of every strided view becomes an element-by-element strided add. So these
//! are custom ops with their own backward, each a gather/scatter plus one gemm per image (images split over
//! candle's kernel threads), on NCHW data throughout:
//! - `down`:  y_b = conv(x, W)_b  = W · im2col(x_b)ᵀ;        ∂W = Σ_b ∂y_b · im2col(x_b)  (the forward's im2col, kept)
//! - `up`:    y_b = convᵀ(x, W)_b = col2im(x_bᵀ · W);        ∂W = Σ_b x_b · im2col(∂y_b)
//! with `down`'s input gradient = `up`(∂y, W) and `up`'s = `down`(∂y, W) (sharing `up`'s ∂W im2col); an input
//! gradient is computed only where the input needs one (not for the data under the first layer). The conv
//! biases go through [`add_channel_bias`].
//!
//! Layers with ≥ 8 channels on both sides whose small side is covered well by 7×7 blocks (7×7 and 14×14 maps:
//! the conv VAE's 32 ↔ 64-channel layers, most of its arithmetic) take [`crate::winograd`] instead: the same
//! three products in Winograd form, a third of the multiplications and no im2col.
//!
//! Off the CPU (see [`crate::kernels`]) the layers are candle's `conv2d` / `conv_transpose2d` with the same
//! weights.
//!
//! Weights and biases have candle-nn's names, shapes and initialisation, so checkpoints are the same as with
//! `candle_nn::conv2d` / `conv_transpose2d`; the tests compare both layers and their gradients with candle's.

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Module, Result, Shape, Tensor};
use std::mem::MaybeUninit;
use candle_nn::{Init, VarBuilder};

use crate::winograd;

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
        if !crate::kernels::custom(x) {
            return add_channel_bias(&x.conv2d(&self.weight, 1, 2, 1, 1)?, &self.bias);
        }
        let y = x.contiguous()?.apply_op2_arc(&self.weight, down_op())?;
        add_channel_bias(&y, &self.bias)
    }
}

impl Down {
    /// The input gradient of this layer for an output gradient `g`: the transposed convolution with the same
    /// weights (no bias), itself differentiable in `g` and the weights.
    pub fn input_gradient(&self, g: &Tensor) -> Result<Tensor> {
        if !crate::kernels::custom(g) {
            return g.conv_transpose2d(&self.weight, 1, 0, 2, 1);
        }
        g.contiguous()?.apply_op2_arc(&self.weight, arc(UpOp::default()))
    }
}

impl Module for Up {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !crate::kernels::custom(x) {
            return add_channel_bias(&x.conv_transpose2d(&self.weight, 1, 0, 2, 1)?, &self.bias);
        }
        let y = x.contiguous()?.apply_op2_arc(&self.weight, arc(UpOp::default()))?;
        add_channel_bias(&y, &self.bias)
    }
}

/// `y [B, C, H, W] + bias [C]`. The bias gradient is a per-channel sum; `broadcast_add`'s backward computes it
/// with candle's generic reduction over dims (0, 2, 3), which walks the tensor by strided index arithmetic and
/// was ≈ 15% of a conv VAE step (perf). [`ChannelBias`] writes the sum as a loop over contiguous planes.
pub fn add_channel_bias(y: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if !crate::kernels::custom(y) {
        return y.broadcast_add(&bias.reshape((1, bias.elem_count(), 1, 1))?);
    }
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
        let y = per_image(x.len(), h * w, |i, plane| {
            let v = bias[i % c];
            plane.iter_mut().zip(&x[i * h * w..]).for_each(|(p, &xv)| *p = xv + v);
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
        // One channel per piece, on the kernel threads (this sum ran on one thread while the other waited).
        let (b, hw) = (x.len() / (c * h * w), h * w);
        let sums = per_image(c, 1, |ci, s| {
            let total: f64 = (0..b).map(|bi| plane_sum(&x[(bi * c + ci) * hw..][..hw])).sum();
            s[0] = total as f32;
        });
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
    fn bwd(&self, x: &Tensor, _sums: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(g.reshape((1, (), 1, 1))?.broadcast_as(x.shape())?))
    }
}

/// The sum of one plane (≤ a few thousand floats): eight f32 lanes, then f64. Converting every element to f64
/// first kept the loop scalar (perf: ≈ 2.5% of a conv VAE step at one thread).
fn plane_sum(v: &[f32]) -> f64 {
    let mut lanes = [0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|&x| x as f64).sum();
    for c in chunks {
        lanes.iter_mut().zip(c).for_each(|(l, &x)| *l += x);
    }
    lanes.iter().map(|&l| l as f64).sum::<f64>() + rest
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

/// A new `n`-float output, its `chunk`-sized pieces (one per image) filled by `f(i, piece)` on candle's kernel
/// threads when there are several (the gemms are parallel already; these gathers were the serial remainder of a
/// step). Each piece is zeroed by the thread that fills it, just before (`vec![0; n]` zeroed the whole output on one thread first: ≈ 30 MB a conv VAE step, 6.5% of its samples in
/// `memset` at two threads, the other thread waiting).
pub(crate) fn per_image(n: usize, chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    assert!(chunk > 0 && n % chunk == 0, "per_image: {n} floats in pieces of {chunk}");
    pieces(n, chunk, f)
}

/// Like [`per_image`], for elementwise maps over `n` floats: pieces of `chunk` (the last one shorter), filled
/// by `f(i, piece)` — piece `i` starts at float `i · chunk`.
pub(crate) fn pieces(n: usize, chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let fill = |i: usize, c: &mut [MaybeUninit<f32>]| {
        c.iter_mut().for_each(|v| {
            v.write(0.0);
        });
        // SAFETY: every element of `c` was initialised just above; MaybeUninit<f32> has f32's layout.
        f(i, unsafe { &mut *(c as *mut [MaybeUninit<f32>] as *mut [f32]) })
    };
    // SAFETY: `fill` initialises every element before `f` sees it.
    unsafe { pieces_uninit(n, chunk, fill) }
}

/// [`pieces`] without the zeroing, for outputs whose every element `f` writes (im2col: zeroing its ≈ 40 MB a
/// conv VAE step first was most of the step's 5% in `memset`).
///
/// # Safety
/// `f(i, piece)` must initialise every element of `piece`.
pub(crate) unsafe fn pieces_uninit(n: usize, chunk: usize, f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    assert!(chunk > 0, "pieces: empty pieces");
    let mut out: Vec<f32> = Vec::with_capacity(n);
    let spare = &mut out.spare_capacity_mut()[..n];
    if candle_core::utils::get_num_threads() > 1 && n > chunk {
        spare.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        spare.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    }
    // SAFETY: the pieces covered all n elements and the caller's `f` initialised each.
    unsafe { out.set_len(n) };
    out
}

/// A thread's reusable scratch buffer of at least `n` floats (contents unspecified but initialised).
fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < n {
            s.resize(n, 0.0);
        }
        f(&mut s[..n])
    })
}

/// im2col for the stride-2 4×4 pad-1 geometry: rows (b, m, n) of the output grid, columns (c, ky, kx).
/// Written row by row, in memory order, reading from one image (C·H·W floats, in cache) at a time; each kernel
/// row (ky) is 4 consecutive input pixels, copied as one slice, and only the first and last output columns touch
/// the padding. (Per-element bounds checks, then a channel-major order that wrote 16 floats 2 KiB apart, each
/// cost 5–10% of a conv VAE step — perf.)
fn im2col(x: &[f32], [b, c, h, w]: [usize; 4]) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    let k = c * 16;
    let fill = |bi: usize, img_cols: &mut [MaybeUninit<f32>]| {
        let img = &x[bi * c * h * w..][..c * h * w];
        for (r, row) in img_cols.chunks_exact_mut(k).enumerate() {
            let (m, n) = (r / wo, r % wo);
            let interior = n > 0 && n + 1 < wo;
            for (ci, kernel) in row.chunks_exact_mut(16).enumerate() {
                let plane = &img[ci * h * w..][..h * w];
                for ky in 0..4 {
                    let dst = &mut kernel[ky * 4..][..4];
                    let iy = (2 * m + ky) as isize - 1;
                    if iy < 0 || iy >= h as isize {
                        dst.iter_mut().for_each(|d| {
                            d.write(0.0);
                        });
                        continue;
                    }
                    let src = &plane[iy as usize * w..][..w];
                    if interior {
                        dst.iter_mut().zip(&src[2 * n - 1..2 * n + 3]).for_each(|(d, &v)| {
                            d.write(v);
                        });
                    } else {
                        for (kx, d) in dst.iter_mut().enumerate() {
                            let ix = (2 * n + kx) as isize - 1;
                            d.write(if ix >= 0 && ix < w as isize { src[ix as usize] } else { 0.0 });
                        }
                    }
                }
            }
        }
    };
    // SAFETY: `fill` writes every element of its image's piece: each of the piece's P rows of K = C·16 values,
    // each kernel row of 4 either copied or, where it falls in the padding, written as zeros.
    unsafe { pieces_uninit(b * ho * wo * k, ho * wo * k, fill) }
}

/// The adjoint of [`im2col`] for one image: scatter-add its columns `[H/2·W/2, C·16]` into `img [C, H, W]`
/// (zeroed by the caller; same order and slicing as im2col: columns read in memory order).
fn col2im_image(img_cols: &[f32], [c, h, w]: [usize; 3], img: &mut [f32]) {
    let wo = w / 2;
    let k = c * 16;
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
}

/// One image's gemm, `dst = lhs · rhs` (m × k by k × n), each matrix given by its row and column strides, on
/// the calling thread: the conv layers run one gemm per image, the images split over candle's kernel threads.
/// (One batch-wide gemm per layer, before, needed the activations transposed to and from rows (b, y, x) and a
/// copy out of candle's zero-filled result, and its weight gradients — a 32 × 16 or 64 × 512 output with the
/// whole batch as the inner dimension — gave gemm's threads almost nothing to split: at two threads the conv
/// VAE ran no faster than at one.)
#[allow(clippy::too_many_arguments)]
fn gemm_into(dst: &mut [f32], accumulate: bool, (m, n, k): (usize, usize, usize), lhs: &[f32], (lrs, lcs): (usize, usize), rhs: &[f32], (rrs, rcs): (usize, usize)) {
    // The gemm crate reads through raw pointers: check every matrix's last element is in its slice.
    assert!(dst.len() >= m * n && m * n > 0 || m * n == 0);
    assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lrs + (k - 1) * lcs);
    assert!(n == 0 || k == 0 || rhs.len() > (k - 1) * rrs + (n - 1) * rcs);
    if m * n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every index the strides reach inside its slice; dst is exclusively borrowed.
    unsafe {
        gemm::gemm(
            m, n, k,
            dst.as_mut_ptr(), 1, n as isize, accumulate,
            lhs.as_ptr(), lcs as isize, lrs as isize,
            rhs.as_ptr(), rcs as isize, rrs as isize,
            1.0, 1.0, false, false, false,
            gemm::Parallelism::None,
        )
    }
}

/// Images per gemm in the forward and input-gradient products: enough that a group has ≈ 256 output pixels.
/// One gemm per image packed the weights anew for every image — on the 7×7 layers a 64 × 512 weight for a
/// 49 × 512 image, so packing the weight cost more than packing the image; a group packs it once. The 14×14
/// and 28×28 layers (P ≥ 196, weights of 32 × 16) stay one image per gemm.
fn images_per_gemm(p: usize) -> usize {
    (256 / p).max(1)
}

/// Per image, `y_b [O, P] = W [O, K] · cols_bᵀ` with `cols_b [P, K]`: a convolution's output from its im2col.
/// A group's images are one gemm, `[n·P, K] · Wᵀ` (their cols are consecutive rows), transposed into place.
fn weight_times_cols(w: &[f32], cols: &[f32], (o, k, p): (usize, usize, usize), b: usize) -> Vec<f32> {
    let g = images_per_gemm(p);
    pieces(b * o * p, g * o * p, |gi, out| {
        let (lo, n) = (gi * g, out.len() / (o * p));
        if n == 1 {
            return gemm_into(out, false, (o, p, k), w, (k, 1), &cols[lo * p * k..][..p * k], (1, k));
        }
        with_scratch(n * p * o, |yt| {
            gemm_into(yt, false, (n * p, o, k), &cols[lo * p * k..][..n * p * k], (k, 1), w, (1, k));
            for (yb, ytb) in out.chunks_exact_mut(o * p).zip(yt.chunks_exact(p * o)) {
                for (oi, row) in yb.chunks_exact_mut(p).enumerate() {
                    row.iter_mut().enumerate().for_each(|(pi, v)| *v = ytb[pi * o + oi]);
                }
            }
        })
    })
}

/// Per image, `col2im(x_bᵀ · W)` with `x_b [C, P]`, `W [C, O·16]`: a transposed convolution's output (and a
/// convolution's input gradient) for `[B, C, h, w] → [B, O, 2h, 2w]`. A group's images are one gemm: their
/// `x_bᵀ` gathered one under the other into `[n·P, C]`, times W.
fn transposed_conv(x: &[f32], w: &[f32], [b, c, h, wd]: [usize; 4], o: usize) -> Vec<f32> {
    let (p, k, img) = (h * wd, o * 16, o * 4 * h * wd);
    let g = images_per_gemm(p);
    pieces(b * img, g * img, |gi, out| {
        let (lo, n) = (gi * g, out.len() / img);
        with_scratch(n * p * (c + k), |scratch| {
            let (xt, cols) = scratch.split_at_mut(n * p * c);
            if n == 1 {
                // One image: the gemm reads x_bᵀ through its strides, no gather.
                gemm_into(cols, false, (p, k, c), &x[lo * c * p..][..c * p], (1, p), w, (k, 1));
            } else {
                for (bi, rows) in xt.chunks_exact_mut(p * c).enumerate() {
                    let xb = &x[(lo + bi) * c * p..][..c * p];
                    for (pi, row) in rows.chunks_exact_mut(c).enumerate() {
                        row.iter_mut().enumerate().for_each(|(ci, v)| *v = xb[ci * p + pi]);
                    }
                }
                gemm_into(cols, false, (n * p, k, c), xt, (c, 1), w, (k, 1));
            }
            for (yb, cb) in out.chunks_exact_mut(img).zip(cols.chunks_exact(p * k)) {
                col2im_image(cb, [o, 2 * h, 2 * wd], yb);
            }
        })
    })
}

/// `Σ_b a_b [M, P] · cols_b [P, K]` → `[M, K]`: a weight gradient. Partial sums over fixed groups of images
/// run on the kernel threads and are added in order, so the result does not depend on the thread count.
fn weight_gradient(a: &[f32], cols: &[f32], (m, p, k): (usize, usize, usize), b: usize) -> Vec<f32> {
    use rayon::prelude::*;
    const GROUP: usize = 16;
    // One gemm per group, its depth the group's n·P, rather than one per image (depth P = 49–196 here): the
    // group's cols are already one [n·P, K] matrix; its `a_b [M, P]` are copied side by side into [M, n·P].
    // Per image, each small gemm packed its operands and read and wrote the [M, K] sum again.
    let group = |g: usize| {
        let (lo, hi) = (g * GROUP, ((g + 1) * GROUP).min(b));
        let depth = (hi - lo) * p;
        let mut side_by_side = Vec::with_capacity(m * depth);
        for r in 0..m {
            for bi in lo..hi {
                side_by_side.extend_from_slice(&a[(bi * m + r) * p..][..p]);
            }
        }
        let mut acc = vec![0f32; m * k];
        gemm_into(&mut acc, false, (m, k, depth), &side_by_side, (depth, 1), &cols[lo * p * k..hi * p * k], (k, 1));
        acc
    };
    let groups = b.div_ceil(GROUP);
    let partials: Vec<Vec<f32>> = if candle_core::utils::get_num_threads() > 1 {
        (0..groups).into_par_iter().map(group).collect()
    } else {
        (0..groups).map(group).collect()
    };
    let mut out = vec![0f32; m * k];
    for part in partials {
        out.iter_mut().zip(part).for_each(|(o, v)| *o += v);
    }
    out
}

fn arc<T: CustomOp2 + Send + Sync + 'static>(op: T) -> std::sync::Arc<Box<dyn CustomOp2 + Send + Sync>> {
    std::sync::Arc::new(Box::new(op))
}

/// conv(x [B, C, H, W], W [O, C, 4, 4]) → [B, O, H/2, W/2]. Keeps the im2col of `x` it made for the forward
/// pass (on the Winograd path, `x`'s transform) until the backward pass has used it for the weight gradient (one
/// im2col per layer and step, not two).
#[derive(Default)]
struct DownOp {
    cols: std::sync::Mutex<Option<Tensor>>,
    weight_hat: std::sync::Mutex<Option<Vec<f32>>>, // the Winograd path's transformed weights, for ∂x
}
/// convᵀ(x [B, C, h, w], W [C, O, 4, 4]) → [B, O, 2h, 2w]. Keeps the transform of `x` it made on the
/// Winograd path (see [`crate::winograd`]) for the weight gradient.
#[derive(Default)]
struct UpOp {
    kept: std::sync::Mutex<Option<Tensor>>,
    weight_hat: std::sync::Mutex<Option<Vec<f32>>>, // the transformed weights, for ∂x
}
/// `[B, C, H, W]` → its im2col, `[B, H/2·W/2, C·16]` (no gradient: used inside backward passes).
struct Im2Col;
/// `(a [B, M, P…], cols [B, P, K])` → `Σ_b a_b · cols_b`, `[M, K]` (no gradient).
struct WeightGradient;
/// `(W [O, K], cols [B, P, K])` → `[B, O, h, w]` with `P = h·w`: a convolution from a precomputed im2col
/// (no gradient).
struct FromCols(usize, usize);

fn down_op() -> std::sync::Arc<Box<dyn CustomOp2 + Send + Sync>> {
    arc(DownOp::default())
}

/// A contiguous f32 tensor's data.
fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("fastconv: f32 only") };
    let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("fastconv: contiguous inputs only") };
    Ok(&v[a..b])
}

impl CustomOp2 for DownOp {
    fn name(&self) -> &'static str {
        "fastconv-down"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, [b, c, h, w]) = slice4(s1, l1)?;
        let o = l2.dims()[0];
        let (ho, wo) = (h / 2, w / 2);
        if winograd::applies(c, o, ho, wo) {
            let xh = winograd::big_hat(x, [b, c, h, w]);
            let n = winograd::rows(b, ho, wo);
            let wh = winograd::weight_hat(slice(s2, l2)?, o, c);
            let yh = winograd::down_products(&xh, &wh, n, o, 4 * c);
            *self.cols.lock().unwrap() = Some(Tensor::from_vec(xh, n * 64 * 4 * c, &Device::Cpu)?);
            *self.weight_hat.lock().unwrap() = Some(wh);
            return Ok((CpuStorage::F32(winograd::small_out(&yh, [b, o, ho, wo])), Shape::from((b, o, ho, wo))));
        }
        let cols = im2col(x, [b, c, h, w]);
        let y = weight_times_cols(slice(s2, l2)?, &cols, (o, c * 16, ho * wo), b);
        *self.cols.lock().unwrap() = Some(Tensor::from_vec(cols, (b, ho * wo, c * 16), &Device::Cpu)?);
        Ok((CpuStorage::F32(y), Shape::from((b, o, ho, wo))))
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (b, c, h, wd) = x.dims4()?;
        let o = w.dim(0)?;
        let kept = self.cols.lock().unwrap().take();
        if winograd::applies(c, o, h / 2, wd / 2) {
            // ∂y in the domain once, for both gradients; x̂ kept from the forward pass.
            let (n, k4) = (winograd::rows(b, h / 2, wd / 2), 4 * c);
            let xh = match kept {
                Some(t) => t,
                None => Tensor::from_vec(with_f32(x, |x| winograd::big_hat(x, [b, c, h, wd]))?, n * 64 * k4, &Device::Cpu)?,
            };
            let dyh = with_f32(&dy, |g| winograd::small_hat(g, [b, o, h / 2, wd / 2]))?;
            let wh = self.weight_hat.lock().unwrap().take();
            let dx = if x.track_op() {
                let wh = match wh {
                    Some(wh) => wh,
                    None => with_f32(w, |w| winograd::weight_hat(w, o, c))?,
                };
                let g = winograd::up_products(&dyh, &wh, n, o, k4);
                Some(Tensor::from_vec(winograd::big_out(&g, [b, c, h, wd]), x.shape(), &Device::Cpu)?)
            } else {
                None
            };
            let m = with_f32(&xh, |xh| winograd::weight_products(&dyh, xh, n, o, k4))?;
            let dw = Tensor::from_vec(winograd::weight_out(&m, o, c), w.shape(), &Device::Cpu)?;
            return Ok((dx, Some(dw)));
        }
        // The input gradient only where the input needs one: not for the first layer, whose input is the data.
        let dx = if x.track_op() { Some(dy.apply_op2_arc(w, arc(UpOp::default()))?) } else { None };
        let cols = match kept {
            Some(c) => c,
            None => x.contiguous()?.apply_op1_no_bwd(&Im2Col)?, // a second backward through the same node
        };
        let dw = dy.apply_op2_no_bwd(&cols, &WeightGradient)?.reshape(w.shape())?;
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
        if winograd::applies(o, c, h, w) {
            // Down's input gradient with this weight read as Down's [O_down = C, C_down = O, 4, 4].
            let (n, k4) = (winograd::rows(b, h, w), 4 * o);
            let xh = winograd::small_hat(x, [b, c, h, w]);
            let wh = winograd::weight_hat(slice(s2, l2)?, c, o);
            let g = winograd::up_products(&xh, &wh, n, c, k4);
            *self.kept.lock().unwrap() = Some(Tensor::from_vec(xh, n * 64 * c, &Device::Cpu)?);
            *self.weight_hat.lock().unwrap() = Some(wh);
            return Ok((CpuStorage::F32(winograd::big_out(&g, [b, o, 2 * h, 2 * w])), Shape::from((b, o, 2 * h, 2 * w))));
        }
        let y = transposed_conv(x, slice(s2, l2)?, [b, c, h, w], o);
        Ok((CpuStorage::F32(y), Shape::from((b, o, 2 * h, 2 * w))))
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, c, h, w_) = x.dims4()?;
        let o = w.dim(1)?;
        let kept = self.kept.lock().unwrap().take();
        if winograd::applies(o, c, h, w_) {
            // ∂y (the big side) in the domain once, for both gradients; x̂ kept from the forward pass.
            let (n, k4) = (winograd::rows(b, h, w_), 4 * o);
            let xh = match kept {
                Some(t) => t,
                None => Tensor::from_vec(with_f32(x, |x| winograd::small_hat(x, [b, c, h, w_]))?, n * 64 * c, &Device::Cpu)?,
            };
            let dyh = with_f32(dy, |g| winograd::big_hat(g, [b, o, 2 * h, 2 * w_]))?;
            let wh = self.weight_hat.lock().unwrap().take();
            let dx = if x.track_op() {
                let wh = match wh {
                    Some(wh) => wh,
                    None => with_f32(w, |w| winograd::weight_hat(w, c, o))?,
                };
                let yh = winograd::down_products(&dyh, &wh, n, c, k4);
                Some(Tensor::from_vec(winograd::small_out(&yh, [b, c, h, w_]), x.shape(), &Device::Cpu)?)
            } else {
                None
            };
            let m = with_f32(&xh, |xh| winograd::weight_products(xh, &dyh, n, c, k4))?;
            let dw = Tensor::from_vec(winograd::weight_out(&m, c, o), w.shape(), &Device::Cpu)?;
            return Ok((dx, Some(dw)));
        }
        // Up is Down's adjoint with the same weight tensor read as [O_down = C, C_down = O, 4, 4]: both gradients
        // are products with the im2col of ∂L/∂y, made once here.
        let cols = dy.contiguous()?.apply_op1_no_bwd(&Im2Col)?; // [B, h·w, O·16]
        let w = w.contiguous()?;
        let dx = if x.track_op() { Some(w.apply_op2_no_bwd(&cols, &FromCols(h, w_))?) } else { None };
        let dw = x.contiguous()?.apply_op2_no_bwd(&cols, &WeightGradient)?.reshape(w.shape())?;
        Ok((dx, Some(dw)))
    }
}

/// `f` on a tensor's data as one contiguous f32 slice (a copy first if it is not contiguous).
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else { candle_core::bail!("fastconv: CPU tensors only") };
    Ok(f(slice(cpu, layout)?))
}

impl CustomOp2 for WeightGradient {
    fn name(&self) -> &'static str {
        "fastconv-weight-gradient"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, cols) = (slice(s1, l1)?, slice(s2, l2)?);
        let &[b, p, k] = l2.dims() else { candle_core::bail!("fastconv: im2col must be [B, P, K]") };
        let m = l1.dims()[1];
        if a.len() != b * m * p {
            candle_core::bail!("fastconv: {:?} does not match an im2col of {:?}", l1.dims(), l2.dims());
        }
        Ok((CpuStorage::F32(weight_gradient(a, cols, (m, p, k), b)), Shape::from((m, k))))
    }
}

impl CustomOp2 for FromCols {
    fn name(&self) -> &'static str {
        "fastconv-from-cols"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (w, cols) = (slice(s1, l1)?, slice(s2, l2)?);
        let &[b, p, k] = l2.dims() else { candle_core::bail!("fastconv: im2col must be [B, P, K]") };
        let FromCols(h, wd) = *self;
        let o = l1.dims()[0];
        if w.len() != o * k || p != h * wd {
            candle_core::bail!("fastconv: weights {:?} do not match an im2col of {:?}", l1.dims(), l2.dims());
        }
        Ok((CpuStorage::F32(weight_times_cols(w, cols, (o, k, p), b)), Shape::from((b, o, h, wd))))
    }
}

impl candle_core::CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "fastconv-im2col"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, [b, c, h, w]) = slice4(s, l)?;
        Ok((CpuStorage::F32(im2col(x, [b, c, h, w])), Shape::from((b, (h / 2) * (w / 2), c * 16))))
    }
}

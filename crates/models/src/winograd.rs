//! The 4×4 stride-2 convolutions of [`crate::fastconv`] in Winograd (Toom-Cook) form, for the layers where most of
//! a conv VAE's arithmetic is: 32 ↔ 64 channels on 7×7 maps.
//!
//! Split by pixel parity (space-to-depth), a 4×4 stride-2 pad-1 convolution of a `[C, 2h, 2w]` map is a 2×2
//! stride-1 convolution of its *parity grid* `[4C, h+1, w+1]` — grid cell `(p, gy, gx)` (parity `p = (py, px)`)
//! holds pixel `(2gy − py, 2gx − px)`, and tap `(ty, tx)` of plane `p` is kernel entry `(2ty + 1 − py, 2tx + 1 − px)`.
//! In one dimension, a 2-tap correlation of 8 grid values into 7 outputs is the transpose of a polynomial product
//! (degree 6 × degree 1 = degree 7), which 8 evaluations compute exactly: at 0, ±1, ±2, ±½ and ∞. So per 7×7
//! block of the output (an 8×8 window of the grid), in two dimensions:
//! - forward: `Y = V7ᵀ [Σ_c Ŵ ⊙ X̂] V7` with `X̂ = V8⁻ᵀ X V8⁻¹`, `Ŵ = Vw w Vwᵀ`;
//! - input gradient (= the transposed convolution): `X = V8⁻¹ [Σ_o Ŵ ⊙ Ŷ] V8⁻ᵀ` with `Ŷ = V7 Y V7ᵀ`;
//! - weight gradient: `w = Vwᵀ [Σ Ŷ ⊙ X̂] Vw`;
//!
//! where `V8` evaluates a degree-7 polynomial at the 8 points, `V7` a degree-6 one and `Vw` a degree-1 one. The
//! sums over channels are 64 independent gemms (one per evaluation point) of `[blocks, C] × [C, O]`: 64 products
//! per block and channel pair where the direct convolution (im2col + gemm) needs 4 · 49 = 196, and no im2col
//! matrix. The transforms are 8×8 sandwiches `A · T · Aᵀ`, vectorized across a row; the transformed big side
//! of the forward pass is kept for the weight gradient, as fastconv keeps its im2col.
//!
//! The result differs from the direct convolution by float rounding only (≈ 1e-5 of the output's scale; the
//! tests hold both to candle's conv2d). Each gemm sums in a fixed order on one thread, the points split over
//! candle's kernel threads, so results do not depend on the thread count.

use std::mem::MaybeUninit;

use crate::fastconv::pieces_uninit;
use crate::kernels::Switch;

/// Points of the transform domain per 8×8 window.
const PTS: usize = 64;
/// Output block edge.
const BLOCK: usize = 7;

/// Whether a layer with `big_c` channels on its 2h × 2w side and `small_c` on its h × w side takes this path:
/// both sides wide enough for the per-point gemms to be worth it, and the 7×7 blocks covering the map at least
/// twice as cheap as the direct products (7×7 and 14×14 maps: 3×; 16×16 would be 1.8×). Off with
/// [`set_enabled`] or `VAELAB_CONV=im2col` (to compare the two paths).
pub fn applies(big_c: usize, small_c: usize, h: usize, w: usize) -> bool {
    let blocks = h.div_ceil(BLOCK) * w.div_ceil(BLOCK);
    enabled() && big_c >= 8 && small_c >= 8 && 4 * h * w >= 2 * PTS * blocks
}

static SWITCH: Switch = Switch::new("VAELAB_CONV", "im2col");

/// Turns the Winograd path on or off for the whole process (tests and benchmarks compare it with im2col).
pub fn set_enabled(on: bool) {
    SWITCH.set(on);
}

fn enabled() -> bool {
    SWITCH.on()
}

/// A transform matrix `A` (n × width) as `post · B · pre`: the points come in pairs ±t (1 and −1, 2 and −2, ½ and
/// −½), and where a matrix evaluates at the points (rows are points) the rows of a pair differ only in the sign
/// of their odd columns, where it interpolates from them (columns are points) the columns of a pair differ only
/// in the sign of their odd rows. So a pair's two outputs are e ± o from one set of products (`post`), or the
/// inputs of a pair are first turned into their sum and difference (`pre`) — 23 to 32 products per line where
/// A has 44 non-zero entries.
struct Sparse {
    n: usize,
    width: usize,
    pre: [(usize, usize); 3], // inputs (s, s′) → (s + s′, s − s′), the first `npre`
    npre: usize,
    rows: [[(usize, f32); 8]; 8], // B, by its non-zero entries: rows[i][..count[i]] = [(input, value)]
    count: [usize; 8],
    post: [(usize, usize); 3], // outputs (i, i′) → (i + i′, i − i′), the first `npost`
    npost: usize,
}

/// The pairs ±t among the points (0, 1, −1, 2, −2, ½, −½, ∞).
const PAIRS: [(usize, usize); 3] = [(1, 2), (3, 4), (5, 6)];

// The matrices are computed at compile time (const fns, f64 as at run time before), so that each transform's
// sandwich is compiled for its own entries: loops of known length over known inputs, which the compiler unrolls
// into register arithmetic — as runtime data every entry was a loop step through memory, and the transforms
// were ≈ 20% of a conv VAE step at batch 128.
impl Sparse {
    const EMPTY: Sparse = Sparse { n: 0, width: 0, pre: [(0, 0); 3], npre: 0, rows: [[(0, 0.0); 8]; 8], count: [0; 8], post: [(0, 0); 3], npost: 0 };

    /// `m` (n × width) whose rows are the points.
    const fn evaluating(m: [[f64; 8]; 8], n: usize, width: usize) -> Sparse {
        let mut a = Sparse { n, width, post: PAIRS, npost: 3, ..Sparse::EMPTY };
        let mut i = 0;
        while i < n {
            // A pair's rows i, i′: row i at its even columns (e) and at its odd ones (o); others as they are.
            let (src, parity) = match i {
                1 | 3 | 5 => (i, 0),
                2 | 4 | 6 => (i - 1, 1),
                _ => (i, 2),
            };
            let mut j = 0;
            while j < width {
                if (parity == 2 || j % 2 == parity) && m[src][j] != 0.0 {
                    a.rows[i][a.count[i]] = (j, m[src][j] as f32);
                    a.count[i] += 1;
                }
                j += 1;
            }
            i += 1;
        }
        a
    }

    /// `m` (n × 8) whose columns are the points.
    const fn interpolating(m: [[f64; 8]; 8], n: usize) -> Sparse {
        let mut a = Sparse { n, width: 8, pre: PAIRS, npre: 3, ..Sparse::EMPTY };
        let mut i = 0;
        while i < n {
            // Unpaired points (0, ∞) as they are; a pair through its sum (even rows) or difference (odd rows);
            // the entries in input order.
            let mut j = 0;
            while j < 8 {
                let input = match j {
                    1 | 3 | 5 => Some(if i % 2 == 0 { j } else { j + 1 }),
                    2 | 4 | 6 => None, // the pair's second point: taken through the first
                    _ => Some(j),
                };
                if let Some(input) = input {
                    if m[i][j] != 0.0 {
                        a.rows[i][a.count[i]] = (input, m[i][j] as f32);
                        a.count[i] += 1;
                    }
                }
                j += 1;
            }
            i += 1;
        }
        a
    }
}

const FINITE: [f64; 7] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5];

/// Evaluation of a polynomial with `n` coefficients at the points (row 7: ∞, its leading coefficient).
const fn eval(n: usize) -> [[f64; 8]; 8] {
    let mut v = [[0f64; 8]; 8];
    let mut i = 0;
    while i < 7 {
        let (mut j, mut power) = (0, 1.0);
        while j < n {
            v[i][j] = power;
            power *= FINITE[i];
            j += 1;
        }
        i += 1;
    }
    v[7][n - 1] = 1.0;
    v
}

/// V8⁻¹ column by column: the coefficients of the polynomial that is 1 at one point and 0 at the others — the
/// Lagrange basis over the finite points, and Π (t − tᵢ) for ∞.
const fn v8inv() -> [[f64; 8]; 8] {
    let mut out = [[0f64; 8]; 8];
    let mut col = 0;
    while col < 8 {
        let mut poly = [0f64; 8]; // coefficients, lowest first
        poly[0] = 1.0;
        let (mut len, mut scale) = (1, 1.0);
        let mut i = 0;
        while i < 7 {
            if i != col {
                // poly · (t − tᵢ)
                let mut k = len;
                while k > 0 {
                    poly[k] = poly[k - 1] - FINITE[i] * poly[k];
                    k -= 1;
                }
                poly[0] = 0.0 - FINITE[i] * poly[0];
                len += 1;
                if col < 7 {
                    scale *= FINITE[col] - FINITE[i];
                }
            }
            i += 1;
        }
        let mut k = 0;
        while k < len {
            out[k][col] = poly[k] / scale;
            k += 1;
        }
        col += 1;
    }
    out
}

const fn transposed(m: [[f64; 8]; 8]) -> [[f64; 8]; 8] {
    let mut r = [[0f64; 8]; 8];
    let mut i = 0;
    while i < 8 {
        let mut j = 0;
        while j < 8 {
            r[i][j] = m[j][i];
            j += 1;
        }
        i += 1;
    }
    r
}

/// A transform `A`, applied as `A · T · Aᵀ`: a type per matrix, so that [`sandwich`] is compiled for each.
trait Transform {
    const A: Sparse;
}
/// V8⁻ᵀ: a grid window → the domain.
struct BigIn;
/// V8⁻¹: the domain → a grid window (overlapping its neighbours by one row/column).
struct BigOut;
/// V7 (8×7): a 7×7 block → the domain.
struct SmallIn;
/// V7ᵀ (7×8): the domain → a 7×7 block.
struct SmallOut;
/// Vw (8×2): 2×2 taps → the domain.
struct WeightIn;
/// Vwᵀ (2×8): the domain → 2×2 taps.
struct WeightOut;
impl Transform for BigIn {
    const A: Sparse = Sparse::evaluating(transposed(v8inv()), 8, 8);
}
impl Transform for BigOut {
    const A: Sparse = Sparse::interpolating(v8inv(), 8);
}
impl Transform for SmallIn {
    const A: Sparse = Sparse::evaluating(eval(7), 8, 7);
}
impl Transform for SmallOut {
    const A: Sparse = Sparse::interpolating(transposed(eval(7)), 7);
}
impl Transform for WeightIn {
    const A: Sparse = Sparse::evaluating(eval(2), 8, 2);
}
impl Transform for WeightOut {
    const A: Sparse = Sparse::interpolating(transposed(eval(2)), 2);
}

/// `dst [n, n, k] = A · src · Aᵀ` over windows of k-vectors (`src [width, width, k]`, A n × width), in chunks of
/// channels so a chunk's window stays in L1, each line of a pass through [`Sparse`]'s sums and differences.
/// Vectorized across channels, so the domain's layout — channels innermost, the gemms' rows — comes out without
/// a scatter. Compiled for AVX-512 or AVX2 where the CPU has it: the same operations in the
/// same order every way (no FMA contraction), so the same bits on any machine (as `losses.rs`).
fn sandwich<T: Transform>(src: &[f32], dst: &mut [MaybeUninit<f32>], k: usize) {
    let a = T::A;
    assert!(src.len() >= a.width * a.width * k && dst.len() >= a.n * a.n * k);
    let out = SendPtr(dst.as_mut_ptr().cast());
    // SAFETY: `dst` holds the n · n · k values written (asserted) and is this call's alone.
    unsafe { sandwich_channels::<T>(src, &out, k, 0..k) }
}

/// [`sandwich`] for the weights' transforms — thousands of channels, once a step, nothing else running beside
/// them (on one thread they were ≈ 6% of a conv VAE step at batch 128) — channel pieces on candle's kernel
/// threads. Each channel's sums are the same either way.
fn sandwich_par<T: Transform>(src: &[f32], dst: &mut [MaybeUninit<f32>], k: usize) {
    const PIECE: usize = 256;
    if candle_core::utils::get_num_threads() <= 1 || k < 2 * PIECE {
        return sandwich::<T>(src, dst, k);
    }
    let a = T::A;
    assert!(src.len() >= a.width * a.width * k && dst.len() >= a.n * a.n * k);
    let out = SendPtr(dst.as_mut_ptr().cast());
    use rayon::prelude::*;
    (0..k.div_ceil(PIECE)).into_par_iter().for_each(|t| {
        let out = &out;
        // SAFETY: as in `sandwich`; the pieces' channels are disjoint, so no two threads write one value.
        unsafe { sandwich_channels::<T>(src, out, k, t * PIECE..((t + 1) * PIECE).min(k)) }
    });
}

/// Channels `channels` of a sandwich.
///
/// # Safety
/// `dst` must point to `a.n · a.n · k` floats, and no other thread may write these channels meanwhile.
unsafe fn sandwich_channels<T: Transform>(src: &[f32], dst: &SendPtr, k: usize, channels: std::ops::Range<usize>) {
    with_scratch(T::A.width * T::A.n * WIDE_CHUNK, |tmp| {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            unsafe fn wider<T: Transform>(src: &[f32], dst: &SendPtr, k: usize, channels: std::ops::Range<usize>, tmp: &mut [f32]) {
                // SAFETY: the caller's.
                unsafe { sandwich_body::<T, WIDE_CHUNK>(src, dst, k, channels, tmp) }
            }
            #[target_feature(enable = "avx2")]
            unsafe fn wide<T: Transform>(src: &[f32], dst: &SendPtr, k: usize, channels: std::ops::Range<usize>, tmp: &mut [f32]) {
                // SAFETY: the caller's.
                unsafe { sandwich_body::<T, CHUNK>(src, dst, k, channels, tmp) }
            }
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F (checked just above); the caller's contract.
                return unsafe { wider::<T>(src, dst, k, channels, tmp) };
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just above); the caller's contract.
                return unsafe { wide::<T>(src, dst, k, channels, tmp) };
            }
        }
        // SAFETY: the caller's.
        unsafe { sandwich_body::<T, CHUNK>(src, dst, k, channels, tmp) }
    })
}

/// Channels per pass: one AVX2 register, so that a line's eight inputs and outputs stay in registers.
const CHUNK: usize = 8;
/// Channels per pass under AVX-512: one 512-bit register. On a Zen 5 core (full-width 512-bit units) the
/// transforms ran ≈ 16% of a conv VAE step at batch 128 with eight-channel passes.
const WIDE_CHUNK: usize = 16;

/// Chunks of `L` channels, then of [`CHUNK`] where `L` is wider, then single channels: every channel takes
/// the same operations in the same order whatever its chunk, so the chunk width changes no bit.
///
/// # Safety
/// As [`sandwich_channels`]; `tmp` holds `width · n · L` floats.
#[inline(always)]
unsafe fn sandwich_body<T: Transform, const L: usize>(src: &[f32], dst: &SendPtr, k: usize, channels: std::ops::Range<usize>, tmp: &mut [f32]) {
    let mut k0 = channels.start;
    while k0 + L <= channels.end {
        // SAFETY: the caller's.
        unsafe { chunk::<T, L>(src, dst, k, k0, tmp) };
        k0 += L;
    }
    while L > CHUNK && k0 + CHUNK <= channels.end {
        // SAFETY: the caller's.
        unsafe { chunk::<T, CHUNK>(src, dst, k, k0, tmp) };
        k0 += CHUNK;
    }
    // Channels past the last full chunk, one at a time.
    for k0 in k0..channels.end {
        // SAFETY: the caller's.
        unsafe { chunk::<T, 1>(src, dst, k, k0, tmp) };
    }
}

/// Channels `k0 .. k0 + L` of [`sandwich`]; `tmp [width, n, L]` holds `src · Aᵀ`.
///
/// # Safety
/// As [`sandwich_channels`], with `k0 + L ≤ k`.
#[inline(always)]
unsafe fn chunk<T: Transform, const L: usize>(src: &[f32], dst: &SendPtr, k: usize, k0: usize, tmp: &mut [f32]) {
    let (n, width) = (T::A.n, T::A.width);
    let mut x = [[0f32; L]; 8];
    let mut v = [[0f32; L]; 8];
    for r in 0..width {
        for (s, xs) in x.iter_mut().enumerate().take(width) {
            *xs = src[(r * width + s) * k + k0..][..L].try_into().unwrap();
        }
        line::<T, L>(&mut x, &mut v);
        for (j, vj) in v.iter().enumerate().take(n) {
            tmp[(r * n + j) * L..][..L].copy_from_slice(vj);
        }
    }
    for j in 0..n {
        for (r, xr) in x.iter_mut().enumerate().take(width) {
            *xr = tmp[(r * n + j) * L..][..L].try_into().unwrap();
        }
        line::<T, L>(&mut x, &mut v);
        for (i, vi) in v.iter().enumerate().take(n) {
            // SAFETY: (i · n + j) · k + k0 + L ≤ n · n · k, inside `dst` (the caller's).
            unsafe { std::ptr::copy_nonoverlapping(vi.as_ptr(), dst.0.add((i * n + j) * k + k0), L) };
        }
    }
}

/// One line of a sandwich's pass, `v = A · x` (each entry L channels): `pre`, B's products, `post` — every
/// count and index a constant of `T`.
#[inline(always)]
fn line<T: Transform, const L: usize>(x: &mut [[f32; L]; 8], v: &mut [[f32; L]; 8]) {
    for p in 0..T::A.npre {
        let (s, s2) = T::A.pre[p];
        for l in 0..L {
            let (p, q) = (x[s][l], x[s2][l]);
            x[s][l] = p + q;
            x[s2][l] = p - q;
        }
    }
    for i in 0..T::A.n {
        let mut acc = [0f32; L];
        for e in 0..T::A.count[i] {
            let (s, c) = T::A.rows[i][e];
            acc.iter_mut().zip(&x[s]).for_each(|(o, &x)| *o += c * x);
        }
        v[i] = acc;
    }
    for p in 0..T::A.npost {
        let (i, i2) = T::A.post[p];
        for l in 0..L {
            let (e, o) = (v[i][l], v[i2][l]);
            v[i][l] = e + o;
            v[i2][l] = e - o;
        }
    }
}

/// Blocks per map of h × w outputs, `(rows, columns)`.
fn blocks(h: usize, w: usize) -> (usize, usize) {
    (h.div_ceil(BLOCK), w.div_ceil(BLOCK))
}

/// A thread's reusable buffer of at least `n` floats (contents unspecified but initialised). Two, so that a
/// caller holding one can call [`sandwich`], which takes the other.
fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    scratch(&SCRATCH_B, n, f)
}

fn with_window<R>(n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    scratch(&SCRATCH_A, n, f)
}

thread_local! {
    static SCRATCH_A: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    static SCRATCH_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn scratch<R>(key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<f32>>>, n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    key.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < n {
            s.resize(n, 0.0);
        }
        f(&mut s[..n])
    })
}

/// An initialised slice as a destination for [`sandwich`].
fn as_uninit(v: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: same layout; only initialised values are ever written through the result.
    unsafe { &mut *(v as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// `dst [cols, rows] = src [rows, cols]ᵀ`, in 8 × 8 tiles (both sides' lines of a tile in L1). The windows below
/// turn images `[C, H, W]` into channels-innermost `[H, W, C]` and back this way, then move whole channel runs:
/// gathering each window value from its own channel plane (a branch per value for the map's edge) was ≈ 13% of a
/// conv VAE step at batch 128.
fn transpose_to(src: &[f32], rows: usize, cols: usize, dst: &mut [MaybeUninit<f32>]) {
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above); sizes asserted.
        return unsafe { transpose_wide(src, rows, cols, dst) };
    }
    transpose_tiles(src, rows, cols, dst);
}

/// [`transpose_to`] without AVX2: tile by tile, one value at a time.
fn transpose_tiles(src: &[f32], rows: usize, cols: usize, dst: &mut [MaybeUninit<f32>]) {
    const T: usize = 8;
    for r0 in (0..rows).step_by(T) {
        let r1 = (r0 + T).min(rows);
        for c0 in (0..cols).step_by(T) {
            for c in c0..(c0 + T).min(cols) {
                let line = &mut dst[c * rows + r0..c * rows + r1];
                line.iter_mut().zip(r0..r1).for_each(|(d, r)| {
                    d.write(src[r * cols + c]);
                });
            }
        }
    }
}

/// [`transpose_to`]'s whole 8 × 8 tiles in registers (AVX2 unpacks, shuffles and lane swaps: moves only, the same
/// bits anywhere), the ragged edges one value at a time.
///
/// # Safety
/// The CPU must have AVX2; `src` and `dst` hold `rows · cols` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_wide(src: &[f32], rows: usize, cols: usize, dst: &mut [MaybeUninit<f32>]) {
    use std::arch::x86_64::*;
    let (rf, cf) = (rows / 8 * 8, cols / 8 * 8);
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr().cast::<f32>());
    for r0 in (0..rf).step_by(8) {
        for c0 in (0..cf).step_by(8) {
            // SAFETY: rows r0..r0 + 8 and columns c0..c0 + 8 are inside both matrices.
            unsafe {
                let l = |i: usize| _mm256_loadu_ps(sp.add((r0 + i) * cols + c0));
                let (a0, a1, a2, a3, a4, a5, a6, a7) = (l(0), l(1), l(2), l(3), l(4), l(5), l(6), l(7));
                let (t0, t1) = (_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
                let (t2, t3) = (_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
                let (t4, t5) = (_mm256_unpacklo_ps(a4, a5), _mm256_unpackhi_ps(a4, a5));
                let (t6, t7) = (_mm256_unpacklo_ps(a6, a7), _mm256_unpackhi_ps(a6, a7));
                let (u0, u1) = (_mm256_shuffle_ps::<0x44>(t0, t2), _mm256_shuffle_ps::<0xEE>(t0, t2));
                let (u2, u3) = (_mm256_shuffle_ps::<0x44>(t1, t3), _mm256_shuffle_ps::<0xEE>(t1, t3));
                let (u4, u5) = (_mm256_shuffle_ps::<0x44>(t4, t6), _mm256_shuffle_ps::<0xEE>(t4, t6));
                let (u6, u7) = (_mm256_shuffle_ps::<0x44>(t5, t7), _mm256_shuffle_ps::<0xEE>(t5, t7));
                let st = |j: usize, v: __m256| _mm256_storeu_ps(dp.add((c0 + j) * rows + r0), v);
                st(0, _mm256_permute2f128_ps::<0x20>(u0, u4));
                st(1, _mm256_permute2f128_ps::<0x20>(u1, u5));
                st(2, _mm256_permute2f128_ps::<0x20>(u2, u6));
                st(3, _mm256_permute2f128_ps::<0x20>(u3, u7));
                st(4, _mm256_permute2f128_ps::<0x31>(u0, u4));
                st(5, _mm256_permute2f128_ps::<0x31>(u1, u5));
                st(6, _mm256_permute2f128_ps::<0x31>(u2, u6));
                st(7, _mm256_permute2f128_ps::<0x31>(u3, u7));
            }
        }
    }
    // The last partial column tile of the full row tiles, and the partial last row tile.
    for r0 in (0..rf).step_by(8) {
        for c in cf..cols {
            for r in r0..r0 + 8 {
                dst[c * rows + r].write(src[r * cols + c]);
            }
        }
    }
    for r in rf..rows {
        for c in 0..cols {
            dst[c * rows + r].write(src[r * cols + c]);
        }
    }
}

/// The big side `x [B, C, 2h, 2w]` in the domain: `[B, blocks, 64, 4C]`, channel `(2py + px) · C + c` (a parity's
/// C channels side by side, so each is one run of the channels-innermost image).
pub fn big_hat(x: &[f32], [b, c, hh, ww]: [usize; 4]) -> Vec<f32> {
    let (ty, tx) = blocks(hh / 2, ww / 2);
    let k4 = 4 * c;
    let per_image = ty * tx * PTS * k4;
    let fill = |bi: usize, out: &mut [MaybeUninit<f32>]| {
        let img = &x[bi * c * hh * ww..][..c * hh * ww];
        with_window(PTS * k4 + hh * ww * c, |buf| {
            let (win, pix) = buf.split_at_mut(PTS * k4);
            // pix [iy, ix, c] = x[c, iy, ix]
            transpose_to(img, c, hh * ww, as_uninit(pix));
            for (t, dst) in out.chunks_exact_mut(PTS * k4).enumerate() {
                let (oy, ox) = (BLOCK * (t / tx), BLOCK * (t % tx));
                // win [r, s, (2py + px)·C + c] = x[c, 2(oy + r) − py, 2(ox + s) − px], zero outside the map.
                for r in 0..8 {
                    for s in 0..8 {
                        for (p, run) in win[(r * 8 + s) * k4..][..k4].chunks_exact_mut(c).enumerate() {
                            let (py, px) = (p / 2, p % 2);
                            let (iy, ix) = ((2 * (oy + r)).wrapping_sub(py), (2 * (ox + s)).wrapping_sub(px));
                            if iy < hh && ix < ww {
                                run.copy_from_slice(&pix[(iy * ww + ix) * c..][..c]);
                            } else {
                                run.fill(0.0);
                            }
                        }
                    }
                }
                sandwich::<BigIn>(win, dst, k4);
            }
        })
    };
    // SAFETY: `sandwich` writes each block's 64 · k values, and the blocks fill the image's piece.
    unsafe { pieces_uninit(b * per_image, per_image, fill) }
}

/// The small side `a [B, S, h, w]` in the domain: `[B, blocks, 64, S]`.
pub fn small_hat(a: &[f32], [b, s, h, w]: [usize; 4]) -> Vec<f32> {
    let (ty, tx) = blocks(h, w);
    let per_image = ty * tx * PTS * s;
    let fill = |bi: usize, out: &mut [MaybeUninit<f32>]| {
        let img = &a[bi * s * h * w..][..s * h * w];
        with_window(BLOCK * BLOCK * s + h * w * s, |buf| {
            let (win, pix) = buf.split_at_mut(BLOCK * BLOCK * s);
            // pix [y, x, s] = a[s, y, x]
            transpose_to(img, s, h * w, as_uninit(pix));
            for (t, dst) in out.chunks_exact_mut(PTS * s).enumerate() {
                let (oy, ox) = (BLOCK * (t / tx), BLOCK * (t % tx));
                // win [r, q, s] = a[s, oy + r, ox + q], zero outside the map: one run of pixels per row.
                if oy + BLOCK > h || ox + BLOCK > w {
                    win.fill(0.0);
                }
                let width = BLOCK.min(w - ox) * s;
                for r in 0..BLOCK.min(h - oy) {
                    win[r * BLOCK * s..][..width].copy_from_slice(&pix[((oy + r) * w + ox) * s..][..width]);
                }
                sandwich::<SmallIn>(win, dst, s);
            }
        })
    };
    // SAFETY: `sandwich` writes each block's 64 · k values, and the blocks fill the image's piece.
    unsafe { pieces_uninit(b * per_image, per_image, fill) }
}

/// `[B, blocks, 64, S]` from the domain → the small side `[B, S, h, w]`.
pub fn small_out(hat: &[f32], [b, s, h, w]: [usize; 4]) -> Vec<f32> {
    let (ty, tx) = blocks(h, w);
    let fill = |bi: usize, out: &mut [MaybeUninit<f32>]| {
        let hat = &hat[bi * ty * tx * PTS * s..][..ty * tx * PTS * s];
        with_window(BLOCK * BLOCK * s + h * w * s, |buf| {
            let (win, pix) = buf.split_at_mut(BLOCK * BLOCK * s);
            for (t, src) in hat.chunks_exact(PTS * s).enumerate() {
                let (oy, ox) = (BLOCK * (t / tx), BLOCK * (t % tx));
                sandwich::<SmallOut>(src, as_uninit(win), s);
                // pix [oy + i, ox + j, s] = win [i, j, s]
                let width = BLOCK.min(w - ox) * s;
                for i in 0..BLOCK.min(h - oy) {
                    pix[((oy + i) * w + ox) * s..][..width].copy_from_slice(&win[i * BLOCK * s..][..width]);
                }
            }
            // y[s, y, x] = pix [y, x, s]
            transpose_to(pix, h * w, s, out);
        })
    };
    // SAFETY: the blocks tile the h × w map, so `pix` is all written, and the transpose writes every output.
    unsafe { pieces_uninit(b * s * h * w, s * h * w, fill) }
}

/// `[B, blocks, 64, 4C]` from the domain → the big side `[B, C, 2h, 2w]`: each block's 8×8 grid window added into
/// the grid (neighbouring windows share a row or column), then the grid read back into pixels.
pub fn big_out(hat: &[f32], [b, c, hh, ww]: [usize; 4]) -> Vec<f32> {
    let (ty, tx) = blocks(hh / 2, ww / 2);
    let (gh, gw, k4) = (BLOCK * ty + 1, BLOCK * tx + 1, 4 * c);
    let fill = |bi: usize, out: &mut [MaybeUninit<f32>]| {
        let hat = &hat[bi * ty * tx * PTS * k4..][..ty * tx * PTS * k4];
        with_window(PTS * k4 + gh * gw * k4 + hh * ww * c, |buf| {
            let (win, rest) = buf.split_at_mut(PTS * k4);
            let (grid, pix) = rest.split_at_mut(gh * gw * k4);
            grid.fill(0.0);
            for (t, src) in hat.chunks_exact(PTS * k4).enumerate() {
                let (oy, ox) = (BLOCK * (t / tx), BLOCK * (t % tx));
                sandwich::<BigOut>(src, as_uninit(win), k4);
                // grid [gy, gx, 4C] += win [r, s, 4C]
                for r in 0..8 {
                    let dst = &mut grid[((oy + r) * gw + ox) * k4..][..8 * k4];
                    dst.iter_mut().zip(&win[r * 8 * k4..][..8 * k4]).for_each(|(d, &v)| *d += v);
                }
            }
            // pix [iy, ix, c] = grid [⌈iy/2⌉, ⌈ix/2⌉, (2py + px)·C + c], py = iy mod 2, px = ix mod 2
            for iy in 0..hh {
                let (py, gy) = (iy % 2, iy.div_ceil(2));
                for ix in 0..ww {
                    let (px, gx) = (ix % 2, ix.div_ceil(2));
                    pix[(iy * ww + ix) * c..][..c].copy_from_slice(&grid[(gy * gw + gx) * k4 + (2 * py + px) * c..][..c]);
                }
            }
            // x[c, iy, ix] = pix [iy, ix, c]
            transpose_to(pix, hh * ww, c, out);
        })
    };
    // SAFETY: the transpose at the end writes every pixel of the image.
    unsafe { pieces_uninit(b * c * hh * ww, c * hh * ww, fill) }
}

/// Weights `[S, C, 4, 4]` (S on the small side) in the domain: `[64, S, 4C]`.
pub fn weight_hat(w: &[f32], s: usize, c: usize) -> Vec<f32> {
    let k = s * 4 * c;
    // taps [ty, tx, (s, (2py + px)·C + c)] = w[s, c, 2ty + 1 − py, 2tx + 1 − px]
    let mut taps = vec![0f32; 4 * k];
    for_taps(s, c, |tap, wi| taps[tap] = w[wi]);
    let mut out = vec![0f32; PTS * k];
    sandwich_par::<WeightIn>(&taps, as_uninit(&mut out), k);
    out
}

/// `[64, S, 4C]` from the domain → a weight gradient `[S, C, 4, 4]`.
pub fn weight_out(hat: &[f32], s: usize, c: usize) -> Vec<f32> {
    let k = s * 4 * c;
    let mut taps = vec![0f32; 4 * k];
    sandwich_par::<WeightOut>(hat, as_uninit(&mut taps), k);
    let mut out = vec![0f32; s * c * 16];
    for_taps(s, c, |tap, wi| out[wi] = taps[tap]);
    out
}

/// `f(tap index, weight index)` for every tap of [`weight_hat`]'s layout `[ty, tx, (s, (2py + px)·C + c)]` and its
/// weight `[s, c, 2ty + 1 − py, 2tx + 1 − px]`, as nested loops (an index split by divisions per entry was most of
/// these functions' own time).
fn for_taps(s: usize, c: usize, mut f: impl FnMut(usize, usize)) {
    let k = s * 4 * c;
    for ty in 0..2 {
        for tx in 0..2 {
            for si in 0..s {
                for ci in 0..c {
                    for py in 0..2 {
                        for px in 0..2 {
                            let tap = (ty * 2 + tx) * k + si * 4 * c + (2 * py + px) * c + ci;
                            f(tap, ((si * c + ci) * 4 + 2 * ty + 1 - py) * 4 + 2 * tx + 1 - px);
                        }
                    }
                }
            }
        }
    }
}

/// The 64 per-point gemms, `dst_p = lhs_p · rhs_p`, on candle's kernel threads when it has several (each point
/// on one thread: the same sums in the same order at any thread count). Matrices are given by their offset for
/// point p (`p · step`) and row / column strides.
struct Products {
    m: usize,
    n: usize,
    k: usize,
    dst: (usize, usize, usize), // (step, row stride, column stride)
    lhs: (usize, usize, usize),
    rhs: (usize, usize, usize),
}

impl Products {
    fn run(&self, lhs: &[f32], rhs: &[f32], dst_len: usize) -> Vec<f32> {
        use rayon::prelude::*;
        let Products { m, n, k, dst, lhs: l, rhs: r } = *self;
        let last = |(step, rs, cs): (usize, usize, usize), rows: usize, cols: usize| (PTS - 1) * step + (rows - 1) * rs + (cols - 1) * cs;
        assert!(m * n * k > 0);
        assert!(lhs.len() > last(l, m, k) && rhs.len() > last(r, k, n) && dst_len > last(dst, m, n));
        let mut out: Vec<f32> = Vec::with_capacity(dst_len);
        let base = SendPtr(out.as_mut_ptr());
        let one = |p: usize| {
            let base = &base;
            // SAFETY: the asserts above keep every index inside its buffer; the points' output elements are
            // disjoint (each point's `dst` covers its own positions), so no two threads write one element; with
            // `read_dst` false gemm writes `dst` without reading it.
            unsafe {
                gemm::gemm(
                    m, n, k,
                    base.0.add(p * dst.0), dst.2 as isize, dst.1 as isize, false,
                    lhs.as_ptr().add(p * l.0), l.2 as isize, l.1 as isize,
                    rhs.as_ptr().add(p * r.0), r.2 as isize, r.1 as isize,
                    1.0, 1.0, false, false, false,
                    gemm::Parallelism::None,
                )
            }
        };
        if candle_core::utils::get_num_threads() > 1 {
            (0..PTS).into_par_iter().for_each(one);
        } else {
            (0..PTS).for_each(one);
        }
        // SAFETY: the 64 points' outputs cover all `dst_len` positions (the callers' layouts have no gaps).
        unsafe { out.set_len(dst_len) };
        out
    }
}

/// An output buffer that several threads write disjoint elements of (the per-point gemms here, the sparse
/// products' blocks in `crate::sparse`).
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: every user writes disjoint elements through it (see `Products::run`, `SparseRows::times`).
unsafe impl Sync for SendPtr {}

/// Forward convolution in the domain: `ŷ [N, 64, S] = x̂ [N, 64, 4C] · ŵ [64, S, 4C]ᵀ` (N = images · blocks).
pub fn down_products(xh: &[f32], wh: &[f32], n: usize, s: usize, k4: usize) -> Vec<f32> {
    Products { m: n, n: s, k: k4, dst: (s, PTS * s, 1), lhs: (k4, PTS * k4, 1), rhs: (s * k4, 1, k4) }.run(xh, wh, n * PTS * s)
}

/// Transposed convolution in the domain: `ĝ [N, 64, 4C] = ŝ [N, 64, S] · ŵ [64, S, 4C]`.
pub fn up_products(sh: &[f32], wh: &[f32], n: usize, s: usize, k4: usize) -> Vec<f32> {
    Products { m: n, n: k4, k: s, dst: (k4, PTS * k4, 1), lhs: (s, PTS * s, 1), rhs: (s * k4, k4, 1) }.run(sh, wh, n * PTS * k4)
}

/// Weight gradient in the domain: `[64, S, 4C] = Σ_N ŝ [N, 64, S]ᵀ · x̂ [N, 64, 4C]`.
pub fn weight_products(sh: &[f32], xh: &[f32], n: usize, s: usize, k4: usize) -> Vec<f32> {
    Products { m: s, n: k4, k: n, dst: (s * k4, k4, 1), lhs: (s, 1, PTS * s), rhs: (k4, PTS * k4, 1) }.run(sh, xh, PTS * s * k4)
}

/// Images · blocks: the gemms' row count for a batch of `b` maps of h × w outputs.
pub fn rows(b: usize, h: usize, w: usize) -> usize {
    let (ty, tx) = blocks(h, w);
    b * ty * tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_move_every_value_to_its_place() {
        for (rows, cols) in [(32, 196), (196, 32), (64, 49), (49, 64), (8, 8), (17, 9), (5, 3), (1, 20)] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 + 0.5).collect();
            let want: Vec<f32> = (0..rows * cols).map(|i| src[(i % rows) * cols + i / rows]).collect();
            let mut wide = vec![0f32; rows * cols];
            transpose_to(&src, rows, cols, as_uninit(&mut wide));
            let mut narrow = vec![0f32; rows * cols];
            transpose_tiles(&src, rows, cols, as_uninit(&mut narrow));
            assert_eq!(wide, want, "{rows} × {cols}");
            assert_eq!(narrow, want, "{rows} × {cols}");
        }
    }

    /// The sandwich the CPU's widest build takes (16- or 8-channel chunks) gives the bits of the baseline build
    /// one channel at a time, tails of every chunk width included.
    #[test]
    fn every_chunk_width_gives_the_same_bits() {
        fn check<T: Transform>() {
            let a = T::A;
            for k in [16, 27, 40, 5] {
                let src: Vec<f32> = (0..a.width * a.width * k).map(|i| ((i * 7919) % 1013) as f32 / 97.0 - 5.0).collect();
                let mut fast = vec![0f32; a.n * a.n * k];
                sandwich::<T>(&src, as_uninit(&mut fast), k);
                let mut one = vec![0f32; a.n * a.n * k];
                let out = SendPtr(one.as_mut_ptr());
                let mut tmp = vec![0f32; a.width * a.n];
                // SAFETY: `one` holds n · n · k floats, this thread's alone; `tmp` width · n · 1.
                unsafe { sandwich_body::<T, 1>(&src, &out, k, 0..k, &mut tmp) };
                assert!(fast.iter().zip(&one).all(|(x, y)| x.to_bits() == y.to_bits()), "{k} channels");
            }
        }
        check::<BigIn>();
        check::<BigOut>();
        check::<SmallIn>();
        check::<SmallOut>();
        check::<WeightIn>();
        check::<WeightOut>();
    }
}

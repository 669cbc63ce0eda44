//! Products whose left operand is mostly zeros, for [`crate::dense`] layers fed binarized images.
//!
//! Why: the MLP VAE's first layer (784 → 400) is half of its arithmetic, and its input is a batch of binarized
//! MNIST digits — ≈ 87% zeros, a whole border of pixels that are never on. A gemm multiplies every zero; here
//! the forward `y = b + x · Wᵀ` and the weight gradient `dW = dyᵀ · x` visit only the non-zeros: each output row
//! is a sum of the rows of `Wᵀ` (or of `dy`) that its non-zeros pick, accumulated in registers 64 columns at a
//! time. At MNIST's density that is ≈ 1/8 of the gemm's products for both, plus two transposes of W's size.
//!
//! A layer takes it when at most [`MAX_DENSITY`] of its input is non-zero (binarized MNIST: 13%; Fashion-MNIST's
//! grey levels: ≈ 50%, so they stay on the gemm). The sums run in a fixed order, each output on one thread, so
//! results do not depend on the thread count; they differ from the gemm's by float rounding only — and in that
//! a zero input times a non-finite weight adds nothing here, where a gemm would give NaN. Off with
//! [`set_enabled`] or `VAELAB_DENSE=gemm` (to compare the two paths).

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::fastconv::pieces_uninit;

/// The largest fraction of non-zero inputs that takes this path (measured against the gemm: see the README).
pub const MAX_DENSITY: f64 = 0.25;

/// 0: not decided yet (the environment decides), 1: on, 2: off.
static MODE: AtomicU8 = AtomicU8::new(0);

/// Turns the sparse path on or off for the whole process (tests and benchmarks compare it with the gemm).
pub fn set_enabled(on: bool) {
    MODE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

fn enabled() -> bool {
    match MODE.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var("VAELAB_DENSE").map(|v| v != "gemm").unwrap_or(true);
            let _ = MODE.compare_exchange(0, if on { 1 } else { 2 }, Ordering::Relaxed, Ordering::Relaxed);
            MODE.load(Ordering::Relaxed) == 1
        }
        m => m == 1,
    }
}

/// A `rows × cols` matrix by its rows' non-zero entries (CSR).
pub struct SparseRows {
    rows: usize,
    cols: usize,
    starts: Vec<usize>, // rows + 1
    index: Vec<u32>,
    value: Vec<f32>,
}

impl SparseRows {
    /// `x [rows, cols]` (row-major) if the sparse path is on and at most [`MAX_DENSITY`] of it is non-zero.
    pub fn of(x: &[f32], rows: usize, cols: usize) -> Option<SparseRows> {
        assert_eq!(x.len(), rows * cols);
        // Small products are not worth a second code path.
        if !enabled() || rows * cols < 4096 || cols > u32::MAX as usize || rows > u32::MAX as usize {
            return None;
        }
        let nnz = x.iter().filter(|&&v| v != 0.0).count();
        if nnz as f64 > MAX_DENSITY * x.len() as f64 {
            return None;
        }
        let (mut index, mut value) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz));
        let mut starts = Vec::with_capacity(rows + 1);
        starts.push(0);
        for row in x.chunks_exact(cols) {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    index.push(j as u32);
                    value.push(v);
                }
            }
            starts.push(index.len());
        }
        Some(SparseRows { rows, cols, starts, index, value })
    }

    /// The transpose, by its rows (the original's columns), each row's entries in ascending order.
    pub fn transposed(&self) -> SparseRows {
        let mut starts = vec![0usize; self.cols + 1];
        self.index.iter().for_each(|&j| starts[j as usize + 1] += 1);
        (0..self.cols).for_each(|j| starts[j + 1] += starts[j]);
        let mut next = starts.clone();
        let (mut index, mut value) = (vec![0u32; self.index.len()], vec![0f32; self.index.len()]);
        for r in 0..self.rows {
            for e in self.starts[r]..self.starts[r + 1] {
                let j = self.index[e] as usize;
                index[next[j]] = r as u32;
                value[next[j]] = self.value[e];
                next[j] += 1;
            }
        }
        SparseRows { rows: self.cols, cols: self.rows, starts, index, value }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `init + self · m` (`m [cols, o]` row-major; `init [o]`, added to every row, or zeros): `[rows, o]`.
    pub fn times(&self, m: &[f32], o: usize, init: Option<&[f32]>) -> Vec<f32> {
        assert_eq!(m.len(), self.cols * o);
        assert!(init.is_none_or(|b| b.len() == o));
        assert!(o > 0);
        let fill = |piece: usize, out: &mut [MaybeUninit<f32>]| {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn wide(s: &SparseRows, m: &[f32], o: usize, init: Option<&[f32]>, r0: usize, out: &mut [MaybeUninit<f32>]) {
                    rows_body(s, m, o, init, r0, out)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { wide(self, m, o, init, piece * ROWS_PER_PIECE, out) };
                }
            }
            rows_body(self, m, o, init, piece * ROWS_PER_PIECE, out)
        };
        // SAFETY: `rows_body` writes all o columns of each of the piece's rows.
        unsafe { pieces_uninit(self.rows * o, ROWS_PER_PIECE * o, fill) }
    }
}

/// Output rows per task on candle's kernel threads.
const ROWS_PER_PIECE: usize = 16;
/// Output columns accumulated in registers at once (8 AVX2 registers).
const LANES: usize = 64;

/// Rows `r0 ..` of [`SparseRows::times`], as many as `out` holds. Compiled for AVX2 where the CPU has it: the
/// same operations in the same order either way (no FMA contraction), so the same bits on any machine.
#[inline(always)]
fn rows_body(s: &SparseRows, m: &[f32], o: usize, init: Option<&[f32]>, r0: usize, out: &mut [MaybeUninit<f32>]) {
    for (r, out) in (r0..).zip(out.chunks_exact_mut(o)) {
        let (index, value) = (&s.index[s.starts[r]..s.starts[r + 1]], &s.value[s.starts[r]..s.starts[r + 1]]);
        let mut c0 = 0;
        while c0 + LANES <= o {
            block::<LANES>(index, value, m, o, c0, init, out);
            c0 += LANES;
        }
        while c0 + 8 <= o {
            block::<8>(index, value, m, o, c0, init, out);
            c0 += 8;
        }
        for c in c0..o {
            block::<1>(index, value, m, o, c, init, out);
        }
    }
}

/// Columns `c0 .. c0 + L` of one output row: `init + Σ value · m[index]`, in the entries' order.
#[inline(always)]
fn block<const L: usize>(index: &[u32], value: &[f32], m: &[f32], o: usize, c0: usize, init: Option<&[f32]>, out: &mut [MaybeUninit<f32>]) {
    let mut acc: [f32; L] = match init {
        Some(b) => b[c0..c0 + L].try_into().unwrap(),
        None => [0.0; L],
    };
    for (&k, &v) in index.iter().zip(value) {
        let row: &[f32; L] = m[k as usize * o + c0..][..L].try_into().unwrap();
        acc.iter_mut().zip(row).for_each(|(a, &w)| *a += v * w);
    }
    out[c0..c0 + L].iter_mut().zip(&acc).for_each(|(d, &v)| {
        d.write(v);
    });
}

/// `m [rows, cols]` → `[cols, rows]`, in 16 × 16 tiles.
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(m.len(), rows * cols);
    const TILE: usize = 16;
    let fill = |piece: usize, out: &mut [MaybeUninit<f32>]| {
        // Output rows j0 .. j0 + out.len() / rows, i.e. input columns.
        let j0 = piece * TILE;
        let width = out.len() / rows;
        for i0 in (0..rows).step_by(TILE) {
            for i in i0..(i0 + TILE).min(rows) {
                let src = &m[i * cols + j0..][..width];
                for (dj, &v) in src.iter().enumerate() {
                    out[dj * rows + i].write(v);
                }
            }
        }
    };
    if rows * cols == 0 {
        return Vec::new();
    }
    // SAFETY: each piece covers output rows j0 .. j0 + width whole, and the loops write each of their elements.
    unsafe { pieces_uninit(rows * cols, TILE * rows, fill) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense_times(x: &[f32], rows: usize, cols: usize, m: &[f32], o: usize, init: Option<&[f32]>) -> Vec<f32> {
        let mut out = vec![0f32; rows * o];
        for r in 0..rows {
            for c in 0..o {
                let mut acc = init.map_or(0.0, |b| b[c]) as f64;
                for k in 0..cols {
                    acc += x[r * cols + k] as f64 * m[k * o + c] as f64;
                }
                out[r * o + c] = acc as f32;
            }
        }
        out
    }

    /// A matrix with about `density` non-zeros, small integers and halves (exact sums in f32).
    fn sparse_input(rows: usize, cols: usize, density: f64, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..rows * cols).map(|_| if rng.random_bool(density) { rng.random_range(-4i32..=4) as f32 * 0.5 } else { 0.0 }).collect()
    }

    #[test]
    fn products_and_transposes_equal_the_dense_ones() {
        set_enabled(true);
        // Column counts that leave every block width's tail (64, 8, 1) in use; rows not a multiple of the pieces.
        for (rows, cols, o) in [(37, 130, 77), (128, 784, 400), (5, 1000, 3)] {
            let x = sparse_input(rows, cols, 0.15, rows as u64);
            let m = sparse_input(cols, o, 1.0, 7);
            let b = sparse_input(1, o, 1.0, 9);
            let s = SparseRows::of(&x, rows, cols).expect("15% non-zero takes the sparse path");
            assert_eq!((s.rows(), s.cols()), (rows, cols));
            assert_eq!(s.times(&m, o, Some(&b)), dense_times(&x, rows, cols, &m, o, Some(&b)), "{rows}×{cols}·{o}");
            // The transpose, by rows: xᵀ · m2 for m2 [rows, o].
            let m2 = sparse_input(rows, o, 1.0, 11);
            let xt = transpose(&x, rows, cols);
            assert_eq!(s.transposed().times(&m2, o, None), dense_times(&xt, cols, rows, &m2, o, None));
            for (i, row) in x.chunks_exact(cols).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    assert_eq!(xt[j * rows + i], v);
                }
            }
        }
    }

    #[test]
    fn dense_inputs_and_small_ones_stay_on_the_gemm() {
        set_enabled(true);
        assert!(SparseRows::of(&sparse_input(64, 200, 0.5, 1), 64, 200).is_none(), "half non-zero");
        assert!(SparseRows::of(&sparse_input(4, 100, 0.1, 1), 4, 100).is_none(), "too small");
        assert!(SparseRows::of(&vec![0.0; 64 * 200], 64, 200).is_some(), "all zeros");
    }
}

//! Products whose left operand is mostly zeros, for [`crate::dense`] layers fed binarized images.
//!
//! Why: the MLP VAE's first layer (784 → 400) is half of its arithmetic, and its input is a batch of binarized
//! MNIST digits — ≈ 87% zeros, a whole border of pixels that are never on. A gemm multiplies every zero; here
//! the forward `y = b + x · Wᵀ` and the weight gradient `dW = dyᵀ · x` visit only the non-zeros: each output row
//! is a sum of the rows of `Wᵀ` (or of `dy`) that its non-zeros pick, accumulated in registers 64 columns at a
//! time from one L2-sized panel of them ([`Panels`]). At MNIST's density that is ≈ 1/8 of the gemm's products
//! for both, plus a transpose of W and a copy of dy into panels.
//!
//! Such a product runs at about a third of the gemm's rate (it is bound by loading a picked row per non-zero;
//! in a profile of the MLP VAE step at batch 1024: 84 M products in 2,000 samples against the gemm's 642 M in
//! 5,300 for the same layer), so it pays below ≈ 30% non-zeros; a layer takes it when at most [`MAX_DENSITY`]
//! of its input is non-zero (binarized MNIST: 13%; Fashion-MNIST: 50% non-zero grey levels, 29% when
//! binarized, so it stays on the gemm). The sums run in a fixed order, each output on one thread, so
//! results do not depend on the thread count; they differ from the gemm's by float rounding only — and in that
//! a zero input times a non-finite weight adds nothing here, where a gemm would give NaN. Off with
//! [`set_enabled`] or `VAELAB_DENSE=gemm` (to compare the two paths).

use std::mem::MaybeUninit;

use crate::kernels::Switch;
use crate::winograd::SendPtr;

/// The largest fraction of non-zero inputs that takes this path (see above).
pub const MAX_DENSITY: f64 = 0.25;
/// The fewest outputs a layer needs to take this path: one full panel. Narrower layers stay on the gemm — the
/// conv VAE's 3136 → 32 code layer, fed ReLU features ≈ 20% non-zero, spent more on the sparse path (a half-empty
/// panel, transposes with too few panels to share between threads) than its small gemm costs.
pub const MIN_OUTPUTS: usize = LANES;

static SWITCH: Switch = Switch::new("VAELAB_DENSE", "gemm");

/// Turns the sparse path on or off for the whole process (tests and benchmarks compare it with the gemm).
pub fn set_enabled(on: bool) {
    SWITCH.set(on);
}

fn enabled() -> bool {
    SWITCH.on()
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
        // Blocks of rows on candle's kernel threads (it was a single-threaded pass the other thread waited on).
        const BLOCK: usize = 64;
        let scan = |block: &[f32]| {
            let n = block.len();
            // Room for the compaction's full-width writes past a row's last non-zero.
            let (mut index, mut value): (Vec<u32>, Vec<f32>) = (Vec::with_capacity(n + 8), Vec::with_capacity(n + 8));
            let mut ends = Vec::with_capacity(BLOCK);
            let mut at = 0;
            for row in block.chunks_exact(cols) {
                // SAFETY: `index` and `value` have room for `at + row.len() + 8` entries (at ≤ the entries before).
                at += unsafe { compact(row, index.as_mut_ptr().add(at), value.as_mut_ptr().add(at)) };
                ends.push(at);
            }
            // SAFETY: the first `at` entries were written.
            unsafe {
                index.set_len(at);
                value.set_len(at);
            }
            (index, value, ends)
        };
        let blocks: Vec<(Vec<u32>, Vec<f32>, Vec<usize>)> = if candle_core::utils::get_num_threads() > 1 && rows > BLOCK {
            use rayon::prelude::*;
            x.par_chunks(BLOCK * cols).map(scan).collect()
        } else {
            x.chunks(BLOCK * cols).map(scan).collect()
        };
        // Compacted first, counted after: one pass over x. A dense input's compaction is the price of finding out.
        let nnz: usize = blocks.iter().map(|b| b.0.len()).sum();
        if nnz as f64 > MAX_DENSITY * x.len() as f64 {
            return None;
        }
        let (mut index, mut value) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz));
        let mut starts = Vec::with_capacity(rows + 1);
        starts.push(0);
        for (i, v, ends) in blocks {
            let at = index.len();
            starts.extend(ends.iter().map(|e| at + e));
            index.extend_from_slice(&i);
            value.extend_from_slice(&v);
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

    /// `init + self · m` (`m [cols, o]` in panels; `init [o]`, added to every row, or zeros): `[rows, o]`, or
    /// its transpose `[o, rows]` (`transposed_out`).
    pub fn times(&self, m: &Panels, init: Option<&[f32]>, transposed_out: bool) -> Vec<f32> {
        let o = m.o;
        assert_eq!(m.k, self.cols);
        assert!(init.is_none_or(|b| b.len() == o));
        let len = self.rows * o;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let dst = SendPtr(out.as_mut_ptr());
        // Tasks panel by panel, so each thread works through one panel at a time (it stays in L2) for all rows.
        let pieces = self.rows.div_ceil(ROWS_PER_PIECE);
        let task = |t: usize| {
            let dst = &dst;
            let (b, p) = (t / pieces, t % pieces);
            let rows = p * ROWS_PER_PIECE..((p + 1) * ROWS_PER_PIECE).min(self.rows);
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn wide(s: &SparseRows, m: &Panels, b: usize, init: Option<&[f32]>, rows: std::ops::Range<usize>, t: bool, dst: &SendPtr) {
                    // SAFETY: as `piece_body`'s (the caller's).
                    unsafe { piece_body(s, m, b, init, rows, t, dst) }
                }
                #[target_feature(enable = "avx512f")]
                unsafe fn wider(s: &SparseRows, m: &Panels, b: usize, init: Option<&[f32]>, rows: std::ops::Range<usize>, t: bool, dst: &SendPtr) {
                    // SAFETY: as `piece_body`'s (the caller's).
                    unsafe { piece_body(s, m, b, init, rows, t, dst) }
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above); `piece_body`'s contract as below.
                    return unsafe { wider(self, m, b, init, rows, transposed_out, dst) };
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above); `piece_body`'s contract as below.
                    return unsafe { wide(self, m, b, init, rows, transposed_out, dst) };
                }
            }
            // SAFETY: `dst` holds `len` floats and the tasks' (panel, rows) blocks are disjoint.
            unsafe { piece_body(self, m, b, init, rows, transposed_out, dst) }
        };
        let tasks = Panels::blocks(o) * pieces;
        if candle_core::utils::get_num_threads() > 1 && tasks > 1 {
            use rayon::prelude::*;
            (0..tasks).into_par_iter().for_each(task);
        } else {
            (0..tasks).for_each(task);
        }
        // SAFETY: the pieces wrote every column of every row (see `piece_body`).
        unsafe { out.set_len(len) };
        out
    }
}

/// Writes `row`'s non-zero entries (their column and value, in order) to `index` / `value`, returns how many.
/// Without branches (the zeros fall at random, so a branch per entry would mispredict): under AVX2 eight entries
/// at a time, their non-zeros packed to the front by a permutation looked up by the non-zero mask, all eight
/// lanes written and the write position moved on by the count; elsewhere every entry written at the next place,
/// which only a non-zero moves on.
///
/// # Safety
/// `index` and `value` must have room for `row.len() + 8` entries.
unsafe fn compact(row: &[f32], index: *mut u32, value: *mut f32) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn wide(row: &[f32], index: *mut u32, value: *mut f32) -> usize {
            use std::arch::x86_64::*;
            let mut at = 0;
            let eights = row.chunks_exact(8);
            let tail = eights.remainder();
            // SAFETY (the block): loads from whole chunks of `row`; stores of 8 lanes at `at` ≤ the entries seen so
            // far, within the caller's `row.len() + 8`.
            unsafe {
                let mut columns = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                for eight in eights {
                    let v = _mm256_loadu_ps(eight.as_ptr());
                    // Not-equal-or-unordered: a NaN counts as non-zero, as `v != 0.0` does.
                    let mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, _mm256_setzero_ps())) as usize;
                    let pack = _mm256_loadu_si256(PACK[mask].as_ptr().cast());
                    _mm256_storeu_ps(value.add(at), _mm256_permutevar8x32_ps(v, pack));
                    _mm256_storeu_si256(index.add(at).cast(), _mm256_permutevar8x32_epi32(columns, pack));
                    at += mask.count_ones() as usize;
                    columns = _mm256_add_epi32(columns, _mm256_set1_epi32(8));
                }
                let c0 = row.len() - tail.len();
                for (l, &v) in tail.iter().enumerate() {
                    *index.add(at) = (c0 + l) as u32;
                    *value.add(at) = v;
                    at += (v != 0.0) as usize;
                }
            }
            at
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above); the caller's room as for `wide`.
            return unsafe { wide(row, index, value) };
        }
    }
    // SAFETY: the caller's room.
    unsafe { compact_narrow(row, index, value) }
}

/// [`compact`] without AVX2.
///
/// # Safety
/// `index` and `value` must have room for `row.len()` entries.
unsafe fn compact_narrow(row: &[f32], index: *mut u32, value: *mut f32) -> usize {
    let mut at = 0;
    for (j, &v) in row.iter().enumerate() {
        // SAFETY: at ≤ j < row.len().
        unsafe {
            *index.add(at) = j as u32;
            *value.add(at) = v;
        }
        at += (v != 0.0) as usize;
    }
    at
}

/// For each 8-bit mask, the lanes of its set bits in order, then the rest: the permutation that packs a
/// vector's selected lanes to the front (the other lanes take lane 0: what they write is overwritten or past the
/// end).
#[cfg(target_arch = "x86_64")]
static PACK: [[u32; 8]; 256] = {
    let mut table = [[0u32; 8]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut at, mut lane) = (0, 0);
        while lane < 8 {
            if mask & (1 << lane) != 0 {
                table[mask][at] = lane as u32;
                at += 1;
            }
            lane += 1;
        }
        mask += 1;
    }
    table
};

/// A `[k, o]` matrix in panels of [`LANES`] columns: panel b holds columns b·64 .. b·64 + 64 of every row, row
/// after row (zeros past o). The rows a product picks are then 256-byte runs of one panel, which fits in L2
/// (784 × 64 floats: 200 KB) where the whole matrix would not.
pub struct Panels {
    k: usize,
    o: usize,
    data: Vec<f32>,
}

impl Panels {
    fn blocks(o: usize) -> usize {
        o.div_ceil(LANES)
    }

    fn panel(&self, b: usize) -> &[f32] {
        &self.data[b * self.k * LANES..][..self.k * LANES]
    }

    /// `m [k, o]` (row-major).
    pub fn of_rows(m: &[f32], k: usize, o: usize) -> Panels {
        assert_eq!(m.len(), k * o);
        let mut data = vec![0f32; Self::blocks(o) * k * LANES];
        for (b, panel) in data.chunks_exact_mut(k * LANES).enumerate() {
            let (c0, width) = (b * LANES, LANES.min(o - b * LANES));
            for (r, dst) in panel.chunks_exact_mut(LANES).enumerate() {
                dst[..width].copy_from_slice(&m[r * o + c0..][..width]);
            }
        }
        Panels { k, o, data }
    }

    /// `wᵀ` for `w [o, k]` (row-major): the transpose, written panel by panel in tiles of 16 rows of w's.
    pub fn of_transpose(w: &[f32], o: usize, k: usize) -> Panels {
        assert_eq!(w.len(), o * k);
        const TILE: usize = 16;
        let mut data = vec![0f32; Self::blocks(o) * k * LANES];
        let fill = |(b, panel): (usize, &mut [f32])| {
            let (c0, width) = (b * LANES, LANES.min(o - b * LANES));
            for j0 in (0..k).step_by(TILE) {
                let tile = TILE.min(k - j0);
                for l in 0..width {
                    let src = &w[(c0 + l) * k + j0..][..tile];
                    for (dj, &v) in src.iter().enumerate() {
                        panel[(j0 + dj) * LANES + l] = v;
                    }
                }
            }
        };
        if candle_core::utils::get_num_threads() > 1 {
            use rayon::prelude::*;
            data.par_chunks_exact_mut(k * LANES).enumerate().for_each(fill);
        } else {
            data.chunks_exact_mut(k * LANES).enumerate().for_each(fill);
        }
        Panels { k, o, data }
    }
}

/// Rows of the sparse operand per task on candle's kernel threads.
const ROWS_PER_PIECE: usize = 32;
/// Output columns accumulated in registers at once (8 AVX2 registers).
const LANES: usize = 64;

/// Output rows `rows` of [`SparseRows::times`] in panel `b`'s 64 columns, each row's block summed in registers
/// in the entries' order and written once. Compiled for AVX-512 (four registers a row) or AVX2 (eight)
/// where the CPU has it: the same operations in the same order either way (no FMA contraction), so the same
/// bits on any machine.
///
/// # Safety
/// `dst` must hold `s.rows · m.o` floats, and no other thread may write this block of rows and columns at the
/// same time.
#[inline(always)]
unsafe fn piece_body(s: &SparseRows, m: &Panels, b: usize, init: Option<&[f32]>, rows: std::ops::Range<usize>, transposed_out: bool, dst: &SendPtr) {
    let o = m.o;
    let mut tile = [[0f32; LANES]; ROWS_PER_PIECE];
    {
        let (panel, c0, width) = (m.panel(b), b * LANES, LANES.min(o - b * LANES));
        let mut start = [0f32; LANES];
        if let Some(init) = init {
            start[..width].copy_from_slice(&init[c0..c0 + width]);
        }
        for (out, r) in tile.iter_mut().zip(rows.clone()) {
            // A local accumulator, so that it stays in registers.
            let mut acc = start;
            let e = s.starts[r]..s.starts[r + 1];
            for (&k, &v) in s.index[e.clone()].iter().zip(&s.value[e]) {
                let row: &[f32; LANES] = panel[k as usize * LANES..][..LANES].try_into().unwrap();
                acc.iter_mut().zip(row).for_each(|(a, &w)| *a += v * w);
            }
            *out = acc;
        }
        let n = rows.len();
        // SAFETY (both writes): in bounds of `dst` (rows < s.rows, columns < o), and this piece's alone.
        if transposed_out {
            for l in 0..width {
                let line = unsafe { std::slice::from_raw_parts_mut(dst.0.add((c0 + l) * s.rows + rows.start).cast::<MaybeUninit<f32>>(), n) };
                line.iter_mut().zip(&tile).for_each(|(d, acc)| {
                    d.write(acc[l]);
                });
            }
        } else {
            for (acc, r) in tile.iter().zip(rows.clone()) {
                let line = unsafe { std::slice::from_raw_parts_mut(dst.0.add(r * o + c0).cast::<MaybeUninit<f32>>(), width) };
                line.iter_mut().zip(&acc[..width]).for_each(|(d, &v)| {
                    d.write(v);
                });
            }
        }
    }
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

    fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols).map(|i| m[(i % rows) * cols + i / rows]).collect()
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
            let want = dense_times(&x, rows, cols, &m, o, Some(&b));
            assert_eq!(s.times(&Panels::of_rows(&m, cols, o), Some(&b), false), want, "{rows}×{cols}·{o}");
            // m given as the transpose of its transpose; the output transposed.
            let mt = transpose(&m, cols, o);
            assert_eq!(s.times(&Panels::of_transpose(&mt, o, cols), Some(&b), false), want);
            assert_eq!(s.times(&Panels::of_rows(&m, cols, o), Some(&b), true), transpose(&want, rows, o));
            // xᵀ by rows: xᵀ · m2 for m2 [rows, o].
            let m2 = sparse_input(rows, o, 1.0, 11);
            let xt = transpose(&x, rows, cols);
            assert_eq!(s.transposed().times(&Panels::of_rows(&m2, rows, o), None, false), dense_times(&xt, cols, rows, &m2, o, None));
        }
    }

    #[test]
    fn the_transpose_is_the_transposed_matrix_by_rows() {
        set_enabled(true);
        for (rows, cols) in [(1024, 784), (40, 300)] {
            let x = sparse_input(rows, cols, 0.13, 3);
            let t = SparseRows::of(&x, rows, cols).unwrap().transposed();
            let want = SparseRows::of(&transpose(&x, rows, cols), cols, rows).unwrap();
            assert_eq!((t.rows, t.cols), (want.rows, want.cols));
            assert_eq!(t.starts, want.starts, "{rows} × {cols}");
            assert_eq!(t.index, want.index, "{rows} × {cols}");
            assert_eq!(t.value, want.value, "{rows} × {cols}");
        }
    }

    #[test]
    fn both_compactions_find_the_non_zeros_in_order() {
        for (len, density) in [(784usize, 0.13), (13, 0.5), (64, 1.0), (100, 0.0)] {
            let mut row = sparse_input(1, len, density, len as u64);
            if len == 13 {
                row[3] = f32::NAN; // counts as non-zero, as `v != 0.0` has it
                row[5] = -0.0;
            }
            let want: Vec<(u32, u32)> = row.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(j, v)| (j as u32, v.to_bits())).collect();
            let (mut index, mut value) = (vec![0u32; len + 8], vec![0f32; len + 8]);
            // SAFETY: room for len + 8 entries.
            let (wide, narrow) = unsafe {
                let n = compact(&row, index.as_mut_ptr(), value.as_mut_ptr());
                let wide: Vec<(u32, u32)> = index[..n].iter().zip(&value[..n]).map(|(&j, v)| (j, v.to_bits())).collect();
                let n = compact_narrow(&row, index.as_mut_ptr(), value.as_mut_ptr());
                (wide, index[..n].iter().zip(&value[..n]).map(|(&j, v)| (j, v.to_bits())).collect::<Vec<_>>())
            };
            assert_eq!(wide, want, "{len} entries");
            assert_eq!(narrow, want, "{len} entries");
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


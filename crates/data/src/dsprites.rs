//! Procedural dSprites-style shapes, rendered deterministically from factor indices.
//!
//! The factor layout follows the real dSprites archive (Matthey et al. 2017): shape 3 (square, ellipse,
//! heart), scale 6 (0.5 … 1.0), orientation 40 (0 … 2π), posX 32, posY 32 (0 … 1). Images are binary,
//! rendered by testing each pixel centre against the rotated, scaled shape, so the same indices always give
//! the same image at any resolution.

pub const FACTOR_NAMES: [&str; 5] = ["shape", "scale", "orientation", "pos_x", "pos_y"];
pub const FACTOR_SIZES: [usize; 5] = [3, 6, 40, 32, 32];
pub const NUM_COMBINATIONS: usize = 3 * 6 * 40 * 32 * 32;

/// Half-width of a shape at scale 1, as a fraction of the image side.
const HALF_EXTENT: f32 = 0.16;
/// Centre positions run from MARGIN to 1 − MARGIN of the image side, so every shape stays inside.
const MARGIN: f32 = 0.2;

/// Physical values of the factors for the given indices: (shape, scale, angle in radians, x, y in [0, 1]).
pub fn factor_values(idx: [u32; 5]) -> (u32, f32, f32, f32, f32) {
    let scale = 0.5 + 0.5 * idx[1] as f32 / 5.0;
    let angle = std::f32::consts::TAU * idx[2] as f32 / 40.0;
    let x = idx[3] as f32 / 31.0;
    let y = idx[4] as f32 / 31.0;
    (idx[0], scale, angle, x, y)
}

/// Flat index of a factor combination (row-major over FACTOR_SIZES), and back.
pub fn combination_index(idx: [u32; 5]) -> usize {
    let mut flat = 0usize;
    for (i, &s) in FACTOR_SIZES.iter().enumerate() {
        flat = flat * s + idx[i] as usize;
    }
    flat
}

pub fn combination_factors(mut flat: usize) -> [u32; 5] {
    let mut out = [0u32; 5];
    for i in (0..5).rev() {
        out[i] = (flat % FACTOR_SIZES[i]) as u32;
        flat /= FACTOR_SIZES[i];
    }
    out
}

/// Whether the point (u, v), in the shape's own frame with unit half-extent, lies inside the shape.
fn inside(shape: u32, u: f32, v: f32) -> bool {
    match shape {
        0 => u.abs() <= 1.0 && v.abs() <= 1.0,
        1 => u * u + (v / 0.5) * (v / 0.5) <= 1.0,
        _ => {
            // Heart curve (x² + y² − 1)³ − x²y³ ≤ 0; it spans x ∈ ±1.14, y ∈ [−1, 1.25]: rescale to ±1 and
            // flip v so the point is at the bottom in image coordinates.
            let x = u * 1.14;
            let y = -v * 1.12 + 0.12;
            let a = x * x + y * y - 1.0;
            a * a * a - x * x * y * y * y <= 0.0
        }
    }
}

/// Render one image (`size × size`, values 0 or 1) into `out`.
pub fn render_into(idx: [u32; 5], size: usize, out: &mut [f32]) {
    let (shape, scale, angle, px, py) = factor_values(idx);
    let s = size as f32;
    let cx = (MARGIN + (1.0 - 2.0 * MARGIN) * px) * s;
    let cy = (MARGIN + (1.0 - 2.0 * MARGIN) * py) * s;
    let half = HALF_EXTENT * scale * s;
    let (sin, cos) = angle.sin_cos();
    for row in 0..size {
        for col in 0..size {
            let dx = col as f32 + 0.5 - cx;
            let dy = row as f32 + 0.5 - cy;
            // Rotate the pixel into the shape's frame (inverse rotation), then normalise by the half-extent.
            let u = (cos * dx + sin * dy) / half;
            let v = (-sin * dx + cos * dy) / half;
            out[row * size + col] = if inside(shape, u, v) { 1.0 } else { 0.0 };
        }
    }
}

pub fn render(idx: [u32; 5], size: usize) -> Vec<f32> {
    let mut out = vec![0.0; size * size];
    render_into(idx, size, &mut out);
    out
}

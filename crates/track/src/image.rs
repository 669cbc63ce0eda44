//! Image grids for logs and the CLI: samples in `[0, 1]` tiled into one 8-bit image.

/// An 8-bit image, row-major, `channels` interleaved (1 = grey, 3 = RGB).
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Image {
    /// Tile `n` images of shape `[c, h, w]` (planar, values in [0, 1]) into rows of `cols`, with a
    /// 2-pixel mid-grey border between tiles.
    pub fn grid(images: &[f32], n: usize, c: usize, h: usize, w: usize, cols: usize) -> Image {
        const PAD: usize = 2;
        let cols = cols.clamp(1, n.max(1));
        let rows = n.div_ceil(cols).max(1);
        let (gw, gh) = (cols * (w + PAD) + PAD, rows * (h + PAD) + PAD);
        let mut data = vec![128u8; gw * gh * c];
        for k in 0..n {
            let (r0, c0) = (PAD + (k / cols) * (h + PAD), PAD + (k % cols) * (w + PAD));
            let img = &images[k * c * h * w..(k + 1) * c * h * w];
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let v = img[ch * h * w + y * w + x];
                        let v = if v.is_finite() { (v.clamp(0.0, 1.0) * 255.0).round() as u8 } else { 255 };
                        data[((r0 + y) * gw + c0 + x) * c + ch] = v;
                    }
                }
            }
        }
        Image { width: gw, height: gh, channels: c, data }
    }

    pub fn to_png(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(match self.channels {
                1 => png::ColorType::Grayscale,
                4 => png::ColorType::Rgba,
                _ => png::ColorType::Rgb,
            });
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().map_err(std::io::Error::other)?;
            w.write_image_data(&self.data).map_err(std::io::Error::other)?;
        }
        Ok(out)
    }

    pub fn save_png(&self, path: &std::path::Path) -> std::io::Result<()> {
        crate::fsutil::write_atomic(path, &self.to_png()?)
    }
}

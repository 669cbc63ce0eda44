//! 2D toy mixtures with known modes (the VEEGAN paper's ring and grid).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Toy {
    /// 8 Gaussians on a circle of radius 2, std 0.02.
    Ring8,
    /// 25 Gaussians on the grid {−4, −2, 0, 2, 4}², std 0.05.
    Grid25,
    /// Swiss roll (2D): t ~ U(1.5π, 4.5π), (t·cos t, t·sin t)/5 plus noise 0.05. No discrete modes.
    SwissRoll,
    /// Two interleaving half circles, noise 0.05. No discrete modes.
    TwoMoons,
}

impl Toy {
    pub fn modes(self) -> Vec<[f32; 2]> {
        match self {
            Toy::Ring8 => (0..8)
                .map(|k| {
                    let a = std::f32::consts::TAU * k as f32 / 8.0;
                    [2.0 * a.cos(), 2.0 * a.sin()]
                })
                .collect(),
            Toy::Grid25 => (0..25).map(|k| [-4.0 + 2.0 * (k / 5) as f32, -4.0 + 2.0 * (k % 5) as f32]).collect(),
            Toy::SwissRoll | Toy::TwoMoons => vec![],
        }
    }

    pub fn std(self) -> f32 {
        match self {
            Toy::Ring8 => 0.02,
            Toy::Grid25 | Toy::SwissRoll | Toy::TwoMoons => 0.05,
        }
    }

    /// Draw `n` points (x, y interleaved) from the mixture, each mode equally likely.
    pub fn sample(self, n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let modes = self.modes();
        let std = self.std();
        let mut out = Vec::with_capacity(2 * n);
        let noise = |rng: &mut ChaCha8Rng| std * crate::batch::standard_normal(rng);
        match self {
            Toy::SwissRoll => {
                for _ in 0..n {
                    let t = std::f32::consts::PI * rng.random_range(1.5f32..4.5);
                    out.push(t * t.cos() / 5.0 + noise(rng));
                    out.push(t * t.sin() / 5.0 + noise(rng));
                }
                return out;
            }
            Toy::TwoMoons => {
                for _ in 0..n {
                    let a = std::f32::consts::PI * rng.random::<f32>();
                    let (x, y) = if rng.random::<bool>() { (a.cos(), a.sin()) } else { (1.0 - a.cos(), 0.5 - a.sin()) };
                    out.push(x + noise(rng));
                    out.push(y + noise(rng));
                }
                return out;
            }
            _ => {}
        }
        for _ in 0..n {
            let m = modes[rng.random_range(0..modes.len())];
            out.push(m[0] + std * crate::batch::standard_normal(rng));
            out.push(m[1] + std * crate::batch::standard_normal(rng));
        }
        out
    }
}

//! Which implementation a layer takes: the project's CPU kernels, or candle's own ops.
//!
//! The dense and conv layers, activations and the BCE loss are custom ops with only a CPU implementation (see
//! each module for why candle's CPU path was slow). On any other device (CUDA, with the `cuda` cargo feature)
//! they take candle's stock differentiable ops instead — conv2d, conv_transpose2d, Linear, leaky_relu, the BCE
//! as a chain — which candle runs there with its own kernels. The same stock path can be forced on the CPU, so
//! the tests check it against the CPU kernels on this machine, where no GPU is available.

use candle_core::Tensor;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static STOCK_ON_CPU: AtomicBool = AtomicBool::new(false);

/// Whether an op on `t` runs the project's CPU kernel (`true`) or candle's stock ops (`false`).
pub fn custom(t: &Tensor) -> bool {
    t.device().is_cpu() && !STOCK_ON_CPU.load(Ordering::Relaxed)
}

/// Run candle's stock ops on the CPU too (process-wide): the path other devices take, for tests and
/// comparisons. Off by default.
pub fn set_stock_ops_on_cpu(on: bool) {
    STOCK_ON_CPU.store(on, Ordering::Relaxed);
}

/// A process-wide on/off switch for one of the CPU kernels' alternative paths (Winograd convolutions, sparse
/// products), on unless the environment variable `var` is `off`, or until [`Switch::set`] (tests and
/// benchmarks compare the paths).
pub struct Switch {
    var: &'static str,
    off: &'static str,
    mode: AtomicU8, // 0: not decided yet (the environment decides), 1: on, 2: off
}

impl Switch {
    pub const fn new(var: &'static str, off: &'static str) -> Switch {
        Switch { var, off, mode: AtomicU8::new(0) }
    }

    pub fn set(&self, on: bool) {
        self.mode.store(if on { 1 } else { 2 }, Ordering::Relaxed);
    }

    pub fn on(&self) -> bool {
        match self.mode.load(Ordering::Relaxed) {
            0 => {
                let on = std::env::var(self.var).map(|v| v != self.off).unwrap_or(true);
                let _ = self.mode.compare_exchange(0, if on { 1 } else { 2 }, Ordering::Relaxed, Ordering::Relaxed);
                self.mode.load(Ordering::Relaxed) == 1
            }
            m => m == 1,
        }
    }
}

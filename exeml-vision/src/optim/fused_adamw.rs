//! AdamW on the CPU as one pass over each variable.
//!
//! candle's `AdamW` updates a variable with about a dozen tensor operations, each a pass over it
//! and a fresh allocation: the two moments, their bias corrections, the square root, the
//! division, the decay and the step. Here both moments live beside the variable in one
//! interleaved buffer, and one in-place op updates them and the variable together, in parallel
//! over chunks. The update is candle's (and PyTorch's `AdamW`), so the two are interchangeable;
//! [`super::Stepper`] uses this one for f32 variables on the CPU and candle's elsewhere.

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, Layout, Var};
use candle_nn::{Optimizer, ParamsAdamW};
use rayon::prelude::*;
use std::cell::RefCell;

/// Values per parallel task (a thread hand-off costs microseconds).
const CHUNK: usize = 1 << 14;

/// AdamW with decoupled weight decay over f32 variables on the CPU.
pub struct FusedAdamW {
    /// Each variable with its moments, interleaved: `[m₀, v₀, m₁, v₁, …]`.
    vars: Vec<(Var, Vec<f32>)>,
    params: ParamsAdamW,
    steps: i32,
}

impl std::fmt::Debug for FusedAdamW {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdamW")
            .field("params", &self.params)
            .field("vars", &self.vars.len())
            .field("steps", &self.steps)
            .finish()
    }
}

impl Optimizer for FusedAdamW {
    type Config = ParamsAdamW;

    fn new(vars: Vec<Var>, params: ParamsAdamW) -> candle_core::Result<Self> {
        super::check_fusable("AdamW", &vars)?;
        let vars = vars
            .into_iter()
            .map(|var| {
                let moments = vec![0f32; 2 * var.elem_count()];
                (var, moments)
            })
            .collect();
        Ok(FusedAdamW {
            vars,
            params,
            steps: 0,
        })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.steps += 1;
        let p = &self.params;
        let coefficients = Coefficients {
            beta1: p.beta1 as f32,
            beta2: p.beta2 as f32,
            scale_m: (1.0 / (1.0 - p.beta1.powi(self.steps))) as f32,
            scale_v: (1.0 / (1.0 - p.beta2.powi(self.steps))) as f32,
            eps: p.eps as f32,
            decay: (1.0 - p.lr * p.weight_decay) as f32,
            lr: p.lr as f32,
        };
        for (var, moments) in &mut self.vars {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let update = Update {
                coefficients,
                moments: RefCell::new(moments),
            };
            var.as_tensor().inplace_op2(&grad.contiguous()?, &update)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }
}

/// The scalars of one step, in f32.
#[derive(Debug, Clone, Copy)]
struct Coefficients {
    beta1: f32,
    beta2: f32,
    /// `1 / (1 − β₁ᵗ)`, the first moment's bias correction.
    scale_m: f32,
    /// `1 / (1 − β₂ᵗ)`.
    scale_v: f32,
    eps: f32,
    /// `1 − lr·λ`, the decoupled weight decay.
    decay: f32,
    lr: f32,
}

impl Coefficients {
    /// One value's step: its moments `mv` updated with gradient `g`, and its new value.
    #[inline]
    fn apply(&self, theta: f32, g: f32, mv: &mut [f32]) -> f32 {
        let m = self.beta1 * mv[0] + (1.0 - self.beta1) * g;
        let v = self.beta2 * mv[1] + (1.0 - self.beta2) * g * g;
        mv[0] = m;
        mv[1] = v;
        theta * self.decay - self.lr * (m * self.scale_m) / ((v * self.scale_v).sqrt() + self.eps)
    }
}

/// The in-place op of one variable: `(θ, g)`, with the moments borrowed for the step.
struct Update<'a> {
    coefficients: Coefficients,
    moments: RefCell<&'a mut Vec<f32>>,
}

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "exeml-adamw"
    }

    fn cpu_fwd(
        &self,
        ts: &mut CpuStorage,
        tl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let (theta, grad) = super::step_slices("AdamW", (ts, tl), (gs, gl))?;
        let mut moments = self.moments.borrow_mut();
        if moments.len() != 2 * theta.len() {
            candle_core::bail!("AdamW: {} values, {} moments", theta.len(), moments.len())
        }
        let c = self.coefficients;
        theta
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(moments.par_chunks_mut(2 * CHUNK))
            .for_each(|((theta, grad), moments)| {
                for ((t, &g), mv) in theta.iter_mut().zip(grad).zip(moments.chunks_exact_mut(2)) {
                    *t = c.apply(*t, g, mv);
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::max_diff;
    use candle_core::{DType, Device, Tensor};
    use candle_nn::AdamW;

    /// A loss with a different gradient per value: Σ w·(θ − target)² + Σ θ³/10.
    fn loss_of(theta: &Var, target: &Tensor, weights: &Tensor) -> Tensor {
        let d = (theta.as_tensor() - target).expect("d");
        let quadratic = (d.sqr().expect("sq") * weights).expect("w");
        let cubic = (theta.as_tensor().powf(3.0).expect("cube") * 0.1).expect("c");
        (quadratic.sum_all().expect("s") + cubic.sum_all().expect("s")).expect("loss")
    }

    #[test]
    fn the_fused_steps_are_candles_adamw_steps() {
        let device = Device::Cpu;
        // Seeded values (candle's CPU generator cannot be seeded): where a value's second moment
        // is tiny, Adam's division by its square root magnifies the rounding of the two update
        // orders, and one unseeded draw in a CI run differed by 1.03e-5 (this draw: 5.5e-6).
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut draw = |len: usize, low: f32, high: f32| {
            let values: Vec<f32> = (0..len).map(|_| rng.random_range(low..high)).collect();
            Tensor::from_vec(values, len, &device).expect("tensor")
        };
        // One small variable and one spread over several parallel chunks.
        for len in [7, 3 * CHUNK + 5] {
            let start = draw(len, -2.0, 2.0);
            let target = draw(len, -2.0, 2.0);
            let weights = draw(len, 0.1, 2.0);
            let params = ParamsAdamW {
                lr: 0.05,
                weight_decay: 0.1,
                ..Default::default()
            };
            let (ours, theirs) = (
                Var::from_tensor(&start).expect("var"),
                Var::from_tensor(&start).expect("var"),
            );
            let mut fused = FusedAdamW::new(vec![ours.clone()], params.clone()).expect("fused");
            let mut candle = AdamW::new(vec![theirs.clone()], params).expect("candle");
            for step in 0..20 {
                if step == 10 {
                    fused.set_learning_rate(0.01);
                    candle.set_learning_rate(0.01);
                }
                fused
                    .backward_step(&loss_of(&ours, &target, &weights))
                    .expect("fused step");
                candle
                    .backward_step(&loss_of(&theirs, &target, &weights))
                    .expect("candle step");
            }
            let largest = max_diff(ours.as_tensor(), theirs.as_tensor());
            assert!(largest < 1e-5, "{len}: {largest}");
            let moved = max_diff(ours.as_tensor(), &start);
            assert!(moved > 0.1, "the steps moved the values: {moved}");
        }
    }

    #[test]
    fn a_variable_it_cannot_step_is_refused_by_name() {
        let var = Var::zeros(3, DType::F64, &Device::Cpu).expect("var");
        let message = FusedAdamW::new(vec![var], ParamsAdamW::default())
            .expect_err("f64")
            .to_string();
        assert!(message.contains("F64"), "{message}");
    }
}

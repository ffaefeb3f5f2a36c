//! SGD with Nesterov momentum on the CPU as one pass over each variable.
//!
//! [`super::NesterovSgd`] updates a variable with about six tensor operations, each a pass and
//! an allocation (the velocity, the Nesterov update, the decay, the step). Here the velocity
//! lives beside the variable and one in-place op updates both, as [`super::FusedAdamW`] does
//! for AdamW. [`super::Stepper`] uses this one for f32 variables on the CPU.

use super::SgdParams;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, Layout, Var};
use candle_nn::Optimizer;
use rayon::prelude::*;
use std::cell::RefCell;

/// Values per parallel task.
const CHUNK: usize = 1 << 14;

/// SGD with Nesterov momentum and decoupled weight decay over f32 variables on the CPU:
/// `v ← μ·v + g`, `w ← w·(1 − η·λ) − η·(g + μ·v)`.
pub struct FusedNesterovSgd {
    /// Each variable with its velocity (zeros before the first step).
    vars: Vec<(Var, Vec<f32>)>,
    params: SgdParams,
}

impl std::fmt::Debug for FusedNesterovSgd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NesterovSgd")
            .field("params", &self.params)
            .field("vars", &self.vars.len())
            .finish()
    }
}

impl Optimizer for FusedNesterovSgd {
    type Config = SgdParams;

    fn new(vars: Vec<Var>, params: SgdParams) -> candle_core::Result<Self> {
        super::check_fusable("SGD", &vars)?;
        let vars = vars
            .into_iter()
            .map(|var| {
                let velocity = vec![0f32; var.elem_count()];
                (var, velocity)
            })
            .collect();
        Ok(FusedNesterovSgd { vars, params })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let SgdParams {
            learning_rate,
            momentum,
            weight_decay,
        } = self.params;
        for (var, velocity) in &mut self.vars {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let update = Update {
                lr: learning_rate as f32,
                momentum: momentum as f32,
                decay: (1.0 - learning_rate * weight_decay) as f32,
                velocity: RefCell::new(velocity),
            };
            var.as_tensor().inplace_op2(&grad.contiguous()?, &update)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.params.learning_rate
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.learning_rate = lr;
    }
}

/// The in-place op of one variable: `(w, g)`, with its velocity borrowed for the step.
struct Update<'a> {
    lr: f32,
    momentum: f32,
    /// `1 − η·λ`.
    decay: f32,
    velocity: RefCell<&'a mut Vec<f32>>,
}

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "exeml-nesterov-sgd"
    }

    fn cpu_fwd(
        &self,
        ws: &mut CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let (weights, grad) = super::step_slices("SGD", (ws, wl), (gs, gl))?;
        let mut velocity = self.velocity.borrow_mut();
        if velocity.len() != weights.len() {
            candle_core::bail!(
                "SGD: {} values, {} velocities",
                weights.len(),
                velocity.len()
            )
        }
        let (lr, mu, decay) = (self.lr, self.momentum, self.decay);
        weights
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(velocity.par_chunks_mut(CHUNK))
            .for_each(|((weights, grad), velocity)| {
                for ((w, &g), v) in weights.iter_mut().zip(grad).zip(velocity) {
                    *v = mu * *v + g;
                    *w = *w * decay - lr * (g + mu * *v);
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::NesterovSgd;
    use super::*;
    use crate::nn::max_diff;
    use candle_core::{Device, Tensor};

    #[test]
    fn the_fused_steps_are_the_tensor_steps() {
        let device = Device::Cpu;
        for (len, momentum) in [(7, 0.9), (2 * CHUNK + 3, 0.9), (5, 0.0)] {
            let start = Tensor::randn(0f32, 1.0, len, &device).expect("start");
            let target = Tensor::randn(0f32, 1.0, len, &device).expect("target");
            let params = SgdParams {
                learning_rate: 0.05,
                momentum,
                weight_decay: 0.2,
            };
            let (ours, theirs) = (
                Var::from_tensor(&start).expect("var"),
                Var::from_tensor(&start).expect("var"),
            );
            let mut fused = FusedNesterovSgd::new(vec![ours.clone()], params).expect("fused");
            let mut tensors = NesterovSgd::new(vec![theirs.clone()], params).expect("tensors");
            let loss = |w: &Var| {
                (w.as_tensor() - &target)
                    .and_then(|d| d.sqr())
                    .and_then(|d| d.sum_all())
                    .expect("loss")
            };
            for step in 0..20 {
                if step == 10 {
                    fused.set_learning_rate(0.02);
                    tensors.set_learning_rate(0.02);
                }
                fused.backward_step(&loss(&ours)).expect("fused step");
                tensors.backward_step(&loss(&theirs)).expect("step");
            }
            let largest = max_diff(ours.as_tensor(), theirs.as_tensor());
            assert!(largest < 1e-5, "{len}, μ {momentum}: {largest}");
            let moved = max_diff(ours.as_tensor(), &start);
            assert!(moved > 0.1, "the steps moved the values: {moved}");
        }
    }
}

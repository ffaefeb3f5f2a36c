//! The optimisers of fine-tuning: AdamW and SGD with Nesterov momentum, the two a fine-tuning
//! recipe picks between. On the CPU each is one fused pass per variable ([`fused_adamw`],
//! [`fused_sgd`]); elsewhere AdamW is candle's and SGD [`NesterovSgd`], written here with
//! tensor operations (candle's own `SGD` has no momentum, and momentum is what makes SGD
//! competitive for fine-tuning).

pub mod fused_adamw;
pub mod fused_sgd;

pub use fused_adamw::FusedAdamW;
pub use fused_sgd::FusedNesterovSgd;

/// Whether the fused optimisers can step `var` (an f32 variable on the CPU).
pub fn fusable(var: &Var) -> bool {
    var.device().is_cpu() && var.dtype() == candle_core::DType::F32
}

/// An error unless every variable is [`fusable`], naming the first that is not and `optimiser`.
fn check_fusable(optimiser: &str, vars: &[Var]) -> candle_core::Result<()> {
    match vars.iter().find(|v| !fusable(v)) {
        Some(var) => candle_core::bail!(
            "fused {optimiser} steps f32 variables on the CPU, not {:?} on {:?}",
            var.dtype(),
            var.device()
        ),
        None => Ok(()),
    }
}

/// A variable's values and its gradient's for an in-place step of `optimiser`: contiguous f32
/// slices of equal length, or an error.
fn step_slices<'a>(
    optimiser: &str,
    (vs, vl): (&'a mut candle_core::CpuStorage, &candle_core::Layout),
    (gs, gl): (&'a candle_core::CpuStorage, &candle_core::Layout),
) -> candle_core::Result<(&'a mut [f32], &'a [f32])> {
    let (Some((v0, v1)), Some((g0, g1))) = (vl.contiguous_offsets(), gl.contiguous_offsets())
    else {
        candle_core::bail!("{optimiser}: a variable and its gradient must be contiguous")
    };
    let candle_core::CpuStorage::F32(values) = vs else {
        candle_core::bail!("{optimiser}: the variable is not f32")
    };
    let (values, grad) = (&mut values[v0..v1], &gs.as_slice::<f32>()?[g0..g1]);
    if grad.len() != values.len() {
        candle_core::bail!(
            "{optimiser}: {} values, {} gradients",
            values.len(),
            grad.len()
        )
    }
    Ok((values, grad))
}

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

/// Which optimiser a fine-tuning run uses.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OptimizerKind {
    /// AdamW with decoupled weight decay (β = 0.9, 0.999).
    #[default]
    Adamw,
    /// SGD with Nesterov momentum; weight decay is decoupled as in AdamW (each step shrinks the
    /// weights by `learning_rate × weight_decay`), so a learning rate n times AdamW's wants an
    /// n-th of its decay for the same shrinkage. With batch norm folded (frozen), SGD's usual
    /// 0.01 diverges here: about 1e-3 (with momentum 0.9) trains as well as AdamW's 3e-4.
    Sgd {
        /// Momentum, in `[0, 1)` (0: plain SGD).
        momentum: f64,
    },
}

/// An optimiser of either kind over a set of variables.
pub enum Stepper {
    /// AdamW in one pass per variable (f32 variables on the CPU).
    FusedAdamw(FusedAdamW),
    /// candle's AdamW (other devices).
    Adamw(AdamW),
    /// SGD with Nesterov momentum in one pass per variable (f32 variables on the CPU).
    FusedSgd(FusedNesterovSgd),
    /// SGD with Nesterov momentum as tensor operations (other devices).
    Sgd(NesterovSgd),
}

impl std::fmt::Debug for Stepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stepper::FusedAdamw(o) => write!(f, "AdamW(lr {})", o.learning_rate()),
            Stepper::Adamw(o) => write!(f, "AdamW(lr {})", o.learning_rate()),
            Stepper::FusedSgd(o) => write!(f, "{o:?}"),
            Stepper::Sgd(o) => write!(f, "{o:?}"),
        }
    }
}

impl Stepper {
    /// An optimiser of `kind` over `vars`.
    pub fn new(
        kind: OptimizerKind,
        vars: Vec<Var>,
        learning_rate: f64,
        weight_decay: f64,
    ) -> candle_core::Result<Stepper> {
        let adamw = ParamsAdamW {
            lr: learning_rate,
            weight_decay,
            ..Default::default()
        };
        Ok(match kind {
            OptimizerKind::Adamw if vars.iter().all(fusable) => {
                Stepper::FusedAdamw(FusedAdamW::new(vars, adamw)?)
            }
            OptimizerKind::Adamw => Stepper::Adamw(AdamW::new(vars, adamw)?),
            OptimizerKind::Sgd { momentum } => {
                let sgd = SgdParams {
                    learning_rate,
                    momentum,
                    weight_decay,
                };
                if vars.iter().all(fusable) {
                    Stepper::FusedSgd(FusedNesterovSgd::new(vars, sgd)?)
                } else {
                    Stepper::Sgd(NesterovSgd::new(vars, sgd)?)
                }
            }
        })
    }

    /// Set the learning rate of the next steps (the schedule's).
    pub fn set_learning_rate(&mut self, learning_rate: f64) {
        match self {
            Stepper::FusedAdamw(o) => o.set_learning_rate(learning_rate),
            Stepper::FusedSgd(o) => o.set_learning_rate(learning_rate),
            Stepper::Adamw(o) => o.set_learning_rate(learning_rate),
            Stepper::Sgd(o) => o.set_learning_rate(learning_rate),
        }
    }

    /// Back-propagate `loss` and take one step.
    pub fn backward_step(&mut self, loss: &Tensor) -> candle_core::Result<()> {
        match self {
            Stepper::FusedAdamw(o) => o.backward_step(loss),
            Stepper::FusedSgd(o) => o.backward_step(loss),
            Stepper::Adamw(o) => o.backward_step(loss),
            Stepper::Sgd(o) => o.backward_step(loss),
        }
    }
}

/// Hyper-parameters of [`NesterovSgd`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdParams {
    /// Step size.
    pub learning_rate: f64,
    /// Momentum, in `[0, 1)`.
    pub momentum: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// SGD with Nesterov momentum (PyTorch's `SGD(nesterov=True)` update with decoupled weight
/// decay): `v ← μ·v + g`, `w ← w·(1 − η·λ) − η·(g + μ·v)`.
pub struct NesterovSgd {
    vars: Vec<(Var, Option<Tensor>)>,
    params: SgdParams,
}

impl std::fmt::Debug for NesterovSgd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NesterovSgd")
            .field("params", &self.params)
            .field("vars", &self.vars.len())
            .finish()
    }
}

impl Optimizer for NesterovSgd {
    type Config = SgdParams;

    fn new(vars: Vec<Var>, params: SgdParams) -> candle_core::Result<Self> {
        let vars = vars
            .into_iter()
            .filter(|v| v.dtype().is_float())
            .map(|v| (v, None))
            .collect();
        Ok(NesterovSgd { vars, params })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let SgdParams {
            learning_rate: lr,
            momentum: mu,
            weight_decay: wd,
        } = self.params;
        for (var, velocity) in &mut self.vars {
            let Some(g) = grads.get(var) else {
                continue;
            };
            let update = if mu > 0.0 {
                let v = match velocity.as_ref() {
                    Some(v) => ((v * mu)? + g)?,
                    None => g.clone(),
                };
                let update = (g + (&v * mu)?)?;
                *velocity = Some(v);
                update
            } else {
                g.clone()
            };
            let decayed = if wd > 0.0 {
                (var.as_tensor() * (1.0 - lr * wd))?
            } else {
                var.as_tensor().clone()
            };
            var.set(&(decayed - (update * lr)?)?)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn minimise(kind: OptimizerKind, learning_rate: f64, steps: usize) -> Vec<f32> {
        // (w − 3)² per coordinate, from w = 0.
        let w = Var::zeros(2, candle_core::DType::F32, &Device::Cpu).expect("var");
        let mut stepper = Stepper::new(kind, vec![w.clone()], learning_rate, 0.0).expect("opt");
        for _ in 0..steps {
            let loss = (w.as_tensor() - 3.0)
                .and_then(|d| d.sqr())
                .and_then(|d| d.sum_all())
                .expect("loss");
            stepper.backward_step(&loss).expect("step");
        }
        w.as_tensor().to_vec1().expect("values")
    }

    #[test]
    fn nesterov_sgd_takes_the_textbook_steps() {
        // g = 2(w − 3) = −6 at w = 0: v = −6, update = g + μv = −6 − 5.4, w = 0.1 × 11.4.
        let w = minimise(OptimizerKind::Sgd { momentum: 0.9 }, 0.1, 1);
        assert!((w[0] - 1.14).abs() < 1e-6, "{w:?}");
        // Second step: g = 2(1.14 − 3) = −3.72, v = 0.9·(−6) − 3.72 = −9.12,
        // update = −3.72 − 8.208 = −11.928, w = 1.14 + 1.1928.
        let w = minimise(OptimizerKind::Sgd { momentum: 0.9 }, 0.1, 2);
        assert!((w[0] - 2.3328).abs() < 1e-5, "{w:?}");
        // Without momentum it is plain gradient descent: w = 0.1 × 6.
        let w = minimise(OptimizerKind::Sgd { momentum: 0.0 }, 0.1, 1);
        assert!((w[0] - 0.6).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn both_optimisers_reach_the_minimum() {
        for (kind, lr) in [
            (OptimizerKind::Adamw, 0.1),
            (OptimizerKind::Sgd { momentum: 0.9 }, 0.05),
        ] {
            let w = minimise(kind, lr, 300);
            assert!(w.iter().all(|v| (v - 3.0).abs() < 1e-2), "{kind:?}: {w:?}");
        }
    }

    #[test]
    fn decoupled_weight_decay_shrinks_the_weights_by_the_step_times_the_decay() {
        let w = Var::ones(1, candle_core::DType::F32, &Device::Cpu).expect("var");
        let mut sgd = NesterovSgd::new(
            vec![w.clone()],
            SgdParams {
                learning_rate: 0.1,
                momentum: 0.9,
                weight_decay: 0.5,
            },
        )
        .expect("sgd");
        // At the minimum of (w − 1)² the gradient is zero: only the decay acts, w = 1 × (1 − 0.05).
        let loss = (w.as_tensor() - 1.0)
            .and_then(|t| t.sqr())
            .and_then(|t| t.sum_all())
            .expect("loss");
        sgd.backward_step(&loss).expect("step");
        let v: Vec<f32> = w.as_tensor().to_vec1().expect("values");
        assert!((v[0] - 0.95).abs() < 1e-6, "{v:?}");
    }
}

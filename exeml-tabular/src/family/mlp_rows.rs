//! A fitted table network's forward pass on a few rows, in plain Rust. For one served row,
//! candle's per-operation overhead (tensor allocation, broadcasting, kernel dispatch: 70–100 µs
//! for a two-layer network) dwarfs the arithmetic (a few microseconds); large batches stay on
//! candle, whose matrix kernels are far faster there.

use crate::features::{EmbeddedFeature, Matrix};
use candle_core::Tensor;

/// Row counts up to this are predicted here rather than by candle.
pub const MAX_ROWS: usize = 16;

/// One dense layer: `weight[o * inputs + i]`, `bias[o]`.
#[derive(Debug, Clone)]
struct Dense {
    inputs: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// The network's weights as plain vectors.
#[derive(Debug, Clone)]
pub struct RowNetwork {
    layers: Vec<Dense>,
    /// Each code feature (in feature order) with its embedding table, `[codes, dim]` row-major.
    tables: Vec<(EmbeddedFeature, usize, Vec<f32>)>,
}

impl RowNetwork {
    /// Copy the weights of `layers` (`[out, in]` weights and `[out]` biases, the last one the
    /// output) and the embedding `tables`.
    pub fn new(
        layers: &[(Tensor, Tensor)],
        tables: &[(EmbeddedFeature, Tensor)],
    ) -> candle_core::Result<Self> {
        let layers = layers
            .iter()
            .map(|(w, b)| {
                Ok(Dense {
                    inputs: w.dims()[1],
                    weight: w.flatten_all()?.to_vec1()?,
                    bias: b.to_vec1()?,
                })
            })
            .collect::<candle_core::Result<_>>()?;
        let tables = tables
            .iter()
            .map(|(e, t)| Ok((*e, t.dims()[1], t.flatten_all()?.to_vec1()?)))
            .collect::<candle_core::Result<_>>()?;
        Ok(RowNetwork { layers, tables })
    }

    /// The raw outputs (`rows × outputs`, row-major) for the rows of `x`, computed as the
    /// candle network does: plain features (non-finite read as 0) then each code feature's
    /// embedding (a code out of range reads as the last, missing, code), ReLU between layers.
    pub fn forward(&self, x: &Matrix) -> Vec<f32> {
        let mut out = Vec::new();
        let mut input: Vec<f32> = Vec::new();
        let mut next: Vec<f32> = Vec::new();
        for r in 0..x.rows {
            input.clear();
            for c in 0..x.cols {
                if !self.tables.iter().any(|(e, ..)| e.feature == c) {
                    input.push(plain_input(x.get(r, c)));
                }
            }
            for (e, dim, table) in &self.tables {
                let code = code_input(x.get(r, e.feature), *e);
                input.extend_from_slice(&table[code * dim..(code + 1) * dim]);
            }
            let last = self.layers.len().saturating_sub(1);
            for (i, layer) in self.layers.iter().enumerate() {
                next.clear();
                next.extend(layer.bias.iter().enumerate().map(|(o, b)| {
                    b + dot(
                        &layer.weight[o * layer.inputs..(o + 1) * layer.inputs],
                        &input,
                    )
                }));
                if i < last {
                    next.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                std::mem::swap(&mut input, &mut next);
            }
            out.extend_from_slice(&input);
        }
        out
    }
}

/// A plain feature as the network reads it: a missing (non-finite) value is 0.
pub fn plain_input(v: f64) -> f32 {
    if v.is_finite() {
        v as f32
    } else {
        0.0
    }
}

/// The embedding row of code feature `e` for value `c`. Codes come from the pipeline; anything
/// else (a damaged input) reads as the last code (missing) rather than indexing out of the table.
pub fn code_input(c: f64, e: EmbeddedFeature) -> usize {
    let last = e.codes.saturating_sub(1);
    if c.is_finite() && c >= 0.0 {
        (c as usize).min(last)
    } else {
        last
    }
}

/// Lanes of the dot product's partial sums: independent accumulators let the compiler use
/// vector instructions (a single running f32 sum cannot be reordered).
const LANES: usize = 16;

/// `a · b` over their common length.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0f32; LANES];
    let (a_blocks, b_blocks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_blocks
        .remainder()
        .iter()
        .zip(b_blocks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_blocks.zip(b_blocks) {
        for i in 0..LANES {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Softmax of each `width`-wide row, in place (as candle's `softmax_last_dim`).
pub fn softmax_rows(values: &mut [f32], width: usize) {
    for row in values.chunks_mut(width.max(1)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        for v in row.iter_mut() {
            *v /= sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocked_dot_product_matches_the_plain_sum() {
        for n in [0, 1, 15, 16, 17, 100] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "{n}");
        }
    }
}

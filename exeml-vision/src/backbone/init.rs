//! A checkpoint filled with seeded initial values, in a checkpoint's tensor names: what the
//! hub backbones (ConvNeXt, ViT) start from when trained from scratch, and what tests and speed
//! measurements load where no downloaded weights exist.

use crate::nn::candle_error;
use candle_core::{Device, Tensor};
use exeml_core::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// Tensors by name, drawn from one seeded generator in the order they are added.
#[derive(Debug)]
pub struct Checkpoint {
    rng: ChaCha8Rng,
    tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// An empty checkpoint drawing from `seed`.
    pub fn new(seed: u64) -> Self {
        Checkpoint {
            rng: ChaCha8Rng::seed_from_u64(seed),
            tensors: HashMap::new(),
        }
    }

    /// `name` of shape `dims`, uniform with the spread (standard deviation) `spread`, as timm's
    /// truncated normal initialisations have.
    pub fn random(&mut self, name: impl Into<String>, dims: Vec<usize>, spread: f32) -> Result<()> {
        let bound = spread * 3f32.sqrt();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| self.rng.random_range(-bound..bound))
            .collect();
        let tensor = Tensor::from_vec(values, dims, &Device::Cpu).map_err(candle_error)?;
        self.tensors.insert(name.into(), tensor);
        Ok(())
    }

    /// `name`: `n` copies of `value`.
    pub fn constant(&mut self, name: impl Into<String>, n: usize, value: f32) -> Result<()> {
        let tensor = Tensor::from_vec(vec![value; n], n, &Device::Cpu).map_err(candle_error)?;
        self.tensors.insert(name.into(), tensor);
        Ok(())
    }

    /// The linear layer `{p}.weight` (`rows×cols`, spread 0.02) and `{p}.bias` (zeros).
    pub fn linear(&mut self, p: &str, rows: usize, cols: usize) -> Result<()> {
        self.random(format!("{p}.weight"), vec![rows, cols], 0.02)?;
        self.constant(format!("{p}.bias"), rows, 0.0)
    }

    /// The layer norm `p` as the identity: scale 1, shift 0, over `n` channels.
    pub fn identity_norm(&mut self, p: &str, n: usize) -> Result<()> {
        self.constant(format!("{p}.weight"), n, 1.0)?;
        self.constant(format!("{p}.bias"), n, 0.0)
    }

    /// The tensors.
    pub fn into_tensors(self) -> HashMap<String, Tensor> {
        self.tensors
    }
}

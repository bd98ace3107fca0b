//! Sinusoidal timestep embeddings and the time-embedding MLP (diffusers' `embeddings.py`).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};

/// diffusers' `get_timestep_embedding`: `[N]` timesteps -> `[N, dim]`, computed in float32 on
/// the host exactly as PyTorch does (`exp(-ln(10000) * i / (half - shift))`, then `t * freq`,
/// `[sin, cos]`, swapped to `[cos, sin]` with `flip_sin_to_cos`, zero-padded for odd `dim`).
pub fn timestep_embedding(
    timesteps: &[f32],
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    device: &Device,
) -> Tensor<2> {
    let half = dim / 2;
    let ln = -(10000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = ln * i as f32;
            let exponent = exponent / (half as f32 - freq_shift as f32);
            exponent.exp()
        })
        .collect();
    let mut out = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let args: Vec<f32> = freqs.iter().map(|&f| t * f).collect();
        let sin = args.iter().map(|a| a.sin());
        let cos = args.iter().map(|a| a.cos());
        if flip_sin_to_cos {
            out.extend(cos.chain(sin));
        } else {
            out.extend(sin.chain(cos));
        }
        if dim % 2 == 1 {
            out.push(0.0);
        }
    }
    Tensor::from_data(TensorData::new(out, [timesteps.len(), dim]), device)
}

/// `TimestepEmbedding`: `linear_2(silu(linear_1(x)))`.
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    /// First projection.
    pub linear_1: Linear,
    /// Second projection.
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    /// `in_dim -> time_embed_dim -> time_embed_dim`.
    pub fn new(in_dim: usize, time_embed_dim: usize, device: &Device) -> Self {
        Self {
            linear_1: LinearConfig::new(in_dim, time_embed_dim).init(device),
            linear_2: LinearConfig::new(time_embed_dim, time_embed_dim).init(device),
        }
    }

    /// Applies the MLP.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let linear = sonic_kernels::linear::forward::<2>;
        linear(&self.linear_2, silu(linear(&self.linear_1, x)))
    }
}

//! Seeded Gaussian noise, drawn on the host so that a seed gives the same values on every
//! device.
//!
//! One generator is used everywhere: ChaCha8 seeded with the user's seed, on a numbered
//! stream. Stream 0 is the initial latents (and a VAE posterior sample); stochastic
//! schedulers (LCM) draw step `i`'s noise from stream `i + 1`, so adding steps never changes
//! the noise of earlier ones.

use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// `shape` standard normal float32 values from ChaCha8 seeded with `seed`, on `stream`.
pub fn seeded_normal<const D: usize>(
    shape: [usize; D],
    seed: u64,
    stream: u64,
    device: &Device,
) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let v: Vec<f32> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_and_seeds_repeat() {
        let device = Device::default();
        let a = seeded_normal([2, 3], 7, 0, &device).into_data();
        let b = seeded_normal([2, 3], 7, 0, &device).into_data();
        let c = seeded_normal([2, 3], 7, 1, &device).into_data();
        let d = seeded_normal([2, 3], 8, 0, &device).into_data();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        let v = seeded_normal([64, 64], 1, 0, &device)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.1, "{mean} {var}");
    }
}

//! Host-side schedule tables, computed the way diffusers computes them.
//!
//! diffusers builds its tables with a mix of float32 torch ops and float64 numpy ops. To agree
//! with it to float32 rounding, each function here states which precision the reference uses
//! and mimics it: float32 results are computed in `f32` (and stored in `f64` vectors, exactly),
//! numpy float64 results in `f64`.

use crate::config::{BetaConfig, BetaSchedule};

/// `torch.linspace(start, end, n, dtype=torch.float32)` on the CPU: the step is computed in
/// float32, the first half counts up from `start`, the second half down from `end`, each value
/// with one fused multiply-add (PyTorch's vectorised CPU build contracts `start + step * i`
/// into an FMA; with it the fixtures' `alphas_cumprod` match bit for bit).
pub(crate) fn torch_linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![start as f32];
    }
    let start = start as f32;
    let end = end as f32;
    let step = (end - start) / (n - 1) as f32;
    let halfway = n / 2;
    (0..n)
        .map(|i| {
            if i < halfway {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((n - i - 1) as f32, end)
            }
        })
        .collect()
}

/// `numpy.linspace(start, stop, n)` in float64: `i * step + start`, the last value exactly
/// `stop`.
pub(crate) fn np_linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    v[n - 1] = stop;
    v
}

/// `numpy.arange(start, stop, step)` for floats: `ceil((stop - start) / step)` values
/// `start + i * delta` with `delta = (start + step) - start`.
pub(crate) fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len < 1.0 || !len.is_finite() {
        return Vec::new();
    }
    let len = len as usize;
    let delta = (start + step) - start;
    (0..len)
        .map(|i| match i {
            0 => start,
            1 => start + step,
            _ => start + i as f64 * delta,
        })
        .collect()
}

/// `numpy.round`: round half to even.
pub(crate) fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// diffusers' `betas_for_alpha_bar` with the cosine transform (`squaredcos_cap_v2`): float64,
/// each beta capped at 0.999, then float32.
fn betas_for_alpha_bar_cosine(n: usize) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
            .cos()
            .powi(2)
    };
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// `torch.cumprod` of a float32 tensor on the CPU: the running product is kept in float64 and
/// each output rounded to float32.
pub(crate) fn cumprod_f32(values: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    values
        .iter()
        .map(|&v| {
            acc *= v as f64;
            acc as f32
        })
        .collect()
}

/// diffusers' `rescale_zero_terminal_snr`, in float32.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
    let alphas_cumprod = cumprod_f32(&alphas);
    let mut sqrt_bar: Vec<f32> = alphas_cumprod.iter().map(|a| a.sqrt()).collect();
    let (Some(&first), Some(&last)) = (sqrt_bar.first(), sqrt_bar.last()) else {
        return betas.to_vec();
    };
    let scale = first / (first - last);
    for s in &mut sqrt_bar {
        *s -= last;
        *s *= scale;
    }
    let bar: Vec<f32> = sqrt_bar.iter().map(|s| s * s).collect();
    let mut out = Vec::with_capacity(bar.len());
    out.push(1.0 - bar[0]);
    for i in 1..bar.len() {
        out.push(1.0 - bar[i] / bar[i - 1]);
    }
    out
}

/// The float32 betas of a training schedule.
pub(crate) fn betas_f32(cfg: &BetaConfig) -> Vec<f32> {
    let n = cfg.num_train_timesteps;
    let betas = if let Some(tb) = &cfg.trained_betas {
        tb.iter().map(|&b| b as f32).collect()
    } else {
        match cfg.beta_schedule {
            BetaSchedule::Linear => torch_linspace_f32(cfg.beta_start, cfg.beta_end, n),
            BetaSchedule::ScaledLinear => {
                torch_linspace_f32(cfg.beta_start.sqrt(), cfg.beta_end.sqrt(), n)
                    .into_iter()
                    .map(|b| b * b)
                    .collect()
            }
            BetaSchedule::SquaredCosCapV2 => betas_for_alpha_bar_cosine(n),
            BetaSchedule::Sigmoid => {
                let range = (cfg.beta_end - cfg.beta_start) as f32;
                let start = cfg.beta_start as f32;
                torch_linspace_f32(-6.0, 6.0, n)
                    .into_iter()
                    .map(|x| (1.0 / (1.0 + (-x).exp())) * range + start)
                    .collect()
            }
        }
    };
    if cfg.rescale_betas_zero_snr {
        rescale_zero_terminal_snr(&betas)
    } else {
        betas
    }
}

/// The float32 `alphas_cumprod` of a training schedule (`cumprod(1 - betas)`).
pub(crate) fn alphas_cumprod_f32(cfg: &BetaConfig) -> Vec<f32> {
    let alphas: Vec<f32> = betas_f32(cfg).iter().map(|b| 1.0 - b).collect();
    cumprod_f32(&alphas)
}

/// The float32 Karras-style sigmas of the training schedule, `((1 - ᾱ) / ᾱ) ** 0.5`.
pub(crate) fn train_sigmas_f32(alphas_cumprod: &[f32]) -> Vec<f32> {
    alphas_cumprod
        .iter()
        .map(|&a| ((1.0 - a) / a).sqrt())
        .collect()
}

/// `numpy.interp(x, arange(len(fp)), fp)` in float64.
pub(crate) fn np_interp_index(x: f64, fp: &[f64]) -> f64 {
    let n = fp.len();
    if n == 0 {
        return f64::NAN;
    }
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return fp[0];
    }
    let last = (n - 1) as f64;
    if x >= last {
        return fp[n - 1];
    }
    let j = x.floor() as usize;
    if x == j as f64 {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / 1.0;
    slope * (x - j as f64) + fp[j]
}

/// diffusers' `_sigma_to_t`: the fractional training timestep of `sigma`, interpolating
/// linearly in log-sigma between neighbours of the float32 `log_sigmas` table.
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let n = log_sigmas.len();
    if n < 2 {
        return 0.0;
    }
    let log_sigma = sigma.max(1e-10).ln();
    // low_idx = argmax(cumsum(log_sigma - log_sigmas >= 0)), clipped to n - 2.
    let mut count = 0usize;
    let mut best = 0usize;
    let mut best_idx = 0usize;
    for (i, &ls) in log_sigmas.iter().enumerate() {
        if log_sigma - ls as f64 >= 0.0 {
            count += 1;
        }
        if count > best {
            best = count;
            best_idx = i;
        }
    }
    let low_idx = best_idx.min(n - 2);
    let high_idx = low_idx + 1;
    let low = log_sigmas[low_idx];
    let high = log_sigmas[high_idx];
    // (low - log_sigma) is float64, (low - high) float32, as numpy promotes them.
    let w = ((low as f64 - log_sigma) / (low - high) as f64).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * high_idx as f64
}

/// Karras et al.'s sigma ramp (rho = 7) from `sigma_max` down to `sigma_min`, float64.
pub(crate) fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0f64;
    let min_inv_rho = sigma_min.powf(1.0 / rho);
    let max_inv_rho = sigma_max.powf(1.0 / rho);
    np_linspace(0.0, 1.0, n)
        .into_iter()
        .map(|ramp| (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).powf(rho))
        .collect()
}

/// Natural log of float32 values, correctly rounded to float32 (numpy's `np.log` of a
/// float32 array).
pub(crate) fn ln_f32(values: &[f32]) -> Vec<f32> {
    values.iter().map(|&v| (v as f64).ln() as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy_and_torch_shapes() {
        assert_eq!(np_linspace(0.0, 999.0, 10)[1], 111.0);
        assert_eq!(*np_linspace(0.0, 1.0, 7).last().unwrap(), 1.0);
        let t = torch_linspace_f32(0.0001, 0.02, 1000);
        assert_eq!(t[0], 0.0001f32);
        assert_eq!(t[999], 0.02f32);
        assert!(t.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn arange_and_round_half_even() {
        let a = np_arange(1000.0, 0.0, -100.0);
        assert_eq!(a.len(), 10);
        assert_eq!(a[9], 100.0);
        assert_eq!(np_round(166.5), 166.0);
        assert_eq!(np_round(499.5), 500.0);
        assert_eq!(np_round(832.5), 832.0);
    }

    #[test]
    fn interp_hits_grid_points_exactly() {
        let fp = [1.0, 2.0, 4.0];
        assert_eq!(np_interp_index(1.0, &fp), 2.0);
        assert_eq!(np_interp_index(1.5, &fp), 3.0);
        assert_eq!(np_interp_index(5.0, &fp), 4.0);
        assert_eq!(np_interp_index(-1.0, &fp), 1.0);
    }

    #[test]
    fn sigma_to_t_inverts_the_table() {
        let cfg = BetaConfig::default();
        let sigmas = train_sigmas_f32(&alphas_cumprod_f32(&cfg));
        let logs = ln_f32(&sigmas);
        for t in [0usize, 1, 500, 998, 999] {
            let got = sigma_to_t(sigmas[t] as f64, &logs);
            assert!((got - t as f64).abs() < 1e-3, "t={t} got {got}");
        }
        // Beyond the table's ends the weight is clipped.
        assert_eq!(sigma_to_t(1e-6, &logs), 0.0);
        assert_eq!(sigma_to_t(1e6, &logs), 999.0);
    }

    #[test]
    fn zero_snr_rescale_ends_at_zero() {
        let cfg = BetaConfig {
            rescale_betas_zero_snr: true,
            ..BetaConfig::default()
        };
        let ac = alphas_cumprod_f32(&cfg);
        assert_eq!(*ac.last().unwrap(), 0.0);
        let plain = alphas_cumprod_f32(&BetaConfig::default());
        assert!((ac[0] - plain[0]).abs() < 1e-6);
        // sqrt(ᾱ) is an affine map of the original sqrt(ᾱ).
        let s = |v: &[f32], i: usize| (v[i] as f64).sqrt();
        let k = (s(&ac, 0) - s(&ac, 500)) / (s(&plain, 0) - s(&plain, 500));
        let pred = s(&ac, 0) - k * (s(&plain, 0) - s(&plain, 250));
        assert!((pred - s(&ac, 250)).abs() < 1e-5);
    }

    #[test]
    fn cosine_betas_are_capped() {
        let cfg = BetaConfig {
            beta_schedule: BetaSchedule::SquaredCosCapV2,
            ..BetaConfig::default()
        };
        let b = betas_f32(&cfg);
        assert_eq!(b.len(), 1000);
        assert_eq!(*b.last().unwrap(), 0.999f32);
        assert!(b[0] > 0.0 && b[0] < 1e-3);
    }
}

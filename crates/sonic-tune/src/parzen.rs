//! Univariate Parzen estimators for the TPE sampler: mixtures of truncated Gaussians (numeric
//! parameters) or of smoothed one-hot distributions (categorical parameters), built from
//! observations plus a broad prior component, as in Bergstra et al. (2011), "Algorithms for
//! Hyper-Parameter Optimization", and Optuna's description of its TPE sampler.

use crate::space::NumericDomain;
use rand::Rng;

/// The complementary error function, `erfc(x) = 1 - erf(x)`, with fractional error below
/// 1.2e-7 everywhere (Chebyshev fit, Press et al., Numerical Recipes, section 6.2).
pub(crate) fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let ans = t * poly.exp();
    if x >= 0.0 { ans } else { 2.0 - ans }
}

/// `P(a < Z < b)` for a standard normal `Z`, computed in the tail that keeps precision.
fn normal_mass(a: f64, b: f64) -> f64 {
    if a >= b {
        return 0.0;
    }
    let s = std::f64::consts::FRAC_1_SQRT_2;
    if a >= 0.0 {
        // upper tail: Q(a) - Q(b)
        0.5 * (erfc(a * s) - erfc(b * s))
    } else if b <= 0.0 {
        // lower tail by symmetry
        0.5 * (erfc(-b * s) - erfc(-a * s))
    } else {
        1.0 - 0.5 * (erfc(-a * s) + erfc(b * s))
    }
    .max(0.0)
}

const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// A standard normal draw (Box-Muller).
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A draw from N(mu, sigma) truncated to [low, high], by rejection (the centres lie inside the
/// interval and sigma is at most its width, so at least a third of the draws are accepted;
/// after 200 rejections, which happens with probability below 1e-35, a uniform draw is used).
fn truncated_normal<R: Rng + ?Sized>(rng: &mut R, mu: f64, sigma: f64, low: f64, high: f64) -> f64 {
    for _ in 0..200 {
        let x = mu + sigma * standard_normal(rng);
        if x >= low && x <= high {
            return x;
        }
    }
    low + (high - low) * rng.random::<f64>()
}

fn log_sum_exp(terms: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = terms.collect();
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|t| (t - m).exp()).sum::<f64>().ln()
}

/// Optuna's default observation weights: equal for up to 25 observations; beyond that the
/// newest 25 weigh 1 and older ones ramp linearly from `1/n` up to 1 (older trials count
/// less). `n` observations in trial order, oldest first.
pub(crate) fn default_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp_len = n - 25;
    let mut w = Vec::with_capacity(n);
    for i in 0..ramp_len {
        // numpy.linspace(1/n, 1, ramp_len)
        let t = if ramp_len == 1 {
            0.0
        } else {
            i as f64 / (ramp_len - 1) as f64
        };
        w.push(1.0 / n as f64 + t * (1.0 - 1.0 / n as f64));
    }
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

/// Picks a component index from log weights with one uniform draw.
pub(crate) fn choose_component<R: Rng + ?Sized>(log_weights: &[f64], rng: &mut R) -> usize {
    let u: f64 = rng.random::<f64>();
    let mut acc = 0.0;
    for (i, lw) in log_weights.iter().enumerate() {
        acc += lw.exp();
        if u < acc {
            return i;
        }
    }
    log_weights.len().saturating_sub(1)
}

/// Normalised log weights: the observations' weights then the prior's.
fn log_weights(obs_weights: &[f64], prior_weight: f64) -> Vec<f64> {
    let mut weights: Vec<f64> = obs_weights.to_vec();
    weights.push(prior_weight);
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| (w / total).ln()).collect()
}

/// The smallest bandwidth for `n` components over `range` (Bergstra et al.'s "magic clip").
pub(crate) fn min_sigma(range: f64, n: usize) -> f64 {
    range / (100.0f64).min(1.0 + n as f64)
}

/// A mixture of truncated Gaussians over one numeric parameter's internal coordinate.
#[derive(Debug, Clone)]
pub(crate) struct NumericParzen {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    log_weights: Vec<f64>,
    /// log of each component's mass inside [low, high]
    log_norms: Vec<f64>,
    domain: NumericDomain,
}

impl NumericParzen {
    /// Builds the estimator from observations (internal coordinates, oldest first) and their
    /// weights, plus a prior component N((low + high) / 2, high - low) with weight
    /// `prior_weight`.
    ///
    /// Bandwidths follow Bergstra et al.: each observation's sigma is the larger distance to
    /// its neighbours in sorted order (the prior's centre counts as a neighbour; the bounds do
    /// for the outermost points), clipped to `[(high - low) / min(100, 1 + n), high - low]`.
    pub fn new(obs: &[f64], obs_weights: &[f64], prior_weight: f64, domain: NumericDomain) -> Self {
        let (low, high) = (domain.low, domain.high);
        let range = high - low;
        let mut mus: Vec<f64> = obs.iter().map(|x| x.clamp(low, high)).collect();
        mus.push(0.5 * (low + high));
        let n = mus.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]));
        let sorted: Vec<f64> = order.iter().map(|&i| mus[i]).collect();
        let lo_sigma = min_sigma(range, n);
        let mut sigmas = vec![0.0; n];
        for (rank, &i) in order.iter().enumerate() {
            let left = if rank == 0 {
                sorted[0] - low
            } else {
                sorted[rank] - sorted[rank - 1]
            };
            let right = if rank + 1 == n {
                high - sorted[rank]
            } else {
                sorted[rank + 1] - sorted[rank]
            };
            sigmas[i] = left.max(right).clamp(lo_sigma, range);
        }
        sigmas.pop();
        Self::with_sigmas(obs, &sigmas, obs_weights, prior_weight, domain)
    }

    /// Builds the estimator with given bandwidths for the observations (the prior component
    /// N((low + high) / 2, high - low) is appended).
    pub fn with_sigmas(
        obs: &[f64],
        sigmas: &[f64],
        obs_weights: &[f64],
        prior_weight: f64,
        domain: NumericDomain,
    ) -> Self {
        let (low, high) = (domain.low, domain.high);
        let mut mus: Vec<f64> = obs.iter().map(|x| x.clamp(low, high)).collect();
        mus.push(0.5 * (low + high));
        let mut sigmas = sigmas.to_vec();
        sigmas.push(high - low);
        let log_norms = mus
            .iter()
            .zip(&sigmas)
            .map(|(mu, s)| normal_mass((low - mu) / s, (high - mu) / s).ln())
            .collect();
        Self {
            mus,
            sigmas,
            log_weights: log_weights(obs_weights, prior_weight),
            log_norms,
            domain,
        }
    }

    /// The normalised log weights of the components (observations, then the prior).
    pub fn log_weights(&self) -> &[f64] {
        &self.log_weights
    }

    /// Draws an internal coordinate from the mixture.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let k = choose_component(&self.log_weights, rng);
        self.sample_component(k, rng)
    }

    /// Draws an internal coordinate from component `k`.
    pub fn sample_component<R: Rng + ?Sized>(&self, k: usize, rng: &mut R) -> f64 {
        truncated_normal(
            rng,
            self.mus[k],
            self.sigmas[k],
            self.domain.low,
            self.domain.high,
        )
    }

    /// Component `k`'s log density at `x` (continuous parameters) or log probability of the
    /// grid cell around `x` (integers: `x` in value units or their log), without its weight.
    pub fn component_log_pdf(&self, k: usize, x: f64) -> f64 {
        let (mu, s) = (self.mus[k], self.sigmas[k]);
        match self.domain.discrete {
            None => {
                let z = (x - mu) / s;
                -0.5 * z * z - LN_SQRT_2PI - s.ln() - self.log_norms[k]
            }
            Some((step, log)) => {
                let v = if log { x.exp() } else { x };
                let (a, b) = (v - step / 2.0, v + step / 2.0);
                let (a, b) = if log { (a.ln(), b.ln()) } else { (a, b) };
                let (a, b) = (a.max(self.domain.low), b.min(self.domain.high));
                normal_mass((a - mu) / s, (b - mu) / s).ln() - self.log_norms[k]
            }
        }
    }

    /// The mixture's log density (or grid-cell log probability) at `x`.
    pub fn log_pdf(&self, x: f64) -> f64 {
        log_sum_exp((0..self.mus.len()).map(|k| self.log_weights[k] + self.component_log_pdf(k, x)))
    }
}

/// A mixture of smoothed one-hot distributions over a categorical parameter's choices.
#[derive(Debug, Clone)]
pub(crate) struct CategoricalParzen {
    /// each component's probabilities of the choices (observations, then the uniform prior)
    kernels: Vec<Vec<f64>>,
    log_weights: Vec<f64>,
    /// the mixture's probabilities of the choices
    probs: Vec<f64>,
}

impl CategoricalParzen {
    /// Each observation contributes a kernel `prior_weight / k` on every choice plus 1 on its
    /// own (renormalised); the prior contributes the uniform distribution; kernels are mixed
    /// with the observation weights and `prior_weight`.
    pub fn new(obs: &[usize], obs_weights: &[f64], prior_weight: f64, n_choices: usize) -> Self {
        let k = n_choices as f64;
        let mut kernels: Vec<Vec<f64>> = obs
            .iter()
            .map(|&c| {
                (0..n_choices)
                    .map(|j| {
                        (prior_weight / k + if j == c { 1.0 } else { 0.0 }) / (prior_weight + 1.0)
                    })
                    .collect()
            })
            .collect();
        kernels.push(vec![1.0 / k; n_choices]);
        let log_weights = log_weights(obs_weights, prior_weight);
        let probs = (0..n_choices)
            .map(|j| {
                kernels
                    .iter()
                    .zip(&log_weights)
                    .map(|(ker, lw)| lw.exp() * ker[j])
                    .sum()
            })
            .collect();
        Self {
            kernels,
            log_weights,
            probs,
        }
    }

    /// Draws a choice index.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        sample_probs(&self.probs, rng)
    }

    /// Draws a choice index from component `k`.
    pub fn sample_component<R: Rng + ?Sized>(&self, k: usize, rng: &mut R) -> usize {
        sample_probs(&self.kernels[k], rng)
    }

    /// The log probability of choice `i`.
    pub fn log_pmf(&self, i: usize) -> f64 {
        self.probs.get(i).map_or(f64::NEG_INFINITY, |p| p.ln())
    }

    /// Component `k`'s log probability of choice `i`, without its weight.
    pub fn component_log_pmf(&self, k: usize, i: usize) -> f64 {
        self.kernels[k].get(i).map_or(f64::NEG_INFINITY, |p| p.ln())
    }

    /// The normalised log weights of the components (observations, then the prior).
    pub fn log_weights(&self) -> &[f64] {
        &self.log_weights
    }
}

fn sample_probs<R: Rng + ?Sized>(probs: &[f64], rng: &mut R) -> usize {
    let u: f64 = rng.random::<f64>();
    let mut acc = 0.0;
    for (i, p) in probs.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    probs.len() - 1
}

/// `log sum_k exp(log_weights[k] + terms(k))`, for joint (multivariate) mixtures.
pub(crate) fn mixture_log(log_weights: &[f64], terms: impl Fn(usize) -> f64) -> f64 {
    log_sum_exp((0..log_weights.len()).map(|k| log_weights[k] + terms(k)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn erfc_matches_known_values() {
        // reference values of erfc (Abramowitz & Stegun, table 7.1 / high-precision)
        let refs = [
            (0.0, 1.0),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_1),
            (2.0, 0.004_677_734_981_047_266),
            (3.0, 2.209_049_699_858_544e-5),
            (-1.0, 1.842_700_792_949_715),
        ];
        for (x, r) in refs {
            let e = erfc(x);
            assert!(((e - r) / r).abs() < 1.3e-7, "erfc({x}) = {e}, want {r}");
        }
        assert!((normal_mass(-1.959_964, 1.959_964) - 0.95).abs() < 1e-6);
        assert!((normal_mass(3.0, 4.0) - (0.001_349_898 - 0.000_031_671_24)).abs() < 1e-9);
    }

    fn integrate(p: &NumericParzen, low: f64, high: f64) -> f64 {
        let n = 20_000;
        let h = (high - low) / n as f64;
        (0..n)
            .map(|i| p.log_pdf(low + (i as f64 + 0.5) * h).exp() * h)
            .sum()
    }

    #[test]
    fn numeric_density_is_normalised_and_sampling_follows_it() {
        let d = NumericDomain {
            low: -2.0,
            high: 3.0,
            discrete: None,
        };
        let obs = [-1.9, 0.1, 0.15, 2.8];
        let p = NumericParzen::new(&obs, &[1.0; 4], 1.0, d);
        let mass = integrate(&p, -2.0, 3.0);
        assert!((mass - 1.0).abs() < 1e-4, "mass {mass}");
        // empirical histogram of samples vs the density on 5 bins
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 200_000;
        let mut hist = [0usize; 5];
        for _ in 0..n {
            let x = p.sample(&mut rng);
            assert!((-2.0..=3.0).contains(&x));
            hist[((x + 2.0).floor() as usize).min(4)] += 1;
        }
        for (b, &count) in hist.iter().enumerate() {
            let lo = -2.0 + b as f64;
            let want = integrate(&p, lo, lo + 1.0);
            let got = count as f64 / n as f64;
            assert!((got - want).abs() < 0.005, "bin {b}: {got} vs {want}");
        }
    }

    #[test]
    fn discrete_masses_sum_to_one() {
        // integers 1..=6, step 1, internal bounds widened by half a step
        let d = NumericDomain {
            low: 0.5,
            high: 6.5,
            discrete: Some((1.0, false)),
        };
        let p = NumericParzen::new(&[2.0, 2.0, 5.0], &[1.0; 3], 1.0, d);
        let total: f64 = (1..=6).map(|k| p.log_pdf(k as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        assert!(p.log_pdf(2.0) > p.log_pdf(4.0));
        // log-scale integers 1..=64
        let d = NumericDomain {
            low: 0.5f64.ln(),
            high: 64.5f64.ln(),
            discrete: Some((1.0, true)),
        };
        let p = NumericParzen::new(&[4f64.ln(), 40f64.ln()], &[1.0; 2], 1.0, d);
        let total: f64 = (1..=64).map(|k| p.log_pdf((k as f64).ln()).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
    }

    #[test]
    fn categorical_mixture() {
        let p = CategoricalParzen::new(&[0, 0, 2], &[1.0; 3], 1.0, 3);
        let probs: Vec<f64> = (0..3).map(|i| p.log_pmf(i).exp()).collect();
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(probs[0] > probs[2] && probs[2] > probs[1], "{probs:?}");
    }

    #[test]
    fn weights_ramp_for_old_observations() {
        assert_eq!(default_weights(3), vec![1.0; 3]);
        let w = default_weights(30);
        assert_eq!(w.len(), 30);
        assert!((w[0] - 1.0 / 30.0).abs() < 1e-12);
        assert!((w[4] - 1.0).abs() < 1e-12);
        assert!(w[1] > w[0] && w[2] > w[1]);
        assert!(w[5..].iter().all(|&x| x == 1.0));
    }
}

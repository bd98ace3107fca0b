//! Samplers: random search and the Tree-structured Parzen Estimator (TPE).
//!
//! Every sampler is a pure function of (seed, trial number, history): trial `n` draws from a
//! ChaCha8 generator seeded with `mix(seed, n)`, so a study re-opened from disk proposes
//! exactly what the uninterrupted study would have proposed.

use crate::parzen::{
    CategoricalParzen, NumericParzen, choose_component, default_weights, min_sigma, mixture_log,
};
use crate::space::{ParamSpec, Params, SearchSpace};
use crate::trial::{TrialRecord, TrialState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Proposes the parameters of the next trial.
pub trait Sampler {
    /// The parameters for trial `number`, given every earlier trial (any state, start order).
    fn sample(&self, space: &SearchSpace, history: &[TrialRecord], number: u64) -> Params;
}

/// The generator of trial `number` (SplitMix64 finaliser of seed and number, so nearby seeds
/// and trial numbers give unrelated streams).
pub(crate) fn trial_rng(seed: u64, number: u64, salt: u64) -> ChaCha8Rng {
    let mut z = seed
        .wrapping_add(number.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ChaCha8Rng::seed_from_u64(z)
}

fn sample_uniform(spec: &ParamSpec, rng: &mut ChaCha8Rng) -> serde_json::Value {
    match spec {
        ParamSpec::Categorical { choices } => {
            let i = rng.random_range(0..choices.len());
            choices[i].clone()
        }
        _ => match spec.numeric_domain() {
            Some(d) => spec.from_internal(d.low + (d.high - d.low) * rng.random::<f64>()),
            None => serde_json::Value::Null,
        },
    }
}

/// Independent uniform draws (log-uniform for log-scale parameters).
#[derive(Debug, Clone)]
pub struct RandomSampler {
    /// The study seed.
    pub seed: u64,
}

impl Sampler for RandomSampler {
    fn sample(&self, space: &SearchSpace, _history: &[TrialRecord], number: u64) -> Params {
        let mut rng = trial_rng(self.seed, number, 0);
        space
            .params()
            .iter()
            .map(|(name, spec)| (name.clone(), sample_uniform(spec, &mut rng)))
            .collect()
    }
}

/// Settings of the TPE sampler (defaults as Optuna's).
#[derive(Debug, Clone, PartialEq)]
pub struct TpeSettings {
    /// The study seed.
    pub seed: u64,
    /// Random trials before TPE takes over (counting complete and pruned trials).
    pub n_startup_trials: usize,
    /// Candidates drawn from l(x) per parameter; the one with the largest l(x)/g(x) wins.
    pub n_ei_candidates: usize,
    /// The fraction of observed trials that form the "good" group.
    pub gamma: f64,
    /// The largest size of the "good" group.
    pub gamma_max: usize,
    /// The weight of the prior component of each Parzen estimator.
    pub prior_weight: f64,
    /// Model the parameters jointly (one kernel per observation over all parameters, Optuna's
    /// `multivariate=True`) instead of one independent estimator per parameter.
    pub multivariate: bool,
}

impl Default for TpeSettings {
    fn default() -> Self {
        Self {
            seed: 0,
            n_startup_trials: 10,
            n_ei_candidates: 24,
            gamma: 0.1,
            gamma_max: 25,
            prior_weight: 1.0,
            multivariate: false,
        }
    }
}

/// The Tree-structured Parzen Estimator (Bergstra et al., NeurIPS 2011), univariate form.
///
/// Observed trials are ranked (complete trials by value; pruned trials after all complete
/// ones, those that got further first, then by their last reported value; failed and running
/// trials are ignored). The best `min(ceil(gamma n), gamma_max)` form the good group, the rest
/// the bad group. Per parameter, a Parzen estimator l(x) is fitted to the good group and g(x)
/// to the bad group (both with a prior component); `n_ei_candidates` values are drawn from
/// l(x) and the one maximising log l(x) - log g(x) (equivalently expected improvement) is
/// proposed. The first `n_startup_trials` trials are random.
///
/// With `multivariate`, l and g are joint mixtures over all parameters: one component per
/// observation (a product of per-parameter kernels) plus the prior, numeric bandwidths
/// `0.2 * n^(-1 / (d + 4)) * range` (Scott-like, as Optuna), and the candidates are drawn and
/// scored jointly, which captures interactions between parameters.
#[derive(Debug, Clone)]
pub struct TpeSampler {
    /// The settings.
    pub settings: TpeSettings,
}

/// Rank key of an observed trial: smaller is better.
fn rank_key(t: &TrialRecord) -> Option<(u8, f64, f64)> {
    match t.state {
        TrialState::Complete => t.value.filter(|v| v.is_finite()).map(|v| (0, 0.0, v)),
        TrialState::Pruned => match t.last_report() {
            Some((step, v)) if v.is_finite() => Some((1, -(step as f64), v)),
            _ => Some((2, 0.0, 0.0)),
        },
        _ => None,
    }
}

impl TpeSampler {
    /// The size of the good group for `n` observed trials.
    pub fn n_good(&self, n: usize) -> usize {
        ((self.settings.gamma * n as f64).ceil() as usize)
            .min(self.settings.gamma_max)
            .min(n)
    }

    /// Splits the observed trials into (good, bad), each in trial order.
    pub fn split<'a>(
        &self,
        history: &'a [TrialRecord],
    ) -> (Vec<&'a TrialRecord>, Vec<&'a TrialRecord>) {
        let mut observed: Vec<(&TrialRecord, (u8, f64, f64))> = history
            .iter()
            .filter_map(|t| rank_key(t).map(|k| (t, k)))
            .collect();
        let n_good = self.n_good(observed.len());
        observed.sort_by(|a, b| {
            a.1.0
                .cmp(&b.1.0)
                .then(a.1.1.total_cmp(&b.1.1))
                .then(a.1.2.total_cmp(&b.1.2))
                .then(a.0.number.cmp(&b.0.number))
        });
        let mut good: Vec<&TrialRecord> = observed[..n_good].iter().map(|x| x.0).collect();
        let mut bad: Vec<&TrialRecord> = observed[n_good..].iter().map(|x| x.0).collect();
        good.sort_by_key(|t| t.number);
        bad.sort_by_key(|t| t.number);
        (good, bad)
    }

    fn sample_param(
        &self,
        spec: &ParamSpec,
        name: &str,
        good: &[&TrialRecord],
        bad: &[&TrialRecord],
        rng: &mut ChaCha8Rng,
    ) -> serde_json::Value {
        // observations of this parameter (trials whose value is outside the current space are
        // skipped, e.g. after the bounds were narrowed)
        let obs = |group: &[&TrialRecord]| -> Vec<f64> {
            group
                .iter()
                .filter_map(|t| t.params.get(name).and_then(|v| spec.to_internal(v)))
                .collect()
        };
        let (xg, xb) = (obs(good), obs(bad));
        let (wg, wb) = (default_weights(xg.len()), default_weights(xb.len()));
        let pw = self.settings.prior_weight;
        let n_cand = self.settings.n_ei_candidates.max(1);
        match spec {
            ParamSpec::Categorical { .. } => {
                let k = spec.n_choices().unwrap_or(1);
                let to_idx = |x: &Vec<f64>| x.iter().map(|v| *v as usize).collect::<Vec<_>>();
                let l = CategoricalParzen::new(&to_idx(&xg), &wg, pw, k);
                let g = CategoricalParzen::new(&to_idx(&xb), &wb, pw, k);
                let mut best = (f64::NEG_INFINITY, 0usize);
                for _ in 0..n_cand {
                    let c = l.sample(rng);
                    let score = l.log_pmf(c) - g.log_pmf(c);
                    if score > best.0 {
                        best = (score, c);
                    }
                }
                spec.from_internal(best.1 as f64)
            }
            _ => {
                let Some(domain) = spec.numeric_domain() else {
                    return serde_json::Value::Null;
                };
                let l = NumericParzen::new(&xg, &wg, pw, domain);
                let g = NumericParzen::new(&xb, &wb, pw, domain);
                let mut best: Option<(f64, f64)> = None;
                for _ in 0..n_cand {
                    let raw = l.sample(rng);
                    // integers: score the grid value the candidate rounds to
                    let value = spec.from_internal(raw);
                    let x = spec.to_internal(&value).unwrap_or(raw);
                    let score = l.log_pdf(x) - g.log_pdf(x);
                    if best.is_none_or(|(s, _)| score > s) {
                        best = Some((score, x));
                    }
                }
                spec.from_internal(best.map_or(0.5 * (domain.low + domain.high), |b| b.1))
            }
        }
    }
}

/// One parameter's pair of estimators in the joint (multivariate) model.
enum JointDim {
    Numeric(NumericParzen, NumericParzen),
    Categorical(CategoricalParzen, CategoricalParzen),
}

impl TpeSampler {
    fn sample_joint(
        &self,
        space: &SearchSpace,
        good: &[&TrialRecord],
        bad: &[&TrialRecord],
        rng: &mut ChaCha8Rng,
    ) -> Params {
        let specs: Vec<(&String, &ParamSpec)> = space.params().iter().collect();
        let d = specs.len();
        // observations with a value in the space for every parameter, in trial order
        let rows = |group: &[&TrialRecord]| -> Vec<Vec<f64>> {
            group
                .iter()
                .filter_map(|t| {
                    specs
                        .iter()
                        .map(|(name, spec)| t.params.get(*name).and_then(|v| spec.to_internal(v)))
                        .collect::<Option<Vec<f64>>>()
                })
                .collect()
        };
        let (rg, rb) = (rows(good), rows(bad));
        let (wg, wb) = (default_weights(rg.len()), default_weights(rb.len()));
        let pw = self.settings.prior_weight;
        let mut dims = Vec::with_capacity(d);
        for (j, (_, spec)) in specs.iter().enumerate() {
            let col = |r: &Vec<Vec<f64>>| -> Vec<f64> { r.iter().map(|row| row[j]).collect() };
            let (cg, cb) = (col(&rg), col(&rb));
            match spec.numeric_domain() {
                Some(domain) => {
                    let range = domain.high - domain.low;
                    let sig = |n: usize| {
                        let s = 0.2 * (n.max(1) as f64).powf(-1.0 / (d as f64 + 4.0)) * range;
                        vec![s.clamp(min_sigma(range, n + 1), range); n]
                    };
                    dims.push(JointDim::Numeric(
                        NumericParzen::with_sigmas(&cg, &sig(cg.len()), &wg, pw, domain),
                        NumericParzen::with_sigmas(&cb, &sig(cb.len()), &wb, pw, domain),
                    ));
                }
                None => {
                    let k = spec.n_choices().unwrap_or(1);
                    let idx = |c: &Vec<f64>| c.iter().map(|v| *v as usize).collect::<Vec<_>>();
                    dims.push(JointDim::Categorical(
                        CategoricalParzen::new(&idx(&cg), &wg, pw, k),
                        CategoricalParzen::new(&idx(&cb), &wb, pw, k),
                    ));
                }
            }
        }
        let (lw_l, lw_g) = match dims.first() {
            Some(JointDim::Numeric(l, g)) => (l.log_weights().to_vec(), g.log_weights().to_vec()),
            Some(JointDim::Categorical(l, g)) => {
                (l.log_weights().to_vec(), g.log_weights().to_vec())
            }
            None => return Params::new(),
        };
        let joint = |x: &[f64], good_side: bool| -> f64 {
            let lw = if good_side { &lw_l } else { &lw_g };
            mixture_log(lw, |k| {
                dims.iter()
                    .zip(x)
                    .map(|(dim, &xj)| match (dim, good_side) {
                        (JointDim::Numeric(l, _), true) => l.component_log_pdf(k, xj),
                        (JointDim::Numeric(_, g), false) => g.component_log_pdf(k, xj),
                        (JointDim::Categorical(l, _), true) => l.component_log_pmf(k, xj as usize),
                        (JointDim::Categorical(_, g), false) => g.component_log_pmf(k, xj as usize),
                    })
                    .sum()
            })
        };
        let mut best: Option<(f64, Vec<f64>)> = None;
        for _ in 0..self.settings.n_ei_candidates.max(1) {
            let k = choose_component(&lw_l, rng);
            let x: Vec<f64> = dims
                .iter()
                .zip(&specs)
                .map(|(dim, (_, spec))| match dim {
                    JointDim::Numeric(l, _) => {
                        let raw = l.sample_component(k, rng);
                        spec.to_internal(&spec.from_internal(raw)).unwrap_or(raw)
                    }
                    JointDim::Categorical(l, _) => l.sample_component(k, rng) as f64,
                })
                .collect();
            let score = joint(&x, true) - joint(&x, false);
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, x));
            }
        }
        let x = best.map(|b| b.1).unwrap_or_default();
        specs
            .iter()
            .zip(&x)
            .map(|((name, spec), &xj)| ((*name).clone(), spec.from_internal(xj)))
            .collect()
    }
}

impl Sampler for TpeSampler {
    fn sample(&self, space: &SearchSpace, history: &[TrialRecord], number: u64) -> Params {
        let n_observed = history.iter().filter(|t| rank_key(t).is_some()).count();
        if n_observed < self.settings.n_startup_trials.max(1) {
            return RandomSampler {
                seed: self.settings.seed,
            }
            .sample(space, history, number);
        }
        let (good, bad) = self.split(history);
        let mut rng = trial_rng(self.settings.seed, number, 1);
        if self.settings.multivariate {
            return self.sample_joint(space, &good, &bad, &mut rng);
        }
        space
            .params()
            .iter()
            .map(|(name, spec)| {
                (
                    name.clone(),
                    self.sample_param(spec, name, &good, &bad, &mut rng),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn done(number: u64, x: f64, value: f64) -> TrialRecord {
        let mut t = TrialRecord::new(number, [("x".to_string(), json!(x))].into());
        t.state = TrialState::Complete;
        t.value = Some(value);
        t
    }

    #[test]
    fn split_ranks_complete_before_pruned() {
        let s = TpeSampler {
            settings: TpeSettings {
                gamma: 0.25,
                ..Default::default()
            },
        };
        let mut hist: Vec<TrialRecord> =
            (0..6).map(|i| done(i, i as f64, 10.0 - i as f64)).collect();
        let mut p = TrialRecord::new(6, [("x".to_string(), json!(0.0))].into());
        p.state = TrialState::Pruned;
        p.intermediate.insert(3, -100.0);
        hist.push(p);
        let mut f = TrialRecord::new(7, [("x".to_string(), json!(0.0))].into());
        f.state = TrialState::Failed {
            reason: "x".into(),
            interrupted: false,
        };
        hist.push(f);
        let (good, bad) = s.split(&hist);
        // 7 observed (failed ignored), ceil(0.25 * 7) = 2 good: the two lowest complete values
        assert_eq!(
            good.iter().map(|t| t.number).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(
            bad.iter().map(|t| t.number).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 6]
        );
    }

    #[test]
    fn same_seed_same_proposals_and_in_bounds() {
        for multivariate in [false, true] {
            proposals_are_reproducible_and_valid(multivariate);
        }
    }

    fn proposals_are_reproducible_and_valid(multivariate: bool) {
        let space = SearchSpace::from_json(
            &json!({
                "x": {"type": "float", "low": -1.0, "high": 1.0},
                "lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": true},
                "n": {"type": "int", "low": 1, "high": 64, "log": true},
                "c": {"type": "categorical", "choices": ["a", "b", "c"]}
            }),
            std::path::Path::new("t"),
            "space",
        )
        .unwrap();
        let tpe = TpeSampler {
            settings: TpeSettings {
                seed: 3,
                n_startup_trials: 3,
                multivariate,
                ..Default::default()
            },
        };
        let mut hist = Vec::new();
        for i in 0..12u64 {
            let p = tpe.sample(&space, &hist, i);
            assert_eq!(p, tpe.sample(&space, &hist, i));
            space.validate(&p).unwrap();
            let mut t = TrialRecord::new(i, p);
            t.state = TrialState::Complete;
            t.value = Some(t.params["x"].as_f64().unwrap().powi(2));
            hist.push(t);
        }
        let other = TpeSampler {
            settings: TpeSettings {
                seed: 4,
                n_startup_trials: 3,
                multivariate,
                ..Default::default()
            },
        };
        assert_ne!(
            tpe.sample(&space, &hist, 12),
            other.sample(&space, &hist, 12)
        );
    }
}

//! Pruners: decide after each intermediate report whether a trial should stop early.
//! Objectives are minimised (validation losses).

use crate::trial::{TrialRecord, TrialState};

/// Decides whether a running trial should stop.
pub trait Pruner {
    /// Whether `trial` (whose newest report is its last intermediate value) should be pruned,
    /// given every other trial of the study (`history` may contain `trial` itself; it is
    /// skipped by number).
    fn should_prune(&self, trial: &TrialRecord, history: &[TrialRecord]) -> bool;
}

/// Never prunes.
#[derive(Debug, Clone, Copy, Default)]
pub struct NopPruner;

impl Pruner for NopPruner {
    fn should_prune(&self, _trial: &TrialRecord, _history: &[TrialRecord]) -> bool {
        false
    }
}

/// The median stopping rule (Golovin et al. 2017, "Google Vizier"; Optuna's `MedianPruner`):
/// at step s, a trial is pruned when its best value up to s is worse than the median of the
/// values that the *completed* trials reported at step s.
#[derive(Debug, Clone, PartialEq)]
pub struct MedianPruner {
    /// No pruning until this many trials have completed.
    pub n_startup_trials: usize,
    /// No pruning at steps below this one (warm-up of each trial).
    pub n_warmup_steps: u64,
    /// Check only every `interval_steps` steps after the warm-up (1 = every report).
    pub interval_steps: u64,
    /// At least this many completed trials must have reported at the step.
    pub n_min_trials: usize,
}

impl Default for MedianPruner {
    fn default() -> Self {
        Self {
            n_startup_trials: 5,
            n_warmup_steps: 0,
            interval_steps: 1,
            n_min_trials: 1,
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

impl Pruner for MedianPruner {
    fn should_prune(&self, trial: &TrialRecord, history: &[TrialRecord]) -> bool {
        let Some((step, last)) = trial.last_report() else {
            return false;
        };
        if !last.is_finite() {
            return true;
        }
        let completed: Vec<&TrialRecord> = history
            .iter()
            .filter(|t| t.number != trial.number && t.state == TrialState::Complete)
            .collect();
        if completed.len() < self.n_startup_trials || step < self.n_warmup_steps {
            return false;
        }
        if !(step - self.n_warmup_steps).is_multiple_of(self.interval_steps.max(1)) {
            return false;
        }
        let at_step: Vec<f64> = completed
            .iter()
            .filter_map(|t| t.intermediate.get(&step).copied())
            .filter(|v| v.is_finite())
            .collect();
        if at_step.is_empty() || at_step.len() < self.n_min_trials {
            return false;
        }
        let best = trial.best_intermediate_until(step).unwrap_or(last);
        best > median(at_step)
    }
}

/// Asynchronous successive halving (Li et al. 2020, "A System for Massively Parallel
/// Hyperparameter Tuning"; Optuna's `SuccessiveHalvingPruner`).
///
/// Rung k sits at step `min_resource * reduction_factor^(min_early_stopping_rate + k)`. When a
/// trial's report first reaches a rung, that value is compared with the values every other
/// trial (running, complete or pruned) had when it reached the same rung: the trial continues
/// when it is among the best `floor(n / reduction_factor)` of the n values (or the best one,
/// when that floor is 0), else it is pruned. A rung with fewer than `bootstrap_count` values
/// prunes nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct SuccessiveHalvingPruner {
    /// The step of rung 0 (with `min_early_stopping_rate` 0).
    pub min_resource: u64,
    /// The factor between rungs (>= 2).
    pub reduction_factor: u64,
    /// Shifts the first rung to `min_resource * reduction_factor^rate`.
    pub min_early_stopping_rate: u32,
    /// Trials a rung needs before it prunes.
    pub bootstrap_count: usize,
}

impl Default for SuccessiveHalvingPruner {
    fn default() -> Self {
        Self {
            min_resource: 1,
            reduction_factor: 4,
            min_early_stopping_rate: 0,
            bootstrap_count: 0,
        }
    }
}

impl SuccessiveHalvingPruner {
    /// The step of rung `k`, or None on overflow.
    pub fn rung_step(&self, k: u32) -> Option<u64> {
        self.reduction_factor
            .max(2)
            .checked_pow(self.min_early_stopping_rate.checked_add(k)?)?
            .checked_mul(self.min_resource.max(1))
    }

    /// The value `t` had when it reached rung `k` (its first report at or after the rung's
    /// step), with that report's step.
    fn rung_value(&self, t: &TrialRecord, k: u32) -> Option<(u64, f64)> {
        let step = self.rung_step(k)?;
        t.intermediate.range(step..).next().map(|(s, v)| (*s, *v))
    }
}

impl Pruner for SuccessiveHalvingPruner {
    fn should_prune(&self, trial: &TrialRecord, history: &[TrialRecord]) -> bool {
        let Some((step, last)) = trial.last_report() else {
            return false;
        };
        if !last.is_finite() {
            return true;
        }
        let eta = self.reduction_factor.max(2) as usize;
        let mut k = 0u32;
        while let Some(rs) = self.rung_step(k) {
            if rs > step {
                break;
            }
            // only rungs this report reaches for the first time
            if let Some((s, value)) = self.rung_value(trial, k)
                && s == step
            {
                let mut competing: Vec<f64> = history
                    .iter()
                    .filter(|t| {
                        t.number != trial.number && !matches!(t.state, TrialState::Failed { .. })
                    })
                    .filter_map(|t| self.rung_value(t, k).map(|x| x.1))
                    .filter(|v| v.is_finite())
                    .collect();
                competing.push(value);
                if competing.len() < self.bootstrap_count {
                    return false;
                }
                competing.sort_by(f64::total_cmp);
                let idx = (competing.len() / eta).saturating_sub(1);
                if value > competing[idx] {
                    return true;
                }
            }
            k += 1;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn trial(number: u64, curve: &[f64], state: TrialState) -> TrialRecord {
        let mut t = TrialRecord::new(number, BTreeMap::new());
        for (i, v) in curve.iter().enumerate() {
            t.intermediate.insert(i as u64 + 1, *v);
        }
        t.value = curve.last().copied();
        t.state = state;
        t
    }

    #[test]
    fn median_respects_startup_warmup_and_interval() {
        let hist: Vec<TrialRecord> = (0..4)
            .map(|i| trial(i, &[1.0, 0.8, 0.6, 0.5], TrialState::Complete))
            .collect();
        let bad = trial(10, &[2.0], TrialState::Running);
        let p = MedianPruner {
            n_startup_trials: 5,
            ..Default::default()
        };
        assert!(!p.should_prune(&bad, &hist), "only 4 completed trials");
        let p = MedianPruner {
            n_startup_trials: 4,
            n_warmup_steps: 2,
            ..Default::default()
        };
        assert!(!p.should_prune(&bad, &hist), "warm-up");
        let bad2 = trial(10, &[2.0, 2.0], TrialState::Running);
        assert!(p.should_prune(&bad2, &hist));
        let p = MedianPruner {
            n_startup_trials: 4,
            n_warmup_steps: 1,
            interval_steps: 2,
            ..Default::default()
        };
        assert!(!p.should_prune(&bad2, &hist), "step 2 is off the interval");
        let bad3 = trial(10, &[2.0, 2.0, 2.0], TrialState::Running);
        assert!(p.should_prune(&bad3, &hist));
        // a trial at the median is kept; a trial whose best so far beats the median is kept
        let p = MedianPruner {
            n_startup_trials: 4,
            ..Default::default()
        };
        assert!(!p.should_prune(&trial(10, &[1.0, 0.8], TrialState::Running), &hist));
        assert!(!p.should_prune(&trial(10, &[0.7, 0.9], TrialState::Running), &hist));
        assert!(p.should_prune(&trial(10, &[1.0, 0.81], TrialState::Running), &hist));
        // NaN is pruned at once
        assert!(p.should_prune(&trial(10, &[f64::NAN], TrialState::Running), &hist));
    }

    #[test]
    fn asha_promotes_the_top_fraction() {
        let p = SuccessiveHalvingPruner {
            min_resource: 1,
            reduction_factor: 2,
            min_early_stopping_rate: 0,
            bootstrap_count: 0,
        };
        assert_eq!(p.rung_step(0), Some(1));
        assert_eq!(p.rung_step(3), Some(8));
        // rung 0 (step 1) values of earlier trials: 1.0, 2.0, 3.0
        let hist = vec![
            trial(0, &[1.0, 0.9], TrialState::Complete),
            trial(1, &[2.0], TrialState::Pruned),
            trial(2, &[3.0], TrialState::Pruned),
        ];
        // 4 values -> best 2 continue
        assert!(!p.should_prune(&trial(3, &[1.5], TrialState::Running), &hist));
        assert!(p.should_prune(&trial(3, &[2.5], TrialState::Running), &hist));
        // step 2 reaches rung 1 (step 2): only trial 0 has a rung-1 value (0.9); 2 values ->
        // the best one continues
        assert!(!p.should_prune(&trial(3, &[1.5, 0.8], TrialState::Running), &hist));
        assert!(p.should_prune(&trial(3, &[1.5, 0.95], TrialState::Running), &hist));
        // step 3 is not a rung: no decision
        assert!(!p.should_prune(&trial(3, &[1.5, 0.8, 5.0], TrialState::Running), &hist));
        // bootstrap: a rung with too few values prunes nothing
        let p = SuccessiveHalvingPruner {
            bootstrap_count: 5,
            ..p
        };
        assert!(!p.should_prune(&trial(3, &[2.5], TrialState::Running), &hist));
    }
}

//! Trials as the study sees them: parameters, intermediate reports and the outcome.

use crate::space::Params;
use std::collections::BTreeMap;

/// Where a trial stands.
#[derive(Debug, Clone, PartialEq)]
pub enum TrialState {
    /// Started and not finished (in this process, or interrupted before the study was
    /// re-opened).
    Running,
    /// Finished with a final objective value.
    Complete,
    /// Stopped early by the pruner.
    Pruned,
    /// Failed: the objective returned an error or a non-finite value, or the process ended
    /// while the trial was running (`interrupted`).
    Failed {
        /// Why it failed.
        reason: String,
        /// The trial was running when the process that ran it ended.
        interrupted: bool,
    },
}

/// One trial of a study.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialRecord {
    /// The trial number (0, 1, 2, ... in start order).
    pub number: u64,
    /// The parameters it was run with.
    pub params: Params,
    /// Intermediate objective values by step, as reported to the pruner.
    pub intermediate: BTreeMap<u64, f64>,
    /// The state.
    pub state: TrialState,
    /// The final objective value (complete trials only).
    pub value: Option<f64>,
    /// The interrupted trial whose parameters this trial re-runs, if any.
    pub requeued_from: Option<u64>,
}

impl TrialRecord {
    /// A new running trial.
    pub fn new(number: u64, params: Params) -> Self {
        Self {
            number,
            params,
            intermediate: BTreeMap::new(),
            state: TrialState::Running,
            value: None,
            requeued_from: None,
        }
    }

    /// Whether the trial completed.
    pub fn is_complete(&self) -> bool {
        self.state == TrialState::Complete
    }

    /// Whether the trial is finished (complete, pruned or failed).
    pub fn is_finished(&self) -> bool {
        self.state != TrialState::Running
    }

    /// The last reported step and its value.
    pub fn last_report(&self) -> Option<(u64, f64)> {
        self.intermediate.iter().next_back().map(|(s, v)| (*s, *v))
    }

    /// The lowest value reported at or before `step`.
    pub fn best_intermediate_until(&self, step: u64) -> Option<f64> {
        self.intermediate
            .range(..=step)
            .map(|(_, v)| *v)
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| a.min(v)))
            })
    }
}

//! A study: the trials of one search, kept in an append-only JSONL journal on disk.
//!
//! The journal (`<dir>/study.jsonl`) holds one JSON object per line and per event:
//!
//! ```text
//! {"event":"study","version":1,"direction":"minimize","seed":42,"space":{...},"created_unix":...}
//! {"event":"start","trial":0,"params":{"lr":0.0003,...},"unix":...}
//! {"event":"report","trial":0,"step":100,"value":"0.73"}
//! {"event":"complete","trial":0,"value":"0.61"}
//! {"event":"pruned","trial":1}
//! {"event":"failed","trial":2,"reason":"...","interrupted":false}
//! ```
//!
//! Objective values are strings holding the exact `f64` (see `exact_f64` in `journal.rs`). Each event
//! is written with a single `write` on a file opened for appending and then
//! `fsync`ed before the study acts on it, so after a crash the journal holds every event up to
//! the last one acted upon, plus at most one partially written final line, which re-opening
//! detects (it does not end in a newline and does not parse) and cuts off. A corrupt line
//! anywhere else is an error naming the line. While a study is open its journal is locked
//! (an advisory `flock`, released by the OS when the process dies), so two processes cannot
//! interleave trials.
//!
//! Re-opening a study replays the journal: the same trials, reports and best trial, and since
//! every sampler is a pure function of (seed, trial number, history) the next proposals are
//! those the uninterrupted study would have made. The search space and seed must equal those
//! the study was created with ([`TuneError::StudyMismatch`] otherwise).
//!
//! **Interrupted trials**: a trial that was running when its process ended (a `start` without
//! an outcome) is recorded as failed with `"interrupted": true` when the study is re-opened;
//! its partial reports stay in the journal but it counts neither towards the trial budget nor
//! as an observation. With `rerun_interrupted` (the default) its parameters are queued and the
//! next trial (a new number, `"requeued_from"` naming the old one) runs them again. A re-run
//! that is itself interrupted is not queued again, so a configuration that kills the process
//! (e.g. out of memory) is tried at most twice.

use crate::error::{Result, TuneError};
use crate::pruner::{MedianPruner, NopPruner, Pruner, SuccessiveHalvingPruner};
use crate::sampler::{RandomSampler, Sampler, TpeSampler, TpeSettings};
use crate::space::{Params, SearchSpace};
use crate::trial::{TrialRecord, TrialState};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

mod journal;

use journal::Event;
pub use journal::JOURNAL_FILE;

/// Which sampler proposes the trials.
#[derive(Debug, Clone, PartialEq)]
pub enum SamplerConfig {
    /// Uniform / log-uniform random search.
    Random,
    /// TPE (its `seed` is replaced by the study's).
    Tpe(TpeSettings),
}

/// Which pruner stops trials early.
#[derive(Debug, Clone, PartialEq)]
pub enum PrunerConfig {
    /// Never prune.
    None,
    /// The median stopping rule.
    Median(MedianPruner),
    /// Asynchronous successive halving.
    SuccessiveHalving(SuccessiveHalvingPruner),
}

/// Everything a study needs besides its folder.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyConfig {
    /// The search space (fixed for the life of the study).
    pub space: SearchSpace,
    /// The seed of every random choice (fixed for the life of the study).
    pub seed: u64,
    /// The sampler.
    pub sampler: SamplerConfig,
    /// The pruner.
    pub pruner: PrunerConfig,
    /// Re-run the parameters of trials interrupted by a crash (see the module docs).
    pub rerun_interrupted: bool,
}

/// Whether a trial should go on after a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep training.
    Continue,
    /// Stop now and return [`TrialOutcome::Pruned`].
    Prune,
}

/// What an objective returns.
#[derive(Debug, Clone, PartialEq)]
pub enum TrialOutcome {
    /// Ran to the end with this objective value (lower is better).
    Complete(f64),
    /// Stopped after a [`Decision::Prune`].
    Pruned,
    /// This configuration failed (e.g. training diverged); the trial is recorded as failed
    /// with this reason and the search goes on.
    Failed(String),
}

/// The error type objectives return.
pub type ObjectiveError = Box<dyn std::error::Error + Send + Sync>;

/// A function to minimise: typically "train with these parameters, return the validation
/// loss", reporting intermediate validation losses through [`Trial::report`].
pub trait Objective {
    /// Runs one trial. An error fails the trial (and stops [`Study::optimize`] unless it
    /// catches errors); a non-finite value or report fails the trial and the study goes on.
    fn run(&mut self, trial: &mut Trial<'_>) -> std::result::Result<TrialOutcome, ObjectiveError>;
}

impl<F> Objective for F
where
    F: FnMut(&mut Trial<'_>) -> std::result::Result<TrialOutcome, ObjectiveError>,
{
    fn run(&mut self, trial: &mut Trial<'_>) -> std::result::Result<TrialOutcome, ObjectiveError> {
        self(trial)
    }
}

/// A running trial, handed to the objective.
pub struct Trial<'a> {
    study: &'a mut Study,
    number: u64,
}

impl Trial<'_> {
    /// The trial number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The trial's parameters.
    pub fn params(&self) -> &Params {
        &self.study.trials[self.number as usize].params
    }

    /// Records an intermediate objective value at `step` (steps must increase) and asks the
    /// pruner whether to stop. A non-finite value always answers [`Decision::Prune`] and the
    /// trial will be recorded as failed.
    pub fn report(&mut self, step: u64, value: f64) -> Result<Decision> {
        self.study.report(self.number, step, value)
    }
}

/// What re-opening a study found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovery {
    /// Trials that were running when the previous process ended (now marked failed).
    pub interrupted: Vec<u64>,
    /// Trials whose parameters are queued for a re-run.
    pub requeued: Vec<u64>,
    /// Bytes of a partially written last line that were cut off.
    pub truncated_bytes: u64,
}

/// A search: its trials, sampler, pruner and journal.
pub struct Study {
    dir: PathBuf,
    journal: PathBuf,
    file: File,
    space: SearchSpace,
    sampler: Box<dyn Sampler>,
    pruner: Box<dyn Pruner>,
    trials: Vec<TrialRecord>,
    queue: VecDeque<(Option<u64>, Params)>,
    diverged: BTreeMap<u64, (u64, f64)>,
    recovery: Recovery,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Study {
    /// The study folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The journal file.
    pub fn journal_path(&self) -> &Path {
        &self.journal
    }

    /// The search space.
    pub fn space(&self) -> &SearchSpace {
        &self.space
    }

    /// Every trial in start order.
    pub fn trials(&self) -> &[TrialRecord] {
        &self.trials
    }

    /// What re-opening found (interrupted trials, cut-off bytes).
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Trials that count towards the budget: complete, pruned, or failed other than by an
    /// interruption.
    pub fn n_counted(&self) -> usize {
        self.trials
            .iter()
            .filter(|t| match &t.state {
                TrialState::Running => false,
                TrialState::Failed { interrupted, .. } => !interrupted,
                _ => true,
            })
            .count()
    }

    /// The complete trial with the lowest value (the earliest on ties).
    pub fn best_trial(&self) -> Option<&TrialRecord> {
        self.trials
            .iter()
            .filter(|t| t.is_complete())
            .filter_map(|t| t.value.map(|v| (t, v)))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.number.cmp(&b.0.number)))
            .map(|x| x.0)
    }

    /// Queues parameters to be run before any sampled ones (e.g. the base config's values, so
    /// the search is never worse than the starting point). They must lie in the space.
    pub fn enqueue(&mut self, params: Params) -> Result<()> {
        self.space
            .validate(&params)
            .map_err(|reason| TuneError::Config {
                path: self.journal.clone(),
                key: "enqueued parameters".into(),
                reason,
            })?;
        self.queue.push_back((None, params));
        Ok(())
    }

    /// Starts a trial: queued parameters first, else the sampler's proposal. Returns its
    /// number.
    pub fn ask(&mut self) -> Result<u64> {
        let number = self.trials.len() as u64;
        let (requeued_from, params) = match self.queue.pop_front() {
            Some(q) => q,
            None => (None, self.sampler.sample(&self.space, &self.trials, number)),
        };
        self.append(Event::Start {
            trial: number,
            params,
            requeued_from,
            unix: now_unix(),
        })?;
        Ok(number)
    }

    fn check_running(&self, trial: u64) -> Result<()> {
        match self.trials.get(trial as usize) {
            Some(t) if !t.is_finished() => Ok(()),
            Some(_) => Err(TuneError::Report {
                trial,
                reason: "the trial is already finished".into(),
            }),
            None => Err(TuneError::Report {
                trial,
                reason: "no such trial".into(),
            }),
        }
    }

    /// Records an intermediate value of a running trial and asks the pruner.
    pub fn report(&mut self, trial: u64, step: u64, value: f64) -> Result<Decision> {
        self.check_running(trial)?;
        if let Some((last, _)) = self.trials[trial as usize].last_report()
            && step <= last
        {
            return Err(TuneError::Report {
                trial,
                reason: format!("step {step} reported after step {last} (steps must increase)"),
            });
        }
        if !value.is_finite() {
            self.diverged.entry(trial).or_insert((step, value));
            return Ok(Decision::Prune);
        }
        self.append(Event::Report { trial, step, value })?;
        let t = &self.trials[trial as usize];
        Ok(if self.pruner.should_prune(t, &self.trials) {
            Decision::Prune
        } else {
            Decision::Continue
        })
    }

    /// Finishes a running trial with the objective's result (`Err` holds its error message).
    pub fn tell(
        &mut self,
        trial: u64,
        outcome: std::result::Result<TrialOutcome, String>,
    ) -> Result<()> {
        self.check_running(trial)?;
        let event = match (self.diverged.remove(&trial), outcome) {
            (_, Err(reason)) => Event::Failed {
                trial,
                reason,
                interrupted: false,
            },
            (Some((step, v)), Ok(_)) => Event::Failed {
                trial,
                reason: format!("non-finite value {v} reported at step {step}"),
                interrupted: false,
            },
            (None, Ok(TrialOutcome::Complete(v))) if !v.is_finite() => Event::Failed {
                trial,
                reason: format!("non-finite objective value {v}"),
                interrupted: false,
            },
            (None, Ok(TrialOutcome::Complete(value))) => Event::Complete { trial, value },
            (None, Ok(TrialOutcome::Pruned)) => Event::Pruned { trial },
            (None, Ok(TrialOutcome::Failed(reason))) => Event::Failed {
                trial,
                reason,
                interrupted: false,
            },
        };
        self.append(event)
    }

    /// Runs trials until `n_trials` count towards the budget (see [`Study::n_counted`]):
    /// ask, run the objective, tell, then call `on_trial_end` with the finished trial and the
    /// best so far. An objective error fails its trial and, unless `catch_errors`, ends the
    /// search with [`TuneError::Objective`].
    pub fn optimize<O: Objective + ?Sized>(
        &mut self,
        objective: &mut O,
        n_trials: usize,
        catch_errors: bool,
        mut on_trial_end: impl FnMut(&TrialRecord, Option<&TrialRecord>),
    ) -> Result<()> {
        while self.n_counted() < n_trials {
            let number = self.ask()?;
            let result = {
                let mut trial = Trial {
                    study: self,
                    number,
                };
                objective.run(&mut trial)
            };
            let fatal = match result {
                Ok(outcome) => {
                    self.tell(number, Ok(outcome))?;
                    None
                }
                Err(e) => {
                    let message = e.to_string();
                    self.tell(number, Err(message.clone()))?;
                    (!catch_errors).then_some(message)
                }
            };
            on_trial_end(&self.trials[number as usize], self.best_trial());
            if let Some(message) = fatal {
                return Err(TuneError::Objective {
                    trial: number,
                    message,
                });
            }
        }
        Ok(())
    }

    /// Writes `{"trial": n, "value": v, "params": {...}}` for the best trial, atomically.
    pub fn write_best_params(&self, path: &Path) -> Result<()> {
        let best = self
            .best_trial()
            .ok_or_else(|| TuneError::NoCompletedTrial {
                path: self.journal.clone(),
            })?;
        let v = serde_json::json!({
            "trial": best.number,
            "value": best.value,
            "params": best.params,
        });
        let text = serde_json::to_string_pretty(&v).map_err(|e| TuneError::Journal {
            path: self.journal.clone(),
            line: 0,
            reason: e.to_string(),
        })?;
        sonic_core::config::write_atomic(path, format!("{text}\n").as_bytes())?;
        Ok(())
    }
}

fn build(config: &StudyConfig) -> (Box<dyn Sampler>, Box<dyn Pruner>) {
    let sampler: Box<dyn Sampler> = match &config.sampler {
        SamplerConfig::Random => Box::new(RandomSampler { seed: config.seed }),
        SamplerConfig::Tpe(s) => Box::new(TpeSampler {
            settings: TpeSettings {
                seed: config.seed,
                ..s.clone()
            },
        }),
    };
    let pruner: Box<dyn Pruner> = match &config.pruner {
        PrunerConfig::None => Box::new(NopPruner),
        PrunerConfig::Median(m) => Box::new(m.clone()),
        PrunerConfig::SuccessiveHalving(s) => Box::new(s.clone()),
    };
    (sampler, pruner)
}

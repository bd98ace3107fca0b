//! Hyperparameter search (`sonic tune`): a search space read from JSON, a
//! Tree-structured Parzen Estimator sampler (and random search), median and successive-halving
//! pruners, a study journalled on disk that survives crashes and resumes, and the best
//! parameters written back as a stage config.
//!
//! The search ([`space`], [`sampler`], [`pruner`], [`study`]) knows nothing about training:
//! anything implementing [`study::Objective`] can be minimised. The glue that turns a trial
//! into a stage-1 / stage-2 training run is `sonic_train::tune::objective`.
//!
//! ```no_run
//! use sonic_tune::{study::{Study, TrialOutcome, Decision}, config::TuneConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = TuneConfig::from_file("config/tune.json".as_ref())?;
//! let mut study = Study::open(&cfg.study_dir, &cfg.study)?;
//! let mut objective = |trial: &mut sonic_tune::study::Trial<'_>| {
//!     let lr = trial.params()["lr"].as_f64().unwrap_or(1e-4);
//!     let mut loss = 1.0;
//!     for step in 1..=10 {
//!         loss = (lr.ln() + 8.0).powi(2) + 1.0 / step as f64;
//!         if trial.report(step, loss)? == Decision::Prune {
//!             return Ok(TrialOutcome::Pruned);
//!         }
//!     }
//!     Ok(TrialOutcome::Complete(loss))
//! };
//! study.optimize(&mut objective, cfg.n_trials, false, |_, _| {})?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod error;
pub mod overrides;
mod parzen;
pub mod pruner;
pub mod sampler;
pub mod space;
pub mod study;
pub mod trial;

pub use config::{Budget, TuneConfig};
pub use error::TuneError;
pub use space::{ParamSpec, Params, SearchSpace};
pub use study::{Decision, Objective, Study, StudyConfig, Trial, TrialOutcome};
pub use trial::{TrialRecord, TrialState};

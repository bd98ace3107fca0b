//! The objective of `sonic tune`: the validation loss of a stage-1 or stage-2 training run.
//!
//! For each trial, [`TrainingObjective`] takes the base stage config (JSON), sets every trial
//! parameter at its dotted key ([`sonic_tune::overrides`]), makes the `model.*` paths absolute
//! (relative to the base config's folder, as the trainers resolve them), applies the per-trial
//! budget (`training.max_steps`, `training.val_every`), writes the result to
//! `<study>/trials/trial-NNNNN.json` and hands that file to a [`StageRun`], which parses it with
//! the stage's own config reader (so unknown keys and out-of-range values are errors naming
//! the key) and trains. Every validation loss is reported to the pruner at its training step;
//! the final validation loss is the trial's value.
//!
//! Pruning: the trainers' progress callback can stop a run only after a training step, so a
//! trial that the pruner stops at validation step `s` trains one more step before it ends.
//! A run whose loss or gradient becomes non-finite fails its trial and the search goes on;
//! any other training error (missing file, out of memory) stops the search unless the tune
//! config sets `catch_errors`.

pub use sonic_tune::config::Budget;

use crate::checkpoint::TrainEvent;
use crate::config::{Stage1Config, Stage2Config};
use crate::error::TrainError;
use crate::stage1::{Stage1Data, Stage1Trainer};
use crate::stage2::{Stage2Data, Stage2Trainer};
use burn::tensor::Device;
use serde_json::Value;
use sonic_projector::{BlockMode, Projector};
use sonic_schedulers::ddpm::DdpmSchedule;
use sonic_tune::Params;
use sonic_tune::error::{Result, TuneError};
use sonic_tune::overrides::{absolutize_model_paths, apply_overrides};
use sonic_tune::study::{Decision, Objective, ObjectiveError, Trial, TrialOutcome};
use sonic_unet::UNet2DConditionModel;
use sonic_unet::unet_2d_condition::AdapterPlacement;
use std::path::{Path, PathBuf};

/// How one training run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StageResult {
    /// Ran to the end; the last validation loss.
    Finished {
        /// The final validation loss.
        val_loss: f64,
    },
    /// Stopped because the validation callback answered `false` (pruned).
    Stopped,
    /// The loss or a gradient became non-finite.
    Diverged(String),
}

/// One stage's training run for a trial config file.
pub trait StageRun {
    /// Trains with the config at `config_path` (the stage's config format). After each
    /// validation, `on_validation(step, loss)` is called; when it answers `false` the run
    /// stops and returns [`StageResult::Stopped`].
    fn train(
        &mut self,
        config_path: &Path,
        on_validation: &mut dyn FnMut(u64, f64) -> bool,
    ) -> std::result::Result<StageResult, ObjectiveError>;
}

/// The shared part of both stages' runs: stop after the validation callback says so, and
/// sort the trainer's result into [`StageResult`].
fn drive(
    on_validation: &mut dyn FnMut(u64, f64) -> bool,
    run: impl FnOnce(&mut dyn FnMut(&TrainEvent) -> bool) -> crate::Result<crate::stage1::RunSummary>,
) -> std::result::Result<StageResult, ObjectiveError> {
    let mut stop = false;
    let result = run(&mut |e: &TrainEvent| match e {
        TrainEvent::Validation { step, loss } => {
            if !on_validation(*step, *loss) {
                stop = true;
            }
            true
        }
        TrainEvent::Step(_) => !stop,
        _ => true,
    });
    match result {
        Ok(_) | Err(TrainError::Cancelled { .. }) if stop => Ok(StageResult::Stopped),
        Ok(summary) => match summary.val_loss {
            Some(v) => Ok(StageResult::Finished { val_loss: v }),
            None => Err("the run computed no validation loss (empty validation split?)".into()),
        },
        Err(e @ TrainError::NonFinite { .. }) => Ok(StageResult::Diverged(e.to_string())),
        Err(e) => Err(Box::new(e)),
    }
}

/// Stage 1 on prepared data: each trial trains a copy of `projector` (same initial weights for
/// every trial) in the trial config's `block_mode`.
pub struct Stage1Run {
    /// Training split.
    pub train: Stage1Data,
    /// Validation split (its loss is the objective).
    pub val: Stage1Data,
    /// The initial projector.
    pub projector: Projector,
    /// The device.
    pub device: Device,
}

impl StageRun for Stage1Run {
    fn train(
        &mut self,
        config_path: &Path,
        on_validation: &mut dyn FnMut(u64, f64) -> bool,
    ) -> std::result::Result<StageResult, ObjectiveError> {
        let cfg = Stage1Config::from_file(config_path)?;
        let mode: BlockMode = cfg
            .block_mode
            .parse()
            .map_err(|e: String| -> ObjectiveError {
                format!("{}: block_mode: {e}", config_path.display()).into()
            })?;
        let projector = self.projector.clone().with_mode(mode);
        let mut trainer = Stage1Trainer::new(cfg, projector, &self.device)?;
        let (train, val) = (&self.train, &self.val);
        drive(on_validation, |cb| trainer.run(train, Some(val), None, cb))
    }
}

/// Stage 2 on prepared data: each trial trains new adapters on a copy of `unet` (weights drawn
/// from the trial config's `training.seed`, so every trial starts from the same adapters;
/// gates at its `gate_init`), or the adapters of the trial config's `model.adapters`.
pub struct Stage2Run {
    /// Training split.
    pub train: Stage2Data,
    /// Validation split (its loss is the objective).
    pub val: Stage2Data,
    /// SD's UNet without adapters.
    pub unet: UNet2DConditionModel,
    /// The (stage-1) projector.
    pub projector: Projector,
    /// The model's noise schedule.
    pub schedule: DdpmSchedule,
    /// The device.
    pub device: Device,
}

impl StageRun for Stage2Run {
    fn train(
        &mut self,
        config_path: &Path,
        on_validation: &mut dyn FnMut(u64, f64) -> bool,
    ) -> std::result::Result<StageResult, ObjectiveError> {
        let cfg = Stage2Config::from_file(config_path)?;
        let unet = match &cfg.model.adapters {
            Some(p) => self.unet.clone().with_adapters(p, &self.device)?.0,
            None => {
                crate::stage2::add_new_adapters(
                    self.unet.clone(),
                    AdapterPlacement::OFFICIAL,
                    self.projector.config().context_dim(),
                    cfg.gate_init,
                    cfg.training.seed,
                    &self.device,
                )
                .0
            }
        };
        let mut trainer = Stage2Trainer::new(
            cfg,
            unet,
            self.projector.clone(),
            self.schedule.clone(),
            &self.device,
        )?;
        let (train, val) = (&self.train, &self.val);
        drive(on_validation, |cb| {
            trainer.run(train, Some(val), None, None, cb)
        })
    }
}

/// The trial config: `base` with the trial's parameters and the budget applied.
pub fn trial_config(
    base: &Value,
    base_path: &Path,
    params: &Params,
    budget: &Budget,
) -> Result<Value> {
    let mut cfg = apply_overrides(base, params, base_path)?;
    let base_dir = base_path.parent().unwrap_or(Path::new("."));
    absolutize_model_paths(&mut cfg, base_dir);
    let budget_params: Params = [
        (
            "training.max_steps".to_string(),
            Value::from(budget.max_steps),
        ),
        (
            "training.val_every".to_string(),
            Value::from(budget.val_every),
        ),
    ]
    .into();
    apply_overrides(&cfg, &budget_params, base_path)
}

/// A training run per trial; see the module docs.
pub struct TrainingObjective<S: StageRun> {
    /// The base stage config.
    pub base: Value,
    /// Where it was read from.
    pub base_path: PathBuf,
    /// The per-trial budget.
    pub budget: Budget,
    /// Where trial configs are written (`trial-NNNNN.json`).
    pub trial_dir: PathBuf,
    /// The stage.
    pub stage: S,
}

impl<S: StageRun> TrainingObjective<S> {
    /// Reads the base config at `base_path`; trial configs go to `study_dir/trials`.
    pub fn new(base_path: &Path, budget: Budget, study_dir: &Path, stage: S) -> Result<Self> {
        let base: Value = sonic_core::config::read_json(base_path)?;
        let trial_dir = study_dir.join("trials");
        std::fs::create_dir_all(&trial_dir).map_err(|source| TuneError::Io {
            path: trial_dir.clone(),
            source,
        })?;
        Ok(Self {
            base,
            base_path: base_path.to_path_buf(),
            budget,
            trial_dir,
            stage,
        })
    }

    /// The config file of trial `number`.
    pub fn trial_config_path(&self, number: u64) -> PathBuf {
        self.trial_dir.join(format!("trial-{number:05}.json"))
    }
}

impl<S: StageRun> Objective for TrainingObjective<S> {
    fn run(&mut self, trial: &mut Trial<'_>) -> std::result::Result<TrialOutcome, ObjectiveError> {
        let cfg = trial_config(&self.base, &self.base_path, trial.params(), &self.budget)?;
        let path = self.trial_config_path(trial.number());
        let text = serde_json::to_string_pretty(&cfg)?;
        sonic_core::config::write_atomic(&path, format!("{text}\n").as_bytes())?;
        let mut report_error: Option<TuneError> = None;
        let result = self
            .stage
            .train(&path, &mut |step, loss| match trial.report(step, loss) {
                Ok(Decision::Continue) => true,
                Ok(Decision::Prune) => false,
                Err(e) => {
                    report_error.get_or_insert(e);
                    false
                }
            })?;
        if let Some(e) = report_error {
            return Err(Box::new(e));
        }
        Ok(match result {
            StageResult::Finished { val_loss } => TrialOutcome::Complete(val_loss),
            StageResult::Stopped => TrialOutcome::Pruned,
            StageResult::Diverged(reason) => TrialOutcome::Failed(reason),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn budget_errors_name_the_key() {
        let o = Path::new("tune.json");
        assert_eq!(
            Budget::from_json(&json!({"max_steps": 10, "val_every": 5}), o).unwrap(),
            Budget {
                max_steps: 10,
                val_every: 5
            }
        );
        for (v, key) in [
            (json!({"val_every": 5}), "budget.max_steps"),
            (json!({"max_steps": 0, "val_every": 5}), "budget.max_steps"),
            (
                json!({"max_steps": 10, "val_every": 20}),
                "budget.val_every",
            ),
            (
                json!({"max_steps": 10, "val_every": 2, "epochs": 1}),
                "budget.epochs",
            ),
            (json!(3), "budget"),
        ] {
            match Budget::from_json(&v, o) {
                Err(TuneError::Config { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{v}: {other:?}"),
            }
        }
    }

    #[test]
    fn trial_config_overrides_budget_and_paths() {
        let base = json!({
            "training": {"max_steps": null, "val_every": 500, "optimizer": {"lr": 1e-4}},
            "model": {"sd": "models/sd", "clap": "/abs/clap.pth", "projector": null}
        });
        let params: Params = [("training.optimizer.lr".to_string(), json!(3e-4))].into();
        let c = trial_config(
            &base,
            Path::new("/cfg/stage1.json"),
            &params,
            &Budget {
                max_steps: 40,
                val_every: 10,
            },
        )
        .unwrap();
        assert_eq!(
            c,
            json!({
                "training": {"max_steps": 40, "val_every": 10, "optimizer": {"lr": 3e-4}},
                "model": {"sd": "/cfg/models/sd", "clap": "/abs/clap.pth", "projector": null}
            })
        );
    }
}

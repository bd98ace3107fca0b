//! The training loop both stages share: micro-batches in epoch order, one optimizer step per
//! group of `grad_accum` micro-batches, validation, stage-specific work (stage 2's sample
//! images), checkpoints at the configured intervals, at the end and on cancellation, and the
//! last good checkpoint named in any step error.

use crate::checkpoint::{
    EpochOrder, StepReport, TrainEvent, latest_checkpoint, with_last_checkpoint,
};
use crate::config::TrainingConfig;
use crate::error::{Result, TrainError};
use crate::stage1::RunSummary;
use std::path::{Path, PathBuf};

/// Stage-specific work after a step (`stage`, step, planned steps), returning an event to
/// report.
pub(crate) type AfterStep<'a, S> = dyn FnMut(&mut S, u64, u64) -> Result<Option<TrainEvent>> + 'a;

/// What a stage's trainer provides to [`run`].
pub(crate) trait LoopStage {
    /// The stage's in-memory data.
    type Data;
    /// The loop settings.
    fn training(&self) -> &TrainingConfig;
    /// Optimizer steps done.
    fn current_step(&self) -> u64;
    /// The last training loss.
    fn last_loss(&self) -> f64;
    /// The steps planned for `n` training rows.
    fn total_steps(&self, n: usize) -> u64;
    /// The number of rows of `data`.
    fn rows(data: &Self::Data) -> usize;
    /// Draws one micro-batch per index list and takes one optimizer step over them.
    fn step_on(
        &mut self,
        train: &Self::Data,
        micro: &[Vec<usize>],
        total: u64,
    ) -> Result<StepReport>;
    /// The validation loss of `val` (`train` is the reference set where the stage needs one).
    fn validation(&self, val: &Self::Data, train: &Self::Data) -> Result<f64>;
    /// Writes a checkpoint under `out`, returning its folder.
    fn checkpoint(&self, out: &Path) -> Result<PathBuf>;
}

/// Runs `stage` until its planned number of steps. After each step's validation, `extra`
/// may do stage-specific work and return an event for `callback`. `callback` returning false
/// cancels the run (after a checkpoint, when `out` is given).
pub(crate) fn run<S: LoopStage>(
    stage: &mut S,
    train: &S::Data,
    val: Option<&S::Data>,
    out: Option<&Path>,
    extra: &mut AfterStep<'_, S>,
    callback: &mut dyn FnMut(&TrainEvent) -> bool,
) -> Result<RunSummary> {
    let t = stage.training().clone();
    let total = stage.total_steps(S::rows(train));
    let order = EpochOrder::new(t.seed, S::rows(train), t.batch_size);
    let mut last_ckpt = match out {
        Some(o) => latest_checkpoint(o)?,
        None => None,
    };
    let mut val_loss = None;
    while stage.current_step() < total {
        let first = stage.current_step() * t.grad_accum as u64;
        let micro: Vec<Vec<usize>> = (0..t.grad_accum as u64)
            .map(|k| order.batch(first + k))
            .collect();
        let report = stage
            .step_on(train, &micro, total)
            .map_err(|e| with_last_checkpoint(e, &last_ckpt))?;
        let step = report.step;
        let go_on = callback(&TrainEvent::Step(report));
        if let Some(v) = val
            && t.val_every > 0
            && (step % t.val_every == 0 || step == total)
        {
            let loss = stage.validation(v, train)?;
            val_loss = Some(loss);
            callback(&TrainEvent::Validation { step, loss });
        }
        if let Some(event) = extra(stage, step, total)? {
            callback(&event);
        }
        if let Some(o) = out
            && ((t.checkpoint_every > 0 && step % t.checkpoint_every == 0)
                || step == total
                || !go_on)
        {
            let path = stage.checkpoint(o)?;
            callback(&TrainEvent::Checkpoint {
                step,
                path: path.clone(),
            });
            last_ckpt = Some(path);
        }
        if !go_on {
            return Err(TrainError::Cancelled { step });
        }
    }
    Ok(RunSummary {
        step: stage.current_step(),
        loss: stage.last_loss(),
        val_loss,
        checkpoint: last_ckpt,
    })
}

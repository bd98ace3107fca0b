//! Checkpoints and the plumbing both trainers share: the random stream, progress events,
//! atomic checkpoint folders.
//!
//! ## Layout of a run folder
//!
//! ```text
//! <out>/checkpoints/step-00000100/   one folder per checkpoint, renamed into place when complete
//!     adapters.safetensors           stage 2: the gated adapters, official keys
//!     projector.safetensors          stage 1, or stage 2 with train_projector: official keys
//!     optimizer.bpk                  the AdamW state (burnpack, keyed by deterministic ids)
//!     state.json                     step, seed, random-stream word position, last loss
//! <out>/checkpoints/latest           the name of the newest complete checkpoint (atomic write)
//! ```
//!
//! A checkpoint is first written to `checkpoints/.tmp-step-XXXXXXXX` and renamed to its final
//! name only when every file is on disk, then `latest` is replaced atomically, so a crash at any
//! point leaves the previous checkpoint intact and `latest` naming a complete folder.

use crate::error::{Result, TrainError};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The trainer's random stream: ChaCha8 from the config's seed. Its state is the seed plus
/// the word position, which checkpoints store so that a resumed run draws the same numbers.
#[derive(Debug, Clone)]
pub struct TrainRng {
    seed: u64,
    rng: ChaCha8Rng,
}

impl TrainRng {
    /// A stream at position 0.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The stream of `seed` at `word_pos`.
    pub fn at(seed: u64, word_pos: u128) -> Self {
        let mut r = Self::new(seed);
        r.rng.set_word_pos(word_pos);
        r
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The position in the stream (32-bit words consumed).
    pub fn word_pos(&self) -> u128 {
        self.rng.get_word_pos()
    }

    /// The generator.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// Uniform integer in `0..n` (`n >= 1`).
    pub fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n.max(1))
    }

    /// Standard-normal noise of `shape` on `device` (drawn on the host, so it is the same on
    /// every backend).
    pub fn normal<const D: usize>(&mut self, shape: [usize; D], device: &Device) -> Tensor<D> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| self.rng.sample::<f32, _>(StandardNormal))
            .collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }
}

/// The sequence of sample indices of a run: epoch `e` visits the training records in the order
/// of a ChaCha8 shuffle seeded by `(seed, e)`; a micro-batch takes the next `batch` indices of
/// the epoch (the last, incomplete micro-batch of an epoch is dropped unless the split is
/// smaller than one batch). Micro-batch `m` is a pure function of `(seed, m)`, so a resumed
/// run continues the data order exactly.
#[derive(Debug, Clone)]
pub struct EpochOrder {
    seed: u64,
    n: usize,
    batch: usize,
}

impl EpochOrder {
    /// The order of `n` records in micro-batches of `batch`.
    pub fn new(seed: u64, n: usize, batch: usize) -> Self {
        Self { seed, n, batch }
    }

    /// Micro-batches per epoch.
    pub fn batches_per_epoch(&self) -> u64 {
        if self.n < self.batch {
            1
        } else {
            (self.n / self.batch) as u64
        }
    }

    /// The indices of micro-batch `m` (0-based over the whole run).
    pub fn batch(&self, m: u64) -> Vec<usize> {
        use rand::seq::SliceRandom;
        let bpe = self.batches_per_epoch();
        let epoch = m / bpe;
        let within = (m % bpe) as usize;
        let mut idx: Vec<usize> = (0..self.n).collect();
        let mut r =
            ChaCha8Rng::seed_from_u64(self.seed ^ 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch + 1));
        idx.shuffle(&mut r);
        let take = self.batch.min(self.n);
        idx[within * take..within * take + take].to_vec()
    }
}

/// One optimizer step's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The optimizer step just completed (1-based).
    pub step: u64,
    /// The planned number of optimizer steps.
    pub total_steps: u64,
    /// The training loss (mean over the accumulated micro-batches).
    pub loss: f64,
    /// Named parts of the loss (stage 1: `info_nce`, `token_mse`).
    pub parts: Vec<(&'static str, f64)>,
    /// The learning rate used.
    pub lr: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
}

/// What a run reports to its caller.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    /// An optimizer step finished.
    Step(StepReport),
    /// The validation loss after `step`.
    Validation {
        /// The step.
        step: u64,
        /// The loss.
        loss: f64,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// The step.
        step: u64,
        /// Its folder.
        path: PathBuf,
    },
    /// Sample images were written (stage 2).
    Samples {
        /// The step.
        step: u64,
        /// The PNG files.
        paths: Vec<PathBuf>,
    },
}

/// The progress callback: return `false` to stop the run (after the current step; the run
/// then writes a checkpoint and returns [`TrainError::Cancelled`]).
pub type Callback<'a> = &'a mut dyn FnMut(&TrainEvent) -> bool;

/// `state.json` of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointState {
    /// `stage1` or `stage2`.
    pub stage: String,
    /// Optimizer steps completed.
    pub step: u64,
    /// The seed of the random stream.
    pub seed: u64,
    /// The stream's word position, as a decimal string (a u128).
    pub rng_word_pos: String,
    /// The training loss of the last step.
    pub loss: f64,
}

impl CheckpointState {
    /// The random stream this state describes.
    pub fn rng(&self, path: &Path) -> Result<TrainRng> {
        let pos: u128 = self
            .rng_word_pos
            .parse()
            .map_err(|_| TrainError::Checkpoint {
                path: path.to_path_buf(),
                message: format!("rng_word_pos `{}` is not an integer", self.rng_word_pos),
            })?;
        Ok(TrainRng::at(self.seed, pos))
    }
}

/// The checkpoint folder of `out` for `step`.
pub fn checkpoint_dir(out: &Path, step: u64) -> PathBuf {
    out.join("checkpoints").join(format!("step-{step:08}"))
}

/// Writes a checkpoint: `write_files` fills a temporary folder, which is then renamed to
/// `checkpoints/step-XXXXXXXX`, `latest` updated, and all but the newest `keep` removed.
pub fn write_checkpoint(
    out: &Path,
    state: &CheckpointState,
    keep: usize,
    write_files: &mut dyn FnMut(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let root = out.join("checkpoints");
    std::fs::create_dir_all(&root).map_err(|e| TrainError::io(&root, e))?;
    let final_dir = checkpoint_dir(out, state.step);
    let tmp = root.join(format!(".tmp-step-{:08}", state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    write_files(&tmp)?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| TrainError::Checkpoint {
        path: tmp.clone(),
        message: e.to_string(),
    })?;
    sonic_core::config::write_atomic(&tmp.join("state.json"), &json)?;
    sync_dir(&tmp);
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    sync_dir(&root);
    let name = format!("step-{:08}", state.step);
    sonic_core::config::write_atomic(&root.join("latest"), name.as_bytes())?;
    prune(&root, keep.max(1))?;
    Ok(final_dir)
}

fn sync_dir(dir: &Path) {
    // Best effort: persists the rename on file systems that need it.
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

fn prune(root: &Path, keep: usize) -> Result<()> {
    let mut steps: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| TrainError::io(root, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-"))
        })
        .collect();
    steps.sort();
    let n = steps.len();
    for old in steps.into_iter().take(n.saturating_sub(keep)) {
        std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
    }
    Ok(())
}

/// The newest complete checkpoint of `out` (from `checkpoints/latest`), if any.
pub fn latest_checkpoint(out: &Path) -> Result<Option<PathBuf>> {
    let latest = out.join("checkpoints").join("latest");
    if !latest.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&latest).map_err(|e| TrainError::io(&latest, e))?;
    let dir = out.join("checkpoints").join(name.trim());
    if !dir.join("state.json").is_file() {
        return Err(TrainError::Checkpoint {
            path: dir,
            message: "named by `latest` but has no state.json".into(),
        });
    }
    Ok(Some(dir))
}

/// Reads a checkpoint's `state.json` and checks its stage.
pub fn read_state(dir: &Path, stage: &str) -> Result<CheckpointState> {
    let path = dir.join("state.json");
    let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
    let s: CheckpointState =
        serde_json::from_slice(&bytes).map_err(|e| TrainError::Checkpoint {
            path: path.clone(),
            message: e.to_string(),
        })?;
    if s.stage != stage {
        return Err(TrainError::Checkpoint {
            path,
            message: format!("a {} checkpoint, expected {stage}", s.stage),
        });
    }
    Ok(s)
}

/// Fails with [`TrainError::NonFinite`] when `value` is NaN or infinite.
pub fn check_finite(what: &'static str, value: f64, step: u64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(TrainError::NonFinite {
            what,
            step,
            value,
            last_checkpoint: "none".into(),
        })
    }
}

/// Fills in the last good checkpoint of a [`TrainError::NonFinite`].
pub fn with_last_checkpoint(e: TrainError, last: &Option<PathBuf>) -> TrainError {
    match e {
        TrainError::NonFinite {
            what, step, value, ..
        } => TrainError::NonFinite {
            what,
            step,
            value,
            last_checkpoint: last
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none".into()),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_resumes_at_its_word_position() {
        let mut a = TrainRng::new(7);
        let _ = a.uniform();
        let _ = a.normal([3], &Device::default());
        let mut b = TrainRng::at(7, a.word_pos());
        assert_eq!(a.uniform(), b.uniform());
        assert_eq!(a.below(1000), b.below(1000));
    }

    #[test]
    fn epoch_order_covers_each_epoch_once() {
        let o = EpochOrder::new(3, 10, 3);
        assert_eq!(o.batches_per_epoch(), 3);
        let mut seen: Vec<usize> = (0..3).flat_map(|m| o.batch(m)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 9);
        assert_ne!(o.batch(0), o.batch(3)); // another epoch, another order
        assert_eq!(o.batch(4), EpochOrder::new(3, 10, 3).batch(4));
    }

    #[test]
    fn checkpoints_are_renamed_into_place_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        for step in [1u64, 2, 3] {
            let st = CheckpointState {
                stage: "stage1".into(),
                step,
                seed: 1,
                rng_word_pos: "5".into(),
                loss: 0.5,
            };
            write_checkpoint(dir.path(), &st, 2, &mut |d| {
                std::fs::write(d.join("x"), b"1").map_err(|e| TrainError::io(d, e))
            })
            .unwrap();
        }
        let latest = latest_checkpoint(dir.path()).unwrap().unwrap();
        assert!(latest.ends_with("step-00000003"));
        assert!(!checkpoint_dir(dir.path(), 1).exists());
        assert!(checkpoint_dir(dir.path(), 2).join("x").exists());
        assert_eq!(read_state(&latest, "stage1").unwrap().step, 3);
        assert!(read_state(&latest, "stage2").is_err());
    }
}

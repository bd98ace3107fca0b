//! Stage 1: the audio projector, trained on (cached) CLAP embeddings with InfoNCE between
//! clips of the same class plus the reverse-sigmoid-weighted MSE between the audio tokens and
//! the CLIP text embedding of the paired image's caption (see [`crate::losses`]).
//!
//! The trainer works on in-memory tensors ([`Stage1Data`], [`Stage1Batch`]); the file-based
//! flow (manifest -> caches -> data) lives in [`crate::cache`] and the CLI.

use crate::checkpoint::{
    CheckpointState, EpochOrder, StepReport, TrainEvent, TrainRng, check_finite, latest_checkpoint,
    read_state, write_checkpoint,
};
use crate::config::Stage1Config;
use crate::error::{Result, TrainError};
use crate::losses::{info_nce, token_weights, weighted_token_mse};
use crate::optim::{adamw, load_optimizer, save_optimizer};
use crate::params::{clip_global_norm, global_grad_norm, select_trainable, untracked};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use sonic_projector::Projector;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Stage-1 training data held in memory: one row per clip.
#[derive(Debug, Clone)]
pub struct Stage1Data {
    /// CLAP embeddings `[N, audio_dim]`.
    pub clap: Tensor<2>,
    /// The class of each clip (any integers).
    pub labels: Vec<usize>,
    /// The CLIP text embedding of each clip's caption `[N, tokens, context_dim]`.
    pub text: Tensor<3>,
    by_class: BTreeMap<usize, Vec<usize>>,
}

impl Stage1Data {
    /// Checks that the three inputs have one row per clip.
    pub fn new(clap: Tensor<2>, labels: Vec<usize>, text: Tensor<3>) -> Result<Self> {
        let n = clap.dims()[0];
        if n == 0 || labels.len() != n || text.dims()[0] != n {
            return Err(TrainError::bad_input(
                "stage-1 data",
                "clap [N >= 1, A], N labels, text [N, T, D]",
                (clap.dims(), labels.len(), text.dims()),
            ));
        }
        let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, &l) in labels.iter().enumerate() {
            by_class.entry(l).or_default().push(i);
        }
        Ok(Self {
            clap,
            labels,
            text,
            by_class,
        })
    }

    /// The number of clips.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no clips.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The clips of each class.
    pub fn classes(&self) -> &BTreeMap<usize, Vec<usize>> {
        &self.by_class
    }
}

/// One stage-1 micro-batch.
#[derive(Debug, Clone)]
pub struct Stage1Batch {
    /// Anchor CLAP embeddings `[B, A]`.
    pub anchors: Tensor<2>,
    /// One positive per anchor (another clip of its class) `[B, A]`.
    pub positives: Tensor<2>,
    /// The negatives shared by the batch `[N, A]`.
    pub negatives: Tensor<2>,
    /// `exclude[b][n]`: negative `n` is of anchor `b`'s class and is left out for it.
    pub exclude: Vec<Vec<bool>>,
    /// The anchors' caption embeddings `[B, T, D]`.
    pub text: Tensor<3>,
    /// Whether each anchor's caption term counts (text drop).
    pub text_keep: Vec<bool>,
}

/// The loss of a batch and its parts.
#[derive(Debug, Clone)]
pub struct Stage1Loss {
    /// `w_nce · info_nce + w_mse · token_mse`.
    pub total: Tensor<1>,
    /// The InfoNCE value.
    pub info_nce: f64,
    /// The token-MSE value.
    pub token_mse: f64,
}

fn rows(x: &Tensor<2>, idx: &[usize]) -> Tensor<2> {
    let device = x.device();
    let i: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    x.clone().select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(i, [idx.len()]), &device),
    )
}

fn rows3(x: &Tensor<3>, idx: &[usize]) -> Tensor<3> {
    let device = x.device();
    let i: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    x.clone().select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(i, [idx.len()]), &device),
    )
}

/// A new projector of `config` with weights drawn from `seed` (reproducible: the device's
/// generator is seeded and every parameter materialised at once, in module order; see
/// [`crate::params::seeded_init`] for the limits).
pub fn new_projector(
    config: &sonic_projector::ProjectorConfig,
    seed: u64,
    device: &Device,
) -> Result<Projector> {
    crate::params::seeded_init(device, seed, || Projector::new(config, device))
        .map_err(TrainError::from)
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Optimizer steps completed.
    pub step: u64,
    /// The last training loss.
    pub loss: f64,
    /// The last validation loss, if any was computed.
    pub val_loss: Option<f64>,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
}

/// The stage-1 trainer.
pub struct Stage1Trainer {
    config: Stage1Config,
    projector: Option<Projector>,
    optimizer: ModuleOptimizer,
    rng: TrainRng,
    step: u64,
    weights: Vec<f32>,
    device: Device,
    last_loss: f64,
}

impl Stage1Trainer {
    /// A trainer for `projector` (every parameter trains) on `device` (a plain device; the
    /// trainer enables autodiff for the projector's parameters itself).
    pub fn new(config: Stage1Config, projector: Projector, device: &Device) -> Result<Self> {
        config.validate(Path::new("<stage-1 config>"))?;
        let tokens = projector.config().tokens;
        let weights = token_weights(
            tokens,
            config.loss.token_weight_centre,
            config.loss.token_weight_width,
        );
        let (projector, _) = select_trainable(projector.fork(device), &|_| true);
        Ok(Self {
            optimizer: adamw(&config.training.optimizer),
            rng: TrainRng::new(config.training.seed),
            step: 0,
            weights,
            device: device.clone(),
            projector: Some(projector),
            config,
            last_loss: f64::NAN,
        })
    }

    /// Optimizer steps completed.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The device the trainer was built for.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The config.
    pub fn config(&self) -> &Stage1Config {
        &self.config
    }

    fn model(&self) -> Result<&Projector> {
        self.projector
            .as_ref()
            .ok_or_else(|| TrainError::Checkpoint {
                path: PathBuf::from("<trainer>"),
                message: "the projector was lost by a failed optimizer step".into(),
            })
    }

    /// The projector in its current state, off autodiff (for inference or saving).
    pub fn projector(&self) -> Result<Projector> {
        Ok(untracked(self.model()?.clone()))
    }

    /// The number of optimizer steps of a run over `n` training clips.
    pub fn total_steps(&self, n: usize) -> u64 {
        let t = &self.config.training;
        t.max_steps.unwrap_or_else(|| {
            let bpe = EpochOrder::new(0, n, t.batch_size).batches_per_epoch();
            t.epochs * (bpe / t.grad_accum as u64).max(1)
        })
    }

    /// Draws a micro-batch for the anchors `idx` of `data`: a positive per anchor, negatives
    /// and text-drop flags from the trainer's random stream. `reference` supplies positives and
    /// negatives (`data` itself for training; the training data for validation).
    pub fn sample_batch(
        &mut self,
        data: &Stage1Data,
        reference: &Stage1Data,
        idx: &[usize],
        text_drop: f64,
    ) -> Result<Stage1Batch> {
        sample_batch(
            &mut self.rng,
            data,
            reference,
            idx,
            text_drop,
            self.config.loss.negatives,
        )
    }

    /// The loss of `batch` under `projector`.
    pub fn loss_with(&self, projector: &Projector, batch: &Stage1Batch) -> Result<Stage1Loss> {
        let b = batch.anchors.dims()[0];
        let n = batch.negatives.dims()[0];
        let all = Tensor::cat(
            vec![
                batch.anchors.clone(),
                batch.positives.clone(),
                batch.negatives.clone(),
            ],
            0,
        );
        let tokens = projector.forward(all)?; // [2B + N, T, D]
        let [m, t, d] = tokens.dims();
        let flat = tokens.clone().reshape([m, t * d]);
        let nce = info_nce(
            flat.clone().narrow(0, 0, b),
            flat.clone().narrow(0, b, b),
            flat.narrow(0, 2 * b, n),
            Some(&batch.exclude),
            self.config.loss.temperature,
        )?;
        let mse = weighted_token_mse(
            tokens.narrow(0, 0, b),
            batch.text.clone(),
            &self.weights,
            &batch.text_keep,
        )?;
        let l = &self.config.loss;
        let nce_v = nce.clone().into_scalar::<f32>() as f64;
        let mse_v = mse.clone().into_scalar::<f32>() as f64;
        Ok(Stage1Loss {
            total: nce.mul_scalar(l.info_nce_weight) + mse.mul_scalar(l.token_mse_weight),
            info_nce: nce_v,
            token_mse: mse_v,
        })
    }

    /// One optimizer step over `micro_batches` (gradient accumulation: the loss is their
    /// mean). A non-finite loss or gradient norm fails with [`TrainError::NonFinite`] and leaves
    /// the projector and the optimizer untouched.
    pub fn train_step(
        &mut self,
        micro_batches: &[Stage1Batch],
        total_steps: u64,
    ) -> Result<StepReport> {
        if micro_batches.is_empty() {
            return Err(TrainError::bad_input("micro-batches", "at least 1", 0));
        }
        let k = micro_batches.len() as f64;
        let step = self.step + 1;
        let mut acc = GradientsAccumulator::<Projector>::new();
        let (mut loss, mut nce, mut mse) = (0.0, 0.0, 0.0);
        {
            let model = self.model()?;
            for batch in micro_batches {
                let l = self.loss_with(model, batch)?;
                let v = l.total.clone().into_scalar::<f32>() as f64;
                check_finite("loss", v, step)?;
                loss += v / k;
                nce += l.info_nce / k;
                mse += l.token_mse / k;
                let grads = l.total.div_scalar(k).backward();
                acc.accumulate(model, GradientsParams::from_grads(grads, model));
            }
        }
        let mut grads = acc.grads();
        let model = self.model()?;
        let grad_norm = match self.config.training.clip_grad_norm {
            Some(max) => clip_global_norm(model, &mut grads, max),
            None => global_grad_norm(model, &grads),
        };
        check_finite("gradient norm", grad_norm, step)?;
        let t = &self.config.training;
        let lr = t.lr_schedule.lr_at(t.optimizer.lr, self.step, total_steps);
        let model = self
            .projector
            .take()
            .ok_or_else(|| TrainError::Checkpoint {
                path: PathBuf::from("<trainer>"),
                message: "no projector".into(),
            })?;
        self.projector = Some(self.optimizer.step(lr, model, grads));
        self.step = step;
        self.last_loss = loss;
        Ok(StepReport {
            step,
            total_steps,
            loss,
            parts: vec![("info_nce", nce), ("token_mse", mse)],
            lr,
            grad_norm,
        })
    }

    /// The mean loss over `val` (anchors from `val`, positives and negatives from `reference`,
    /// no text drop), with a fixed random stream so that successive values are comparable.
    /// Validation clips of a class absent from `reference` are left out (no positive); none
    /// left is an error.
    pub fn validation_loss(&self, val: &Stage1Data, reference: &Stage1Data) -> Result<f64> {
        let model = self.model()?.valid();
        let mut rng = TrainRng::new(self.config.training.seed ^ 0x5eed_0f7a_11d0);
        let bs = self.config.training.batch_size;
        // Anchors whose class has a clip in `reference` to serve as the positive.
        let same = std::ptr::eq(val, reference);
        let idx: Vec<usize> = (0..val.len())
            .filter(|&i| {
                reference
                    .by_class
                    .get(&val.labels[i])
                    .is_some_and(|v| v.iter().any(|&j| !(same && j == i)))
            })
            .collect();
        if idx.is_empty() {
            return Err(TrainError::bad_input(
                "stage-1 validation clips",
                "at least one clip whose class has a clip in the training data",
                format!("{} clips, none usable", val.len()),
            ));
        }
        let (mut sum, mut count) = (0.0, 0usize);
        for chunk in idx.chunks(bs) {
            let batch = sample_batch(
                &mut rng,
                val,
                reference,
                chunk,
                0.0,
                self.config.loss.negatives,
            )?;
            let l = self.loss_with(&model, &batch)?;
            sum += l.total.into_scalar::<f32>() as f64 * chunk.len() as f64;
            count += chunk.len();
        }
        Ok(sum / count.max(1) as f64)
    }

    /// Writes a checkpoint of the current state under `out` (see [`crate::checkpoint`]).
    pub fn save_checkpoint(&self, out: &Path) -> Result<PathBuf> {
        let state = CheckpointState {
            stage: "stage1".into(),
            step: self.step,
            seed: self.rng.seed(),
            rng_word_pos: self.rng.word_pos().to_string(),
            loss: self.last_loss,
        };
        let projector = self.projector()?;
        write_checkpoint(
            out,
            &state,
            self.config.training.keep_checkpoints,
            &mut |dir| {
                projector.save_safetensors(&dir.join("projector.safetensors"))?;
                save_optimizer(&self.optimizer, &dir.join("optimizer.bpk"))
            },
        )
    }

    /// Restores the state of checkpoint folder `dir` (projector, optimizer, step, random
    /// stream).
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<()> {
        let state = read_state(dir, "stage1")?;
        if state.seed != self.config.training.seed {
            return Err(TrainError::Checkpoint {
                path: dir.to_path_buf(),
                message: format!(
                    "seed {} differs from the config's {}",
                    state.seed, self.config.training.seed
                ),
            });
        }
        let file = sonic_projector::weights::open(&dir.join("projector.safetensors"))?;
        let loaded = self.projector()?.load_file(&file)?;
        let (projector, _) = select_trainable(loaded, &|_| true);
        self.projector = Some(projector);
        self.optimizer = load_optimizer(
            adamw(&self.config.training.optimizer),
            &dir.join("optimizer.bpk"),
        )?;
        self.rng = state.rng(dir)?;
        self.step = state.step;
        self.last_loss = state.loss;
        Ok(())
    }

    /// Resumes from the newest checkpoint under `out`, if there is one; returns its folder.
    pub fn resume(&mut self, out: &Path) -> Result<Option<PathBuf>> {
        match latest_checkpoint(out)? {
            Some(dir) => {
                self.load_checkpoint(&dir)?;
                Ok(Some(dir))
            }
            None => Ok(None),
        }
    }

    /// Trains until the planned number of steps: micro-batches in epoch order, validation and
    /// checkpoints (under `out`, when given) at the configured intervals and at the end.
    pub fn run(
        &mut self,
        train: &Stage1Data,
        val: Option<&Stage1Data>,
        out: Option<&Path>,
        callback: &mut dyn FnMut(&TrainEvent) -> bool,
    ) -> Result<RunSummary> {
        crate::run_loop::run(self, train, val, out, &mut |_, _, _| Ok(None), callback)
    }
}

impl crate::run_loop::LoopStage for Stage1Trainer {
    type Data = Stage1Data;
    fn training(&self) -> &crate::config::TrainingConfig {
        &self.config.training
    }
    fn current_step(&self) -> u64 {
        self.step
    }
    fn last_loss(&self) -> f64 {
        self.last_loss
    }
    fn total_steps(&self, n: usize) -> u64 {
        Stage1Trainer::total_steps(self, n)
    }
    fn rows(data: &Stage1Data) -> usize {
        data.len()
    }
    fn step_on(
        &mut self,
        train: &Stage1Data,
        micro: &[Vec<usize>],
        total: u64,
    ) -> Result<StepReport> {
        let text_drop = self.config.loss.text_drop;
        let batches = micro
            .iter()
            .map(|idx| self.sample_batch(train, train, idx, text_drop))
            .collect::<Result<Vec<_>>>()?;
        self.train_step(&batches, total)
    }
    fn validation(&self, val: &Stage1Data, train: &Stage1Data) -> Result<f64> {
        self.validation_loss(val, train)
    }
    fn checkpoint(&self, out: &Path) -> Result<PathBuf> {
        self.save_checkpoint(out)
    }
}

/// Draws positives, negatives and text-drop flags for anchors `idx` of `data` (see
/// [`Stage1Trainer::sample_batch`]).
fn sample_batch(
    rng: &mut TrainRng,
    data: &Stage1Data,
    reference: &Stage1Data,
    idx: &[usize],
    text_drop: f64,
    negatives: usize,
) -> Result<Stage1Batch> {
    if idx.is_empty() || idx.iter().any(|&i| i >= data.len()) {
        return Err(TrainError::bad_input(
            "stage-1 batch indices",
            format!("1 or more indices below {}", data.len()),
            idx,
        ));
    }
    let same_data = std::ptr::eq(data, reference);
    let anchor_labels: Vec<usize> = idx.iter().map(|&i| data.labels[i]).collect();
    let mut pos = Vec::with_capacity(idx.len());
    for (&i, &label) in idx.iter().zip(&anchor_labels) {
        let candidates: Vec<usize> = reference
            .by_class
            .get(&label)
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|&j| !(same_data && j == i))
                    .collect()
            })
            .unwrap_or_default();
        if candidates.is_empty() {
            return Err(TrainError::bad_input(
                "stage-1 positives",
                format!("another clip of class {label} (each class needs 2 clips or more)"),
                format!("clip {i} is the only one"),
            ));
        }
        pos.push(candidates[rng.below(candidates.len())]);
    }
    let mut pool: Vec<usize> = (0..reference.len())
        .filter(|&j| !anchor_labels.contains(&reference.labels[j]))
        .collect();
    if pool.is_empty() {
        pool = (0..reference.len())
            .filter(|&j| anchor_labels.iter().any(|&l| l != reference.labels[j]))
            .collect();
    }
    if pool.is_empty() {
        return Err(TrainError::bad_input(
            "stage-1 negatives",
            "clips of another class (InfoNCE needs 2 classes or more)",
            "one class",
        ));
    }
    let take = negatives.min(pool.len());
    let negs: Vec<usize> = rand::seq::index::sample(rng.rng(), pool.len(), take)
        .into_iter()
        .map(|k| pool[k])
        .collect();
    let exclude = anchor_labels
        .iter()
        .map(|&l| negs.iter().map(|&j| reference.labels[j] == l).collect())
        .collect();
    let text_keep = idx.iter().map(|_| rng.uniform() >= text_drop).collect();
    Ok(Stage1Batch {
        anchors: rows(&data.clap, idx),
        positives: rows(&reference.clap, &pos),
        negatives: rows(&reference.clap, &negs),
        exclude,
        text: rows3(&data.text, idx),
        text_keep,
    })
}

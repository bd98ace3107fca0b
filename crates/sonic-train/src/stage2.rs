//! Stage 2: the gated adapters (and optionally the projector) with the DDPM loss on (cached)
//! VAE latents, caption embeddings and CLAP embeddings; the base UNet is frozen.
//!
//! **Frozen means untracked.** The base UNet's parameters stay off the autodiff device (see
//! [`crate::params`]): every operation before the first adapter involves only untracked
//! tensors and records nothing, so those activations are freed as soon as they are used.
//! From the first adapter on, the hidden state depends on trainable parameters and is tracked
//! (the frozen layers after it must pass gradients back to it).
//!
//! Per sample: `t ~ U{0..T-1}` (T = the scheduler's `num_train_timesteps`, 1000 for SD),
//! `ε ~ N(0, I)`, the caption replaced by "" with probability `text_drop`, the audio replaced by
//! the projector's null tokens (`projector(0)`: the CLAP row is zeroed, which is the same since
//! the projector works row by row) with probability `audio_drop`, and (with `hflip` and
//! flipped latents in the data) the horizontally flipped image with probability 0.5; the loss is
//! [`crate::losses::ddpm_loss`] for the scheduler's prediction type.
//!
//! Why one file of over 600 lines: the trainer, its model pair, its checkpoint (save / load /
//! resume) and its sample hook are one idea, stage 2; the run loop itself is shared with stage 1
//! (`run_loop.rs`).

use crate::checkpoint::{
    CheckpointState, EpochOrder, StepReport, TrainEvent, TrainRng, check_finite, latest_checkpoint,
    read_state, write_checkpoint,
};
use crate::config::Stage2Config;
use crate::error::{Result, TrainError};
use crate::losses::ddpm_loss;
use crate::optim::{adamw, load_optimizer, save_optimizer};
use crate::params::{
    clip_global_norm, global_grad_norm, is_adapter_path, select_trainable,
    select_trainable_tracking_all, untracked,
};
use crate::stage1::RunSummary;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use sonic_core::weights::{LoadOptions, load_weights};
use sonic_pipeline::sampling::SamplingObserver;
use sonic_pipeline::{AudioToImage, StableDiffusion, audio_to_image};
use sonic_projector::Projector;
use sonic_schedulers::ddpm::DdpmSchedule;
use sonic_unet::hooks::{NoHook, UNetHook};
use sonic_unet::{AdapterStrength, UNet2DConditionModel};
use std::path::{Path, PathBuf};

/// The modules stage 2 optimises: the UNet (only its adapters train) and the projector
/// (trains only with `train_projector`).
#[derive(Module, Debug)]
pub struct Stage2Model {
    /// The UNet with gated adapters.
    pub unet: UNet2DConditionModel,
    /// The audio projector.
    pub projector: Projector,
}

/// Stage-2 training data held in memory: one row per example.
#[derive(Debug, Clone)]
pub struct Stage2Data {
    /// VAE latents, already multiplied by the VAE's scaling factor, `[N, C, h, w]`.
    pub latents: Tensor<4>,
    /// Caption embeddings `[N, 77, width]`.
    pub text: Tensor<3>,
    /// CLAP embeddings `[N, audio_dim]`.
    pub clap: Tensor<2>,
    /// The embedding of the empty caption `[1, 77, width]` (the text drop's replacement).
    pub empty_text: Tensor<3>,
    /// Latents of the horizontally flipped images, same shape as `latents` (optional; with
    /// them and `hflip`, each sample uses the flipped image with probability 0.5).
    pub latents_flipped: Option<Tensor<4>>,
}

impl Stage2Data {
    /// Checks that the inputs have one row per example.
    pub fn new(
        latents: Tensor<4>,
        text: Tensor<3>,
        clap: Tensor<2>,
        empty_text: Tensor<3>,
    ) -> Result<Self> {
        let n = latents.dims()[0];
        let [_, tt, td] = text.dims();
        if n == 0 || text.dims()[0] != n || clap.dims()[0] != n || empty_text.dims() != [1, tt, td]
        {
            return Err(TrainError::bad_input(
                "stage-2 data",
                "latents [N >= 1, C, h, w], text [N, T, D], clap [N, A], empty_text [1, T, D]",
                (latents.dims(), text.dims(), clap.dims(), empty_text.dims()),
            ));
        }
        Ok(Self {
            latents,
            text,
            clap,
            empty_text,
            latents_flipped: None,
        })
    }

    /// Adds the latents of the horizontally flipped images (`[N, C, h, w]` like `latents`).
    pub fn with_flipped(mut self, flipped: Tensor<4>) -> Result<Self> {
        if flipped.dims() != self.latents.dims() {
            return Err(TrainError::bad_input(
                "flipped latents",
                format!("{:?} like the latents", self.latents.dims()),
                flipped.dims(),
            ));
        }
        self.latents_flipped = Some(flipped);
        Ok(self)
    }

    /// The number of examples.
    pub fn len(&self) -> usize {
        self.latents.dims()[0]
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One stage-2 micro-batch, with its random draws made.
#[derive(Debug, Clone)]
pub struct Stage2Batch {
    /// Clean latents `[B, C, h, w]`.
    pub latents: Tensor<4>,
    /// Caption embeddings after the text drop `[B, T, D]`.
    pub text: Tensor<3>,
    /// CLAP embeddings after the audio drop (dropped rows are zero) `[B, A]`.
    pub clap: Tensor<2>,
    /// The noise `[B, C, h, w]`.
    pub noise: Tensor<4>,
    /// One training timestep per sample.
    pub timesteps: Vec<usize>,
}

fn select<const D: usize>(x: &Tensor<D>, idx: &[usize]) -> Tensor<D> {
    let device = x.device();
    let i: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    x.clone().select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(i, [idx.len()]), &device),
    )
}

/// `[B, 1, ..]` 0/1 mask of `keep` on `device` (multiplying by it is exact).
fn mask<const D: usize>(keep: &[bool], device: &Device) -> Tensor<D> {
    let mut shape = [1usize; D];
    shape[0] = keep.len();
    let v: Vec<f32> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// Adds new gated adapters to `unet` (placement, token width, initial gate) with weights drawn
/// from `seed` (reproducible, as [`crate::stage1::new_projector`]); returns how many.
pub fn add_new_adapters(
    unet: UNet2DConditionModel,
    placement: sonic_unet::AdapterPlacement,
    context_dim: usize,
    gate_init: f32,
    seed: u64,
    device: &Device,
) -> (UNet2DConditionModel, usize) {
    let mut n = 0;
    let unet = crate::params::seeded_init(device, seed, || {
        let mut unet = unet;
        n = unet.add_adapters(placement, context_dim, gate_init, device);
        Ok::<_, std::convert::Infallible>(unet)
    });
    match unet {
        Ok(u) => (u, n),
        Err(never) => match never {},
    }
}

/// Periodic sample images during stage 2.
pub struct Sampler {
    /// The Stable Diffusion components (its UNet is replaced by the trainer's for sampling).
    pub sd: StableDiffusion,
    /// The CLAP embeddings to render `[K, A]` (one image each).
    pub clap: Tensor<2>,
    /// Steps, guidance, size, seed, scheduler.
    pub request: AudioToImage,
    /// Every this many optimizer steps.
    pub every: u64,
    /// Where the PNGs go (`<dir>/step-XXXXXXXX-<k>.png`).
    pub dir: PathBuf,
}

struct Quiet(NoHook);

impl SamplingObserver for Quiet {
    fn unet_hook(&mut self) -> &mut dyn UNetHook {
        &mut self.0
    }
}

/// The stage-2 trainer.
pub struct Stage2Trainer {
    config: Stage2Config,
    model: Option<Stage2Model>,
    optimizer: ModuleOptimizer,
    schedule: DdpmSchedule,
    rng: TrainRng,
    step: u64,
    device: Device,
    last_loss: f64,
}

impl Stage2Trainer {
    /// A trainer for the adapters of `unet` (which must have them) and, with
    /// `config.train_projector`, `projector`, with the noise schedule `schedule` (the model's
    /// scheduler config: betas and prediction type), on the plain device `device`.
    pub fn new(
        config: Stage2Config,
        unet: UNet2DConditionModel,
        projector: Projector,
        schedule: DdpmSchedule,
        device: &Device,
    ) -> Result<Self> {
        Self::build(config, unet, projector, schedule, device, false)
    }

    /// Like [`Self::new`], but the frozen parameters are tracked by autodiff too (they still
    /// do not train). Only for measuring what freezing saves (see `docs/TRAINING.md`).
    pub fn new_tracking_frozen(
        config: Stage2Config,
        unet: UNet2DConditionModel,
        projector: Projector,
        schedule: DdpmSchedule,
        device: &Device,
    ) -> Result<Self> {
        Self::build(config, unet, projector, schedule, device, true)
    }

    fn build(
        config: Stage2Config,
        unet: UNet2DConditionModel,
        projector: Projector,
        schedule: DdpmSchedule,
        device: &Device,
        track_frozen: bool,
    ) -> Result<Self> {
        config.validate(Path::new("<stage-2 config>"))?;
        if unet.adapter_count() == 0 {
            return Err(TrainError::bad_input(
                "stage-2 UNet",
                "a UNet with gated adapters (add_adapters / with_adapters)",
                "no adapters",
            ));
        }
        let model = Stage2Model { unet, projector };
        let train_projector = config.train_projector;
        let trainable =
            move |p: &str| is_adapter_path(p) || (train_projector && p.starts_with("projector."));
        let (model, n) = if track_frozen {
            select_trainable_tracking_all(model, &trainable)
        } else {
            select_trainable(model, &trainable)
        };
        tracing::info!(tensors = n, "stage 2: trainable tensors");
        Ok(Self {
            optimizer: adamw(&config.training.optimizer),
            rng: TrainRng::new(config.training.seed),
            step: 0,
            device: device.clone(),
            model: Some(model),
            schedule,
            config,
            last_loss: f64::NAN,
        })
    }

    fn trainable(&self) -> impl Fn(&str) -> bool + use<> {
        let train_projector = self.config.train_projector;
        move |p: &str| is_adapter_path(p) || (train_projector && p.starts_with("projector."))
    }

    /// Optimizer steps completed.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The config.
    pub fn config(&self) -> &Stage2Config {
        &self.config
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn model_ref(&self) -> Result<&Stage2Model> {
        self.model.as_ref().ok_or_else(|| TrainError::Checkpoint {
            path: PathBuf::from("<trainer>"),
            message: "the model was lost by a failed optimizer step".into(),
        })
    }

    /// The UNet and projector in their current state, off autodiff.
    pub fn model(&self) -> Result<Stage2Model> {
        Ok(untracked(self.model_ref()?.clone()))
    }

    /// The number of optimizer steps of a run over `n` training examples.
    pub fn total_steps(&self, n: usize) -> u64 {
        let t = &self.config.training;
        t.max_steps.unwrap_or_else(|| {
            let bpe = EpochOrder::new(0, n, t.batch_size).batches_per_epoch();
            t.epochs * (bpe / t.grad_accum as u64).max(1)
        })
    }

    /// Draws timesteps, noise and the text / audio drops for examples `idx` of `data` from the
    /// trainer's random stream (with `drops = false`, nothing is dropped).
    pub fn sample_batch(
        &mut self,
        data: &Stage2Data,
        idx: &[usize],
        drops: bool,
    ) -> Result<Stage2Batch> {
        let (text_drop, audio_drop) = if drops {
            (self.config.text_drop, self.config.audio_drop)
        } else {
            (0.0, 0.0)
        };
        let flip = drops && self.config.hflip;
        sample_batch(
            &mut self.rng,
            &self.schedule,
            data,
            idx,
            text_drop,
            audio_drop,
            flip,
        )
    }

    /// The DDPM loss of `batch` under `model`.
    pub fn loss_with(&self, model: &Stage2Model, batch: &Stage2Batch) -> Result<Tensor<1>> {
        let tokens = model.projector.forward(batch.clap.clone())?;
        let adapters = model
            .unet
            .prepare_adapters(tokens, AdapterStrength::Global(self.config.audio_strength));
        let noisy = self.schedule.add_noise(
            batch.latents.clone(),
            batch.noise.clone(),
            &batch.timesteps,
        )?;
        let ts: Vec<f32> = batch.timesteps.iter().map(|&t| t as f32).collect();
        let pred = model.unet.forward_with(
            noisy,
            &ts,
            sonic_unet::UNetInputs::new(batch.text.clone()).adapters(&adapters),
        )?;
        ddpm_loss(
            &self.schedule,
            pred,
            batch.latents.clone(),
            batch.noise.clone(),
            &batch.timesteps,
        )
    }

    /// One optimizer step over `micro_batches` (their mean loss). A non-finite loss or gradient
    /// norm fails with [`TrainError::NonFinite`] and leaves the model and optimizer untouched.
    pub fn train_step(
        &mut self,
        micro_batches: &[Stage2Batch],
        total_steps: u64,
    ) -> Result<StepReport> {
        if micro_batches.is_empty() {
            return Err(TrainError::bad_input("micro-batches", "at least 1", 0));
        }
        let k = micro_batches.len() as f64;
        let step = self.step + 1;
        let mut acc = GradientsAccumulator::<Stage2Model>::new();
        let mut loss = 0.0;
        {
            let model = self.model_ref()?;
            for batch in micro_batches {
                let l = self.loss_with(model, batch)?;
                let v = l.clone().into_scalar::<f32>() as f64;
                check_finite("loss", v, step)?;
                loss += v / k;
                let grads = l.div_scalar(k).backward();
                acc.accumulate(model, GradientsParams::from_grads(grads, model));
            }
        }
        let mut grads = acc.grads();
        let model = self.model_ref()?;
        let grad_norm = match self.config.training.clip_grad_norm {
            Some(max) => clip_global_norm(model, &mut grads, max),
            None => global_grad_norm(model, &grads),
        };
        check_finite("gradient norm", grad_norm, step)?;
        let t = &self.config.training;
        let lr = t.lr_schedule.lr_at(t.optimizer.lr, self.step, total_steps);
        let model = self.model.take().ok_or_else(|| TrainError::Checkpoint {
            path: PathBuf::from("<trainer>"),
            message: "no model".into(),
        })?;
        self.model = Some(self.optimizer.step(lr, model, grads));
        self.step = step;
        self.last_loss = loss;
        Ok(StepReport {
            step,
            total_steps,
            loss,
            parts: vec![],
            lr,
            grad_norm,
        })
    }

    /// The mean DDPM loss over `val` with a fixed random stream (the same timesteps and noise
    /// every time; no drops), without autodiff.
    pub fn validation_loss(&self, val: &Stage2Data) -> Result<f64> {
        let model = self.model_ref()?.valid();
        let mut rng = TrainRng::new(self.config.training.seed ^ 0x5eed_0f7a_11d0);
        let bs = self.config.training.batch_size;
        let idx: Vec<usize> = (0..val.len()).collect();
        let (mut sum, mut count) = (0.0, 0usize);
        for chunk in idx.chunks(bs) {
            let batch = sample_batch(&mut rng, &self.schedule, val, chunk, 0.0, 0.0, false)?;
            let l = self.loss_with(&model, &batch)?;
            sum += l.into_scalar::<f32>() as f64 * chunk.len() as f64;
            count += chunk.len();
        }
        Ok(sum / count.max(1) as f64)
    }

    /// Renders `sampler.clap` with the current adapters / projector; returns the PNG paths.
    pub fn sample_images(&self, sampler: &mut Sampler) -> Result<Vec<PathBuf>> {
        let model = self.model()?;
        sampler.sd.unet = model.unet;
        let tokens = model.projector.forward(sampler.clap.clone())?;
        let null = model.projector.null_tokens(1, &self.device)?;
        let mut req = sampler.request.clone();
        req.batch_size = tokens.dims()[0];
        let generation = audio_to_image(&sampler.sd, &req, &tokens, &null, &mut Quiet(NoHook))?;
        std::fs::create_dir_all(&sampler.dir).map_err(|e| TrainError::io(&sampler.dir, e))?;
        let meta = vec![
            ("sonic:step".to_string(), self.step.to_string()),
            ("sonic:seed".to_string(), req.seed.to_string()),
        ];
        Ok(sonic_pipeline::output::save_pngs(
            &generation.images,
            &sampler.dir.join(format!("step-{:08}.png", self.step)),
            &meta,
        )?)
    }

    /// Writes a checkpoint of the current state under `out` (see [`crate::checkpoint`]).
    pub fn save_checkpoint(&self, out: &Path) -> Result<PathBuf> {
        let state = CheckpointState {
            stage: "stage2".into(),
            step: self.step,
            seed: self.rng.seed(),
            rng_word_pos: self.rng.word_pos().to_string(),
            loss: self.last_loss,
        };
        let model = self.model()?;
        let train_projector = self.config.train_projector;
        write_checkpoint(
            out,
            &state,
            self.config.training.keep_checkpoints,
            &mut |dir| {
                sonic_unet::export::save_adapters(&model.unet, &dir.join("adapters.safetensors"))?;
                if train_projector {
                    model
                        .projector
                        .save_safetensors(&dir.join("projector.safetensors"))?;
                }
                save_optimizer(&self.optimizer, &dir.join("optimizer.bpk"))
            },
        )
    }

    /// Restores checkpoint folder `dir` (adapters, projector if trained, optimizer, step,
    /// random stream).
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<()> {
        let state = read_state(dir, "stage2")?;
        if state.seed != self.config.training.seed {
            return Err(TrainError::Checkpoint {
                path: dir.to_path_buf(),
                message: format!(
                    "seed {} differs from the config's {}",
                    state.seed, self.config.training.seed
                ),
            });
        }
        let model = self.model()?;
        let options = LoadOptions {
            remaps: vec![],
            ignore: vec![],
            subset: Some(UNet2DConditionModel::ADAPTER_PATTERN.to_string()),
            ..Default::default()
        };
        let unet = load_weights(model.unet, &dir.join("adapters.safetensors"), &options)?;
        let projector = if self.config.train_projector {
            model.projector.load_file(&sonic_projector::weights::open(
                &dir.join("projector.safetensors"),
            )?)?
        } else {
            model.projector
        };
        let trainable = self.trainable();
        let (model, _) = select_trainable(Stage2Model { unet, projector }, &trainable);
        self.model = Some(model);
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

    /// Trains until the planned number of steps, with validation, samples and checkpoints
    /// (under `out`, when given) at the configured intervals and at the end.
    pub fn run(
        &mut self,
        train: &Stage2Data,
        val: Option<&Stage2Data>,
        out: Option<&Path>,
        mut sampler: Option<&mut Sampler>,
        callback: &mut dyn FnMut(&TrainEvent) -> bool,
    ) -> Result<RunSummary> {
        let mut samples =
            |trainer: &mut Self, step: u64, total: u64| -> Result<Option<TrainEvent>> {
                match sampler.as_deref_mut() {
                    Some(s) if s.every > 0 && (step.is_multiple_of(s.every) || step == total) => {
                        let paths = trainer.sample_images(s)?;
                        Ok(Some(TrainEvent::Samples { step, paths }))
                    }
                    _ => Ok(None),
                }
            };
        crate::run_loop::run(self, train, val, out, &mut samples, callback)
    }
}

impl crate::run_loop::LoopStage for Stage2Trainer {
    type Data = Stage2Data;
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
        Stage2Trainer::total_steps(self, n)
    }
    fn rows(data: &Stage2Data) -> usize {
        data.len()
    }
    fn step_on(
        &mut self,
        train: &Stage2Data,
        micro: &[Vec<usize>],
        total: u64,
    ) -> Result<StepReport> {
        let batches = micro
            .iter()
            .map(|idx| self.sample_batch(train, idx, true))
            .collect::<Result<Vec<_>>>()?;
        self.train_step(&batches, total)
    }
    fn validation(&self, val: &Stage2Data, _train: &Stage2Data) -> Result<f64> {
        self.validation_loss(val)
    }
    fn checkpoint(&self, out: &Path) -> Result<PathBuf> {
        self.save_checkpoint(out)
    }
}

fn sample_batch(
    rng: &mut TrainRng,
    schedule: &DdpmSchedule,
    data: &Stage2Data,
    idx: &[usize],
    text_drop: f64,
    audio_drop: f64,
    flip: bool,
) -> Result<Stage2Batch> {
    if idx.is_empty() || idx.iter().any(|&i| i >= data.len()) {
        return Err(TrainError::bad_input(
            "stage-2 batch indices",
            format!("1 or more indices below {}", data.len()),
            idx,
        ));
    }
    let device = data.latents.device();
    let b = idx.len();
    let latents = select(&data.latents, idx);
    let [_, c, h, w] = latents.dims();
    let timesteps: Vec<usize> = (0..b)
        .map(|_| rng.below(schedule.num_train_timesteps()))
        .collect();
    let noise = rng.normal([b, c, h, w], &device);
    let text_keep: Vec<bool> = (0..b).map(|_| rng.uniform() >= text_drop).collect();
    let audio_keep: Vec<bool> = (0..b).map(|_| rng.uniform() >= audio_drop).collect();
    let latents = match (&data.latents_flipped, flip) {
        (Some(flipped), true) => {
            let use_flipped: Vec<bool> = (0..b).map(|_| rng.uniform() < 0.5).collect();
            let m = mask::<4>(&use_flipped, &device);
            select(flipped, idx) * m.clone() + latents * m.neg().add_scalar(1.0)
        }
        _ => latents,
    };
    let text = select(&data.text, idx);
    let tk = mask::<3>(&text_keep, &device);
    let empty = data.empty_text.clone().repeat_dim(0, b);
    let text = text * tk.clone() + empty * (tk.neg().add_scalar(1.0));
    let clap = select(&data.clap, idx) * mask::<2>(&audio_keep, &device);
    Ok(Stage2Batch {
        latents,
        text,
        clap,
        noise,
        timesteps,
    })
}

//! `sonic train stage1|stage2|import-labels|caption`: training from a manifest, with caches,
//! checkpoints, `--resume`, a progress bar and a per-step log (`<out>/log.jsonl`).

use anyhow::{Context, Result, bail};
use burn::tensor::Tensor;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sonic_audio::ClapAudioEncoder;
use sonic_pipeline::{AudioToImage, StableDiffusion, memory};
use sonic_projector::{BlockMode, Projector, ProjectorConfig};
use sonic_schedulers::ddpm::DdpmSchedule;
use sonic_train::cache::EmbeddingCache;
use sonic_train::checkpoint::{TrainEvent, latest_checkpoint};
use sonic_train::config::{ModelPaths, Stage1Config, Stage2Config};
use sonic_train::dataset::Dataset;
use sonic_train::prepare::{TextEncoder, stage1_data, stage2_data_with_flips};
use sonic_train::stage1::{RunSummary, Stage1Trainer};
use sonic_train::stage2::{Sampler, Stage2Trainer};
use sonic_unet::unet_2d_condition::AdapterPlacement;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `sonic train ...`.
#[derive(Subcommand, Debug)]
pub enum TrainCommand {
    /// Stage 1: train the audio projector (InfoNCE + weighted token MSE) on cached CLAP
    /// embeddings.
    Stage1(StageArgs),
    /// Stage 2: train the gated adapters (optionally the projector) with the DDPM loss, SD
    /// frozen.
    Stage2(StageArgs),
    /// Turn the official layout (a folder with `labels.csv` of `path,label`) into a manifest.
    ImportLabels {
        /// The folder holding `labels.csv`, the clips and their images.
        folder: PathBuf,
        /// The manifest to write (CSV).
        #[arg(long)]
        out: PathBuf,
        /// Caption the pictures while importing (BLIP; see `sonic train caption`).
        #[arg(long)]
        caption: bool,
        #[command(flatten)]
        captioner: crate::caption::CaptionArgs,
    },
    /// Fill a manifest's missing captions with an image captioner (BLIP), so (sound, picture)
    /// pairs are enough to train; captions already written are kept unless --overwrite.
    Caption {
        /// The manifest (CSV or JSONL).
        #[arg(long)]
        manifest: PathBuf,
        /// The manifest to write (CSV); may be the input itself.
        #[arg(long)]
        out: PathBuf,
        /// Caption every picture, replacing the captions already written.
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        captioner: crate::caption::CaptionArgs,
    },
}

/// Options of both stages.
#[derive(Args, Debug)]
pub struct StageArgs {
    /// The training config (`config/stage1.json` / `config/stage2.json`).
    #[arg(long)]
    pub config: PathBuf,
    /// The manifest (CSV or JSONL: audio, image, caption, label).
    #[arg(long)]
    pub manifest: PathBuf,
    /// The run folder: checkpoints, log, cache (unless --cache), final weights.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Take Stable Diffusion v1.4 and CLAP (the frozen models) from a released preset's files
    /// in the Hugging Face cache, downloaded on first use unless --offline; they override the
    /// config's model.sd / model.clap, and --sd / --clap override them.
    #[arg(long, value_parser = crate::values::checkpoint_parser())]
    pub preset: Option<sonic_pipeline::hub::Checkpoint>,
    #[command(flatten)]
    pub hub: crate::download::HubArgs,
    /// Stable Diffusion folder (overrides the config's model.sd).
    #[arg(long)]
    pub sd: Option<PathBuf>,
    /// CLAP checkpoint (overrides model.clap).
    #[arg(long)]
    pub clap: Option<PathBuf>,
    /// Projector weights (overrides model.projector).
    #[arg(long)]
    pub projector: Option<PathBuf>,
    /// Projector config (overrides model.projector_config).
    #[arg(long)]
    pub projector_config: Option<PathBuf>,
    /// Initial adapter weights, stage 2 (overrides model.adapters).
    #[arg(long)]
    pub adapters: Option<PathBuf>,
    /// The cache folder (default: <out>/cache).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Stop after this many optimizer steps (overrides training.max_steps).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// The memory the run may use (`8G`, `512MiB`, bytes); the estimate of the frozen
    /// weights, the trained state, the cached embeddings and one micro-batch's backward pass
    /// is checked against it before anything loads. Default: the memory available (CPU).
    #[arg(long, value_parser = crate::values::memory_size)]
    pub max_memory: Option<u64>,
}

/// Runs a `sonic train` command.
pub fn run(cmd: &TrainCommand, device: Option<&str>) -> Result<()> {
    match cmd {
        TrainCommand::Stage1(a) => stage1(a, device),
        TrainCommand::Stage2(a) => stage2(a, device),
        TrainCommand::ImportLabels {
            folder,
            out,
            caption,
            captioner,
        } => {
            let d = Dataset::import_labels_csv(folder)?;
            if *caption {
                let (device, _) = crate::device::announce(device)?;
                return crate::caption::caption_manifest(&d, out, false, captioner, &device);
            }
            d.write_csv(out)?;
            println!("wrote {} records to {}", d.len(), out.display());
            Ok(())
        }
        TrainCommand::Caption {
            manifest,
            out,
            overwrite,
            captioner,
        } => {
            let d = Dataset::open(manifest)
                .with_context(|| format!("reading the manifest {}", manifest.display()))?;
            let (device, _) = crate::device::announce(device)?;
            crate::caption::caption_manifest(&d, out, *overwrite, captioner, &device)
        }
    }
}

fn apply(model: &mut ModelPaths, a: &StageArgs) -> Result<()> {
    let mut preset = crate::ui::ModelPaths::default();
    preset.fill_from(a.preset, &a.hub)?;
    if preset.model.is_some() {
        (model.sd, model.clap) = (preset.model, preset.clap);
    }
    let set = |slot: &mut Option<PathBuf>, v: &Option<PathBuf>| {
        if let Some(v) = v {
            *slot = Some(v.clone());
        }
    };
    set(&mut model.sd, &a.sd);
    set(&mut model.clap, &a.clap);
    set(&mut model.projector, &a.projector);
    set(&mut model.projector_config, &a.projector_config);
    set(&mut model.adapters, &a.adapters);
    Ok(())
}

fn need<'a>(p: &'a Option<PathBuf>, what: &str, flag: &str) -> Result<&'a Path> {
    p.as_deref()
        .with_context(|| format!("no {what}: set model.{flag} in the config or pass --{flag}"))
}

fn check_out(a: &StageArgs) -> Result<()> {
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    if !a.resume && latest_checkpoint(&a.out)?.is_some() {
        bail!(
            "{} already holds checkpoints: pass --resume to continue, or choose another --out",
            a.out.display()
        );
    }
    Ok(())
}

/// The progress bar and the per-step log.
struct Reporter {
    bar: ProgressBar,
    log: std::fs::File,
    log_path: PathBuf,
    error: Option<std::io::Error>,
}

impl Reporter {
    fn new(out: &Path, total: u64, done: u64, quiet: bool) -> Result<Self> {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} step {pos}/{len} [{bar:30}] {elapsed_precise} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        };
        bar.set_position(done);
        let log_path = out.join("log.jsonl");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        Ok(Self {
            bar,
            log,
            log_path,
            error: None,
        })
    }

    fn line(&mut self, v: serde_json::Value) {
        let r = writeln!(self.log, "{v}").and_then(|_| self.log.flush());
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }

    /// The first log line of a run: what the caches did (model calls = `computed`) and, with
    /// --resume, the step the run continues from.
    fn start(&mut self, cache: &EmbeddingCache, resumed_from: Option<u64>) {
        let mut v = serde_json::json!({});
        for kind in ["clap", "text", "latents"] {
            let s = cache.stats(kind);
            v[kind] = serde_json::json!({"hits": s.hits, "computed": s.computed});
        }
        self.line(serde_json::json!({"cache": v, "resumed_from": resumed_from}));
    }

    fn event(&mut self, e: &TrainEvent) -> bool {
        match e {
            TrainEvent::Step(r) => {
                self.bar.set_position(r.step);
                self.bar
                    .set_message(format!("loss {:.5} lr {:.2e}", r.loss, r.lr));
                let parts: serde_json::Map<String, serde_json::Value> = r
                    .parts
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                    .collect();
                self.line(serde_json::json!({
                    "step": r.step, "loss": r.loss, "lr": r.lr, "grad_norm": r.grad_norm,
                    "parts": parts,
                }));
            }
            TrainEvent::Validation { step, loss } => {
                self.bar
                    .println(format!("step {step}: validation loss {loss:.5}"));
                self.line(serde_json::json!({"step": step, "val_loss": loss}));
            }
            TrainEvent::Checkpoint { step, path } => {
                self.line(
                    serde_json::json!({"step": step, "checkpoint": path.display().to_string()}),
                );
            }
            TrainEvent::Samples { step, paths } => {
                let p: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                self.line(serde_json::json!({"step": step, "samples": p}));
            }
        }
        // Stop (with a checkpoint) if the log cannot be written.
        self.error.is_none()
    }

    fn finish(self, summary: &sonic_train::Result<RunSummary>) -> Result<()> {
        self.bar.finish_and_clear();
        if let Some(e) = self.error {
            bail!("cannot write {}: {e}", self.log_path.display());
        }
        if let Ok(s) = summary {
            println!(
                "done: step {}, loss {:.6}{}{}",
                s.step,
                s.loss,
                s.val_loss
                    .map(|v| format!(", validation loss {v:.6}"))
                    .unwrap_or_default(),
                s.checkpoint
                    .as_ref()
                    .map(|c| format!(", checkpoint {}", c.display()))
                    .unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// Checks a stage's memory estimate against --max-memory or the memory available.
fn check_memory(
    stage: &str,
    estimate: &memory::MemoryEstimate,
    a: &StageArgs,
    device: &burn::tensor::Device,
) -> Result<()> {
    let what = format!(
        "{stage} training (batch from {}, data from {})",
        a.config.display(),
        a.manifest.display()
    );
    let (budget, from) = memory::budget_or_default(a.max_memory, device);
    memory::check_budget(&what, estimate, budget, from)?;
    Ok(())
}

fn open_data(a: &StageArgs, val_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
    let dataset = Dataset::open(&a.manifest)?;
    Ok(dataset.split(val_fraction, seed)?)
}

fn stage1(a: &StageArgs, device: Option<&str>) -> Result<()> {
    let mut cfg = Stage1Config::from_file(&a.config)?;
    apply(&mut cfg.model, a)?;
    if a.max_steps.is_some() {
        cfg.training.max_steps = a.max_steps;
    }
    check_out(a)?;
    let (device, _) = crate::device::announce(device)?;
    let (train, val) = open_data(a, cfg.training.val_fraction, cfg.training.seed)?;
    let sd_dir = need(&cfg.model.sd, "Stable Diffusion folder", "sd")?;
    let clap_path = need(&cfg.model.clap, "CLAP checkpoint", "clap")?;
    let estimate = sonic_train::memory::stage1_estimate(&cfg, train.len() + val.len(), sd_dir)?;
    check_memory("stage 1", &estimate, a, &device)?;
    let text = TextEncoder::load(sd_dir, &device)?;
    let encoder = ClapAudioEncoder::from_file(clap_path, &device)?;
    let mut cache = EmbeddingCache::open(&a.cache.clone().unwrap_or_else(|| a.out.join("cache")))?;
    let train_data = stage1_data(&train, &mut cache, &encoder, clap_path, &text)?;
    let val_data = if val.is_empty() {
        None
    } else {
        Some(stage1_data(&val, &mut cache, &encoder, clap_path, &text)?)
    };
    let s = cache.total();
    tracing::info!(
        hits = s.hits,
        computed = s.computed,
        "stage 1: caches ready"
    );
    let mode: BlockMode = cfg
        .block_mode
        .parse()
        .map_err(|e| anyhow::anyhow!("block_mode: {e:?}"))?;
    let projector = match (&cfg.model.projector, &cfg.model.projector_config) {
        (Some(w), Some(c)) => Projector::from_files(w, c, &device)?,
        (Some(w), None) => Projector::from_file(w, &device)?,
        (None, Some(c)) => sonic_train::stage1::new_projector(
            &ProjectorConfig::from_file(c)?,
            cfg.training.seed,
            &device,
        )?,
        (None, None) => bail!(
            "no projector: set model.projector (weights) or model.projector_config (new) or pass --projector / --projector-config"
        ),
    }
    .with_mode(mode);
    let mut trainer = Stage1Trainer::new(cfg.clone(), projector, &device)?;
    if let Some(v) = &val_data {
        // Fail now, not at the first validation, if no validation clip can be scored.
        trainer.validation_loss(v, &train_data)?;
    }
    if a.resume
        && let Some(dir) = trainer.resume(&a.out)?
    {
        eprintln!("resumed from {} (step {})", dir.display(), trainer.step());
    }
    let total = trainer.total_steps(train_data.len());
    let mut rep = Reporter::new(&a.out, total, trainer.step(), a.quiet)?;
    rep.start(&cache, a.resume.then_some(trainer.step()));
    let summary = trainer.run(&train_data, val_data.as_ref(), Some(&a.out), &mut |e| {
        rep.event(e)
    });
    rep.finish(&summary)?;
    summary?;
    let final_path = a.out.join("projector.safetensors");
    trainer.projector()?.save_safetensors(&final_path)?;
    println!("projector: {}", final_path.display());
    Ok(())
}

fn stage2(a: &StageArgs, device: Option<&str>) -> Result<()> {
    let mut cfg = Stage2Config::from_file(&a.config)?;
    apply(&mut cfg.model, a)?;
    if a.max_steps.is_some() {
        cfg.training.max_steps = a.max_steps;
    }
    check_out(a)?;
    let (device, _) = crate::device::announce(device)?;
    let (train, val) = open_data(a, cfg.training.val_fraction, cfg.training.seed)?;
    let sd_dir = need(&cfg.model.sd, "Stable Diffusion folder", "sd")?;
    let clap_path = need(&cfg.model.clap, "CLAP checkpoint", "clap")?;
    let projector_path = need(
        &cfg.model.projector,
        "projector (train stage 1 first)",
        "projector",
    )?;
    let estimate = sonic_train::memory::stage2_estimate(&cfg, train.len() + val.len(), sd_dir)?;
    check_memory("stage 2", &estimate, a, &device)?;
    let sd = StableDiffusion::from_dir(sd_dir, &device)?;
    let encoder = ClapAudioEncoder::from_file(clap_path, &device)?;
    let mut cache = EmbeddingCache::open(&a.cache.clone().unwrap_or_else(|| a.out.join("cache")))?;
    let train_data = stage2_data_with_flips(
        &train,
        &mut cache,
        &encoder,
        clap_path,
        &sd,
        cfg.resolution,
        cfg.hflip,
    )?;
    let val_data = if val.is_empty() {
        None
    } else {
        Some(stage2_data_with_flips(
            &val,
            &mut cache,
            &encoder,
            clap_path,
            &sd,
            cfg.resolution,
            false,
        )?)
    };
    let projector = match &cfg.model.projector_config {
        Some(c) => Projector::from_files(projector_path, c, &device)?,
        None => Projector::from_file(projector_path, &device)?,
    };
    let unet = match &cfg.model.adapters {
        Some(p) => sd.unet.clone().with_adapters(p, &device)?.0,
        None => {
            sonic_train::stage2::add_new_adapters(
                sd.unet.clone(),
                AdapterPlacement::OFFICIAL,
                projector.config().context_dim(),
                cfg.gate_init,
                cfg.training.seed,
                &device,
            )
            .0
        }
    };
    let schedule = DdpmSchedule::from_json(&sd.scheduler_config)?;
    let mut sampler = if cfg.sample_every > 0 {
        let source = val_data.as_ref().unwrap_or(&train_data);
        let k = source.len().min(4);
        let clap: Tensor<2> = source.clap.clone().narrow(0, 0, k);
        Some(Sampler {
            request: AudioToImage {
                steps: cfg.sample_steps,
                width: cfg.resolution,
                height: cfg.resolution,
                seed: cfg.training.seed,
                ..AudioToImage::default()
            },
            sd,
            clap,
            every: cfg.sample_every,
            dir: a.out.join("samples"),
        })
    } else {
        drop(sd); // the trainer shares the UNet's tensors; the rest is not needed
        None
    };
    let mut trainer = Stage2Trainer::new(cfg.clone(), unet, projector, schedule, &device)?;
    if a.resume
        && let Some(dir) = trainer.resume(&a.out)?
    {
        eprintln!("resumed from {} (step {})", dir.display(), trainer.step());
    }
    let total = trainer.total_steps(train_data.len());
    let mut rep = Reporter::new(&a.out, total, trainer.step(), a.quiet)?;
    rep.start(&cache, a.resume.then_some(trainer.step()));
    let summary = trainer.run(
        &train_data,
        val_data.as_ref(),
        Some(&a.out),
        sampler.as_mut(),
        &mut |e| rep.event(e),
    );
    rep.finish(&summary)?;
    summary?;
    let model = trainer.model()?;
    let adapters = a.out.join("adapters.safetensors");
    sonic_unet::export::save_adapters(&model.unet, &adapters)?;
    println!("adapters: {}", adapters.display());
    if cfg.train_projector {
        let p = a.out.join("projector.safetensors");
        model.projector.save_safetensors(&p)?;
        println!("projector: {}", p.display());
    }
    Ok(())
}

//! `sonic tune`: hyperparameter search over a stage's config (TPE + pruning, a resumable study
//! on disk, the best parameters written back as a stage config). See docs/TRAINING.md,
//! "Hyperparameter search".

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use sonic_audio::ClapAudioEncoder;
use sonic_pipeline::StableDiffusion;
use sonic_projector::{Projector, ProjectorConfig};
use sonic_schedulers::ddpm::DdpmSchedule;
use sonic_train::cache::EmbeddingCache;
use sonic_train::config::{ModelPaths, Stage1Config, Stage2Config};
use sonic_train::dataset::Dataset;
use sonic_train::prepare::{TextEncoder, stage1_data, stage2_data_with_flips};
use sonic_train::tune::objective::{Stage1Run, Stage2Run, StageRun, TrainingObjective};
use sonic_train::tune::overrides::write_config_with_overrides;
use sonic_train::tune::{Study, TrialRecord, TrialState, TuneConfig};
use std::path::{Path, PathBuf};

/// Arguments of `sonic tune`.
#[derive(clap::Args, Debug, Clone)]
pub struct TuneArgs {
    /// The tune config (stage, base config, search space, sampler, pruner, budget).
    #[arg(long)]
    pub config: PathBuf,
    /// The study folder (default: the config's study_dir). An existing study is resumed.
    #[arg(long)]
    pub study: Option<PathBuf>,
    /// Total trials, counting those already in the study (default: the config's n_trials).
    #[arg(long)]
    pub trials: Option<usize>,
    /// The training manifest (default: the config's manifest).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// The embedding cache folder (default: the config's cache_dir, else <study>/cache).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Where to write the best stage config (default: <study>/best_config.json).
    #[arg(long)]
    pub best_config: Option<PathBuf>,
    /// Take Stable Diffusion v1.4 and CLAP (the frozen models) from a released preset's files
    /// in the Hugging Face cache, downloaded on first use unless --offline; they override the
    /// base config's model.sd / model.clap.
    #[arg(long, value_parser = crate::values::checkpoint_parser())]
    pub preset: Option<sonic_pipeline::hub::Checkpoint>,
    #[command(flatten)]
    pub hub: crate::download::HubArgs,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The Stable Diffusion folder and the CLAP checkpoint: the preset's when one is given, else
/// the base config's.
fn frozen_models<'a>(
    preset: &'a crate::ui::ModelPaths,
    m: &'a ModelPaths,
    base: &Path,
) -> Result<(&'a Path, &'a Path)> {
    let sd = match &preset.model {
        Some(p) => p.as_path(),
        None => need(&m.sd, "Stable Diffusion folder", "sd", base)?,
    };
    let clap = match &preset.clap {
        Some(p) => p.as_path(),
        None => need(&m.clap, "CLAP checkpoint", "clap", base)?,
    };
    Ok((sd, clap))
}

fn need<'a>(p: &'a Option<PathBuf>, what: &str, key: &str, base: &Path) -> Result<&'a Path> {
    p.as_deref()
        .with_context(|| format!("no {what}: set model.{key} in {}", base.display()))
}

fn split(manifest: &Path, val_fraction: f64, seed: u64, base: &Path) -> Result<(Dataset, Dataset)> {
    let (train, val) = Dataset::open(manifest)?.split(val_fraction, seed)?;
    if val.is_empty() {
        bail!(
            "the validation split of {} is empty (the objective is the validation loss): raise training.val_fraction in {}",
            manifest.display(),
            base.display()
        );
    }
    Ok((train, val))
}

fn stage1(
    cfg: &TuneConfig,
    preset: &crate::ui::ModelPaths,
    manifest: &Path,
    cache: &Path,
    device: &Device,
) -> Result<Stage1Run> {
    let base = Stage1Config::from_file(&cfg.base_config)?;
    let bp = cfg.base_config.as_path();
    let (train, val) = split(manifest, base.training.val_fraction, base.training.seed, bp)?;
    let m: &ModelPaths = &base.model;
    let (sd_dir, clap_path) = frozen_models(preset, m, bp)?;
    let text = TextEncoder::load(sd_dir, device)?;
    let encoder = ClapAudioEncoder::from_file(clap_path, device)?;
    let mut cache = EmbeddingCache::open(cache)?;
    let train = stage1_data(&train, &mut cache, &encoder, clap_path, &text)?;
    let val = stage1_data(&val, &mut cache, &encoder, clap_path, &text)?;
    let projector = match (&m.projector, &m.projector_config) {
        (Some(w), Some(c)) => Projector::from_files(w, c, device)?,
        (Some(w), None) => Projector::from_file(w, device)?,
        (None, Some(c)) => sonic_train::stage1::new_projector(
            &ProjectorConfig::from_file(c)?,
            base.training.seed,
            device,
        )?,
        (None, None) => bail!(
            "no projector: set model.projector (weights) or model.projector_config (a new one) in {}",
            bp.display()
        ),
    };
    Ok(Stage1Run {
        train,
        val,
        projector,
        device: device.clone(),
    })
}

fn stage2(
    cfg: &TuneConfig,
    preset: &crate::ui::ModelPaths,
    manifest: &Path,
    cache: &Path,
    device: &Device,
) -> Result<Stage2Run> {
    let base = Stage2Config::from_file(&cfg.base_config)?;
    let bp = cfg.base_config.as_path();
    let (train, val) = split(manifest, base.training.val_fraction, base.training.seed, bp)?;
    let m: &ModelPaths = &base.model;
    let (sd_dir, clap_path) = frozen_models(preset, m, bp)?;
    let projector_path = need(
        &m.projector,
        "projector (train stage 1 first)",
        "projector",
        bp,
    )?;
    let sd = StableDiffusion::from_dir(sd_dir, device)?;
    let encoder = ClapAudioEncoder::from_file(clap_path, device)?;
    let mut cache = EmbeddingCache::open(cache)?;
    // as `sonic train stage2`: flipped copies for training when hflip, none for validation
    let train = stage2_data_with_flips(
        &train,
        &mut cache,
        &encoder,
        clap_path,
        &sd,
        base.resolution,
        base.hflip,
    )?;
    let val = stage2_data_with_flips(
        &val,
        &mut cache,
        &encoder,
        clap_path,
        &sd,
        base.resolution,
        false,
    )?;
    let projector = match &m.projector_config {
        Some(c) => Projector::from_files(projector_path, c, device)?,
        None => Projector::from_file(projector_path, device)?,
    };
    let schedule = DdpmSchedule::from_json(&sd.scheduler_config)?;
    Ok(Stage2Run {
        train,
        val,
        unet: sd.unet.clone(),
        projector,
        schedule,
        device: device.clone(),
    })
}

fn describe(t: &TrialRecord) -> String {
    let params: Vec<String> = t.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let outcome = match &t.state {
        TrialState::Complete => format!("value {:.6}", t.value.unwrap_or(f64::NAN)),
        TrialState::Pruned => match t.last_report() {
            Some((s, v)) => format!("pruned at step {s} ({v:.6})"),
            None => "pruned".into(),
        },
        TrialState::Failed { reason, .. } => format!("failed: {reason}"),
        TrialState::Running => "running".into(),
    };
    format!("trial {}: {outcome}  [{}]", t.number, params.join(", "))
}

fn search<S: StageRun>(
    study: &mut Study,
    mut objective: TrainingObjective<S>,
    n_trials: usize,
    catch_errors: bool,
    quiet: bool,
) -> Result<()> {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(n_trials as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} trial {pos}/{len} [{bar:30}] {elapsed_precise} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(500));
        b
    };
    bar.set_position(study.n_counted() as u64);
    if let Some(best) = study.best_trial() {
        bar.set_message(format!(
            "best {:.6} (trial {})",
            best.value.unwrap_or(f64::NAN),
            best.number
        ));
    }
    let result = study.optimize(&mut objective, n_trials, catch_errors, |t, best| {
        bar.inc(1);
        bar.println(describe(t));
        if let Some(b) = best {
            bar.set_message(format!(
                "best {:.6} (trial {})",
                b.value.unwrap_or(f64::NAN),
                b.number
            ));
        }
    });
    bar.finish_and_clear();
    Ok(result?)
}

/// Runs `sonic tune`.
pub fn run(args: &TuneArgs, device: &Device) -> Result<()> {
    let cfg = TuneConfig::from_file(&args.config)?;
    let mut preset = crate::ui::ModelPaths::default();
    preset.fill_from(args.preset, &args.hub)?;
    let study_dir = args.study.clone().unwrap_or_else(|| cfg.study_dir.clone());
    let n_trials = args.trials.unwrap_or(cfg.n_trials);
    let mut study = Study::open(&study_dir, &cfg.study)?;
    let r = study.recovery();
    if !r.interrupted.is_empty() {
        eprintln!(
            "trials {:?} were interrupted by the end of an earlier process: marked failed{}",
            r.interrupted,
            if r.requeued.is_empty() {
                String::new()
            } else {
                format!(", re-running {:?}", r.requeued)
            }
        );
    }
    if r.truncated_bytes > 0 {
        eprintln!(
            "cut off a partially written last journal line ({} bytes)",
            r.truncated_bytes
        );
    }
    let done = study.n_counted();
    eprintln!(
        "study {}: {} trials so far ({} counted), {} to run",
        study_dir.display(),
        study.trials().len(),
        done,
        n_trials.saturating_sub(done)
    );
    if done < n_trials {
        let manifest = args
            .manifest
            .clone()
            .or_else(|| cfg.manifest.clone())
            .context("no manifest: pass --manifest or set `manifest` in the tune config")?;
        let cache = args
            .cache
            .clone()
            .or_else(|| cfg.cache_dir.clone())
            .unwrap_or_else(|| study_dir.join("cache"));
        match cfg.stage.as_str() {
            "stage1" => {
                let stage = stage1(&cfg, &preset, &manifest, &cache, device)?;
                let objective =
                    TrainingObjective::new(&cfg.base_config, cfg.budget, &study_dir, stage)?;
                search(
                    &mut study,
                    objective,
                    n_trials,
                    cfg.catch_errors,
                    args.quiet,
                )?;
            }
            "stage2" => {
                let stage = stage2(&cfg, &preset, &manifest, &cache, device)?;
                let objective =
                    TrainingObjective::new(&cfg.base_config, cfg.budget, &study_dir, stage)?;
                search(
                    &mut study,
                    objective,
                    n_trials,
                    cfg.catch_errors,
                    args.quiet,
                )?;
            }
            other => bail!("unknown stage `{other}`"),
        }
    }
    let (complete, pruned, failed) = study.trials().iter().fold((0, 0, 0), |(c, p, f), t| match t
        .state
    {
        TrialState::Complete => (c + 1, p, f),
        TrialState::Pruned => (c, p + 1, f),
        TrialState::Failed { .. } => (c, p, f + 1),
        TrialState::Running => (c, p, f),
    });
    println!("trials: {complete} complete, {pruned} pruned, {failed} failed");
    let best = study.best_trial().cloned().with_context(|| {
        format!(
            "no trial of {} completed, so there is no best one",
            study_dir.display()
        )
    })?;
    println!("best {}", describe(&best));
    let params_path = study_dir.join("best_params.json");
    study.write_best_params(&params_path)?;
    let config_path = args
        .best_config
        .clone()
        .unwrap_or_else(|| study_dir.join("best_config.json"));
    write_config_with_overrides(&cfg.base_config, &best.params, &config_path)?;
    println!("best parameters: {}", params_path.display());
    println!("best config: {}", config_path.display());
    Ok(())
}

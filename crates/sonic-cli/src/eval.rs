//! `sonic eval`: one picture per clip of a manifest (seeded, batched, resumable), every metric
//! (CLIP score, IIS, AIS, AIC, FID, and LPIPS for edits), and `metrics.json`, `items.csv` and
//! `report.html`; or, with `--images DIR`, the same metrics on pictures made elsewhere.

use crate::ui::{StepBar, with_spinner};
use anyhow::{Context, Result};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use sonic_eval::evaluate::{ClipMetricModel, EvalItem, EvalOptions, Scorers, evaluate};
use sonic_pipeline::sonic::AudioSource;
use sonic_pipeline::{AudioToImage, output};
use sonic_schedulers::SchedulerChoice;
use sonic_unet::AdapterStrength;
use std::path::{Path, PathBuf};

/// Arguments of `sonic eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// The evaluation set: a manifest as `sonic train` reads it (audio, image = the ground-truth
    /// picture, caption, label).
    #[arg(long)]
    pub manifest: PathBuf,
    /// Output folder: images/ (the generated pictures), metrics.json, items.csv, report.html.
    #[arg(long)]
    pub out: PathBuf,
    /// Score pictures made elsewhere instead of generating: DIR/<key>.png where <key> is
    /// NNNNN-<audio stem> (NNNNN: the manifest line), else <audio stem> with .png, .jpg or
    /// .webp.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// The pictures are edits of the manifest's images (then LPIPS is reported, FID is not).
    #[arg(long)]
    pub edits: bool,
    #[command(flatten)]
    pub models: crate::ui::SonicModelArgs,
    #[command(flatten)]
    pub parts: crate::values::ModelParts,
    /// The prompt of every picture; `{caption}` stands for the clip's caption.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Denoising steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// The scheduler.
    #[arg(long, default_value = "model", value_parser = crate::values::scheduler_parser())]
    pub scheduler: SchedulerChoice,
    /// Seed of the initial noise, the same for every clip (so only the sound changes the
    /// picture).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Audio strength of the adapters.
    #[arg(long, default_value_t = 1.0)]
    pub audio_strength: f32,
    /// Width in pixels (default: the UNet's).
    #[arg(long)]
    pub width: Option<usize>,
    /// Height in pixels (default: the UNet's).
    #[arg(long)]
    pub height: Option<usize>,
    /// Clips per generation batch and per metric batch.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub batch: u64,
    /// The CLIP model of the metrics (a transformers CLIP folder); default:
    /// openai/clip-vit-base-patch32 from the cache (`sonic download --eval`).
    #[arg(long)]
    pub clip: Option<PathBuf>,
    /// Wav2CLIP (a folder with config.json and the weights, or a safetensors file made by
    /// `sonic export`): enables AIS.
    #[arg(long)]
    pub wav2clip: Option<PathBuf>,
    /// pytorch-fid's InceptionV3 as safetensors (`sonic export` converts
    /// pt_inception-2015-12-05-6726825d.pth): enables FID.
    #[arg(long)]
    pub inception: Option<PathBuf>,
    /// LPIPS weights (the lpips package's state-dict names, safetensors or pickle), or with
    /// --lpips-lins torchvision's trunk weights (e.g. alexnet-owt-7be5be79.pth): enables LPIPS
    /// with --edits.
    #[arg(long)]
    pub lpips: Option<PathBuf>,
    /// The lpips package's heads (`weights/v0.1/alex.pth`), when --lpips is torchvision's
    /// trunk.
    #[arg(long)]
    pub lpips_lins: Option<PathBuf>,
    /// The LPIPS backbone of --lpips.
    #[arg(long, default_value = "alex")]
    pub lpips_net: String,
    /// Class names for AIC, one per line (default: the manifest's labels).
    #[arg(long)]
    pub classes: Option<PathBuf>,
    /// The text each class name goes into for zero-shot classification.
    #[arg(long, default_value = "a photo of {}")]
    pub class_template: String,
}

/// The manifest's clips as evaluation items (their pictures not yet made).
fn items(args: &EvalArgs) -> Result<Vec<EvalItem>> {
    let dataset = sonic_train::dataset::Dataset::open(&args.manifest)
        .with_context(|| format!("reading the manifest {}", args.manifest.display()))?;
    anyhow::ensure!(
        !dataset.records.is_empty(),
        "the manifest {} has no clips",
        args.manifest.display()
    );
    let images = args.out.join("images");
    dataset
        .records
        .iter()
        .map(|r| {
            let stem = r
                .audio
                .file_stem()
                .map_or_else(|| "clip".to_string(), |s| s.to_string_lossy().into_owned());
            let key = format!("{:05}-{}", r.line, sanitize(&stem));
            let generated = match &args.images {
                Some(dir) => find_picture(dir, &key, &stem)?,
                None => images.join(format!("{key}.png")),
            };
            Ok(EvalItem {
                key,
                audio: r.audio.clone(),
                generated,
                reference: Some(r.image.clone()),
                label: r.label.clone(),
                caption: r.caption.clone(),
            })
        })
        .collect()
}

/// A file-name-safe version of `s` (letters, digits, `-`, `_`, `.`; anything else `_`).
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn find_picture(dir: &Path, key: &str, stem: &str) -> Result<PathBuf> {
    for name in [key, stem] {
        for ext in ["png", "jpg", "jpeg", "webp"] {
            let p = dir.join(format!("{name}.{ext}"));
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    anyhow::bail!(
        "no picture for clip {key} in {}: looked for {key}.png and {stem}.png (.jpg, .webp)",
        dir.display()
    )
}

fn bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(label.to_string());
    bar
}

/// Generates the pictures of `items` that are not on disk yet (a rerun resumes).
fn generate_missing(args: &EvalArgs, items: &[EvalItem], device: &Device) -> Result<()> {
    let todo: Vec<&EvalItem> = items.iter().filter(|i| !i.generated.is_file()).collect();
    if todo.is_empty() {
        eprintln!("all {} pictures exist: scoring only", items.len());
        return Ok(());
    }
    eprintln!(
        "generating {} of {} pictures ({} already there)",
        todo.len(),
        items.len(),
        items.len() - todo.len()
    );
    let paths = args.models.paths()?;
    let (pipe, _) =
        args.models
            .pipeline(&paths, "generating (without --images)", &args.parts, device)?;
    let pipe = with_spinner("loading the models", || pipe.build())?;
    let px = pipe.sd.default_image_size();
    for dir in todo.iter().filter_map(|i| i.generated.parent()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let overall = bar(todo.len() as u64, "pictures");
    for chunk in todo.chunks(args.batch as usize) {
        let sources: Vec<AudioSource> = chunk
            .iter()
            .map(|i| AudioSource::File(i.audio.clone()))
            .collect();
        let embeddings = pipe
            .embed(&sources)
            .with_context(|| format!("encoding {}", chunk[0].audio.display()))?;
        // One prompt per batch: the batch shares it unless it names the caption.
        let prompt = args.prompt.replace("{caption}", &chunk[0].caption);
        let chunks: Vec<Vec<&EvalItem>> = if args.prompt.contains("{caption}") {
            chunk.iter().map(|i| vec![*i]).collect()
        } else {
            vec![chunk.to_vec()]
        };
        let mut row = 0;
        for group in chunks {
            let prompt = if group.len() == 1 {
                args.prompt.replace("{caption}", &group[0].caption)
            } else {
                prompt.clone()
            };
            let rows = embeddings.clone().narrow(0, row, group.len());
            row += group.len();
            let req = AudioToImage {
                prompt,
                negative_prompt: String::new(),
                guidance_scale: args.guidance,
                audio_guidance_scale: None,
                audio_strength: AdapterStrength::Global(args.audio_strength),
                steps: args.steps,
                scheduler: args.scheduler.to_string(),
                seed: args.seed,
                width: args.width.unwrap_or(px),
                height: args.height.unwrap_or(px),
                batch_size: group.len(),
                latents: None,
                cancel: None,
            };
            let mut steps = StepBar::new("denoising", args.steps);
            let result = pipe.generate(rows, &req, &mut |p| steps.update(p));
            steps.finish();
            let pictures = output::to_images(&result?.images)?;
            for (item, picture) in group.iter().zip(&pictures) {
                let meta = vec![
                    ("sonic:audio".to_string(), item.audio.display().to_string()),
                    ("sonic:prompt".to_string(), req.prompt.clone()),
                    ("sonic:seed".to_string(), args.seed.to_string()),
                    ("sonic:steps".to_string(), args.steps.to_string()),
                    ("sonic:guidance".to_string(), args.guidance.to_string()),
                ];
                let bytes = output::encode_image(picture, output::ImageFormat::Png, &meta)
                    .map_err(|m| anyhow::anyhow!("encoding {}: {m}", item.generated.display()))?;
                output::write_atomic(&item.generated, &bytes)?;
                overall.inc(1);
            }
        }
    }
    overall.finish_and_clear();
    Ok(())
}

fn settings(args: &EvalArgs, clip: &Path) -> serde_json::Value {
    serde_json::json!({
        "manifest": args.manifest.display().to_string(),
        "images": args.images.as_ref().map(|p| p.display().to_string()),
        "model": args.models.model.as_ref().map(|p| p.display().to_string()),
        "preset": args.models.preset.map(|p| p.name()),
        "prompt": args.prompt,
        "steps": args.steps,
        "guidance": args.guidance,
        "scheduler": args.scheduler.to_string(),
        "seed": args.seed,
        "audio_strength": args.audio_strength,
        "clip": clip.display().to_string(),
        "wav2clip": args.wav2clip.as_ref().map(|p| p.display().to_string()),
        "inception": args.inception.as_ref().map(|p| p.display().to_string()),
        "lpips": args.lpips.as_ref().map(|p| p.display().to_string()),
        "class_template": args.class_template,
        "edits": args.edits,
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// Runs `sonic eval`.
pub fn run(args: &EvalArgs, device: &Device) -> Result<()> {
    let items = items(args)?;
    let clip_dir = match &args.clip {
        Some(d) => d.clone(),
        None => crate::download::resolve_clip_dir(
            sonic_pipeline::hub::CLIP_EVAL_REPO,
            &args.models.hub,
        )?,
    };
    // Load the metric models first: a bad path fails before any picture is generated.
    let scorers = with_spinner("loading the metric models", || -> Result<Scorers> {
        Ok(Scorers {
            clip: ClipMetricModel::from_dir(&clip_dir, device)
                .with_context(|| format!("loading CLIP from {}", clip_dir.display()))?,
            wav2clip: args
                .wav2clip
                .as_ref()
                .map(|p| {
                    if p.is_dir() {
                        sonic_eval::wav2clip::Wav2Clip::from_dir(p, device)
                    } else {
                        sonic_eval::wav2clip::Wav2Clip::from_file(p, device)
                    }
                    .with_context(|| format!("loading Wav2CLIP from {}", p.display()))
                })
                .transpose()?,
            inception: args
                .inception
                .as_ref()
                .map(|p| {
                    sonic_eval::inception::FidInceptionV3::from_file(p, device)
                        .with_context(|| format!("loading InceptionV3 from {}", p.display()))
                })
                .transpose()?,
            lpips: args
                .lpips
                .as_ref()
                .map(|p| -> Result<_> {
                    let net = sonic_eval::lpips::LpipsNet::parse(&args.lpips_net)?;
                    match &args.lpips_lins {
                        Some(lins) => {
                            sonic_eval::lpips::Lpips::from_torchvision(p, lins, net, device)
                        }
                        None => sonic_eval::lpips::Lpips::from_file(p, net, device),
                    }
                    .with_context(|| format!("loading LPIPS from {}", p.display()))
                })
                .transpose()?,
        })
    })?;
    if args.images.is_none() {
        generate_missing(args, &items, device)?;
    }
    let class_names = match &args.classes {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => Vec::new(),
    };
    let options = EvalOptions {
        class_names,
        class_template: args.class_template.clone(),
        batch: args.batch as usize,
        edits: args.edits,
    };
    let progress = bar(0, "scoring");
    let report = evaluate(&items, &scorers, &options, device, &mut |p| {
        progress.set_message(p.stage);
        progress.set_length(p.total as u64);
        progress.set_position(p.done as u64);
    })?;
    progress.finish_and_clear();
    let files =
        sonic_eval::report::write_report(&args.out, &items, &report, &settings(args, &clip_dir))?;
    let s = &report.summary;
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
    println!(
        "items={} clip_score={} iis={} ais={} aic={} fid={} lpips={}",
        s.items,
        show(s.clip_score),
        show(s.iis),
        show(s.ais),
        show(s.aic),
        show(s.fid),
        show(s.lpips)
    );
    println!("{}", files.html.display());
    Ok(())
}

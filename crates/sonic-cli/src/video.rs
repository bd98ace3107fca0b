//! `sonic video`: a long recording to a clip whose picture follows the sound.

use crate::edit::EditMethodArgs;
use anyhow::{Context, Result};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use sonic_pipeline::AudioToImage;
use sonic_pipeline::image_input::{ImageOptions, load_image};
use sonic_schedulers::SchedulerChoice;
use sonic_unet::AdapterStrength;
use sonic_video::render::{NoiseSchedule, RenderOptions, VideoProgress};
use sonic_video::{SonicFrames, VideoOptions, WriterOptions, make_video};
use std::path::PathBuf;

/// Where each frame's initial noise comes from.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseArg {
    /// One noise for every frame: only the sound changes the picture.
    Fixed,
    /// Seeded anchors every --drift-seconds, slerped between.
    Drift,
}

/// Arguments of `sonic video`.
#[derive(clap::Args, Debug, Clone)]
pub struct VideoArgs {
    /// The recording (WAV, FLAC, MP3, OGG); also the video's soundtrack.
    #[arg(long)]
    pub audio: PathBuf,
    /// The output video (.mp4: H.264 + FLAC).
    #[arg(long)]
    pub out: PathBuf,
    /// Frames per second.
    #[arg(long, default_value_t = 4.0)]
    pub fps: f64,
    /// The CLAP window, seconds, centred on each frame.
    #[arg(long, default_value_t = 10.0)]
    pub window: f64,
    /// Gaussian smoothing of the embeddings over time (standard deviation, seconds; 0: none).
    #[arg(long, default_value_t = 0.5)]
    pub smooth: f64,
    /// Sample every N-th frame (and the last); the frames between are interpolated in latent
    /// space and only decoded.
    #[arg(long, default_value_t = 1)]
    pub keyframe_every: usize,
    /// The initial noise of the frames.
    #[arg(long, value_enum, default_value_t = NoiseArg::Fixed)]
    pub noise: NoiseArg,
    /// Seconds between the noise anchors of --noise drift.
    #[arg(long, default_value_t = 4.0)]
    pub drift_seconds: f64,
    /// Start each keyframe from the previous one by SDEdit at this strength (e.g. 0.5).
    #[arg(long)]
    pub reuse_previous: Option<f64>,
    /// Keyframes per UNet batch (independent keyframes only).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Also keep every frame as DIR/frame-NNNNN.png.
    #[arg(long)]
    pub frames: Option<PathBuf>,
    /// Edit this photo in every frame (the inversion is done once) instead of generating.
    #[arg(long)]
    pub image: Option<PathBuf>,
    #[command(flatten)]
    pub method: EditMethodArgs,
    /// Optional text prompt.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// The negative prompt.
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    /// Denoising steps per keyframe.
    #[arg(long, default_value_t = 25)]
    pub steps: usize,
    /// Guidance scale (no guidance when <= 1).
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// Separate audio guidance scale (then --guidance applies to the text only).
    #[arg(long)]
    pub audio_guidance: Option<f64>,
    /// Audio strength `f` of the adapters.
    #[arg(long, default_value_t = 1.0)]
    pub audio_strength: f32,
    /// The scheduler (PnP always uses DDIM).
    #[arg(long, default_value = "model", value_parser = crate::values::scheduler_parser())]
    pub scheduler: SchedulerChoice,
    /// Seed of the initial noise; random when omitted (printed and stored in the file).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Width in pixels (multiple of 8); default: the UNet's sample size x 8 (with --image:
    /// the photo resized to --width x --height when both are given).
    #[arg(long)]
    pub width: Option<usize>,
    /// Height in pixels (multiple of 8).
    #[arg(long)]
    pub height: Option<usize>,
    #[command(flatten)]
    pub models: crate::ui::SonicModelArgs,
    #[command(flatten)]
    pub parts: crate::values::ModelParts,
}

/// Runs `sonic video`.
pub fn run(args: &VideoArgs, device: &Device) -> Result<()> {
    if !args
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("mp4"))
    {
        anyhow::bail!(
            "--out {}: the video is written as MP4; use a .mp4 name",
            args.out.display()
        );
    }
    if !(args.drift_seconds.is_finite() && args.drift_seconds > 0.0) {
        anyhow::bail!(
            "--drift-seconds {} must be a positive number",
            args.drift_seconds
        );
    }
    if args.image.is_some()
        && args.method.mode() == sonic_pipeline::edit::EditMode::Pnp
        && args.reuse_previous.is_some()
    {
        anyhow::bail!(
            "--reuse-previous needs generated frames or --mode sdedit: Plug-and-Play frames are \
             edits of the photo"
        );
    }
    let paths = args.models.paths()?;
    let (pipe, _) = args
        .models
        .pipeline(&paths, "sonic video", &args.parts, device)?;
    let seed = crate::ui::seed(args.seed);
    let pipe = crate::ui::with_spinner("loading the models", || pipe.build())?;
    let default_px = pipe.sd.default_image_size();
    let req = AudioToImage {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        guidance_scale: args.guidance,
        audio_guidance_scale: args.audio_guidance,
        audio_strength: AdapterStrength::Global(args.audio_strength),
        steps: args.steps,
        scheduler: if args.image.is_some()
            && args.method.mode() == sonic_pipeline::edit::EditMode::Pnp
        {
            "ddim".into()
        } else {
            args.scheduler.to_string()
        },
        seed,
        width: args.width.unwrap_or(default_px),
        height: args.height.unwrap_or(default_px),
        batch_size: 1,
        latents: None,
        cancel: None,
    };
    let bar = ProgressBar::new(0);
    let style = |label: &str| {
        ProgressStyle::with_template(&format!(
            "{{spinner}} {label} [{{bar:30}}] {{pos}}/{{len}} {{msg}} {{elapsed}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
    };
    let mut model = match &args.image {
        None => SonicFrames::generate(&pipe, &req)?,
        Some(image) => {
            let opts = ImageOptions {
                size: args.width.zip(args.height),
                factor: pipe.sd.vae_scale_factor(),
                ..ImageOptions::default()
            };
            let pixels = load_image(image, &opts, &pipe.sd.device)
                .with_context(|| format!("reading {}", image.display()))?;
            bar.set_style(style("inverting the photo"));
            SonicFrames::edit(
                &pipe,
                pixels,
                &sonic_pipeline::edit::EditRequest {
                    mode: args.method.mode(),
                    generation: req.clone(),
                    inversion_prompt: args.method.inversion_prompt.clone(),
                    pnp: args.method.pnp_options(),
                    strength: args.method.strength,
                },
                &mut |s, t| {
                    bar.set_length(t as u64);
                    bar.set_position(s as u64);
                },
            )?
        }
    };
    let comment = format!(
        "sonic-diffusion video: audio={} prompt={:?} seed={seed} steps={} guidance={} \
         audio_strength={} fps={} window={} smooth={} keyframe_every={} noise={:?} \
         reuse_previous={:?} image={:?} mode={:?}",
        args.audio.display(),
        args.prompt,
        args.steps,
        args.guidance,
        args.audio_strength,
        args.fps,
        args.window,
        args.smooth,
        args.keyframe_every,
        args.noise,
        args.reuse_previous,
        args.image.as_ref().map(|p| p.display().to_string()),
        args.image.as_ref().map(|_| args.method.mode),
    );
    let options = VideoOptions {
        fps: args.fps,
        window: args.window,
        smooth_seconds: args.smooth,
        render: RenderOptions {
            keyframe_every: args.keyframe_every,
            noise: match args.noise {
                NoiseArg::Fixed => NoiseSchedule::Fixed,
                NoiseArg::Drift => NoiseSchedule::Drift {
                    period: ((args.drift_seconds * args.fps).round() as usize).max(1),
                },
            },
            reuse_previous: args.reuse_previous,
            batch: args.batch,
            seed,
        },
        writer: WriterOptions {
            frames_dir: args.frames.clone(),
            comment: Some(comment),
            ..WriterOptions::default()
        },
    };
    let mut stage = "";
    let summary = make_video(
        &pipe,
        &mut model,
        &args.audio,
        &options,
        &args.out,
        &mut |p| {
            match *p {
                VideoProgress::Embedding { done, total } => {
                    if stage != "embedding" {
                        stage = "embedding";
                        bar.set_style(style("embedding the sound (CLAP)"));
                        bar.reset();
                    }
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                }
                VideoProgress::Rendering {
                    done,
                    total,
                    step,
                    steps,
                } => {
                    if stage != "rendering" {
                        stage = "rendering";
                        bar.set_style(style("frames"));
                        bar.reset();
                    }
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                    if steps > 0 {
                        bar.set_message(format!("step {step}/{steps}"));
                    } else {
                        bar.set_message(String::new());
                    }
                }
                VideoProgress::Encoding => {
                    bar.set_message("encoding H.264 + FLAC");
                }
            }
            true
        },
    );
    bar.finish_and_clear();
    let summary = summary?;
    eprintln!(
        "{} frames ({} sampled) at {} fps, {:.2} s of sound, {} bytes",
        summary.frames, summary.keyframes, args.fps, summary.duration, summary.bytes
    );
    println!("{}", summary.path.display());
    Ok(())
}

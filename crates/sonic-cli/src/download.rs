//! `sonic download` and the preset resolution used by `sonic generate --preset`.

use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sonic_pipeline::hub::{
    DownloadProgress, FastFiles, HubOptions, ModelFiles, Preset, ProgressState, resolve,
    resolve_fast, resolve_taesd,
};
use std::collections::HashMap;

/// Options shared by `download` and `generate --preset`.
#[derive(clap::Args, Debug, Clone)]
pub struct HubArgs {
    /// Use the local Hugging Face cache only (no network).
    #[arg(long)]
    pub offline: bool,
    /// Fetch the half-precision (`*.fp16.safetensors`) Stable Diffusion weights.
    #[arg(long)]
    pub fp16: bool,
}

/// The hub options of `args` (environment first, then the flags).
fn options(args: &HubArgs) -> Result<HubOptions> {
    let mut options = HubOptions::from_env()?;
    options.offline |= args.offline;
    options.fp16 = args.fp16;
    Ok(options)
}

/// Runs `f` with a progress callback that draws one bar per file being downloaded.
fn with_bars<T>(f: impl FnOnce(&mut dyn FnMut(DownloadProgress)) -> T) -> T {
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template(
        "{msg:50!} [{bar:25}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    f(&mut |p: DownloadProgress| {
        let key = format!("{}/{}", p.repo, p.file);
        if matches!(p.state, ProgressState::Cached) {
            return;
        }
        let bar = bars.entry(key.clone()).or_insert_with(|| {
            let b = multi.add(ProgressBar::new(p.total.unwrap_or(0)));
            b.set_style(style.clone());
            b.set_message(key);
            b
        });
        if let Some(t) = p.total {
            bar.set_length(t);
        }
        bar.set_position(p.bytes_done);
        if matches!(p.state, ProgressState::Done) {
            bar.finish();
        }
    })
}

/// Resolves a preset's files (downloading missing ones unless offline), with progress bars.
pub fn resolve_preset(preset: Preset, args: &HubArgs) -> Result<ModelFiles> {
    let options = options(args)?;
    Ok(with_bars(|progress| resolve(preset, &options, progress))?)
}

/// Resolves TAESD alone (downloading it unless offline), with progress bars.
pub fn resolve_taesd_dir(args: &HubArgs) -> Result<std::path::PathBuf> {
    let options = options(args)?;
    Ok(with_bars(|progress| resolve_taesd(&options, progress))?)
}

/// Resolves LCM-LoRA and TAESD (downloading them unless offline), with progress bars.
pub fn resolve_fast_files(args: &HubArgs) -> Result<FastFiles> {
    let options = options(args)?;
    Ok(with_bars(|progress| resolve_fast(&options, progress))?)
}

/// Resolves a CLIP repository for the metrics (downloading it unless offline), with progress
/// bars.
pub fn resolve_clip_dir(repo: &str, args: &HubArgs) -> Result<std::path::PathBuf> {
    let options = options(args)?;
    Ok(with_bars(|progress| {
        sonic_pipeline::hub::resolve_clip(repo, &options, progress)
    })?)
}

/// Resolves a BLIP captioning repository (downloading it unless offline), with progress bars.
pub fn resolve_blip_dir(repo: &str, args: &HubArgs) -> Result<std::path::PathBuf> {
    let options = options(args)?;
    Ok(with_bars(|progress| {
        sonic_pipeline::hub::resolve_blip(repo, &options, progress)
    })?)
}

/// What `sonic download` fetches besides the preset.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras {
    /// LCM-LoRA and TAESD.
    pub fast: bool,
    /// The metrics' CLIP ViT-B/32.
    pub eval: bool,
    /// CLIP ViT-L/14.
    pub eval_large: bool,
    /// BLIP base.
    pub caption: bool,
    /// BLIP large.
    pub caption_large: bool,
}

/// Runs `sonic download`.
pub fn run(preset: Preset, extras: Extras, args: &HubArgs) -> Result<()> {
    let fast = extras.fast;
    let files = resolve_preset(preset, args)?;
    println!("stable diffusion: {}", files.sd_dir.display());
    println!("clap: {}", files.clap.display());
    for c in &files.checkpoints {
        println!(
            "{}: projector {}, adapters {}",
            c.checkpoint.name(),
            c.projector.display(),
            c.adapters.display()
        );
    }
    if fast {
        let fast = resolve_fast_files(args)?;
        println!("lcm-lora: {}", fast.lcm_lora.display());
        println!("taesd: {}", fast.taesd_dir.display());
    }
    use sonic_pipeline::hub::{BLIP_BASE_REPO, BLIP_LARGE_REPO, CLIP_EVAL_REPO, CLIP_LARGE_REPO};
    for (wanted, label, repo, clip) in [
        (extras.eval, "clip (metrics)", CLIP_EVAL_REPO, true),
        (
            extras.eval_large,
            "clip large (metrics)",
            CLIP_LARGE_REPO,
            true,
        ),
        (extras.caption, "blip (captions)", BLIP_BASE_REPO, false),
        (
            extras.caption_large,
            "blip large (captions)",
            BLIP_LARGE_REPO,
            false,
        ),
    ] {
        if wanted {
            let dir = if clip {
                resolve_clip_dir(repo, args)?
            } else {
                resolve_blip_dir(repo, args)?
            };
            println!("{label}: {}", dir.display());
        }
    }
    Ok(())
}

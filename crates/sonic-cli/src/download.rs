//! `sonic download` and the preset resolution used by `sonic generate --preset`.

use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sonic_pipeline::hub::{
    DownloadProgress, HubOptions, ModelFiles, Preset, ProgressState, resolve,
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

/// Resolves a preset's files (downloading missing ones unless offline), with progress bars.
pub fn resolve_preset(preset: Preset, args: &HubArgs) -> Result<ModelFiles> {
    let mut options = HubOptions::from_env()?;
    options.offline |= args.offline;
    options.fp16 = args.fp16;
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template(
        "{msg:50!} [{bar:25}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let files = resolve(preset, &options, &mut |p: DownloadProgress| {
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
    })?;
    Ok(files)
}

/// Runs `sonic download`.
pub fn run(preset: Preset, args: &HubArgs) -> Result<()> {
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
    Ok(())
}

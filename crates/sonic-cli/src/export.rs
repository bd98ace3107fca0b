//! `sonic export`: convert adapter checkpoints (the official `landscape.pt` /
//! `greatest_hits.pt` pickles, or safetensors) into an adapter-only safetensors file with the
//! official keys, and / or save the whole UNet (with its adapters) in the diffusers layout.

use anyhow::{Context, Result, bail};
use sonic_unet::UNet2DConditionModel;
use std::path::PathBuf;

/// Arguments of `sonic export`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// A diffusers-layout Stable Diffusion folder (its `unet/` is used) or a `unet/` folder.
    #[arg(long)]
    pub model: PathBuf,
    /// The adapter weights to export (landscape.pt, greatest_hits.pt or safetensors).
    #[arg(long)]
    pub adapters: Option<PathBuf>,
    /// The adapter-only safetensors file to write (official keys); needs --adapters.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the whole UNet (adapters included) here, as a diffusers
    /// `diffusion_pytorch_model.safetensors`.
    #[arg(long)]
    pub unet_out: Option<PathBuf>,
}

/// Runs `sonic export`.
pub fn run(args: &ExportArgs, device: &burn::tensor::Device) -> Result<()> {
    if args.out.is_none() && args.unet_out.is_none() {
        bail!("nothing to write: give --out FILE (adapters) and / or --unet-out FILE (whole UNet)");
    }
    if args.out.is_some() && args.adapters.is_none() {
        bail!("--out writes the adapters: it needs --adapters FILE (e.g. landscape.pt)");
    }
    let unet_dir = if args.model.join("unet").join("config.json").is_file() {
        args.model.join("unet")
    } else {
        args.model.clone()
    };
    let mut unet = UNet2DConditionModel::from_dir(&unet_dir, device)
        .with_context(|| format!("loading the UNet from {}", unet_dir.display()))?;
    if let Some(adapters) = &args.adapters {
        let (with, placement) = unet
            .with_adapters(adapters, device)
            .with_context(|| format!("loading adapters from {}", adapters.display()))?;
        unet = with;
        tracing::info!(?placement, "adapters loaded");
    }
    if let Some(out) = &args.out {
        let n = sonic_unet::export::save_adapters(&unet, out)
            .with_context(|| format!("writing {}", out.display()))?;
        println!("{} ({n} adapter tensors)", out.display());
    }
    if let Some(out) = &args.unet_out {
        let n = sonic_unet::export::save_safetensors(&unet, out)
            .with_context(|| format!("writing {}", out.display()))?;
        println!("{} ({n} tensors)", out.display());
    }
    Ok(())
}

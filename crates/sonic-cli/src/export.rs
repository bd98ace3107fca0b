//! `sonic export`: convert adapter checkpoints (the official `landscape.pt` /
//! `greatest_hits.pt` pickles, or safetensors) into an adapter-only safetensors file with the
//! official keys, and / or save the whole UNet (with its adapters) in the diffusers layout.

use anyhow::{Context, Result, bail};
use sonic_unet::UNet2DConditionModel;
use std::path::PathBuf;

/// Arguments of `sonic export`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// Export a released SonicDiffusion checkpoint: SD v1.4 and the checkpoint's adapters come
    /// from the Hugging Face cache, downloaded on first use unless --offline; --model and
    /// --adapters override them.
    #[arg(long, value_parser = crate::values::checkpoint_parser())]
    pub preset: Option<sonic_pipeline::hub::Checkpoint>,
    #[command(flatten)]
    pub hub: crate::download::HubArgs,
    /// A diffusers-layout Stable Diffusion folder (its `unet/` is used) or a `unet/` folder.
    #[arg(long)]
    pub model: Option<PathBuf>,
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
    /// Convert an evaluation model's checkpoint (--input, a PyTorch pickle or safetensors)
    /// into a safetensors file (--out) with the same tensor names, after checking that the
    /// model loads from it: `wav2clip` (Wav2CLIP.pt) or `inception` (pytorch-fid's
    /// pt_inception-2015-12-05-6726825d.pth).
    #[arg(long, value_parser = ["wav2clip", "inception"])]
    pub metric: Option<String>,
    /// The checkpoint to convert with --metric.
    #[arg(long)]
    pub input: Option<PathBuf>,
}

/// `sonic export --metric`: checks that the model loads from `input`, copies every float tensor
/// into a safetensors file under the same names, and checks the model loads from that too.
fn export_metric(
    metric: &str,
    input: &std::path::Path,
    out: &std::path::Path,
    device: &burn::tensor::Device,
) -> Result<()> {
    let check = |path: &std::path::Path| -> Result<()> {
        match metric {
            "wav2clip" => {
                sonic_eval::wav2clip::Wav2Clip::from_file(path, device)?;
            }
            _ => {
                sonic_eval::inception::FidInceptionV3::from_file(path, device)?;
            }
        }
        Ok(())
    };
    check(input).with_context(|| format!("loading {metric} from {}", input.display()))?;
    let ckpt = sonic_core::checkpoint::Checkpoint::open(input)
        .with_context(|| format!("reading {}", input.display()))?;
    let mut tensors = Vec::new();
    for key in ckpt.keys() {
        if let Some((shape, data)) = ckpt.read_f32(key)? {
            tensors.push(sonic_core::weights::tensor_file::NamedTensor {
                name: key.to_string(),
                shape,
                data,
            });
        }
    }
    sonic_core::weights::tensor_file::write_safetensors_f32(out, &tensors, None)
        .with_context(|| format!("writing {}", out.display()))?;
    check(out).with_context(|| format!("checking the written {}", out.display()))?;
    println!("{} ({} tensors)", out.display(), tensors.len());
    Ok(())
}

/// Runs `sonic export`.
pub fn run(args: &ExportArgs, device: &burn::tensor::Device) -> Result<()> {
    if let Some(metric) = &args.metric {
        let input = args
            .input
            .as_ref()
            .context("--metric needs --input FILE (the checkpoint to convert)")?;
        let out = args
            .out
            .as_ref()
            .context("--metric needs --out FILE.safetensors")?;
        return export_metric(metric, input, out, device);
    }
    if args.out.is_none() && args.unet_out.is_none() {
        bail!("nothing to write: give --out FILE (adapters) and / or --unet-out FILE (whole UNet)");
    }
    let mut paths = crate::ui::ModelPaths {
        model: args.model.clone(),
        adapters: args.adapters.clone(),
        ..Default::default()
    };
    paths.fill_from(args.preset, &args.hub)?;
    if args.out.is_some() && paths.adapters.is_none() {
        bail!(
            "--out writes the adapters: it needs --adapters FILE (e.g. landscape.pt) or --preset landscape|greatest-hits"
        );
    }
    let model = paths
        .model
        .context("sonic export needs --model DIR, or --preset landscape|greatest-hits")?;
    let unet_dir = if model.join("unet").join("config.json").is_file() {
        model.join("unet")
    } else {
        model
    };
    let mut unet = UNet2DConditionModel::from_dir(&unet_dir, device)
        .with_context(|| format!("loading the UNet from {}", unet_dir.display()))?;
    if let Some(adapters) = &paths.adapters {
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

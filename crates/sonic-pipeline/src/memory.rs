//! Memory estimates checked against a budget before a run starts.
//!
//! A size, batch or frame count that cannot fit must be a typed error naming the estimate and
//! the budget, not a process killed by the kernel's out-of-memory killer after filling the
//! machine. [`estimate_model_run`] reads a model folder's configs and weight headers (nothing
//! is loaded) and adds the activations of one generation; [`check_budget`] compares the total
//! with a budget: `--max-memory` in the CLI, else [`default_budget`] (the memory the operating
//! system reports available, for devices that compute in host memory).
//!
//! The activation model is deliberately simple and on the safe side (see
//! [`image_run_activations`]); it is an estimate for refusing impossible runs, not an
//! allocator. For SD 1.x at 512x512 with guidance on the CPU it gives about 4.0 GiB of
//! float32 weights and under 1 GiB of activations (1.2 GiB where attention scores are held).
//!
//! ```
//! use sonic_pipeline::memory::{MemoryEstimate, check_budget};
//! let est = MemoryEstimate { weights: 4 << 30, activations: 900 << 30 };
//! let err = check_budget("generate 65536x65536", &est, Some(16 << 30), "--max-memory").unwrap_err();
//! assert!(err.to_string().contains("16.0 GiB"));
//! ```

use crate::error::PipelineError;
use burn::tensor::Device;
use sonic_core::weights::read_safetensors_header;
use sonic_unet::UNetConfig;
use sonic_vae::VaeConfig;
use std::path::{Path, PathBuf};

/// Bytes a run is expected to need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The weights, at the run's precision.
    pub weights: u64,
    /// The largest set of activations alive at once.
    pub activations: u64,
}

impl MemoryEstimate {
    /// Weights plus activations.
    pub fn total(&self) -> u64 {
        self.weights.saturating_add(self.activations)
    }
}

/// The shape of one image-generation run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRun {
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Images generated together (batch x frames x sounds).
    pub images: usize,
    /// UNet rows per image: 1 without guidance, 2 with classifier-free guidance, 3 with text
    /// and audio guidance or for Plug-and-Play editing (source branch + 2).
    pub branches: usize,
    /// Bytes per value of the run (4 for float32).
    pub element_bytes: usize,
    /// Whether attention runs without materialising its score matrix (the CPU kernels of
    /// `sonic-kernels` on `flex`); other backends hold `heads x tokens^2` scores per row.
    pub flash_attention: bool,
}

impl ImageRun {
    /// A float32 run of `images` pictures of `width` x `height` with `branches` UNet rows
    /// each, on `device` (flash attention on the CPU kernels' device).
    pub fn new(
        width: usize,
        height: usize,
        images: usize,
        branches: usize,
        device: &Device,
    ) -> Self {
        Self {
            width,
            height,
            images,
            branches,
            element_bytes: 4,
            flash_attention: sonic_kernels::flex::on_plain_flex(device),
        }
    }

    /// `generate 512x512 x 2 images` and the like, for messages.
    pub fn describe(&self, verb: &str) -> String {
        let plural = if self.images == 1 { "" } else { "s" };
        format!(
            "{verb} {}x{} x {} image{plural}",
            self.width, self.height, self.images
        )
    }
}

/// Checks the activations of `run` on the loaded model `sd` against [`default_budget`] (the
/// weights are in memory already). The pipelines call it before drawing the first latents.
pub fn check_loaded_run(
    sd: &crate::StableDiffusion,
    run: &ImageRun,
    verb: &str,
) -> Result<(), PipelineError> {
    let estimate = MemoryEstimate {
        weights: 0,
        activations: image_run_activations(&sd.unet_config, &sd.vae_config, run),
    };
    check_budget(
        &run.describe(verb),
        &estimate,
        default_budget(&sd.device),
        "the memory available now",
    )
}

/// The activations of one [`ImageRun`] of a UNet and a VAE of these configs, in bytes
/// (saturating at `u64::MAX`).
///
/// Model, per UNet row (`images x branches` rows), with `C_l` the width and `s_l` the latent
/// positions of level `l`: the skip connections kept for the up path,
/// `sum_l C_l s_l (layers_l + 1)`; a working set of `10 max_l C_l s_l` (a resnet's input,
/// norm, convolution and residual, the transformer's GEGLU feed-forward at 8x width); and,
/// without flash attention, `heads_l s_l^2` attention scores at the widest attention level.
/// The VAE decode, per image at full resolution: `4 max_l C_l S_l` plus the mid-block
/// attention's `s^2` scores without flash attention. The two phases do not overlap; the larger
/// counts, plus the latents and the output image.
pub fn image_run_activations(unet: &UNetConfig, vae: &VaeConfig, run: &ImageRun) -> u64 {
    // f64 throughout: any size the user types stays finite (at worst very large) and the
    // result saturates instead of overflowing.
    let origin = Path::new("<unet config>");
    let factor = (1u64 << vae.block_out_channels.len().saturating_sub(1).min(62)) as f64;
    let (ih, iw) = (run.height as f64, run.width as f64);
    let (h, w) = ((ih / factor).floor(), (iw / factor).floor());
    let rows = run.images as f64 * run.branches.max(1) as f64;
    let mut skips = 0f64;
    let mut widest = 0f64;
    let mut scores = 0f64;
    if let Ok(levels) = unet.levels(origin) {
        for (l, &c) in unet.block_out_channels.iter().enumerate() {
            let down = 2f64.powi(l as i32);
            let s = (h / down).floor().max(1.0) * (w / down).floor().max(1.0);
            let cs = c as f64 * s;
            skips += cs * (levels.layers_per_block[l] as f64 + 1.0);
            widest = widest.max(cs);
            if !run.flash_attention && (levels.down_cross[l] || levels.up_cross[l]) {
                scores = scores.max(levels.heads[l] as f64 * s * s);
            }
        }
    }
    let unet_values = rows * (skips + 10.0 * widest + scores);
    let mut vae_widest = 0f64;
    for (l, &c) in vae.block_out_channels.iter().rev().enumerate() {
        let up = factor / 2f64.powi(l as i32);
        vae_widest = vae_widest.max(c as f64 * (ih / up).floor() * (iw / up).floor());
    }
    let vae_scores = if run.flash_attention {
        0.0
    } else {
        (h * w) * (h * w)
    };
    let vae_values = run.images as f64 * (4.0 * vae_widest + vae_scores);
    let io = run.images as f64 * (3.0 * ih * iw + 2.0 * unet.in_channels as f64 * h * w);
    let bytes = (unet_values.max(vae_values) + io) * run.element_bytes.max(1) as f64;
    // `as` saturates at u64::MAX (and infinity becomes u64::MAX).
    bytes as u64
}

/// The activations autodiff keeps for the backward pass of one UNet training step on
/// `batch` latents of a `resolution` x `resolution` picture, in bytes (saturating). Training
/// keeps every intermediate, so this is far above [`image_run_activations`].
///
/// Model, per sample, with `C_l` the width, `s_l` the latent positions, `n_l` the layers of
/// level `l` and `T` the text tokens: each resnet saves `8 C_l s_l` values (two norms, two
/// activations, two convolutions, the time embedding sum and the residual; 12 on the up path,
/// whose input holds the skip connection too), each transformer block `20 C_l s_l` (three
/// norms, the projections, the 8x-wide GEGLU) plus the self-attention scores and their
/// softmax, `2 heads_l s_l^2`, and the cross-attention's `2 heads_l s_l T`; the mid block is
/// two resnets and one transformer at the deepest level. The scores are counted whether or
/// not inference would use flash attention: the backward pass needs them.
pub fn unet_training_activations(
    unet: &UNetConfig,
    vae: &VaeConfig,
    resolution: usize,
    batch: usize,
    text_tokens: usize,
    element_bytes: usize,
) -> u64 {
    let Ok(levels) = unet.levels(Path::new("<unet config>")) else {
        return 0;
    };
    let factor = (1u64 << vae.block_out_channels.len().saturating_sub(1).min(62)) as f64;
    let side = (resolution as f64 / factor).floor();
    let tokens = text_tokens as f64;
    let transformer =
        |c: f64, s: f64, heads: f64| 20.0 * c * s + 2.0 * heads * (s * s + s * tokens);
    let mut values = 0f64;
    let last = unet.block_out_channels.len().saturating_sub(1);
    let up_layers = |l: usize| {
        // up_transformer_layers is in up-block order (deepest level first).
        levels
            .up_transformer_layers
            .get(last - l)
            .copied()
            .unwrap_or(1) as f64
    };
    for (l, &c) in unet.block_out_channels.iter().enumerate() {
        let down = 2f64.powi(l as i32);
        let s = (side / down).floor().max(1.0);
        let s = s * s;
        let c = c as f64;
        let n = levels.layers_per_block[l] as f64;
        let heads = levels.heads[l] as f64;
        values += n * 8.0 * c * s + (n + 1.0) * 12.0 * c * s;
        if levels.down_cross[l] {
            values += n * levels.transformer_layers[l] as f64 * transformer(c, s, heads);
        }
        if levels.up_cross[l] {
            values += (n + 1.0) * up_layers(l) * transformer(c, s, heads);
        }
        if l == last {
            values +=
                2.0 * 8.0 * c * s + levels.transformer_layers[l] as f64 * transformer(c, s, heads);
        }
    }
    (values * batch as f64 * element_bytes.max(1) as f64) as u64
}

/// The bytes the tensors of weight files take at `element_bytes` per value: safetensors from
/// their headers, other files (PyTorch pickles) by their size on disk.
pub fn weight_bytes(files: &[PathBuf], element_bytes: usize) -> Result<u64, PipelineError> {
    let mut total = 0u128;
    for f in files {
        if f.extension().is_some_and(|e| e == "safetensors") {
            for entry in read_safetensors_header(f)?.values() {
                let n: u128 = entry.shape.iter().map(|&d| d as u128).product();
                total += n * element_bytes as u128;
            }
        } else {
            let len = std::fs::metadata(f)
                .map_err(|source| sonic_core::CoreError::Io {
                    path: f.clone(),
                    source,
                })?
                .len();
            total += len as u128;
        }
    }
    Ok(u64::try_from(total).unwrap_or(u64::MAX))
}

/// The weight files of a diffusers Stable Diffusion folder (text encoder, UNet, VAE), as
/// loading picks them.
pub fn model_weight_files(dir: &Path) -> Result<Vec<PathBuf>, PipelineError> {
    use sonic_core::weights::find_weights;
    Ok(vec![
        find_weights(&dir.join("text_encoder"), "model", false)?,
        find_weights(&dir.join("unet"), "diffusion_pytorch_model", false)?,
        find_weights(&dir.join("vae"), "diffusion_pytorch_model", false)?,
    ])
}

/// The estimate for `run` on the model folder `dir` plus `extra` weight files (CLAP,
/// projector, adapters): configs and headers only, nothing loaded. The configs are validated
/// on the way, so an absurd config is its own error first.
pub fn estimate_model_run(
    dir: &Path,
    extra: &[PathBuf],
    run: &ImageRun,
) -> Result<MemoryEstimate, PipelineError> {
    let unet = UNetConfig::from_file(&dir.join("unet").join("config.json"))?;
    let vae = VaeConfig::from_file(&dir.join("vae").join("config.json"))?;
    let mut files = model_weight_files(dir)?;
    files.extend(extra.iter().cloned());
    Ok(MemoryEstimate {
        weights: weight_bytes(&files, run.element_bytes)?,
        activations: image_run_activations(&unet, &vae, run),
    })
}

/// The budget a user asked for (`Some`, e.g. `--max-memory`), else [`default_budget`]; with
/// the words naming where it came from, for [`check_budget`].
pub fn budget_or_default(given: Option<u64>, device: &Device) -> (Option<u64>, &'static str) {
    match given {
        Some(b) => (Some(b), "--max-memory"),
        None => (default_budget(device), "the memory available"),
    }
}

/// The image side of the model folder `dir` when the user gives none (see
/// [`crate::stable_diffusion::default_image_size`]), from its configs alone.
pub fn default_side(dir: &Path) -> Result<usize, PipelineError> {
    let vae = VaeConfig::from_file(&dir.join("vae").join("config.json"))?;
    let factor = 1usize << vae.block_out_channels.len().saturating_sub(1).min(16);
    Ok(crate::stable_diffusion::default_image_size(dir, factor))
}

/// The memory the operating system reports available (`MemAvailable` of `/proc/meminfo`),
/// `None` where it cannot be read.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Whether `device` computes in host memory (the CPU backends), so that the host's available
/// memory is its budget.
pub fn uses_host_memory(device: &Device) -> bool {
    sonic_kernels::flex::on_plain_flex(device) || format!("{device:?}").contains("NdArray")
}

/// The budget when none is given: the available host memory for CPU devices; `None` (no
/// check) for GPUs, whose memory the process cannot query portably.
pub fn default_budget(device: &Device) -> Option<u64> {
    if uses_host_memory(device) {
        available_memory()
    } else {
        None
    }
}

/// `Ok` when `estimate` fits `budget` (no budget: always); else
/// [`PipelineError::OverMemoryBudget`] naming `what`, the estimate and the budget (`source`
/// says where the budget came from).
pub fn check_budget(
    what: &str,
    estimate: &MemoryEstimate,
    budget: Option<u64>,
    source: &'static str,
) -> Result<(), PipelineError> {
    match budget {
        Some(budget) if estimate.total() > budget => Err(PipelineError::OverMemoryBudget {
            what: what.to_string(),
            weights: estimate.weights,
            activations: estimate.activations,
            budget,
            budget_from: source,
        }),
        _ => Ok(()),
    }
}

/// `1536` -> `1.5 KiB`, `3 << 30` -> `3.0 GiB`; beyond EiB the byte count.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Parses a memory size: a byte count (`1000000`) or a number with a unit, `K`/`M`/`G`/`T`
/// (powers of 1024; `KiB`, `GB`, ... also read as powers of 1024), e.g. `8G`, `512MiB`,
/// `1.5GB`.
pub fn parse_size(text: &str) -> Result<u64, PipelineError> {
    let bad = |reason: &str| PipelineError::InvalidParameter {
        name: "max_memory",
        value: text.to_string(),
        reason: reason.to_string(),
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| bad("expected a number of bytes with an optional unit, e.g. 8G or 512MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad("unknown unit (use K, M, G or T)")),
    };
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(bad("must be at least one byte and below 16 EiB"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd15() -> (UNetConfig, VaeConfig) {
        let unet = serde_json::json!({
            "block_out_channels": [320, 640, 1280, 1280],
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            "mid_block_type": "UNetMidBlock2DCrossAttn",
            "attention_head_dim": 8, "cross_attention_dim": 768, "layers_per_block": 2,
            "in_channels": 4, "out_channels": 4, "norm_num_groups": 32
        });
        let unet = UNetConfig::from_json_str(&unet.to_string(), Path::new("unet")).unwrap();
        let vae: VaeConfig = serde_json::from_value(serde_json::json!({
            "block_out_channels": [128, 256, 512, 512],
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
            "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2
        }))
        .unwrap();
        (unet, vae)
    }

    fn run(px: usize, flash: bool) -> ImageRun {
        ImageRun {
            width: px,
            height: px,
            images: 1,
            branches: 2,
            element_bytes: 4,
            flash_attention: flash,
        }
    }

    #[test]
    fn sd15_at_512_needs_under_a_gigabyte_of_activations_and_absurd_sizes_saturate() {
        let (unet, vae) = sd15();
        let flash = image_run_activations(&unet, &vae, &run(512, true));
        assert!(
            (100 << 20..1 << 30).contains(&flash),
            "{}",
            human_bytes(flash)
        );
        // Without flash attention the 8 x 4096^2 scores of each of the 2 rows (1 GiB) dominate.
        let plain = image_run_activations(&unet, &vae, &run(512, false));
        assert!(plain > flash && plain > 1 << 30, "{}", human_bytes(plain));
        // Doubling the side quadruples the positions (and more, with scores).
        let big = image_run_activations(&unet, &vae, &run(1024, true));
        assert!(
            big >= 4 * flash - (1 << 20),
            "{} vs {}",
            human_bytes(big),
            human_bytes(flash)
        );
        let absurd = image_run_activations(&unet, &vae, &run(65536, false));
        assert!(absurd > 1 << 50);
        let mut many = run(512, true);
        many.images = usize::MAX;
        assert_eq!(image_run_activations(&unet, &vae, &many), u64::MAX);
    }

    #[test]
    fn the_budget_check_names_estimate_and_budget() {
        let est = MemoryEstimate {
            weights: 3 << 30,
            activations: 2 << 30,
        };
        assert!(check_budget("x", &est, Some(5 << 30), "--max-memory").is_ok());
        assert!(check_budget("x", &est, None, "none").is_ok());
        let e = check_budget("generate 64x64", &est, Some(4 << 30), "--max-memory")
            .unwrap_err()
            .to_string();
        for part in [
            "generate 64x64",
            "5.0 GiB",
            "3.0 GiB",
            "2.0 GiB",
            "4.0 GiB",
            "--max-memory",
        ] {
            assert!(e.contains(part), "{part}: {e}");
        }
    }

    #[test]
    fn sizes_parse_with_binary_units_and_bad_ones_are_named() {
        assert_eq!(parse_size("8G").unwrap(), 8 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5GB").unwrap(), 3 << 29);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        for bad in ["", "G", "-1G", "8Q", "0", "1e400", "99999999T", "NaN"] {
            let e = parse_size(bad).unwrap_err().to_string();
            assert!(e.contains("max_memory"), "{bad}: {e}");
        }
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 B");
    }
}

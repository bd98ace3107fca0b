//! Peak resident memory of ONE stage-2 training step (batch 1, 32x32 latents, random
//! weights), to show what keeping the frozen UNet off autodiff saves.
//!
//! ```text
//! cargo run --release -p sonic-train --example stage2_step_memory -- <tiny|sd1> <frozen|tracked>
//! ```
//!
//! `frozen`: the trainer as used (base UNet untracked, only the adapters require grad);
//! `tracked`: the same step with every UNet parameter tracked by autodiff and requiring grad
//! (only the adapters are updated). Prints one JSON line: the resident set before the step
//! (`VmRSS`), the peak over the whole process (`VmHWM`), and the step's wall time. Run each
//! case in its own process: `VmHWM` never goes down.

use burn::tensor::Device;
use sonic_projector::{Projector, ProjectorConfig};
use sonic_schedulers::ddpm::DdpmSchedule;
use sonic_train::checkpoint::TrainRng;
use sonic_train::config::Stage2Config;
use sonic_train::stage2::{Stage2Data, Stage2Trainer, add_new_adapters};
use sonic_unet::{AdapterPlacement, UNet2DConditionModel, UNetConfig};
use std::path::Path;

/// SD v1.4's `unet/config.json`.
const SD14_UNET: &str = r#"{
  "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
  "center_input_sample": false, "cross_attention_dim": 768,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
  "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
  "out_channels": 4, "sample_size": 64,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
}"#;

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let size = args.get(1).map(String::as_str).unwrap_or("tiny");
    let mode = args.get(2).map(String::as_str).unwrap_or("frozen");
    let device = Device::default();
    device.seed(0);
    let (unet, projector, text_width) = match size {
        "tiny" => {
            let root = sonic_core::fixtures::fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
                .ok_or("fixtures not found")?;
            let cfg = UNetConfig::from_file(&root.join("sd15-tiny/unet/config.json"))?;
            let unet = UNet2DConditionModel::new(&cfg, &device)?;
            let pc = ProjectorConfig::from_file(&root.join("sonic-tiny/config.json"))?;
            (unet, Projector::new(&pc, &device)?, 32)
        }
        "sd1" => {
            let cfg = UNetConfig::from_json_str(SD14_UNET, Path::new("<sd14 unet>"))?;
            let unet = UNet2DConditionModel::new(&cfg, &device)?;
            (
                unet,
                Projector::new(&ProjectorConfig::official(), &device)?,
                768,
            )
        }
        other => return Err(format!("size `{other}`: expected tiny or sd1").into()),
    };
    let context = projector.config().context_dim();
    let audio_dim = projector.config().audio_dim;
    let (unet, adapters) =
        add_new_adapters(unet, AdapterPlacement::OFFICIAL, context, 0.1, 0, &device);
    let schedule = DdpmSchedule::from_json(&serde_json::json!({
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}))?;
    let mut config = Stage2Config::default();
    config.training.batch_size = 1;
    config.training.max_steps = Some(1);
    let mut trainer = match mode {
        "frozen" => Stage2Trainer::new(config, unet, projector, schedule, &device)?,
        "tracked" => {
            Stage2Trainer::new_tracking_frozen(config, unet, projector, schedule, &device)?
        }
        other => return Err(format!("mode `{other}`: expected frozen or tracked").into()),
    };
    let mut rng = TrainRng::new(1);
    let data = Stage2Data::new(
        rng.normal([1, 4, 32, 32], &device),
        rng.normal([1, 77, text_width], &device),
        rng.normal([1, audio_dim], &device),
        rng.normal([1, 77, text_width], &device),
    )?;
    let batch = trainer.sample_batch(&data, &[0], true)?;
    let before_rss = status_kb("VmRSS:");
    let before_hwm = status_kb("VmHWM:");
    let t0 = std::time::Instant::now();
    let report = trainer.train_step(&[batch], 1)?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "size": size, "mode": mode, "adapters": adapters, "latent": "32x32", "batch": 1,
            "rss_before_step_mib": before_rss / 1024,
            "peak_before_step_mib": before_hwm / 1024,
            "peak_mib": status_kb("VmHWM:") / 1024,
            "step_peak_over_before_mib": (status_kb("VmHWM:").saturating_sub(before_rss)) / 1024,
            "step_seconds": secs, "loss": report.loss,
        })
    );
    Ok(())
}

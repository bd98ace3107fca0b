//! `sonic bench`: times the models at real Stable Diffusion 1.x sizes with random weights.
//!
//! Every case runs in a fresh child process (this binary re-executed with a hidden flag), so
//! that the peak resident set size (`VmHWM`) belongs to that case alone. Each case prints one
//! JSON object on one line of stdout.

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::{Device, Distribution, FloatDType, Int, Tensor};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Every case, in the order they run by default.
pub const CASES: &[&str] = &[
    "unet-32",
    "unet-64",
    "vae-decode-64",
    "vae-encode-512",
    "text-encoder",
    "clap-10s",
    "projector",
    "adapters",
    "tiny-pipeline",
    "audio-to-image-512",
    "audio-to-image-512-fast",
    "load-sd",
];

/// Arguments of `sonic bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The cases to run (comma-separated; default: all). Cases: unet-32, unet-64 (UNet,
    /// guidance batch 2, 77 x 768 text), vae-decode-64, vae-encode-512, text-encoder (2 x 77),
    /// clap-10s, projector, adapters (UNet 32x32 with and without the 10 SD1.4 adapters),
    /// tiny-pipeline (sd15-tiny, 20 DDIM steps, guidance 7.5, latent output),
    /// audio-to-image-512 (the whole wait of `sonic generate --audio`: WAV -> CLAP -> projector
    /// -> 10 PNDM steps with the 10 adapters and guidance -> VAE decode at 512x512; `--steps`
    /// sets the count), audio-to-image-512-fast (the same with `generate --fast`'s settings:
    /// 4 LCM steps without guidance, TAESD decode), load-sd
    /// (the folder of `--model` to a ready UNet + VAE + text encoder + tokenizer; skipped when
    /// all cases run without `--model`).
    #[arg(long = "case", value_delimiter = ',')]
    pub cases: Vec<String>,
    /// Timed runs per case (the median and minimum are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Untimed warm-up runs before the timed ones.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// The device (from the global `--device`).
    #[arg(skip = String::from("flex"))]
    pub device: String,
    /// Float type of weights and activations: f32 or bf16.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    pub dtype: String,
    /// The fixture folder holding `sd15-tiny` (default: `../shared/fixtures` or
    /// `$SONIC_FIXTURES`).
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// Seed of the random weights and inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Denoising steps of the audio-to-image-512 case (10 by default, to keep a run short;
    /// `sonic generate` uses 50).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// The Stable Diffusion 1.x folder (diffusers layout) the `load-sd` case loads, e.g. a
    /// downloaded model or the random one `benches/compare_pytorch` writes.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Runs one case in this process (used by the parent process).
    #[arg(long, hide = true)]
    pub child: bool,
    /// A benchmark other than the timing cases.
    #[command(subcommand)]
    pub task: Option<BenchTask>,
}

/// Benchmarks that are not timings of one model call.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchTask {
    /// The toy-world learnability benchmark of the training recipe: four synthesised sound
    /// classes paired with coloured shapes, a tiny base model trained from scratch, stage 1 and
    /// stage 2 on top; prints `toy-world: accuracy=<a> accuracy_f0=<b> seconds=<s>` and writes
    /// a PNG grid of samples (see docs/TRAINING.md, "Toy world").
    ToyWorld(crate::toy_world::ToyWorldArgs),
    /// The toy-video learnability check: the toy world trained as above renders a clip whose
    /// sound class changes every 2 s through the video pipeline (sliding CLAP window, one
    /// initial noise); prints `toy-video: frame_accuracy=<a> frames=<n> seconds=<s>` (frames
    /// within 0.5 s of a change excluded) and writes OUT/toy_video.mp4 (see docs/VIDEO.md).
    ToyVideo(crate::toy_world::ToyWorldArgs),
}

/// Runs the benchmark: each case in a child process, or one case here with `--child`.
pub fn run(args: &BenchArgs) -> Result<()> {
    match &args.task {
        Some(BenchTask::ToyWorld(t)) => return crate::toy_world::run(t),
        Some(BenchTask::ToyVideo(t)) => return crate::toy_world::run_video(t),
        None => {}
    }
    let cases: Vec<String> = if args.cases.is_empty() {
        CASES
            .iter()
            .filter(|&&c| c != "load-sd" || args.model.is_some())
            .map(|s| s.to_string())
            .collect()
    } else {
        args.cases.clone()
    };
    for c in &cases {
        if !CASES.contains(&c.as_str()) {
            bail!("unknown bench case `{c}`; cases: {}", CASES.join(", "));
        }
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let dtype = parse_dtype(&args.dtype)?;
    if args.child {
        let [case] = cases.as_slice() else {
            bail!("--child runs exactly one case");
        };
        let line = run_case(case, args, dtype)?;
        println!("{line}");
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating the sonic binary")?;
    let mut failed = Vec::new();
    for case in &cases {
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("bench")
            .arg("--child")
            .args(["--case", case])
            .args(["--runs", &args.runs.to_string()])
            .args(["--warmup", &args.warmup.to_string()])
            .args(["--device", &args.device])
            .args(["--dtype", &args.dtype])
            .args(["--seed", &args.seed.to_string()])
            .args(["--steps", &args.steps.to_string()]);
        if let Some(f) = &args.fixtures {
            cmd.arg("--fixtures").arg(f);
        }
        if let Some(m) = &args.model {
            cmd.arg("--model").arg(m);
        }
        let out = cmd
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("running bench case {case}"))?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            failed.push(case.clone());
        }
    }
    if !failed.is_empty() {
        bail!("bench cases failed: {}", failed.join(", "));
    }
    Ok(())
}

/// The fixtures folder: `given`, else `$SONIC_FIXTURES` or `../shared/fixtures` found from the
/// current folder or from this crate's source folder.
pub fn fixtures_dir(given: Option<&Path>) -> Result<PathBuf> {
    match given {
        Some(p) => Ok(p.to_path_buf()),
        None => {
            let cwd = std::env::current_dir().context("reading the current folder")?;
            sonic_core::fixtures::fixtures_root(&cwd)
                .or_else(|| {
                    sonic_core::fixtures::fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
                })
                .ok_or_else(|| anyhow!("no fixtures folder found; pass --fixtures"))
        }
    }
}

fn parse_dtype(s: &str) -> Result<FloatDType> {
    match s {
        "f32" | "float32" => Ok(FloatDType::F32),
        "bf16" | "bfloat16" => Ok(FloatDType::BF16),
        other => bail!("unknown --dtype `{other}` (f32 or bf16)"),
    }
}

/// The peak resident set size of this process (`VmHWM`), in bytes.
fn peak_rss_bytes() -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or_else(|| anyhow!("/proc/self/status has no VmHWM line"))?;
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("parsing `{line}`"))?;
    Ok(kb * 1024)
}

/// The rayon worker count the CPU backends use.
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// CPU seconds (user + system, all threads) this process has used so far, from
/// `/proc/self/stat` (clock ticks of 1/100 s); `None` where that file is missing.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Wall and CPU seconds of each timed run.
struct Timings {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

/// Times `f` (`warmup` untimed calls, then `runs` timed ones).
fn time_runs(runs: usize, warmup: usize, mut f: impl FnMut() -> Result<()>) -> Result<Timings> {
    for _ in 0..warmup {
        f()?;
    }
    let mut t = Timings::with_capacity(runs);
    for _ in 0..runs {
        t.time(&mut f)?;
    }
    Ok(t)
}

/// Times `a` and `b` in alternation (`warmup` untimed calls of each, then `runs` timed pairs,
/// every other pair in the other order), so that neither is favoured by coming first or
/// second (the allocator's and the caches' state drift over a run of calls).
fn time_alternating(
    runs: usize,
    warmup: usize,
    mut a: impl FnMut() -> Result<()>,
    mut b: impl FnMut() -> Result<()>,
) -> Result<(Timings, Timings)> {
    for _ in 0..warmup {
        a()?;
        b()?;
    }
    let (mut ta, mut tb) = (Timings::with_capacity(runs), Timings::with_capacity(runs));
    for run in 0..runs {
        if run % 2 == 0 {
            ta.time(&mut a)?;
            tb.time(&mut b)?;
        } else {
            tb.time(&mut b)?;
            ta.time(&mut a)?;
        }
    }
    Ok((ta, tb))
}

impl Timings {
    fn with_capacity(runs: usize) -> Self {
        Timings {
            wall: Vec::with_capacity(runs),
            cpu: Vec::with_capacity(runs),
        }
    }

    /// Times one call of `f`: its wall time, and its CPU time where the OS reports it.
    fn time(&mut self, f: &mut impl FnMut() -> Result<()>) -> Result<()> {
        let c0 = cpu_seconds();
        let t0 = Instant::now();
        f()?;
        self.wall.push(t0.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (c0, cpu_seconds()) {
            self.cpu.push(b - a);
        }
        Ok(())
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Waits for `t` to be computed (reads it back; the outputs timed here are small).
fn finish<const D: usize>(t: Tensor<D>) {
    let _ = t.into_data();
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// SD v1.4's `unet/config.json` (CompVis/stable-diffusion-v1-4).
pub const SD14_UNET: &str = r#"{
  "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
  "center_input_sample": false, "cross_attention_dim": 768,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
  "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
  "out_channels": 4, "sample_size": 64,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
}"#;

/// SD v1.4's `vae/config.json`.
pub const SD14_VAE: &str = r#"{
  "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
  "out_channels": 3, "sample_size": 512,
  "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
}"#;

/// SD v1.4's `text_encoder/config.json` (CLIP ViT-L/14 text tower).
pub const SD14_TEXT: &str = r#"{
  "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072,
  "num_attention_heads": 12, "num_hidden_layers": 12, "max_position_embeddings": 77,
  "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05
}"#;

fn sd14_unet(device: &Device) -> Result<sonic_unet::UNet2DConditionModel> {
    let config = sonic_unet::UNetConfig::from_json_str(SD14_UNET, Path::new("<sd14 unet>"))?;
    Ok(sonic_unet::UNet2DConditionModel::new(&config, device)?)
}

fn sd14_vae(device: &Device) -> Result<sonic_vae::AutoencoderKL> {
    let config: sonic_vae::VaeConfig = serde_json::from_str(SD14_VAE)?;
    config.validate(Path::new("<sd14 vae>"))?;
    Ok(sonic_vae::AutoencoderKL::new(&config, device))
}

fn unet_case(latent: usize, args: &BenchArgs, device: &Device) -> Result<Timings> {
    let unet = sd14_unet(device)?;
    let sample = random([2, 4, latent, latent], device);
    let text = random([2, 77, 768], device);
    time_runs(args.runs, args.warmup, || {
        finish(unet.forward(sample.clone(), &[981.0], text.clone())?);
        Ok(())
    })
}

/// Runs one case in this process and returns its JSON line.
fn run_case(case: &str, args: &BenchArgs, dtype: FloatDType) -> Result<String> {
    let mut device = sonic_core::device::parse_device(&args.device)?;
    if dtype != FloatDType::F32 {
        device
            .configure(dtype)
            .map_err(|e| anyhow!("--dtype {}: the device refuses it: {e:?}", args.dtype))?;
    }
    device.seed(args.seed);
    let mut extra = serde_json::Map::new();
    let times = match case {
        "unet-32" => unet_case(32, args, &device)?,
        "unet-64" => unet_case(64, args, &device)?,
        "vae-decode-64" => {
            let vae = sd14_vae(&device)?;
            let z = random([1, 4, 64, 64], &device);
            time_runs(args.runs, args.warmup, || {
                finish(vae.decode(z.clone())?);
                Ok(())
            })?
        }
        "vae-encode-512" => {
            let vae = sd14_vae(&device)?;
            let x = Tensor::random([1, 3, 512, 512], Distribution::Uniform(-1.0, 1.0), &device);
            time_runs(args.runs, args.warmup, || {
                let posterior = vae.encode(x.clone())?;
                finish(posterior.mean);
                Ok(())
            })?
        }
        "text-encoder" => {
            let config: sonic_clip::ClipTextConfig = serde_json::from_str(SD14_TEXT)?;
            let act = config.activation(Path::new("<sd14 text encoder>"))?;
            let model = sonic_clip::ClipTextModel::new(&config, act, &device);
            // Random ids, then the end-of-text id (the highest id: 49407) at the end of each
            // row so that the pooled token is well defined.
            let ids: Tensor<2, Int> =
                Tensor::random([2, 77], Distribution::Uniform(0.0, 49406.0), &device);
            let eot = Tensor::<2, Int>::full([2, 1], 49407, &device);
            let ids = Tensor::cat(vec![ids.narrow(1, 0, 76), eot], 1);
            time_runs(args.runs, args.warmup, || {
                finish(model.forward(ids.clone())?);
                Ok(())
            })?
        }
        "clap-10s" => {
            let encoder = random_clap(&device)?;
            let n = encoder.config().clip_samples;
            let wave = Tensor::random([1, n], Distribution::Uniform(-0.5, 0.5), &device);
            time_runs(args.runs, args.warmup, || {
                let x = encoder
                    .model()
                    .base
                    .apply_bn0(encoder.front_end().forward(wave.clone()));
                let e = encoder
                    .model()
                    .projection
                    .forward(encoder.model().base.forward(x));
                finish(sonic_audio::model::l2_normalize(
                    sonic_audio::model::l2_normalize(e),
                ));
                Ok(())
            })?
        }
        "projector" => {
            let config = sonic_projector::ProjectorConfig::official();
            let projector = sonic_projector::Projector::new(&config, &device)?;
            let e = random([1, 1024], &device);
            time_runs(args.runs, args.warmup, || {
                finish(projector.forward(e.clone())?);
                Ok(())
            })?
        }
        "adapters" => {
            let mut unet = sd14_unet(&device)?;
            let n = unet.add_adapters(sonic_unet::AdapterPlacement::OFFICIAL, 768, 0.5, &device);
            if n != 10 {
                bail!("SD1.4 should get 10 adapters, got {n}");
            }
            let sample = random([2, 4, 32, 32], &device);
            let text = random([2, 77, 768], &device);
            let tokens = random([2, 77, 768], &device);
            // Alternated, so that neither comes first (see `time_alternating`).
            let (without, with) = time_alternating(
                args.runs,
                args.warmup,
                || {
                    finish(unet.forward(sample.clone(), &[981.0], text.clone())?);
                    Ok(())
                },
                || {
                    // The adapter K/V are computed once per sampling run; timed here with the
                    // forward, as one step of a one-step run would.
                    let input = unet
                        .prepare_adapters(tokens.clone(), sonic_unet::AdapterStrength::Global(1.0));
                    finish(unet.forward_with(
                        sample.clone(),
                        &[981.0],
                        sonic_unet::UNetInputs::new(text.clone()).adapters(&input),
                    )?);
                    Ok(())
                },
            )?;
            extra.insert("adapters".into(), n.into());
            extra.insert("latent".into(), 32.into());
            extra.insert("without_median_s".into(), median(&without.wall).into());
            extra.insert("without_min_s".into(), min(&without.wall).into());
            extra.insert(
                "overhead".into(),
                (median(&with.wall) / median(&without.wall) - 1.0).into(),
            );
            with
        }
        "tiny-pipeline" => tiny_pipeline(args, &device)?,
        "audio-to-image-512" => audio_to_image_512(args, &device, &mut extra, false)?,
        "audio-to-image-512-fast" => audio_to_image_512(args, &device, &mut extra, true)?,
        "load-sd" => {
            let Some(dir) = &args.model else {
                bail!(
                    "load-sd needs --model DIR: a Stable Diffusion 1.x folder in diffusers layout \
                     (benches/compare_pytorch writes one with random weights)"
                );
            };
            extra.insert("model".into(), dir.display().to_string().into());
            time_runs(args.runs, args.warmup, || {
                let sd = sonic_pipeline::StableDiffusion::from_dir(dir, &device)
                    .with_context(|| format!("loading {}", dir.display()))?;
                drop(sd);
                Ok(())
            })?
        }
        other => bail!("unknown bench case `{other}`"),
    };
    let mut obj = serde_json::Map::new();
    obj.insert("case".into(), case.into());
    obj.insert("impl".into(), "sonic".into());
    obj.insert("device".into(), args.device.clone().into());
    obj.insert("dtype".into(), args.dtype.clone().into());
    obj.insert("threads".into(), threads().into());
    obj.insert("runs".into(), times.wall.len().into());
    obj.insert("median_s".into(), median(&times.wall).into());
    obj.insert("min_s".into(), min(&times.wall).into());
    obj.insert("times_s".into(), times.wall.clone().into());
    if !times.cpu.is_empty() {
        obj.insert("cpu_median_s".into(), median(&times.cpu).into());
    }
    obj.insert("peak_rss_bytes".into(), peak_rss_bytes()?.into());
    obj.extend(extra);
    Ok(serde_json::Value::Object(obj).to_string())
}

/// SD v1.4's `scheduler/scheduler_config.json` (PNDM, as the official demo samples).
pub const SD14_SCHEDULER: &str = r#"{
  "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
  "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": false,
  "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null, "clip_sample": false
}"#;

/// A CLAP 2022 audio encoder (Cnn14 widths, 64 mel bins, 1024-wide projection) with random
/// weights and the msclap front end.
fn random_clap(device: &Device) -> Result<sonic_audio::ClapAudioEncoder> {
    let sizes = sonic_audio::model::ClapSizes {
        mel_bins: 64,
        widths: [64, 128, 256, 512, 1024, 2048],
        out_emb: 2048,
        classes: None,
        d_proj: 1024,
    };
    let model = sonic_audio::model::ClapAudioModel::new(&sizes, device);
    Ok(sonic_audio::ClapAudioEncoder::from_model(
        model,
        sizes,
        sonic_audio::ClapAudioConfig::default(),
        device,
    )?)
}

/// Writes `seconds` of a 16-bit mono 44.1 kHz WAV (a rising tone with a little noise).
fn write_test_wav(path: &Path, seconds: f64) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("writing {}", path.display()))?;
    let n = (seconds * 44_100.0) as usize;
    let mut state = 0x2545_f491_u32;
    for i in 0..n {
        let t = i as f64 / 44_100.0;
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let noise = (state as f64 / u32::MAX as f64 - 0.5) * 0.1;
        let tone = (2.0 * std::f64::consts::PI * (200.0 + 100.0 * t) * t).sin() * 0.5;
        w.write_sample(((tone + noise) * 32767.0) as i16)?;
    }
    w.finalize()?;
    Ok(())
}

/// TAESD's `config.json` (madebyollin/taesd).
pub const TAESD: &str = r#"{
  "act_fn": "relu", "block_out_channels": [64, 64, 64, 64],
  "encoder_block_out_channels": [64, 64, 64, 64], "decoder_block_out_channels": [64, 64, 64, 64],
  "in_channels": 3, "latent_channels": 4, "num_encoder_blocks": [1, 3, 3, 3],
  "num_decoder_blocks": [3, 3, 3, 1], "out_channels": 3, "scaling_factor": 1.0,
  "upsample_fn": "nearest", "upsampling_scaling_factor": 2
}"#;

/// The whole wait of `sonic generate --audio clip.wav --steps 10` at SD 1.4 sizes with
/// random weights: decode and prepare the WAV, CLAP, the projector (and its null tokens), 10
/// (`--steps`) PNDM steps of the UNet with its 10 adapters under guidance 7.5 (batch 2), VAE
/// decode to 512x512. `fast`: `generate --fast`'s settings instead: 4 LCM steps without
/// guidance (batch 1) and a TAESD decode (a merged LoRA costs nothing per step, so none is
/// merged here). The tokenizer is sd15-tiny's (its ids fit the SD 1.4 vocabulary).
fn audio_to_image_512(
    args: &BenchArgs,
    device: &Device,
    extra: &mut serde_json::Map<String, serde_json::Value>,
    fast: bool,
) -> Result<Timings> {
    let root = fixtures_dir(args.fixtures.as_deref())?;
    let tokenizer_dir = root.join("sd15-tiny").join("tokenizer");
    let tokenizer = sonic_clip::tokenizer::ClipTokenizer::from_dir(&tokenizer_dir)
        .with_context(|| format!("loading {}", tokenizer_dir.display()))?;
    let text_config: sonic_clip::ClipTextConfig = serde_json::from_str(SD14_TEXT)?;
    let act = text_config.activation(Path::new("<sd14 text encoder>"))?;
    let mut unet = sd14_unet(device)?;
    let adapters = unet.add_adapters(sonic_unet::AdapterPlacement::OFFICIAL, 768, 0.5, device);
    if adapters != 10 {
        bail!("SD1.4 should get 10 adapters, got {adapters}");
    }
    let vae_config: sonic_vae::VaeConfig = serde_json::from_str(SD14_VAE)?;
    let pipeline = sonic_pipeline::sonic::SonicPipeline {
        sd: sonic_pipeline::StableDiffusion {
            dir: root.join("sd15-tiny"),
            tokenizer,
            text_encoder: sonic_clip::ClipTextModel::new(&text_config, act, device),
            unet,
            vae: sd14_vae(device)?,
            tiny_vae: if fast {
                let config: sonic_vae::TinyVaeConfig = serde_json::from_str(TAESD)?;
                config.validate(Path::new("<taesd>"))?;
                Some(sonic_vae::AutoencoderTiny::new(&config, device))
            } else {
                None
            },
            unet_config: sonic_unet::UNetConfig::from_json_str(
                SD14_UNET,
                Path::new("<sd14 unet>"),
            )?,
            vae_config,
            scheduler_config: serde_json::from_str(SD14_SCHEDULER)?,
            device: device.clone(),
        },
        clap: random_clap(device)?,
        projector: sonic_projector::Projector::new(
            &sonic_projector::ProjectorConfig::official(),
            device,
        )?,
    };
    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("clip.wav");
    write_test_wav(&wav, 10.0)?;
    let req = if fast {
        sonic_pipeline::AudioToImage {
            steps: 4,
            scheduler: "lcm".into(),
            guidance_scale: 1.0,
            width: 512,
            height: 512,
            ..Default::default()
        }
    } else {
        sonic_pipeline::AudioToImage {
            steps: args.steps,
            scheduler: "model".into(),
            width: 512,
            height: 512,
            ..Default::default()
        }
    };
    extra.insert("steps".into(), req.steps.into());
    extra.insert("scheduler".into(), req.scheduler.clone().into());
    extra.insert("guidance".into(), req.guidance_scale.into());
    extra.insert("adapters".into(), adapters.into());
    time_runs(args.runs, args.warmup, || {
        let e = pipeline.embed(&[sonic_pipeline::sonic::AudioSource::File(wav.clone())])?;
        let generation = pipeline.generate(e, &req, &mut |_| {})?;
        finish(generation.images);
        Ok(())
    })
}

/// The sd15-tiny text-to-image run: prompt encoding and 20 DDIM steps with guidance 7.5, at
/// the model's native size, latents out (no VAE decode).
fn tiny_pipeline(args: &BenchArgs, device: &Device) -> Result<Timings> {
    use sonic_pipeline::sampling::{Conditioning, Guidance, ProgressOnly, denoise};
    let root = fixtures_dir(args.fixtures.as_deref())?;
    let dir = root.join("sd15-tiny");
    let sd = sonic_pipeline::StableDiffusion::from_dir(&dir, device)
        .with_context(|| format!("loading {}", dir.display()))?;
    let unet_cfg = sonic_unet::UNetConfig::from_file(&dir.join("unet").join("config.json"))?;
    let sample_size: serde_json::Value =
        sonic_core::config::read_json(&dir.join("unet").join("config.json"))?;
    let latent = sample_size
        .get("sample_size")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| anyhow!("{}: no sample_size", dir.display()))? as usize;
    let prompts = vec![
        String::new(),
        "a photograph of an astronaut riding a horse".to_string(),
    ];
    time_runs(args.runs, args.warmup, || {
        let text = sd.encode_prompts(&prompts)?;
        let mut scheduler = sd.scheduler("ddim")?;
        scheduler.set_timesteps(20)?;
        let latents = sonic_pipeline::text_to_image::initial_latents(
            None,
            [1, unet_cfg.in_channels, latent, latent],
            0,
            scheduler.init_noise_sigma(),
            device,
        )?;
        let cond = Conditioning {
            text,
            adapter: None,
        };
        let mut report = |_, _, _| {};
        let total = scheduler.timesteps().len();
        let mut observer = ProgressOnly::new(&mut report, total);
        let out = denoise(
            &sd.unet,
            scheduler.as_mut(),
            latents,
            &cond,
            Guidance::Single(7.5),
            0,
            &mut observer,
        )?;
        finish(out);
        Ok(())
    })
}

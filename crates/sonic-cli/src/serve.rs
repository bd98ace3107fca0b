//! `sonic serve` (the web app and HTTP API) and `sonic live --stdin` (live pictures from raw
//! PCM on standard input).

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use sonic_pipeline::AudioToImage;
use sonic_pipeline::sonic::AudioSource;
use sonic_serve::live::Window;
use sonic_serve::{Limits, ServerConfig};
use sonic_unet::AdapterStrength;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// Arguments of `sonic serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// The address to listen on. Anything but a loopback address exposes the API (which has
    /// no authentication) to the network: a warning is printed.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port (0: a free one; the address is printed as `listening on http://HOST:PORT`).
    #[arg(long, default_value_t = 7860)]
    pub port: u16,
    /// Jobs that may wait behind the running one (a full queue answers 503).
    #[arg(long, default_value_t = 8)]
    pub queue: usize,
    /// The largest request body: bytes or K / M / G (powers of 1024). Larger: 413.
    #[arg(long, default_value = "32M", value_parser = crate::values::memory_size)]
    pub max_upload: u64,
    /// The most denoising steps a request may ask for.
    #[arg(long, default_value_t = 150)]
    pub max_steps: usize,
    /// The most pixels (width x height) a request may ask for.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_pixels: usize,
    /// Where uploads and results are kept (default: a temporary folder removed at exit).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    #[command(flatten)]
    pub models: crate::ui::SonicModelArgs,
    #[command(flatten)]
    pub parts: crate::values::ModelParts,
}

/// Runs `sonic serve` until the process is stopped.
pub fn run(args: &ServeArgs, device: &Device) -> Result<()> {
    if !sonic_serve::is_loopback(&args.host) {
        eprintln!(
            "warning: listening on {}: anyone who can reach this address can use the server \
             (the API has no authentication)",
            args.host
        );
    }
    let paths = args.models.paths()?;
    let (pipe, _) = args
        .models
        .pipeline(&paths, "sonic serve", &args.parts, device)?;
    let config = ServerConfig {
        host: args.host.clone(),
        port: args.port,
        queue_len: args.queue,
        limits: Limits {
            max_upload: usize::try_from(args.max_upload).unwrap_or(usize::MAX),
            max_steps: args.max_steps,
            max_pixels: args.max_pixels,
            ..Limits::default()
        },
        work_dir: args.work_dir.clone(),
    };
    let server = crate::ui::with_spinner("loading the models", || {
        sonic_serve::start(&config, move || pipe.build())
    })?;
    let host = if args.host.contains(':') {
        format!("[{}]", args.host)
    } else {
        args.host.clone()
    };
    println!("listening on http://{host}:{}", server.addr().port());
    std::io::stdout().flush().ok();
    server.wait();
    Ok(())
}

/// The sample format of `sonic live --stdin`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcmFormat {
    /// Signed 16-bit little-endian (arecord -f S16_LE).
    S16le,
    /// 32-bit float little-endian (arecord -f FLOAT_LE).
    F32le,
}

/// Arguments of `sonic live`.
#[derive(clap::Args, Debug, Clone)]
pub struct LiveArgs {
    /// Read raw PCM from standard input (e.g. `arecord -f S16_LE -r 16000 -c 1 | sonic live
    /// --stdin --rate 16000 ...`).
    #[arg(long, required = true)]
    pub stdin: bool,
    /// Samples per second of the input.
    #[arg(long, default_value_t = 16000)]
    pub rate: u32,
    /// Channels of the input (mixed to mono).
    #[arg(long, default_value_t = 1)]
    pub channels: u16,
    /// Sample format.
    #[arg(long, value_enum, default_value_t = PcmFormat::S16le)]
    pub format: PcmFormat,
    /// Seconds of sound each picture is made from (the last ones).
    #[arg(long, default_value_t = 10.0)]
    pub window: f64,
    /// Seconds of new sound before the next picture starts.
    #[arg(long, default_value_t = 0.5)]
    pub min_new: f64,
    /// Stop after this many pictures.
    #[arg(long)]
    pub max_pictures: Option<usize>,
    /// The folder of the numbered pictures (live-00001.png, ...).
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Optional text prompt.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Denoising steps per picture.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Guidance scale.
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// Audio strength of the adapters.
    #[arg(long, default_value_t = 1.0)]
    pub audio_strength: f32,
    /// The one seed of every picture (so only the sound changes them).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Width in pixels (multiple of 8); default: the model's.
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

/// The stream read so far.
struct Stream {
    window: Window,
    ended: bool,
    error: Option<String>,
}

/// Runs `sonic live --stdin`.
pub fn run_live(args: &LiveArgs, device: &Device) -> Result<()> {
    if !(8000..=192_000).contains(&args.rate) || args.channels == 0 || args.channels > 32 {
        bail!(
            "--rate {} / --channels {}: the rate must be 8000 to 192000 Hz, channels 1 to 32",
            args.rate,
            args.channels
        );
    }
    for (name, v) in [("--window", args.window), ("--min-new", args.min_new)] {
        if !(v.is_finite() && v > 0.0 && v <= 60.0) {
            bail!("{name} {v}: must be a number of seconds in (0, 60]");
        }
    }
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let paths = args.models.paths()?;
    let (pipe, _) = args
        .models
        .pipeline(&paths, "sonic live", &args.parts, device)?;
    let pipe = crate::ui::with_spinner("loading the models", || pipe.build())?;
    let side = pipe.sd.default_image_size();
    let req = AudioToImage {
        prompt: args.prompt.clone(),
        guidance_scale: args.guidance,
        audio_strength: AdapterStrength::Global(args.audio_strength),
        steps: args.steps,
        seed: args.seed,
        width: args.width.unwrap_or(side),
        height: args.height.unwrap_or(side),
        ..AudioToImage::default()
    };

    let shared = Arc::new((
        Mutex::new(Stream {
            window: Window::new(args.rate, args.window),
            ended: false,
            error: None,
        }),
        Condvar::new(),
    ));
    let reader = shared.clone();
    let (format, channels) = (args.format, args.channels as usize);
    std::thread::spawn(move || {
        let width = match format {
            PcmFormat::S16le => 2,
            PcmFormat::F32le => 4,
        };
        let frame = width * channels;
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; frame * 2048];
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let (lock, cv) = &*reader;
                    lock.lock().unwrap_or_else(|p| p.into_inner()).error = Some(e.to_string());
                    cv.notify_all();
                    break;
                }
            };
            carry.extend_from_slice(&buf[..n]);
            let whole = carry.len() / frame * frame;
            let mono: Vec<f32> = carry[..whole]
                .chunks_exact(frame)
                .map(|f| {
                    let sum: f32 = f
                        .chunks_exact(width)
                        .map(|b| match format {
                            PcmFormat::S16le => i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0,
                            PcmFormat::F32le => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                        })
                        .sum();
                    sum / channels as f32
                })
                .collect();
            carry.drain(..whole);
            let (lock, cv) = &*reader;
            lock.lock()
                .unwrap_or_else(|p| p.into_inner())
                .window
                .push(mono);
            cv.notify_all();
        }
        let (lock, cv) = &*reader;
        lock.lock().unwrap_or_else(|p| p.into_inner()).ended = true;
        cv.notify_all();
    });

    let min_fresh = ((args.rate as f64 * args.min_new) as usize).max(1);
    let mut made = 0usize;
    loop {
        if args.max_pictures.is_some_and(|m| made >= m) {
            break;
        }
        // Wait for enough new sound (or the end of the stream).
        let samples = {
            let (lock, cv) = &*shared;
            let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
            while s.window.fresh() < min_fresh && !s.ended && s.error.is_none() {
                s = cv.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if let Some(e) = &s.error {
                bail!("reading standard input: {e}");
            }
            if s.window.fresh() == 0 || (s.ended && made > 0 && s.window.fresh() < min_fresh) {
                break;
            }
            s.window.take()
        };
        let emb = pipe.embed(&[AudioSource::Samples {
            samples,
            sample_rate: args.rate,
        }])?;
        let out = pipe.generate(emb, &req, &mut |_| {})?;
        made += 1;
        let path = args.out_dir.join(format!("live-{made:05}.png"));
        let meta = vec![
            ("sonic:seed".to_string(), args.seed.to_string()),
            ("sonic:prompt".to_string(), args.prompt.clone()),
            ("sonic:steps".to_string(), args.steps.to_string()),
            ("sonic:mode".to_string(), "live".to_string()),
        ];
        sonic_pipeline::output::save_pngs(&out.images, &path, &meta)?;
        println!("{}", path.display());
        std::io::stdout().flush().ok();
    }
    if made == 0 {
        bail!("standard input ended without any sound");
    }
    Ok(())
}

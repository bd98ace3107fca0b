//! The `sonic` command-line tool.

// The arguments' doc comments are clap's `--help` text, written for a terminal: `<out>` and
// `cuda[:N]` there are placeholders, not HTML or links.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

mod allocator;
mod bench;
mod caption;
mod device;
mod download;
mod edit;
mod eval;
mod export;
mod generate;
mod parity;
mod serve;
mod toy_world;
mod train;
mod tune;
mod ui;
mod values;
mod video;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  sonic download --preset landscape
  sonic generate --preset landscape --audio rain.wav --prompt \"a painting\" --out rain.jpg
  sonic generate --preset landscape --mix rain.wav:0.7,birds.wav:0.3
  sonic edit --preset landscape --image photo.jpg --audio thunder.wav --out stormy.png
  sonic generate --model ./stable-diffusion-v1-4 --prompt \"東京の夜\" --seed 7
  sonic completions bash > ~/.local/share/bash-completion/completions/sonic

Environment: SONIC_DEVICE (the device), SONIC_LOG or RUST_LOG (log filter, e.g. info),
HF_HOME, HF_ENDPOINT, HF_TOKEN (the Hugging Face cache, mirror and token).";

const GENERATE_EXAMPLES: &str = "\
Examples:
  sonic generate --preset landscape --audio rain.wav
  sonic generate --preset greatest-hits --audio knock.wav --prompt \"a wooden door\" --seed 3
  sonic generate --preset landscape --interpolate rain.wav,fire.wav --frames 5 --out mix.webp
  sonic generate --model ./stable-diffusion-v1-4 --prompt \"a red fox\" --scheduler dpm++2m --steps 25";

const EDIT_EXAMPLES: &str = "\
Examples:
  sonic edit --preset landscape --image photo.jpg --audio rain.wav
  sonic edit --preset landscape --image photo.jpg --audio fire.wav --mode sdedit --strength 0.6";

/// SonicDiffusion in Rust: turn sounds into pictures with a frozen Stable Diffusion.
#[derive(Parser, Debug)]
#[command(name = "sonic", version, about, after_help = EXAMPLES)]
struct Cli {
    /// The device; default: the best compiled-in one that works (cuda, metal, a wgpu GPU,
    /// flex), printed at start.
    #[arg(long, global = true, env = "SONIC_DEVICE", value_parser = device::DeviceParser)]
    device: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Time the models at real SD 1.x sizes with random weights (one JSON line per case), or
    /// run the toy-world training benchmark (`sonic bench toy-world`).
    Bench {
        #[command(flatten)]
        args: bench::BenchArgs,
    },
    /// Print a shell completion script: `sonic completions bash|zsh|fish|elvish|powershell`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Run every case of a reference fixture folder (`reference/cases.json`) and compare with
    /// the PyTorch tensors: one line per case, `ok|FAIL|skip <case-id> max_abs=.. max_rel=.. tol=..`.
    Parity {
        /// The fixture folder (e.g. ../shared/fixtures/sd15-tiny).
        dir: PathBuf,
        /// Only these top-level sections (comma-separated, e.g. `text_encoder,vae`).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Download Stable Diffusion v1.4, MS-CLAP 2022 and the released SonicDiffusion weights
    /// into the Hugging Face cache (HF_HOME, HF_ENDPOINT, HF_TOKEN honoured; resumable).
    Download {
        /// Which released checkpoints.
        #[arg(long, default_value = "landscape", value_parser = values::preset_parser())]
        preset: sonic_pipeline::hub::Preset,
        /// Also fetch the fast-generation extras: LCM-LoRA (latent-consistency/lcm-lora-sdv1-5)
        /// and the tiny autoencoder TAESD (madebyollin/taesd), used by `generate --fast`.
        #[arg(long)]
        fast: bool,
        /// Also fetch the evaluation metrics' CLIP (openai/clip-vit-base-patch32), used by
        /// `sonic eval`.
        #[arg(long)]
        eval: bool,
        /// Also fetch CLIP ViT-L/14 (openai/clip-vit-large-patch14, 1.7 GB), an alternative
        /// metric model for `sonic eval --clip` (CLIP score, IIS, AIC; AIS needs ViT-B/32).
        #[arg(long)]
        eval_large: bool,
        /// Also fetch the image captioner BLIP base (Salesforce/blip-image-captioning-base),
        /// used by `sonic train caption`.
        #[arg(long)]
        caption: bool,
        /// Also fetch BLIP large (Salesforce/blip-image-captioning-large).
        #[arg(long)]
        caption_large: bool,
        #[command(flatten)]
        hub: download::HubArgs,
    },
    /// Edit a photo with a sound: Plug-and-Play feature injection after DDIM inversion, or
    /// SDEdit.
    #[command(after_help = EDIT_EXAMPLES)]
    Edit {
        #[command(flatten)]
        args: edit::EditArgs,
    },
    /// Serve the web app and the HTTP API (one loaded model, a bounded job queue, progress
    /// events, live microphone input); prints `listening on http://HOST:PORT` once ready.
    Serve {
        #[command(flatten)]
        args: serve::ServeArgs,
    },
    /// Live pictures from a stream of raw PCM on standard input (e.g. from arecord): the last
    /// --window seconds, a picture whenever the previous one is done, one seed for all.
    Live {
        #[command(flatten)]
        args: serve::LiveArgs,
    },
    /// Turn a long recording into a video whose picture follows the sound (a sliding CLAP
    /// window, one initial noise, keyframes), with the recording as its soundtrack (MP4:
    /// H.264 + FLAC).
    Video {
        #[command(flatten)]
        args: video::VideoArgs,
    },
    /// Measure pictures made from sounds: one picture per clip of a manifest (or pictures made
    /// elsewhere, --images), then CLIP score, IIS, AIS (Wav2CLIP), AIC, FID and LPIPS, written
    /// as metrics.json, items.csv and report.html.
    Eval {
        #[command(flatten)]
        args: eval::EvalArgs,
    },
    /// Export weights as safetensors (e.g. the official adapter pickle as an adapter-only file).
    Export {
        #[command(flatten)]
        args: export::ExportArgs,
    },
    /// Generate images from a sound and / or a text prompt.
    #[command(after_help = GENERATE_EXAMPLES)]
    Generate {
        #[command(flatten)]
        args: generate::GenerateArgs,
    },
    /// List the released checkpoints `--preset` takes, with their files.
    Presets,
    /// List the schedulers `--scheduler` takes.
    Schedulers,
    /// Train the projector (stage 1) or the adapters (stage 2) from a manifest; resumable.
    Train {
        #[command(subcommand)]
        cmd: train::TrainCommand,
    },
    /// Hyperparameter search (TPE + pruning) over a stage's config; the study is kept on disk
    /// and resumes; the best parameters are written back as a stage config.
    Tune {
        #[command(flatten)]
        args: tune::TuneArgs,
    },
}

fn main() {
    allocator::tune();
    if let Err(e) = run() {
        eprintln!("error: {}", error_chain(&e));
        std::process::exit(2);
    }
}

/// The error and its causes on one line, skipping causes whose text the message already holds.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// The log filter: `SONIC_LOG`, else `RUST_LOG`, else `warn`.
fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("SONIC_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
}

fn print_presets() {
    for c in sonic_pipeline::hub::Checkpoint::ALL {
        println!("{:<14} {}", c.name(), values::checkpoint_help(c));
        println!(
            "{:<14} files: {} / {}, {}, with Stable Diffusion v1.4 and MS-CLAP 2022",
            "",
            <sonic_pipeline::hub::HubRepo as sonic_pipeline::hub::KnownRepos>::sonic_space(),
            c.projector_file(),
            c.adapters_file()
        );
    }
    println!(
        "\nUse: sonic generate --preset NAME --audio FILE; sonic download --preset NAME|all fetches \
         them ahead (into HF_HOME)."
    );
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let spec = cli.device.as_deref();
    let device = device::announce;
    match cli.command {
        Command::Bench { mut args } => {
            let (_, name) = device(spec)?;
            args.device = name;
            bench::run(&args)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sonic", &mut std::io::stdout());
            Ok(())
        }
        Command::Parity { dir, only } => {
            let (device, _) = device(spec)?;
            let summary = parity::run(&dir, &only, &device)?;
            if summary.failed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Download {
            preset,
            fast,
            eval,
            eval_large,
            caption,
            caption_large,
            hub,
        } => download::run(
            preset,
            download::Extras {
                fast,
                eval,
                eval_large,
                caption,
                caption_large,
            },
            &hub,
        ),
        Command::Edit { args } => edit::run(&args, &device(spec)?.0),
        Command::Eval { args } => eval::run(&args, &device(spec)?.0),
        Command::Video { args } => video::run(&args, &device(spec)?.0),
        Command::Serve { args } => serve::run(&args, &device(spec)?.0),
        Command::Live { args } => serve::run_live(&args, &device(spec)?.0),
        Command::Export { args } => export::run(&args, &device(spec)?.0),
        Command::Generate { args } => generate::run(&args, &device(spec)?.0),
        Command::Presets => {
            print_presets();
            Ok(())
        }
        Command::Schedulers => {
            for c in sonic_schedulers::SchedulerChoice::ALL {
                println!("{:<16} {}", c.name(), c.description());
            }
            Ok(())
        }
        Command::Train { cmd } => train::run(&cmd, spec),
        Command::Tune { args } => tune::run(&args, &device(spec)?.0),
    }
}

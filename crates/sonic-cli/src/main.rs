//! The `sonic` command-line tool.

mod bench;
mod download;
mod edit;
mod export;
mod generate;
mod parity;
mod toy_world;
mod train;
mod tune;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// SonicDiffusion in Rust: turn sounds into pictures with a frozen Stable Diffusion.
#[derive(Parser, Debug)]
#[command(name = "sonic", version, about)]
struct Cli {
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
    /// Run every case of a reference fixture folder (`reference/cases.json`) and compare with
    /// the PyTorch tensors: one line per case, `ok|FAIL|skip <case-id> max_abs=.. max_rel=.. tol=..`.
    Parity {
        /// The fixture folder (e.g. ../shared/fixtures/sd15-tiny).
        dir: PathBuf,
        /// Only these top-level sections (comma-separated, e.g. `text_encoder,vae`).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// The device: flex, ndarray, wgpu, wgpu-cpu, cuda[:N], metal.
        #[arg(long, default_value = "flex")]
        device: String,
    },
    /// Download Stable Diffusion v1.4, MS-CLAP 2022 and the released SonicDiffusion weights
    /// into the Hugging Face cache (HF_HOME, HF_ENDPOINT, HF_TOKEN honoured; resumable).
    Download {
        /// Which released checkpoints: landscape, greatest-hits or all.
        #[arg(long, default_value = "landscape")]
        preset: sonic_pipeline::hub::Preset,
        #[command(flatten)]
        hub: download::HubArgs,
    },
    /// Edit a photo with a sound: Plug-and-Play feature injection after DDIM inversion, or
    /// SDEdit.
    Edit {
        #[command(flatten)]
        args: edit::EditArgs,
        /// The device: flex, ndarray, wgpu, wgpu-cpu, cuda[:N], metal.
        #[arg(long, default_value = "flex")]
        device: String,
    },
    /// Export weights as safetensors (e.g. the official adapter pickle as an adapter-only file).
    Export {
        #[command(flatten)]
        args: export::ExportArgs,
    },
    /// Generate images from a sound and / or a text prompt.
    Generate {
        #[command(flatten)]
        args: generate::GenerateArgs,
        /// The device: flex, ndarray, wgpu, wgpu-cpu, cuda[:N], metal.
        #[arg(long, default_value = "flex")]
        device: String,
    },
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
        /// The device: flex, ndarray, wgpu, wgpu-cpu, cuda[:N], metal.
        #[arg(long, default_value = "flex")]
        device: String,
    },
}

fn main() {
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

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SONIC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Bench { args } => bench::run(&args),
        Command::Parity { dir, only, device } => {
            let device = sonic_core::device::parse_device(&device)?;
            let summary = parity::run(&dir, &only, &device)?;
            if summary.failed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Download { preset, hub } => download::run(preset, &hub),
        Command::Edit { args, device } => {
            let device = sonic_core::device::parse_device(&device)?;
            edit::run(&args, &device)
        }
        Command::Export { args } => export::run(&args),
        Command::Generate { args, device } => {
            let device = sonic_core::device::parse_device(&device)?;
            generate::run(&args, &device)
        }
        Command::Train { cmd } => train::run(&cmd),
        Command::Tune { args, device } => {
            let device = sonic_core::device::parse_device(&device)?;
            tune::run(&args, &device)
        }
    }
}

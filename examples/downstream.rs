//! What a downstream crate sees: generate, mix, edit and train through the re-exports of
//! `sonic-diffusion` alone (no other dependency). `tests/downstream.rs` builds this file as the
//! `main.rs` of a crate in a temporary folder that depends on `sonic-diffusion` by path.
//!
//! ```text
//! cargo run --example downstream -- ../shared/fixtures [examples/assets]
//! ```
//!
//! Runs on the tiny test fixtures (`sd15-tiny`, `sonic-tiny`) in a few seconds.

use sonic_diffusion::burn::tensor::{Device, Distribution, Tensor};
use sonic_diffusion::image::RgbImage;
use sonic_diffusion::pipeline::edit::{EditMode, EditRequest, edit_file};
use sonic_diffusion::pipeline::image_input::ImageOptions;
use sonic_diffusion::pipeline::output::{save_images, to_images};
use sonic_diffusion::pipeline::sonic::{AudioSource, SonicPipeline};
use sonic_diffusion::pipeline::{AudioToImage, StableDiffusion, TextToImage, text_to_image};
use sonic_diffusion::projector::ProjectorConfig;
use sonic_diffusion::schedulers::SchedulerChoice;
use sonic_diffusion::train::config::Stage1Config;
use sonic_diffusion::train::stage1::{Stage1Data, Stage1Trainer, new_projector};
use std::path::PathBuf;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let fixtures = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: downstream FIXTURES_DIR (holding sd15-tiny and sonic-tiny)")?,
    );
    let out = std::env::temp_dir().join(format!("sonic-downstream-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let device: Device = sonic_diffusion::core::device::default_device()?;
    let (sd_dir, tiny) = (fixtures.join("sd15-tiny"), fixtures.join("sonic-tiny"));
    let assets = std::env::args()
        .nth(2)
        .map_or_else(|| PathBuf::from("examples/assets"), PathBuf::from);

    // Generate: text to image, as `image::RgbImage`s.
    let sd = StableDiffusion::from_dir(&sd_dir, &device)?;
    let mut req = TextToImage::new("a red fox in the snow");
    req.steps = 2;
    req.scheduler = SchedulerChoice::DpmSolver2m.to_string();
    req.width = sd.default_image_size();
    req.height = req.width;
    let pictures: Vec<RgbImage> = to_images(&text_to_image(&sd, &req, &mut |_| {})?.images)?;
    println!("generate: {}x{}", pictures[0].width(), pictures[0].height());

    // Mix two sounds and generate from the mixture.
    let pipe = SonicPipeline::builder()
        .model(&sd_dir)
        .clap(tiny.join("clap.safetensors"))
        .projector(tiny.join("projector.safetensors"))
        .projector_config(tiny.join("config.json"))
        .adapters(tiny.join("adapters.safetensors"))
        .device(device.clone())
        .build()?;
    let mixed = pipe.mix(&[
        (AudioSource::File(assets.join("rain.wav")), 0.6),
        (AudioSource::File(assets.join("campfire.wav")), 0.4),
    ])?;
    let req = AudioToImage {
        steps: 2,
        seed: 3,
        width: 64,
        height: 64,
        ..AudioToImage::default()
    };
    let generated = pipe.generate(mixed, &req, &mut |_| {})?;
    let mix_path = out.join("mix.png");
    save_images(&generated.images, &mix_path, &[])?;
    println!("mix: {}", mix_path.display());

    // Edit the mixed picture with another sound (SDEdit).
    let thunder = pipe.embed(&[AudioSource::File(assets.join("thunder.wav"))])?;
    let mut edit = EditRequest {
        mode: EditMode::SdEdit,
        strength: 0.5,
        ..EditRequest::default()
    };
    edit.generation.steps = 2;
    let edited = edit_file(
        &pipe,
        &mix_path,
        &ImageOptions::default(),
        thunder,
        &edit,
        &out.join("edited.jpg"),
        &[],
        &mut |_| {},
    )?;
    println!("edit: {}", edited[0].display());

    // Train: a few stage-1 steps of a projector on in-memory tensors.
    let clap = Tensor::<2>::random([3, 43], Distribution::Default, &device);
    let text = Tensor::<3>::random([3, 77, 32], Distribution::Default, &device);
    let data = Stage1Data::new(clap, vec![0, 0, 1], text)?;
    let projector = new_projector(&ProjectorConfig::new(43, 77, 4, 8, 2), 7, &device)?;
    let mut config = Stage1Config::default();
    config.training.max_steps = Some(2);
    let mut trainer = Stage1Trainer::new(config, projector, &device)?;
    let summary = trainer.run(&data, None, None, &mut |_| true)?;
    println!("train: {} steps, loss {:.4}", summary.step, summary.loss);
    std::fs::remove_dir_all(&out)?;
    Ok(())
}

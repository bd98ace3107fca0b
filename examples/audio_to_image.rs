//! A sound to a picture with a released SonicDiffusion checkpoint.
//!
//! ```text
//! cargo run --release --example audio_to_image -- --preset landscape examples/assets/rain.wav rain.jpg
//! # or with local files (here the tiny test fixtures):
//! F=../shared/fixtures; cargo run --example audio_to_image -- $F/sd15-tiny \
//!   $F/sonic-tiny/clap.safetensors $F/sonic-tiny/projector.safetensors \
//!   $F/sonic-tiny/adapters.safetensors --projector-config $F/sonic-tiny/config.json \
//!   examples/assets/thunder.wav thunder.png
//! ```

mod common;

use sonic_diffusion::pipeline::AudioToImage;
use sonic_diffusion::pipeline::output::{save_images, to_images};
use sonic_diffusion::pipeline::sonic::AudioSource;

const USAGE: &str = "audio_to_image (--preset NAME | MODEL CLAP PROJECTOR ADAPTERS [--projector-config FILE]) AUDIO OUT";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let pipe = common::pipeline(&mut args, USAGE)?;
    let [audio, out] = <[String; 2]>::try_from(args).map_err(|_| format!("usage: {USAGE}"))?;
    let sound = pipe.embed(&[AudioSource::File(audio.into())])?;
    let size = pipe.sd.default_image_size();
    let req = AudioToImage {
        steps: 25,
        scheduler: "dpm++2m".into(),
        seed: 7,
        width: size,
        height: size,
        ..AudioToImage::default()
    };
    let result = pipe.generate(sound, &req, &mut |p| {
        eprintln!("step {}/{}", p.step, p.total)
    })?;
    let picture = &to_images(&result.images)?[0];
    eprintln!("{}x{} pixels", picture.width(), picture.height());
    for path in save_images(&result.images, out.as_ref(), &[])? {
        println!("{}", path.display());
    }
    Ok(())
}

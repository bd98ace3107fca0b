//! A photo edited by a sound: DDIM inversion, then Plug-and-Play feature injection while the
//! audio adapters steer the sampling.
//!
//! ```text
//! cargo run --release --example editing -- --preset landscape photo.jpg \
//!   examples/assets/thunder.wav stormy.png
//! ```

mod common;

use sonic_diffusion::pipeline::edit::{EditMode, EditRequest, edit_file};
use sonic_diffusion::pipeline::image_input::ImageOptions;
use sonic_diffusion::pipeline::sonic::AudioSource;

const USAGE: &str = "editing (--preset NAME | MODEL CLAP PROJECTOR ADAPTERS [--projector-config FILE]) IMAGE AUDIO OUT";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let pipe = common::pipeline(&mut args, USAGE)?;
    let [image, audio, out] =
        <[String; 3]>::try_from(args).map_err(|_| format!("usage: {USAGE}"))?;
    let sound = pipe.embed(&[AudioSource::File(audio.clone().into())])?;
    let mut req = EditRequest {
        mode: EditMode::Pnp,
        ..EditRequest::default()
    };
    req.generation.steps = 50;
    let metadata = [("sonic:audio".to_string(), audio)];
    let written = edit_file(
        &pipe,
        image.as_ref(),
        &ImageOptions::default(),
        sound,
        &req,
        out.as_ref(),
        &metadata,
        &mut |p| eprintln!("step {}/{}", p.step, p.total),
    )?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

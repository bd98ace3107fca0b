//! Two sounds mixed in CLAP-embedding space, then one picture (e.g. rain over a campfire).
//!
//! ```text
//! cargo run --release --example mixing -- --preset landscape \
//!   examples/assets/rain.wav:0.6 examples/assets/campfire.wav:0.4 mixed.png
//! ```

mod common;

use sonic_diffusion::pipeline::AudioToImage;
use sonic_diffusion::pipeline::output::save_images;
use sonic_diffusion::pipeline::sonic::AudioSource;

const USAGE: &str = "mixing (--preset NAME | MODEL CLAP PROJECTOR ADAPTERS [--projector-config FILE]) A.wav:WEIGHT B.wav:WEIGHT... OUT";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let pipe = common::pipeline(&mut args, USAGE)?;
    let out = args.pop().ok_or(USAGE)?;
    let sources = args
        .iter()
        .map(|a| {
            let (path, weight) = a
                .rsplit_once(':')
                .ok_or(format!("`{a}` is not PATH:WEIGHT"))?;
            Ok((AudioSource::File(path.into()), weight.parse::<f32>()?))
        })
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    if sources.len() < 2 {
        return Err(format!("usage: {USAGE}").into());
    }
    let mixed = pipe.mix(&sources)?;
    let size = pipe.sd.default_image_size();
    let req = AudioToImage {
        steps: 25,
        seed: 11,
        width: size,
        height: size,
        ..AudioToImage::default()
    };
    let result = pipe.generate(mixed, &req, &mut |p| {
        eprintln!("step {}/{}", p.step, p.total)
    })?;
    let metadata = [("sonic:audio".to_string(), args.join(","))];
    for path in save_images(&result.images, out.as_ref(), &metadata)? {
        println!("{}", path.display());
    }
    Ok(())
}

//! Text-to-image with a local diffusers folder.
//!
//! ```text
//! cargo run --release --example text_to_image -- ../shared/fixtures/sd15-tiny "a red fox" fox.png
//! ```

use sonic_diffusion::pipeline::{StableDiffusion, TextToImage, text_to_image};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .ok_or("usage: text_to_image MODEL_DIR PROMPT OUT.(png|jpg|webp)")?;
    let prompt = args
        .next()
        .unwrap_or_else(|| "a lighthouse in a storm".into());
    let out = args.next().unwrap_or_else(|| "text_to_image.png".into());
    let device = sonic_diffusion::core::device::default_device()?;
    let sd = StableDiffusion::from_dir(model.as_ref(), &device)?;
    let mut req = TextToImage::new(prompt);
    req.steps = 20;
    req.seed = 7;
    // The size the model was trained at (512 for SD 1.x, 64 for the tiny fixture).
    req.width = sd.default_image_size();
    req.height = req.width;
    let result = text_to_image(&sd, &req, &mut |p| eprintln!("step {}/{}", p.step, p.total))?;
    for path in sonic_diffusion::pipeline::output::save_images(&result.images, out.as_ref(), &[])? {
        println!("{}", path.display());
    }
    Ok(())
}

//! Arbitrary bytes as a picture to edit, PNG / JPEG / WebP (first byte picks the extension;
//! the decoder sniffs the content): it decodes within the pixel budget, fits to the model's
//! grid, or is a typed error naming the file. EXIF orientation is applied on the way.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use sonic_pipeline::image_input::{ImageOptions, decode_image, fit_image};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let name = ["in.png", "in.jpg", "in.webp"][pick as usize % 3];
    let p = common::file(name, rest);
    let opts = ImageOptions {
        max_source_pixels: 1 << 20,
        max_pixels: 1 << 16,
        ..ImageOptions::default()
    };
    match decode_image(&p, &opts) {
        Ok(img) => {
            if let Err(e) = fit_image(&p, &img, &opts) {
                common::names(&e.to_string(), name);
            }
        }
        Err(e) => common::names(&e.to_string(), name),
    }
});

//! Arbitrary text as each model's `config.json`: UNet, VAE, CLIP text encoder, projector. The
//! first byte picks the model. A config either validates (then its sizes are within the
//! documented sanity limits) or is a typed error naming the file.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use sonic_core::config::limits;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let p = common::file("config.json", rest);
    let err = match pick % 4 {
        0 => match sonic_unet::UNetConfig::from_file(&p) {
            Ok(c) => {
                assert!(c.block_out_channels.iter().all(|&w| w <= limits::MAX_WIDTH));
                None
            }
            Err(e) => Some(e.to_string()),
        },
        1 => match sonic_vae::VaeConfig::from_file(&p) {
            Ok(c) => {
                assert!(c.block_out_channels.iter().all(|&w| w <= limits::MAX_WIDTH));
                None
            }
            Err(e) => Some(e.to_string()),
        },
        2 => sonic_clip::ClipTextConfig::from_file(&p)
            .err()
            .map(|e| e.to_string()),
        _ => match sonic_core::config::read_json::<serde_json::Value>(&p) {
            Ok(v) => sonic_projector::ProjectorConfig::from_json_value(&v, &p)
                .err()
                .map(|e| e.to_string()),
            Err(e) => Some(e.to_string()),
        },
    };
    if let Some(msg) = err {
        common::names(&msg, "config.json");
    }
});

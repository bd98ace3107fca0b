//! BLIP's image preprocessing (transformers' `BlipImageProcessor`, PIL backend
//! `BlipImageProcessorPil`), as a [`ClipImageProcessor`]: resize to `size.height x
//! size.width` with Pillow's resampling (bicubic), no crop, rescale by 1/255, normalise with
//! the OpenAI CLIP mean and standard deviation.
//!
//! BLIP's `preprocessor_config.json` differs from CLIP's in its defaults: it has no
//! `do_center_crop` / `crop_size` (BLIP does not crop; CLIP's processor defaults to cropping)
//! and an absent `size` means 384 x 384. [`blip_image_processor`] reads it with BLIP's
//! defaults; the preprocessing itself is sonic-clip's (Pillow's resize bit for bit).

use crate::error::CaptionError;
use serde::Deserialize;
use sonic_clip::ClipImageProcessor;
use sonic_clip::image_processor::{CLIP_MEAN, CLIP_STD, MAX_SIDE, Resample, ResizeTo};
use sonic_core::config::unsupported;
use std::path::Path;

/// BLIP's default `size` (384 x 384).
pub const DEFAULT_SIZE: usize = 384;

#[derive(Debug, Clone, Deserialize)]
struct RawConfig {
    #[serde(default = "yes")]
    do_resize: bool,
    size: Option<serde_json::Value>,
    #[serde(default = "bicubic")]
    resample: i64,
    #[serde(default)]
    do_center_crop: Option<bool>,
    crop_size: Option<serde_json::Value>,
    #[serde(default = "yes")]
    do_rescale: bool,
    #[serde(default = "rescale")]
    rescale_factor: f64,
    #[serde(default = "yes")]
    do_normalize: bool,
    image_mean: Option<serde_json::Value>,
    image_std: Option<serde_json::Value>,
}

fn yes() -> bool {
    true
}
fn bicubic() -> i64 {
    3
}
fn rescale() -> f64 {
    1.0 / 255.0
}

fn side(path: &Path, key: &str, v: Option<&serde_json::Value>) -> Result<usize, CaptionError> {
    match v.and_then(serde_json::Value::as_u64) {
        Some(n) if (1..=MAX_SIDE as u64).contains(&n) => Ok(n as usize),
        _ => Err(unsupported(
            path,
            key,
            v.cloned().unwrap_or(serde_json::Value::Null),
            &format!("expected an integer in 1..={MAX_SIDE}"),
        )
        .into()),
    }
}

/// `(width, height)` of a size value: an integer (square) or `{height, width}`.
fn size_hw(path: &Path, key: &str, v: &serde_json::Value) -> Result<(usize, usize), CaptionError> {
    if v.is_number() {
        let s = side(path, key, Some(v))?;
        return Ok((s, s));
    }
    Ok((
        side(path, &format!("{key}.width"), v.get("width"))?,
        side(path, &format!("{key}.height"), v.get("height"))?,
    ))
}

fn channels(
    path: &Path,
    key: &str,
    v: Option<&serde_json::Value>,
    default: [f64; 3],
) -> Result<[f64; 3], CaptionError> {
    let bad = |v: &serde_json::Value| {
        CaptionError::from(unsupported(
            path,
            key,
            v,
            "expected a finite number or three",
        ))
    };
    match v {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(v @ serde_json::Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => Ok([x; 3]),
            _ => Err(bad(v)),
        },
        Some(v @ serde_json::Value::Array(a)) => {
            let xs: Vec<f64> = a.iter().filter_map(serde_json::Value::as_f64).collect();
            match xs.as_slice() {
                [r, g, b] if xs.iter().all(|x| x.is_finite()) => Ok([*r, *g, *b]),
                _ => Err(bad(v)),
            }
        }
        Some(v) => Err(bad(v)),
    }
}

/// Reads a BLIP image processor config: a `preprocessor_config.json`, or a
/// `processor_config.json` (transformers 5's `BlipProcessor.save_pretrained`) whose
/// `image_processor` object holds it. Absent keys take `BlipImageProcessor`'s defaults.
pub fn blip_image_processor(path: &Path) -> Result<ClipImageProcessor, CaptionError> {
    let value: serde_json::Value = sonic_core::config::read_json(path)?;
    let value = match value.get("image_processor") {
        Some(inner @ serde_json::Value::Object(_)) => inner.clone(),
        _ => value,
    };
    let raw: RawConfig = sonic_core::config::from_value(&value, path)?;
    let resize = if raw.do_resize {
        Some(match &raw.size {
            None | Some(serde_json::Value::Null) => ResizeTo::Exact(DEFAULT_SIZE, DEFAULT_SIZE),
            Some(v) if v.get("shortest_edge").is_some() => {
                if v.get("longest_edge").is_some_and(|l| !l.is_null()) {
                    return Err(unsupported(
                        path,
                        "size.longest_edge",
                        v,
                        "only shortest_edge or height and width are supported",
                    )
                    .into());
                }
                ResizeTo::ShortestEdge(side(path, "size.shortest_edge", v.get("shortest_edge"))?)
            }
            Some(v) => {
                let (w, h) = size_hw(path, "size", v)?;
                ResizeTo::Exact(w, h)
            }
        })
    } else {
        None
    };
    let crop = if raw.do_center_crop == Some(true) {
        let v = raw.crop_size.as_ref().ok_or_else(|| {
            CaptionError::from(unsupported(
                path,
                "crop_size",
                serde_json::Value::Null,
                "do_center_crop needs a crop_size",
            ))
        })?;
        Some(size_hw(path, "crop_size", v)?)
    } else {
        None
    };
    let resample = match raw.resample {
        2 => Resample::Bilinear,
        3 => Resample::Bicubic,
        other => {
            return Err(unsupported(
                path,
                "resample",
                other,
                "supported: 2 (bilinear), 3 (bicubic)",
            )
            .into());
        }
    };
    if !raw.rescale_factor.is_finite() {
        return Err(
            unsupported(path, "rescale_factor", raw.rescale_factor, "must be finite").into(),
        );
    }
    let mean = channels(path, "image_mean", raw.image_mean.as_ref(), CLIP_MEAN)?;
    let std = channels(path, "image_std", raw.image_std.as_ref(), CLIP_STD)?;
    if raw.do_normalize && std.contains(&0.0) {
        return Err(unsupported(path, "image_std", std.to_vec(), "must not be zero").into());
    }
    Ok(ClipImageProcessor {
        resize,
        resample,
        crop,
        rescale_factor: raw.do_rescale.then_some(raw.rescale_factor),
        normalize: raw.do_normalize.then_some((mean, std)),
    })
}

/// The image processor of a model folder: `preprocessor_config.json`, else
/// `processor_config.json`.
pub fn image_processor_from_dir(dir: &Path) -> Result<ClipImageProcessor, CaptionError> {
    let pre = dir.join("preprocessor_config.json");
    if pre.is_file() {
        return blip_image_processor(&pre);
    }
    blip_image_processor(&dir.join("processor_config.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<ClipImageProcessor, CaptionError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("preprocessor_config.json");
        std::fs::write(&p, text).unwrap();
        blip_image_processor(&p)
    }

    #[test]
    fn blip_defaults_resize_without_crop() {
        // Salesforce/blip-image-captioning-base's file: no do_center_crop, no crop_size.
        let p = read(
            r#"{"do_normalize": true, "do_resize": true, "image_mean": [0.48145466, 0.4578275,
            0.40821073], "image_processor_type": "BlipImageProcessor", "image_std": [0.26862954,
            0.26130258, 0.27577711], "processor_class": "BlipProcessor", "resample": 3,
            "rescale_factor": 0.00392156862745098, "size": {"height": 384, "width": 384}}"#,
        )
        .unwrap();
        assert_eq!(p.resize, Some(ResizeTo::Exact(384, 384)));
        assert_eq!(p.crop, None);
        assert_eq!(p.resample, Resample::Bicubic);
        assert_eq!(p.resized_size(640, 480), (384, 384));
        let p = read("{}").unwrap();
        assert_eq!(p.resize, Some(ResizeTo::Exact(384, 384)));
        assert_eq!(p.normalize, Some((CLIP_MEAN, CLIP_STD)));
        let p = read(r#"{"size": 224, "image_mean": 0.5, "image_std": 0.5}"#).unwrap();
        assert_eq!(p.resize, Some(ResizeTo::Exact(224, 224)));
        assert_eq!(p.normalize, Some(([0.5; 3], [0.5; 3])));
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            (r#"{"size": {"height": 0, "width": 3}}"#, "size.height"),
            (r#"{"resample": 1}"#, "resample"),
            (r#"{"do_center_crop": true}"#, "crop_size"),
            (r#"{"image_std": [1, 0, 1]}"#, "image_std"),
            (r#"{"image_mean": [1, 2]}"#, "image_mean"),
            (
                r#"{"size": {"shortest_edge": 3, "longest_edge": 9}}"#,
                "size.longest_edge",
            ),
        ] {
            let e = read(text).unwrap_err().to_string();
            assert!(
                e.contains(key) && e.contains("preprocessor_config.json"),
                "{text}: {e}"
            );
        }
    }
}

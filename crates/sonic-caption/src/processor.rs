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
use sonic_clip::ClipImageProcessor;
use sonic_clip::image_processor::ProcessorDefaults;
use std::path::Path;

/// Reads a BLIP image processor config: a `preprocessor_config.json`, or a
/// `processor_config.json` (transformers 5's `BlipProcessor.save_pretrained`) whose
/// `image_processor` object holds it. Absent keys take `BlipImageProcessor`'s defaults.
pub fn blip_image_processor(path: &Path) -> Result<ClipImageProcessor, CaptionError> {
    Ok(ClipImageProcessor::from_file_with(
        path,
        &ProcessorDefaults::BLIP,
    )?)
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
    use sonic_clip::image_processor::{CLIP_MEAN, CLIP_STD, Resample, ResizeTo};

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

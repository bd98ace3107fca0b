//! Reading the pictures a metric scores: any format the pipeline decodes (PNG, JPEG, WebP),
//! EXIF orientation applied, within the pipeline's decoding budget, as 8-bit RGB (as PIL's
//! `Image.open(path).convert("RGB")`: grey and palette expanded, alpha dropped).

use crate::error::EvalError;
use burn::tensor::{Device, Tensor, TensorData};
use sonic_pipeline::image_input::{ImageOptions, decode_image};
use std::path::Path;

/// An owned 8-bit RGB picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes, row-major.
    pub pixels: Vec<u8>,
}

impl Picture {
    /// The picture as the CLIP processor's borrowed view.
    pub fn view(&self) -> sonic_clip::RgbImage<'_> {
        sonic_clip::RgbImage {
            width: self.width,
            height: self.height,
            pixels: &self.pixels,
        }
    }

    /// Values in `[0, 1]` as `[3, H, W]` (channel-major), as torchvision's `ToTensor`.
    pub fn to_chw_unit(&self) -> Vec<f32> {
        let n = self.width * self.height;
        let mut out = vec![0f32; 3 * n];
        for (i, px) in self.pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * n + i] = f32::from(px[c]) / 255.0;
            }
        }
        out
    }
}

/// Pictures of one size as a batch `[B, 3, H, W]` of values in `[0, 1]` (torchvision's
/// `ToTensor`: `v / 255` in float32). An empty list, or pictures of different sizes, are an
/// [`EvalError::Input`].
pub fn pictures_to_tensor(pictures: &[Picture], device: &Device) -> Result<Tensor<4>, EvalError> {
    let Some(first) = pictures.first() else {
        return Err(EvalError::input("pictures", "no picture given"));
    };
    let (w, h) = (first.width, first.height);
    if let Some(other) = pictures.iter().find(|p| (p.width, p.height) != (w, h)) {
        return Err(EvalError::input(
            "pictures",
            format!(
                "a batch needs one size: {w}x{h} and {}x{}",
                other.width, other.height
            ),
        ));
    }
    let data: Vec<f32> = pictures.iter().flat_map(Picture::to_chw_unit).collect();
    Ok(Tensor::from_data(
        TensorData::new(data, [pictures.len(), 3, h, w]),
        device,
    ))
}

/// Decodes `path` to RGB (alpha dropped, grey expanded).
pub fn load_picture(path: &Path) -> Result<Picture, EvalError> {
    let img = decode_image(path, &ImageOptions::default())?.to_rgb8();
    Ok(Picture {
        width: img.width() as usize,
        height: img.height() as usize,
        pixels: img.into_raw(),
    })
}

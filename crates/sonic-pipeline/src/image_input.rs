//! Reading an input image for editing: PNG, JPEG or WebP through the `image` crate, with the
//! EXIF orientation applied, to a tensor `[1, 3, H, W]` in `[-1, 1]`.
//!
//! **Size rule.** The VAE needs both sides to be multiples of its factor `f` (8 for SD):
//! - with [`ImageOptions::size`] = `Some((w, h))` (both multiples of `f`) the image is first
//!   centre-cropped to the aspect ratio `w : h` and then resized to exactly `w x h`
//!   (Catmull-Rom), so nothing is stretched;
//! - with `None` (the default) the image keeps its own pixels: it is centre-cropped to the
//!   largest multiple of `f` on each side (at most `f - 1` pixels are dropped per side, split
//!   between the two edges, the odd pixel on the right / bottom).
//!
//! **Memory budget.** Two limits, both checked before the work they guard:
//! - [`ImageOptions::max_source_pixels`] (default 40 M pixels, ~160 MB decoded as RGBA8) on the
//!   file's header dimensions, before decoding; the decoder is also given an allocation cap of
//!   `max_source_pixels * 16` bytes (the widest sample layout, RGBA32F);
//! - [`ImageOptions::max_pixels`] (default 1024 x 1024) on the size that enters the VAE, since the
//!   VAE and the UNet's self-attention grow with it (`size` or the cropped size).
//!
//! Exceeding either gives [`PipelineError::ImageTooLarge`]; a missing, unreadable, corrupt or
//! unsupported file gives [`PipelineError::Image`] naming the file.

use crate::error::PipelineError;
use burn::tensor::{Device, Tensor, TensorData};
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, imageops::FilterType};
use std::path::Path;

/// How an input image is read.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOptions {
    /// Target size `(width, height)` in pixels (multiples of the VAE factor), or `None` to
    /// centre-crop to multiples of the factor.
    pub size: Option<(usize, usize)>,
    /// The spatial factor both sides must be multiples of (the VAE's, 8 for SD).
    pub factor: usize,
    /// Budget on the decoded file (width x height).
    pub max_source_pixels: u64,
    /// Budget on the tensor handed to the VAE (width x height).
    pub max_pixels: u64,
}

impl Default for ImageOptions {
    fn default() -> Self {
        Self {
            size: None,
            factor: 8,
            max_source_pixels: 40_000_000,
            max_pixels: 1024 * 1024,
        }
    }
}

fn image_err(path: &Path, e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Image {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Decodes `path` (format guessed from the content), applying its EXIF orientation.
pub fn decode_image(path: &Path, opts: &ImageOptions) -> Result<DynamicImage, PipelineError> {
    let reader = ImageReader::open(path)
        .map_err(|e| image_err(path, e))?
        .with_guessed_format()
        .map_err(|e| image_err(path, e))?;
    let mut decoder = reader.into_decoder().map_err(|e| image_err(path, e))?;
    let (w, h) = decoder.dimensions();
    let pixels = w as u64 * h as u64;
    if pixels > opts.max_source_pixels {
        return Err(PipelineError::ImageTooLarge {
            path: path.to_path_buf(),
            width: w as u64,
            height: h as u64,
            pixels,
            limit: opts.max_source_pixels,
        });
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(opts.max_source_pixels.saturating_mul(16));
    decoder.set_limits(limits).map_err(|e| image_err(path, e))?;
    let orientation = decoder.orientation().map_err(|e| image_err(path, e))?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| image_err(path, e))?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Applies the size rule of the module docs to a decoded image.
pub fn fit_image(
    path: &Path,
    img: &DynamicImage,
    opts: &ImageOptions,
) -> Result<DynamicImage, PipelineError> {
    let f = opts.factor.max(1) as u32;
    let (w, h) = (img.width(), img.height());
    let (tw, th) = match opts.size {
        Some((tw, th)) => {
            if tw == 0 || th == 0 || tw % f as usize != 0 || th % f as usize != 0 {
                return Err(PipelineError::InvalidParameter {
                    name: "image size",
                    value: format!("{tw}x{th}"),
                    reason: format!("both sides must be positive multiples of {f}"),
                });
            }
            (tw as u32, th as u32)
        }
        None => (w / f * f, h / f * f),
    };
    if tw == 0 || th == 0 {
        return Err(image_err(
            path,
            format!("{w}x{h} is smaller than the VAE factor {f}"),
        ));
    }
    let out_pixels = tw as u64 * th as u64;
    if out_pixels > opts.max_pixels {
        return Err(PipelineError::ImageTooLarge {
            path: path.to_path_buf(),
            width: tw as u64,
            height: th as u64,
            pixels: out_pixels,
            limit: opts.max_pixels,
        });
    }
    if opts.size.is_none() {
        return Ok(img.crop_imm((w - tw) / 2, (h - th) / 2, tw, th));
    }
    // Centre-crop to the target aspect ratio, then resize.
    let (cw, ch) = if (w as u64) * (th as u64) > (h as u64) * (tw as u64) {
        (((h as u64 * tw as u64) / th as u64).max(1) as u32, h)
    } else {
        (w, ((w as u64 * th as u64) / tw as u64).max(1) as u32)
    };
    let cropped = img.crop_imm((w - cw) / 2, (h - ch) / 2, cw, ch);
    if (cw, ch) == (tw, th) {
        return Ok(cropped);
    }
    Ok(cropped.resize_exact(tw, th, FilterType::CatmullRom))
}

/// RGB pixels (any layout) to `[1, 3, H, W]` in `[-1, 1]`.
pub fn image_to_tensor(img: &DynamicImage, device: &Device) -> Tensor<4> {
    let rgb = img.to_rgb32f();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let raw = rgb.as_raw();
    let mut v = vec![0f32; 3 * w * h];
    for (i, px) in raw.chunks_exact(3).enumerate() {
        for c in 0..3 {
            v[c * w * h + i] = px[c].clamp(0.0, 1.0) * 2.0 - 1.0;
        }
    }
    Tensor::from_data(TensorData::new(v, [1, 3, h, w]), device)
}

/// Reads `path` to `[1, 3, H, W]` in `[-1, 1]` following the module's size rule and budget.
pub fn load_image(
    path: &Path,
    opts: &ImageOptions,
    device: &Device,
) -> Result<Tensor<4>, PipelineError> {
    let img = decode_image(path, opts)?;
    let img = fit_image(path, &img, opts)?;
    Ok(image_to_tensor(&img, device))
}

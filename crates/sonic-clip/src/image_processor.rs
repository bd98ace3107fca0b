//! CLIP's image preprocessing (transformers' `CLIPImageProcessor`, PIL backend, configured by
//! `preprocessor_config.json`): resize so the shortest side is `size.shortest_edge` with
//! Pillow's resampling, centre crop (zero padding where the image is smaller), rescale by
//! `rescale_factor` and normalise with the CLIP mean and standard deviation.
//!
//! The resize is Pillow's `Image.resize` bit for bit: separable passes (horizontal, then
//! vertical) whose filter support widens with the reduction factor (antialiasing), fixed-point
//! coefficients with 22 fractional bits and 8-bit rounding between the passes
//! ([`pil_resize`]).

use crate::error::ClipError;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;
use std::path::Path;

/// The largest side (input or output) the processor accepts, checked before allocating.
pub const MAX_SIDE: usize = 1 << 15;

/// An 8-bit RGB image in memory, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, Copy)]
pub struct RgbImage<'a> {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes.
    pub pixels: &'a [u8],
}

/// The resampling filters of Pillow that CLIP-style processors use (`resample` in
/// `preprocessor_config.json`: PIL's enum values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// `2`: the triangle filter (support 1).
    Bilinear,
    /// `3`: Keys' cubic with `a = -0.5` (support 2), CLIP's default.
    Bicubic,
}

impl Resample {
    fn from_pil(code: i64, origin: &Path) -> Result<Self, ClipError> {
        match code {
            2 => Ok(Resample::Bilinear),
            3 => Ok(Resample::Bicubic),
            other => Err(sonic_core::config::unsupported(
                origin,
                "resample",
                other,
                "supported: 2 (bilinear), 3 (bicubic)",
            )
            .into()),
        }
    }

    fn support(self) -> f64 {
        match self {
            Resample::Bilinear => 1.0,
            Resample::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Resample::Bilinear => (1.0 - x).max(0.0),
            Resample::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's fixed-point coefficients of one axis: per output index the first input index
/// and the integer weights.
fn coefficients(filter: Resample, in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero; negative values are clamped to 0 anyway.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let count = xmax.saturating_sub(xmin);
            let mut k: Vec<f64> = (0..count)
                .map(|x| filter.weight(((x + xmin) as f64 - center + 0.5) * ss))
                .collect();
            let ww: f64 = k.iter().sum();
            if ww != 0.0 {
                k.iter_mut().for_each(|w| *w /= ww);
            }
            let one = f64::from(1u32 << PRECISION_BITS);
            let fixed = k
                .iter()
                .map(|&w| {
                    if w < 0.0 {
                        (-0.5 + w * one) as i32
                    } else {
                        (0.5 + w * one) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an 8-bit image of `channels` interleaved channels to `out_w x out_h` exactly as
/// Pillow's `Image.resize(.., resample)` does for 8-bit modes.
pub fn pil_resize(
    pixels: &[u8],
    (width, height): (usize, usize),
    channels: usize,
    (out_w, out_h): (usize, usize),
    filter: Resample,
) -> Vec<u8> {
    let mut data = pixels.to_vec();
    let (mut w, h) = (width, height);
    if out_w != width {
        let coeffs = coefficients(filter, width, out_w);
        let mut out = vec![0u8; out_w * h * channels];
        for y in 0..h {
            let row = &data[y * w * channels..(y + 1) * w * channels];
            for (xx, (xmin, k)) in coeffs.iter().enumerate() {
                for c in 0..channels {
                    let acc =
                        k.iter()
                            .enumerate()
                            .fold(1i64 << (PRECISION_BITS - 1), |acc, (x, &kx)| {
                                acc + i64::from(row[(xmin + x) * channels + c]) * i64::from(kx)
                            });
                    out[(y * out_w + xx) * channels + c] = clip8(acc);
                }
            }
        }
        data = out;
        w = out_w;
    }
    if out_h != height {
        let coeffs = coefficients(filter, height, out_h);
        let mut out = vec![0u8; w * out_h * channels];
        for (yy, (ymin, k)) in coeffs.iter().enumerate() {
            for x in 0..w * channels {
                let acc =
                    k.iter()
                        .enumerate()
                        .fold(1i64 << (PRECISION_BITS - 1), |acc, (y, &ky)| {
                            acc + i64::from(data[(ymin + y) * w * channels + x]) * i64::from(ky)
                        });
                out[yy * w * channels + x] = clip8(acc);
            }
        }
        data = out;
    }
    data
}

/// OpenAI CLIP's per-channel mean.
pub const CLIP_MEAN: [f64; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP's per-channel standard deviation.
pub const CLIP_STD: [f64; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// How the image is resized before cropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTo {
    /// The shortest side becomes this many pixels, the other keeps the aspect ratio
    /// (truncated, as transformers computes it).
    ShortestEdge(usize),
    /// Exactly `(width, height)`.
    Exact(usize, usize),
}

/// `CLIPImageProcessor` as configured by a `preprocessor_config.json`.
#[derive(Debug, Clone)]
pub struct ClipImageProcessor {
    /// The resize (`None`: `do_resize` is false).
    pub resize: Option<ResizeTo>,
    /// The resampling filter.
    pub resample: Resample,
    /// The centre crop `(width, height)` (`None`: `do_center_crop` is false).
    pub crop: Option<(usize, usize)>,
    /// The rescale factor (`None`: `do_rescale` is false).
    pub rescale_factor: Option<f64>,
    /// Per-channel mean and standard deviation (`None`: `do_normalize` is false).
    pub normalize: Option<([f64; 3], [f64; 3])>,
}

/// The defaults of a processor class for keys its `preprocessor_config.json` leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessorDefaults {
    /// `size` when absent.
    pub size: ResizeTo,
    /// Whether an integer `size` means a square (`default_to_square`), else the shortest edge.
    pub square_int_size: bool,
    /// `do_center_crop` when absent.
    pub center_crop: bool,
    /// `crop_size` when absent (`None`: a crop must name its size).
    pub crop: Option<(usize, usize)>,
}

impl ProcessorDefaults {
    /// transformers' `CLIPImageProcessor`: shortest edge 224, centre crop 224.
    pub const CLIP: Self = Self {
        size: ResizeTo::ShortestEdge(224),
        square_int_size: false,
        center_crop: true,
        crop: Some((224, 224)),
    };
    /// transformers' `BlipImageProcessor`: 384 x 384, no crop.
    pub const BLIP: Self = Self {
        size: ResizeTo::Exact(384, 384),
        square_int_size: true,
        center_crop: false,
        crop: None,
    };
}

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

fn side(path: &Path, key: &str, v: Option<&serde_json::Value>) -> Result<usize, ClipError> {
    match v.and_then(serde_json::Value::as_u64) {
        Some(n) if (1..=MAX_SIDE as u64).contains(&n) => Ok(n as usize),
        _ => Err(sonic_core::config::unsupported(
            path,
            key,
            v.cloned().unwrap_or(serde_json::Value::Null),
            &format!("expected an integer in 1..={MAX_SIDE}"),
        )
        .into()),
    }
}

/// `(width, height)` of a size value: an integer (square) or `{height, width}`.
fn size_hw(path: &Path, key: &str, v: &serde_json::Value) -> Result<(usize, usize), ClipError> {
    if v.is_number() {
        let s = side(path, key, Some(v))?;
        return Ok((s, s));
    }
    Ok((
        side(path, &format!("{key}.width"), v.get("width"))?,
        side(path, &format!("{key}.height"), v.get("height"))?,
    ))
}

/// A per-channel value: absent (the default), one number for every channel, or three.
fn channels(
    path: &Path,
    key: &str,
    v: Option<&serde_json::Value>,
    default: [f64; 3],
) -> Result<[f64; 3], ClipError> {
    let bad = |v: &serde_json::Value| {
        ClipError::from(sonic_core::config::unsupported(
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
                [r, g, b] if a.len() == 3 && xs.iter().all(|x| x.is_finite()) => Ok([*r, *g, *b]),
                _ => Err(bad(v)),
            }
        }
        Some(v) => Err(bad(v)),
    }
}

impl ClipImageProcessor {
    /// Reads a `CLIPImageProcessor` `preprocessor_config.json` (transformers' keys and
    /// defaults).
    pub fn from_file(path: &Path) -> Result<Self, ClipError> {
        Self::from_file_with(path, &ProcessorDefaults::CLIP)
    }

    /// Reads a `preprocessor_config.json` of a CLIP-style processor class whose defaults are
    /// `defaults`; a `processor_config.json` (transformers 5's `Processor.save_pretrained`)
    /// whose `image_processor` object holds the settings is read too.
    pub fn from_file_with(path: &Path, defaults: &ProcessorDefaults) -> Result<Self, ClipError> {
        use sonic_core::config::unsupported;
        let value: serde_json::Value = sonic_core::config::read_json(path)?;
        let value = match value.get("image_processor") {
            Some(inner @ serde_json::Value::Object(_)) => inner.clone(),
            _ => value,
        };
        let raw: RawConfig = sonic_core::config::from_value(&value, path)?;
        let resize = if raw.do_resize {
            Some(match &raw.size {
                None | Some(serde_json::Value::Null) => defaults.size,
                Some(v) if v.is_number() && !defaults.square_int_size => {
                    ResizeTo::ShortestEdge(side(path, "size", Some(v))?)
                }
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
                    ResizeTo::ShortestEdge(side(
                        path,
                        "size.shortest_edge",
                        v.get("shortest_edge"),
                    )?)
                }
                Some(v) => {
                    let (w, h) = size_hw(path, "size", v)?;
                    ResizeTo::Exact(w, h)
                }
            })
        } else {
            None
        };
        let crop = if raw.do_center_crop.unwrap_or(defaults.center_crop) {
            match (&raw.crop_size, defaults.crop) {
                (Some(v), _) if !v.is_null() => Some(size_hw(path, "crop_size", v)?),
                (_, Some(c)) => Some(c),
                _ => {
                    return Err(unsupported(
                        path,
                        "crop_size",
                        serde_json::Value::Null,
                        "do_center_crop needs a crop_size",
                    )
                    .into());
                }
            }
        } else {
            None
        };
        if !raw.rescale_factor.is_finite() {
            return Err(
                unsupported(path, "rescale_factor", raw.rescale_factor, "must be finite").into(),
            );
        }
        let mean = channels(path, "image_mean", raw.image_mean.as_ref(), CLIP_MEAN)?;
        let std = channels(path, "image_std", raw.image_std.as_ref(), CLIP_STD)?;
        if raw.do_normalize && std.contains(&0.0) {
            return Err(
                unsupported(path, "image_std", format!("{std:?}"), "must not be zero").into(),
            );
        }
        Ok(Self {
            resize,
            resample: Resample::from_pil(raw.resample, path)?,
            crop,
            rescale_factor: raw.do_rescale.then_some(raw.rescale_factor),
            normalize: raw.do_normalize.then_some((mean, std)),
        })
    }

    /// The size an image of `(width, height)` is resized to.
    pub fn resized_size(&self, width: usize, height: usize) -> (usize, usize) {
        match self.resize {
            None => (width, height),
            Some(ResizeTo::Exact(w, h)) => (w, h),
            Some(ResizeTo::ShortestEdge(s)) => {
                // transformers: new_long = int(s * long / short).
                if width <= height {
                    (s, (s as f64 * height as f64 / width as f64) as usize)
                } else {
                    ((s as f64 * width as f64 / height as f64) as usize, s)
                }
            }
        }
    }

    /// Preprocesses one image to `[3, H, W]` float32 values (row-major).
    pub fn preprocess(
        &self,
        image: &RgbImage<'_>,
        name: &str,
    ) -> Result<(Vec<f32>, [usize; 3]), ClipError> {
        let bad = |message: String| ClipError::Image {
            image: name.to_string(),
            message,
        };
        let (w, h) = (image.width, image.height);
        if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
            return Err(bad(format!("size {w}x{h} outside 1..={MAX_SIDE}")));
        }
        if image.pixels.len() != w * h * 3 {
            return Err(bad(format!(
                "{} bytes for a {w}x{h} RGB image",
                image.pixels.len()
            )));
        }
        let (rw, rh) = self.resized_size(w, h);
        if rw == 0 || rh == 0 || rw > MAX_SIDE || rh > MAX_SIDE {
            return Err(bad(format!(
                "resized size {rw}x{rh} outside 1..={MAX_SIDE}"
            )));
        }
        let resized = if (rw, rh) == (w, h) {
            image.pixels.to_vec()
        } else {
            pil_resize(image.pixels, (w, h), 3, (rw, rh), self.resample)
        };
        let (cw, ch) = self.crop.unwrap_or((rw, rh));
        // transformers' centre crop: offset (orig - crop) / 2 rounded down where the image is
        // larger, zero padding of ceil((crop - orig) / 2) before it where it is smaller.
        let axis = |orig: usize, crop: usize| -> (usize, usize) {
            if orig >= crop {
                ((orig - crop) / 2, 0)
            } else {
                (0, (crop - orig).div_ceil(2))
            }
        };
        let (src_x, pad_x) = axis(rw, cw);
        let (src_y, pad_y) = axis(rh, ch);
        let mut out = vec![0f32; 3 * cw * ch];
        for c in 0..3 {
            let (mean, std) = self
                .normalize
                .map_or((0.0, 1.0), |(m, s)| (m[c] as f32, s[c] as f32));
            let value = |v: u8| -> f32 {
                let x = match self.rescale_factor {
                    Some(f) => (f64::from(v) * f) as f32,
                    None => f32::from(v),
                };
                if self.normalize.is_some() {
                    (x - mean) / std
                } else {
                    x
                }
            };
            let zero = value(0);
            for y in 0..ch {
                for x in 0..cw {
                    let sy = (y + src_y).checked_sub(pad_y).filter(|&v| v < rh);
                    let sx = (x + src_x).checked_sub(pad_x).filter(|&v| v < rw);
                    out[(c * ch + y) * cw + x] = match (sy, sx) {
                        (Some(sy), Some(sx)) => value(resized[(sy * rw + sx) * 3 + c]),
                        _ => zero,
                    };
                }
            }
        }
        Ok((out, [3, ch, cw]))
    }

    /// Preprocesses a batch of images (all must come out the same size, as with a centre
    /// crop) into pixel values `[B, 3, H, W]`.
    pub fn pixel_values(
        &self,
        images: &[(RgbImage<'_>, String)],
        device: &Device,
    ) -> Result<Tensor<4>, ClipError> {
        let mut data = Vec::new();
        let mut shape = None;
        for (image, name) in images {
            let (values, s) = self.preprocess(image, name)?;
            if shape.is_some_and(|first| first != s) {
                return Err(ClipError::Image {
                    image: name.clone(),
                    message: format!("preprocessed to {s:?}, unlike the batch's first image"),
                });
            }
            shape = Some(s);
            data.extend(values);
        }
        let [c, h, w] = shape.ok_or_else(|| ClipError::Image {
            image: "<batch>".into(),
            message: "no images".into(),
        })?;
        Ok(Tensor::from_data(
            TensorData::new(data, [images.len(), c, h, w]),
            device,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_constant_images_are_kept() {
        let px: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(pil_resize(&px, (5, 4), 3, (5, 4), Resample::Bicubic), px);
        let flat = vec![200u8; 13 * 9 * 3];
        let out = pil_resize(&flat, (13, 9), 3, (6, 17), Resample::Bicubic);
        assert_eq!(out.len(), 6 * 17 * 3);
        assert!(out.iter().all(|&v| v == 200));
    }

    #[test]
    fn shortest_edge_follows_transformers_rounding() {
        let p = ClipImageProcessor {
            resize: Some(ResizeTo::ShortestEdge(32)),
            resample: Resample::Bicubic,
            crop: Some((32, 32)),
            rescale_factor: Some(1.0 / 255.0),
            normalize: None,
        };
        assert_eq!(p.resized_size(50, 41), (39, 32));
        assert_eq!(p.resized_size(41, 50), (32, 39));
        assert_eq!(p.resized_size(7, 7), (32, 32));
    }

    #[test]
    fn small_images_are_padded_like_transformers() {
        let p = ClipImageProcessor {
            resize: None,
            resample: Resample::Bicubic,
            crop: Some((4, 4)),
            rescale_factor: None,
            normalize: None,
        };
        let px = vec![9u8; 2 * 3 * 3]; // 2 wide, 3 high
        let (v, s) = p
            .preprocess(
                &RgbImage {
                    width: 2,
                    height: 3,
                    pixels: &px,
                },
                "t",
            )
            .unwrap();
        assert_eq!(s, [3, 4, 4]);
        // rows: pad ceil(1/2) = 1 on top; columns: pad 1 on the left.
        let row = |y: usize| &v[y * 4..y * 4 + 4];
        assert_eq!(row(0), &[0.0; 4]);
        assert_eq!(row(1), &[0.0, 9.0, 9.0, 0.0]);
        assert_eq!(row(3), &[0.0, 9.0, 9.0, 0.0]);
    }
}

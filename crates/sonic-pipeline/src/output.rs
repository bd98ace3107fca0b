//! Writing images: the format follows the file extension (PNG, JPEG, WebP, through the `image`
//! crate); the generation parameters travel with the picture: PNG `iTXt` chunks (UTF-8, so a
//! prompt in any script is kept), an EXIF `ImageDescription` (a JSON object, UTF-8) in JPEG and
//! WebP. Files are written to a temporary file in the target folder and renamed, so no
//! half-written file is ever left.

use crate::error::PipelineError;
use burn::tensor::Tensor;
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use std::path::{Path, PathBuf};

/// The image formats [`save_images`] writes, chosen from the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// `.png`: lossless, parameters in `iTXt` chunks.
    Png,
    /// `.jpg` / `.jpeg`: quality 95, parameters in EXIF.
    Jpeg,
    /// `.webp`: lossless, parameters in EXIF.
    WebP,
}

impl ImageFormat {
    /// The format for `path`'s extension (case-insensitive); `None` for anything else.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "png" => Some(Self::Png),
            "jpg" | "jpeg" => Some(Self::Jpeg),
            "webp" => Some(Self::WebP),
            _ => None,
        }
    }
}

/// Converts images `[B, 3, H, W]` in `[0, 1]` to 8-bit RGB images (`round(x * 255)`, as
/// diffusers' `numpy_to_pil`; NaN becomes 0).
pub fn to_images(images: &Tensor<4>) -> Result<Vec<RgbImage>, PipelineError> {
    let [b, c, h, w] = images.dims();
    if c != 3 {
        return Err(PipelineError::InvalidParameter {
            name: "images",
            value: format!("{:?}", images.dims()),
            reason: "expected 3 channels".into(),
        });
    }
    let data = sonic_core::fixtures::to_host(images)?;
    let plane = h * w;
    let too_big = || PipelineError::InvalidParameter {
        name: "images",
        value: format!("{:?}", images.dims()),
        reason: "larger than 4294967295 pixels per side".into(),
    };
    let (wu, hu) = (
        u32::try_from(w).map_err(|_| too_big())?,
        u32::try_from(h).map_err(|_| too_big())?,
    );
    (0..b)
        .map(|i| {
            let base = i * 3 * plane;
            let mut rgb = Vec::with_capacity(3 * plane);
            for p in 0..plane {
                for ch in 0..3 {
                    let v = data[base + ch * plane + p];
                    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
                    rgb.push((v * 255.0).round() as u8);
                }
            }
            RgbImage::from_raw(wu, hu, rgb).ok_or_else(too_big)
        })
        .collect()
}

/// Encodes one RGB image as PNG bytes with `metadata` as `iTXt` chunks (UTF-8 keys and values).
pub fn encode_png(
    width: usize,
    height: usize,
    rgb: &[u8],
    metadata: &[(String, String)],
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        for (k, v) in metadata {
            enc.add_itxt_chunk(k.clone(), v.clone())
                .map_err(|e| format!("metadata `{k}`: {e}"))?;
        }
        let mut writer = enc.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(rgb).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// A little-endian TIFF block (what JPEG's APP1 and WebP's `EXIF` chunk hold) with
/// `ImageDescription` = `metadata` as a JSON object (UTF-8) and `Software` = `sonic`.
pub fn exif_block(metadata: &[(String, String)]) -> Vec<u8> {
    let map: serde_json::Map<String, serde_json::Value> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let mut description = serde_json::Value::Object(map).to_string().into_bytes();
    description.push(0);
    let mut software = b"sonic".to_vec();
    software.push(0);
    // Header (8) + IFD: count (2) + 2 entries (24) + next-IFD offset (4); values follow.
    let values_at = 8 + 2 + 2 * 12 + 4;
    let mut out = Vec::with_capacity(values_at + description.len() + software.len());
    out.extend_from_slice(b"II*\0");
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    let mut offset = values_at as u32;
    // Tags in increasing order: ImageDescription (0x010e), Software (0x0131); type 2 = ASCII.
    for (tag, value) in [(0x010eu16, &description), (0x0131u16, &software)] {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset += value.len() as u32;
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&description);
    out.extend_from_slice(&software);
    out
}

/// Encodes `image` in `format` with `metadata` (see the module documentation).
pub fn encode_image(
    image: &RgbImage,
    format: ImageFormat,
    metadata: &[(String, String)],
) -> Result<Vec<u8>, String> {
    let (w, h) = image.dimensions();
    match format {
        ImageFormat::Png => encode_png(w as usize, h as usize, image.as_raw(), metadata),
        ImageFormat::Jpeg | ImageFormat::WebP => {
            let mut out = Vec::new();
            let result = if format == ImageFormat::Jpeg {
                let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95);
                enc.set_exif_metadata(exif_block(metadata))
                    .map_err(|e| e.to_string())?;
                enc.write_image(image.as_raw(), w, h, ExtendedColorType::Rgb8)
            } else {
                let mut enc = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
                enc.set_exif_metadata(exif_block(metadata))
                    .map_err(|e| e.to_string())?;
                enc.write_image(image.as_raw(), w, h, ExtendedColorType::Rgb8)
            };
            result.map_err(|e| e.to_string())?;
            Ok(out)
        }
    }
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PipelineError> {
    sonic_core::config::write_atomic(path, bytes).map_err(|e| PipelineError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The output paths for `count` images: `path` itself for one image, else `stem-N.ext`.
pub fn numbered_paths(path: &Path, count: usize) -> Vec<PathBuf> {
    if count == 1 {
        return vec![path.to_path_buf()];
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let ext = path
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "png".into());
    (0..count)
        .map(|i| path.with_file_name(format!("{stem}-{i}.{ext}")))
        .collect()
}

/// Saves images `[B, 3, H, W]` in `[0, 1]` (see [`numbered_paths`]) in the format of `path`'s
/// extension ([`ImageFormat::from_path`]) with `metadata`; returns the written paths. An
/// unknown extension is an error before anything is written.
pub fn save_images(
    images: &Tensor<4>,
    path: &Path,
    metadata: &[(String, String)],
) -> Result<Vec<PathBuf>, PipelineError> {
    let format = ImageFormat::from_path(path).ok_or_else(|| PipelineError::Output {
        path: path.to_path_buf(),
        message: "unknown image format: use a .png, .jpg / .jpeg or .webp name".into(),
    })?;
    let pictures = to_images(images)?;
    let paths = numbered_paths(path, pictures.len());
    for (picture, p) in pictures.iter().zip(&paths) {
        let bytes =
            encode_image(picture, format, metadata).map_err(|message| PipelineError::Output {
                path: p.clone(),
                message,
            })?;
        write_atomic(p, &bytes)?;
    }
    Ok(paths)
}

/// [`save_images`] under its older name (the format follows the extension here too).
pub fn save_pngs(
    images: &Tensor<4>,
    path: &Path,
    metadata: &[(String, String)],
) -> Result<Vec<PathBuf>, PipelineError> {
    save_images(images, path, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_roundtrip_keeps_pixels_and_text() {
        let rgb: Vec<u8> = (0..2 * 3 * 3).map(|i| (i * 13) as u8).collect();
        let bytes = encode_png(3, 2, &rgb, &[("prompt".into(), "東京の夜, a cat".into())]).unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = dec.read_info().unwrap();
        let text = &reader.info().utf8_text;
        assert_eq!(text[0].keyword, "prompt");
        assert_eq!(text[0].get_text().unwrap(), "東京の夜, a cat");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..info.buffer_size()], &rgb[..]);
    }

    #[test]
    fn jpeg_and_webp_carry_the_parameters_in_exif() {
        let img = RgbImage::from_fn(16, 8, |x, y| image::Rgb([x as u8 * 9, y as u8 * 20, 7]));
        let meta = [("sonic:prompt".to_string(), "夜の港, \"quoted\"".to_string())];
        for (format, magic) in [
            (ImageFormat::Jpeg, &b"\xff\xd8"[..]),
            (ImageFormat::WebP, b"RIFF"),
        ] {
            let bytes = encode_image(&img, format, &meta).unwrap();
            assert!(bytes.starts_with(magic), "{format:?}");
            let exif = exif_block(&meta);
            assert!(
                bytes.windows(exif.len()).any(|w| w == exif.as_slice()),
                "{format:?}"
            );
            let back = image::load_from_memory(&bytes).unwrap();
            assert_eq!(back.width(), 16);
        }
        let exif = exif_block(&meta);
        let start = exif.iter().position(|&b| b == b'{').unwrap();
        let end = exif[start..].iter().position(|&b| b == 0).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&exif[start..start + end]).unwrap();
        assert_eq!(json["sonic:prompt"], "夜の港, \"quoted\"");
        assert_eq!(
            ImageFormat::from_path(Path::new("a.JPG")),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(ImageFormat::from_path(Path::new("a.gif")), None);
    }

    #[test]
    fn numbered_paths_for_batches() {
        let p = Path::new("out/x.png");
        assert_eq!(numbered_paths(p, 1), vec![PathBuf::from("out/x.png")]);
        assert_eq!(
            numbered_paths(p, 2),
            vec![PathBuf::from("out/x-0.png"), PathBuf::from("out/x-1.png")]
        );
    }

    #[test]
    fn atomic_write_into_missing_folder_fails_cleanly() {
        let e = write_atomic(Path::new("/nonexistent-dir-sonic/x.png"), b"abc").unwrap_err();
        assert!(e.to_string().contains("x.png"), "{e}");
    }
}

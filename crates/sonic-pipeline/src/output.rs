//! Writing images: PNG files carrying the generation parameters in `tEXt` chunks, written to a
//! temporary file in the target folder and renamed, so no half-written file is ever left.

use crate::error::PipelineError;
use burn::tensor::Tensor;
use std::path::{Path, PathBuf};

/// Converts images `[B, 3, H, W]` in `[0, 1]` to 8-bit RGB buffers (`round(x * 255)`, as
/// diffusers' `numpy_to_pil`).
pub fn to_rgb8(images: &Tensor<4>) -> Result<Vec<(usize, usize, Vec<u8>)>, PipelineError> {
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
    Ok((0..b)
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
            (w, h, rgb)
        })
        .collect())
}

/// Encodes one RGB image as PNG bytes with `metadata` as `tEXt` chunks.
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
            enc.add_text_chunk(k.clone(), v.clone())
                .map_err(|e| e.to_string())?;
        }
        let mut writer = enc.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(rgb).map_err(|e| e.to_string())?;
    }
    Ok(out)
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

/// Saves images `[B, 3, H, W]` in `[0, 1]` as PNGs (see [`numbered_paths`]) with `metadata`;
/// returns the written paths.
pub fn save_pngs(
    images: &Tensor<4>,
    path: &Path,
    metadata: &[(String, String)],
) -> Result<Vec<PathBuf>, PipelineError> {
    let rgbs = to_rgb8(images)?;
    let paths = numbered_paths(path, rgbs.len());
    for ((w, h, rgb), p) in rgbs.iter().zip(&paths) {
        let bytes = encode_png(*w, *h, rgb, metadata).map_err(|message| PipelineError::Output {
            path: p.clone(),
            message,
        })?;
        write_atomic(p, &bytes)?;
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_roundtrip_keeps_pixels_and_text() {
        let rgb: Vec<u8> = (0..2 * 3 * 3).map(|i| (i * 13) as u8).collect();
        let bytes = encode_png(3, 2, &rgb, &[("prompt".into(), "a cat".into())]).unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = dec.read_info().unwrap();
        let text = &reader.info().uncompressed_latin1_text;
        assert_eq!(text[0].keyword, "prompt");
        assert_eq!(text[0].text, "a cat");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..info.buffer_size()], &rgb[..]);
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

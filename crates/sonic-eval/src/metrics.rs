//! The similarity scores of the paper's tables, on embeddings already computed: cosine
//! similarity, CLIP score (torchmetrics' rule), and zero-shot classification by the most
//! similar class prompt.
//!
//! - **CLIP score** of an image and a text: `100 * max(cos(image_embeds, text_embeds), 0)`.
//! - **IIS** (image-image similarity, AudioToken): `cos` of the CLIP image embeddings of the
//!   generated and the ground-truth picture.
//! - **AIS** (audio-image similarity): `cos` of the audio's Wav2CLIP embedding and the
//!   image's CLIP embedding.
//! - **AIC** (audio-image classification accuracy): the image is classified zero-shot over the
//!   dataset's class names (CLIP text embeddings of a prompt per class, highest cosine wins);
//!   correct when the winner is the clip's label.

use crate::error::EvalError;

/// Checks that `a` and `b` are `rows` rows of `dim` finite values each.
fn check_rows(what: &str, a: &[f32], b: &[f32], dim: usize) -> Result<usize, EvalError> {
    if dim == 0 || a.len() != b.len() || !a.len().is_multiple_of(dim) {
        return Err(EvalError::input(
            what,
            format!(
                "embeddings of {} and {} values do not split into rows of {dim}",
                a.len(),
                b.len()
            ),
        ));
    }
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return Err(EvalError::input(what, "non-finite embedding values"));
    }
    Ok(a.len() / dim)
}

fn cos(x: &[f32], y: &[f32]) -> f64 {
    // torch.nn.functional.cosine_similarity: each norm clamped to eps = 1e-8.
    let dot: f64 = x
        .iter()
        .zip(y)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum();
    let n = |v: &[f32]| {
        v.iter()
            .map(|a| f64::from(*a) * f64::from(*a))
            .sum::<f64>()
            .sqrt()
            .max(1e-8)
    };
    dot / (n(x) * n(y))
}

/// Row-wise cosine similarity of two `[rows, dim]` matrices (row-major).
pub fn cosine_rows(a: &[f32], b: &[f32], dim: usize) -> Result<Vec<f64>, EvalError> {
    check_rows("cosine similarity", a, b, dim)?;
    Ok(a.chunks(dim)
        .zip(b.chunks(dim))
        .map(|(x, y)| cos(x, y))
        .collect())
}

/// CLIP score of each (image, text) pair: `100 * max(cos, 0)` (torchmetrics' `CLIPScore`).
pub fn clip_score(
    image_embeds: &[f32],
    text_embeds: &[f32],
    dim: usize,
) -> Result<Vec<f64>, EvalError> {
    Ok(cosine_rows(image_embeds, text_embeds, dim)?
        .into_iter()
        .map(|c| 100.0 * c.max(0.0))
        .collect())
}

/// Zero-shot classification: for each image embedding (`[n, dim]`), the index of the class
/// embedding (`[classes, dim]`) with the highest cosine similarity (the first on ties).
pub fn zero_shot_classes(
    image_embeds: &[f32],
    class_embeds: &[f32],
    dim: usize,
) -> Result<Vec<usize>, EvalError> {
    if dim == 0 || class_embeds.is_empty() || !class_embeds.len().is_multiple_of(dim) {
        return Err(EvalError::input(
            "zero-shot classification",
            format!(
                "{} class values do not split into rows of {dim}",
                class_embeds.len()
            ),
        ));
    }
    if !image_embeds.len().is_multiple_of(dim) {
        return Err(EvalError::input(
            "zero-shot classification",
            format!(
                "{} image values do not split into rows of {dim}",
                image_embeds.len()
            ),
        ));
    }
    if image_embeds
        .iter()
        .chain(class_embeds)
        .any(|v| !v.is_finite())
    {
        return Err(EvalError::input(
            "zero-shot classification",
            "non-finite embedding values",
        ));
    }
    Ok(image_embeds
        .chunks(dim)
        .map(|img| {
            class_embeds
                .chunks(dim)
                .map(|c| cos(img, c))
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |best, (i, s)| {
                    if s > best.1 { (i, s) } else { best }
                })
                .0
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_and_scores() {
        let a = [1.0, 0.0, 0.0, 2.0];
        let b = [2.0, 0.0, 0.0, -1.0];
        let c = cosine_rows(&a, &b, 2).unwrap();
        assert!((c[0] - 1.0).abs() < 1e-12 && (c[1] + 1.0).abs() < 1e-12);
        assert_eq!(clip_score(&a, &b, 2).unwrap(), vec![100.0, 0.0]);
        assert!(cosine_rows(&a, &b[..3], 2).is_err());
        assert!(cosine_rows(&[f32::NAN, 0.0], &[1.0, 0.0], 2).is_err());
    }

    #[test]
    fn zero_shot_picks_the_closest_class() {
        let classes = [1.0, 0.0, 0.0, 1.0, -1.0, 0.0];
        let images = [0.1, 0.9, -3.0, 0.2, 5.0, 0.1];
        assert_eq!(
            zero_shot_classes(&images, &classes, 2).unwrap(),
            vec![1, 2, 0]
        );
        assert!(zero_shot_classes(&images, &[], 2).is_err());
    }
}

//! The CLIP sections of the `eval-tiny` fixture and its variants: `clip_vision` (the image tower
//! with projection: last hidden state, pooled class token, image embeddings),
//! `clip_image_preprocess` (`CLIPImageProcessor` on a picture file), `clip_text` (tokenizer ids,
//! exact, and the text tower's projected embeddings) and `clip_score` (cosines and CLIP scores
//! of given embeddings).

use crate::Result;
use burn::tensor::Device;
use sonic_clip::tokenizer::ClipTokenizer;
use sonic_clip::{
    ClipError, ClipImageProcessor, ClipTextModelWithProjection, ClipVisionModelWithProjection,
};
use sonic_core::fixtures::{CaseResult, Fixture, compare, compare_slices};

/// Default tolerance of the towers' outputs.
pub const CLIP_TOL: f64 = 1e-4;

fn cases<'a>(fixture: &'a Fixture, name: &str) -> &'a [serde_json::Value] {
    fixture
        .section(name)
        .and_then(|s| s.as_array())
        .map_or(&[], Vec::as_slice)
}

/// Runs the `clip_vision` section (a folder with `image_encoder/`).
pub fn run_clip_vision(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let cases = cases(fixture, "clip_vision");
    if cases.is_empty() {
        return Ok(vec![]);
    }
    let model =
        ClipVisionModelWithProjection::from_dir(&fixture.dir.join("image_encoder"), device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, CLIP_TOL);
        let pixels = fixture
            .tensor_of(case, "pixel_values")?
            .to_tensor::<4>(device)?;
        let o = model.forward(pixels)?;
        out.push(CaseResult::new(
            format!("clip_vision.{id}.last_hidden_state"),
            compare(
                &o.last_hidden_state,
                fixture.tensor_of(case, "last_hidden_state")?,
            )?,
            tol,
        ));
        out.push(CaseResult::new(
            format!("clip_vision.{id}.pooled"),
            compare(&o.pooled, fixture.tensor_of(case, "pooled")?)?,
            tol,
        ));
        out.push(CaseResult::new(
            format!("clip_vision.{id}.image_embeds"),
            compare(&o.image_embeds, fixture.tensor_of(case, "image_embeds")?)?,
            tol,
        ));
    }
    Ok(out)
}

/// Runs the `clip_image_preprocess` section (`image_encoder/preprocessor_config.json`; each
/// case names a picture file relative to the fixture folder).
pub fn run_clip_image_preprocess(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let cases = cases(fixture, "clip_image_preprocess");
    if cases.is_empty() {
        return Ok(vec![]);
    }
    let processor =
        ClipImageProcessor::from_file(&fixture.dir.join("image_encoder/preprocessor_config.json"))?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, CLIP_TOL);
        let file = fixture.dir.join(fixture.str_field(case, "image")?);
        let picture = sonic_eval::images::load_picture(&file)?;
        let pixels =
            processor.pixel_values(&[(picture.view(), file.display().to_string())], device)?;
        out.push(CaseResult::new(
            format!("clip_image_preprocess.{id}"),
            compare(&pixels, fixture.tensor_of(case, "pixel_values")?)?,
            tol,
        ));
    }
    Ok(out)
}

/// Runs the `clip_text` section (`tokenizer/` and `text_encoder/`): the ids exactly, the
/// projected text embeddings within the tolerance.
pub fn run_clip_text(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let cases = cases(fixture, "clip_text");
    if cases.is_empty() {
        return Ok(vec![]);
    }
    let tokenizer =
        ClipTokenizer::from_dir(fixture.dir.join("tokenizer")).map_err(ClipError::from)?;
    let model = ClipTextModelWithProjection::from_dir(&fixture.dir.join("text_encoder"), device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, CLIP_TOL);
        let (prompts, ids_cmp) = crate::clip::prompt_ids(fixture, case, &tokenizer, "ids")?;
        out.push(CaseResult::new(format!("clip_text.{id}.ids"), ids_cmp, 0.0));
        let ids = tokenizer
            .encode_batch_tensor(&prompts, device)
            .map_err(ClipError::from)?;
        let embeds = model.forward(ids)?;
        out.push(CaseResult::new(
            format!("clip_text.{id}.text_embeds"),
            compare(&embeds, fixture.tensor_of(case, "text_embeds")?)?,
            tol,
        ));
    }
    Ok(out)
}

/// Runs the `clip_score` section: cosines and CLIP scores of the fixture's own embeddings.
pub fn run_clip_score(fixture: &Fixture, _device: &Device) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    for (i, case) in cases(fixture, "clip_score").iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, 1e-5);
        let image = fixture.tensor_of(case, "image_embeds")?;
        let text = fixture.tensor_of(case, "text_embeds")?;
        let dim = image.shape.last().copied().unwrap_or(0);
        let cosine = sonic_eval::metrics::cosine_rows(&image.data, &text.data, dim)?;
        let score = sonic_eval::metrics::clip_score(&image.data, &text.data, dim)?;
        let as_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<_>>();
        out.push(CaseResult::new(
            format!("clip_score.{id}.cosine"),
            compare_slices(&as_f32(cosine), &fixture.tensor_of(case, "cosine")?.data),
            tol,
        ));
        out.push(CaseResult::new(
            format!("clip_score.{id}.score"),
            compare_slices(&as_f32(score), &fixture.tensor_of(case, "score")?.data),
            tol,
        ));
    }
    Ok(out)
}

//! The `text_encoder` section of the reference fixtures: tokenizer ids (exact) and the text
//! encoder's `last_hidden_state` (<= 1e-4).

use crate::Result;
use burn::tensor::Device;
use sonic_clip::ClipError;
use sonic_clip::text_encoder::ClipTextModel;
use sonic_clip::tokenizer::ClipTokenizer;
use sonic_core::fixtures::{CaseResult, Comparison, Fixture, compare, compare_slices};

/// Tolerance of the text encoder's hidden states.
pub const TEXT_ENCODER_TOL: f64 = 1e-4;

/// Runs every case of the `text_encoder` section of `fixture` (an SD-layout folder with
/// `tokenizer/` and `text_encoder/`).
pub fn run_text_encoder(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let Some(cases) = fixture.section("text_encoder").and_then(|s| s.as_array()) else {
        return Ok(vec![]);
    };
    let tokenizer =
        ClipTokenizer::from_dir(fixture.dir.join("tokenizer")).map_err(ClipError::from)?;
    let model = ClipTextModel::from_dir(&fixture.dir.join("text_encoder"), device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (prompts, ids_cmp) = prompt_ids(fixture, case, &tokenizer, "input_ids")?;
        out.push(CaseResult::new(
            format!("text_encoder.{i}.input_ids"),
            ids_cmp,
            0.0,
        ));
        let ids = tokenizer
            .encode_batch_tensor(&prompts, device)
            .map_err(ClipError::from)?;
        let hidden = model.forward(ids)?;
        let cmp = compare(&hidden, fixture.tensor_of(case, "last_hidden_state")?)?;
        out.push(CaseResult::new(
            format!("text_encoder.{i}.last_hidden_state"),
            cmp,
            TEXT_ENCODER_TOL,
        ));
    }
    Ok(out)
}

/// The case's `prompts`, and our tokenizer's ids for them (`[B, max_length]`) compared with
/// the fixture tensor named by the case's `ids_key` (an infinite error when the shapes differ).
pub fn prompt_ids(
    fixture: &Fixture,
    case: &serde_json::Value,
    tokenizer: &ClipTokenizer,
    ids_key: &str,
) -> Result<(Vec<String>, Comparison)> {
    let prompts: Vec<String> = case
        .get("prompts")
        .and_then(|p| p.as_array())
        .ok_or_else(|| fixture.schema_error("prompts"))?
        .iter()
        .map(|p| {
            p.as_str()
                .map(str::to_string)
                .ok_or_else(|| fixture.schema_error("prompts"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let ref_ids = fixture.tensor_of(case, ids_key)?;
    let tokens = tokenizer.encode_batch(&prompts).map_err(ClipError::from)?;
    let ours: Vec<f32> = tokens
        .iter()
        .flat_map(|t| t.ids_i64().into_iter().map(|v| v as f32))
        .collect();
    let cmp = if ref_ids.shape == [prompts.len(), tokenizer.max_length()] {
        compare_slices(&ours, &ref_ids.data)
    } else {
        Comparison {
            max_abs: f64::INFINITY,
            max_rel: f64::INFINITY,
        }
    };
    Ok((prompts, cmp))
}

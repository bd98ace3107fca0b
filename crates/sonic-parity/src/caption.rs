//! The captioner's sections of the `blip-tiny` fixture and its variants
//! (`tests-data/blip-tiny`, `tests-data/blip-variants/*`, folders that are transformers
//! `BlipForConditionalGeneration` + `BlipProcessor` folders): `blip_vision` (the vision
//! model's image embeddings), `blip_image_preprocess` (`BlipImageProcessorPil` on a picture
//! file) and `blip_logits` (the decoder's logits over the vocabulary for given ids, mask and
//! images) and `blip_generate` (greedy and beam-search captions, ids compared exactly).

use crate::Result;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sonic_caption::{BlipForConditionalGeneration, EarlyStopping, GenerationConfig, processor};
use sonic_core::fixtures::{CaseResult, Comparison, Fixture, compare, compare_slices};

/// Default tolerance of the model outputs.
pub const CAPTION_TOL: f64 = 1e-4;

fn cases<'a>(fixture: &'a Fixture, name: &str) -> &'a [serde_json::Value] {
    fixture
        .section(name)
        .and_then(|s| s.as_array())
        .map_or(&[], Vec::as_slice)
}

/// The captioner of a fixture folder (its `config.json` and weights).
pub fn load_model(fixture: &Fixture, device: &Device) -> Result<BlipForConditionalGeneration> {
    Ok(BlipForConditionalGeneration::from_dir(
        &fixture.dir,
        device,
    )?)
}

/// The case's `key` tensor as integer ids `[B, S]` (`None` when the key is absent or null).
pub fn int_tensor(
    fixture: &Fixture,
    case: &serde_json::Value,
    key: &str,
    device: &Device,
) -> Result<Option<Tensor<2, Int>>> {
    if case.get(key).is_none_or(serde_json::Value::is_null) {
        return Ok(None);
    }
    let t = fixture.tensor_of(case, key)?;
    let [b, s] = t.shape[..] else {
        return Err(fixture.schema_error(key).into());
    };
    let ids: Vec<i64> = t.data.iter().map(|&v| v as i64).collect();
    Ok(Some(Tensor::from_data(
        TensorData::new(ids, [b, s]),
        device,
    )))
}

/// Runs the `blip_vision` section: `pixel_values` -> `last_hidden_state`.
pub fn run_blip_vision(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let cases = cases(fixture, "blip_vision");
    if cases.is_empty() {
        return Ok(vec![]);
    }
    let model = load_model(fixture, device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, CAPTION_TOL);
        let pixels = fixture
            .tensor_of(case, "pixel_values")?
            .to_tensor::<4>(device)?;
        let embeds = model.image_embeds(pixels)?;
        out.push(CaseResult::new(
            format!("blip_vision.{id}.last_hidden_state"),
            compare(&embeds, fixture.tensor_of(case, "last_hidden_state")?)?,
            tol,
        ));
    }
    Ok(out)
}

/// Runs the `blip_image_preprocess` section (the folder's `preprocessor_config.json`, else
/// `processor_config.json`; each case names a picture file relative to the folder).
pub fn run_blip_image_preprocess(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let cases = cases(fixture, "blip_image_preprocess");
    if cases.is_empty() {
        return Ok(vec![]);
    }
    let processor = processor::image_processor_from_dir(&fixture.dir)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, CAPTION_TOL);
        let file = fixture.dir.join(fixture.str_field(case, "image")?);
        let picture = sonic_eval::images::load_picture(&file)?;
        let pixels = processor
            .pixel_values(&[(picture.view(), file.display().to_string())], device)
            .map_err(sonic_caption::CaptionError::from)?;
        out.push(CaseResult::new(
            format!("blip_image_preprocess.{id}"),
            compare(&pixels, fixture.tensor_of(case, "pixel_values")?)?,
            tol,
        ));
    }
    Ok(out)
}

/// Runs the `blip_logits` section: `pixel_values`, `input_ids` (and `attention_mask` when
/// the case has one) -> `logits`.
pub fn run_blip_logits(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let cases = cases(fixture, "blip_logits");
    if cases.is_empty() {
        return Ok(vec![]);
    }
    let model = load_model(fixture, device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, CAPTION_TOL);
        let pixels = fixture
            .tensor_of(case, "pixel_values")?
            .to_tensor::<4>(device)?;
        let ids = int_tensor(fixture, case, "input_ids", device)?
            .ok_or_else(|| fixture.schema_error("input_ids"))?;
        let mask = int_tensor(fixture, case, "attention_mask", device)?;
        let logits = model.logits(ids, mask, model.image_embeds(pixels)?)?;
        out.push(CaseResult::new(
            format!("blip_logits.{id}"),
            compare(&logits, fixture.tensor_of(case, "logits")?)?,
            tol,
        ));
    }
    Ok(out)
}

/// The decoding settings of a `blip_generate` case (its `effective` object).
fn generation_config(fixture: &Fixture, case: &serde_json::Value) -> Result<GenerationConfig> {
    let e = case
        .get("effective")
        .ok_or_else(|| fixture.schema_error("effective"))?;
    let int = |key: &str| {
        e.get(key)
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| fixture.schema_error(&format!("effective.{key}")))
    };
    let float = |key: &str, default: f64| {
        e.get(key)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(default)
    };
    let early_stopping = match e.get("early_stopping") {
        Some(serde_json::Value::Bool(true)) => EarlyStopping::True,
        Some(serde_json::Value::String(s)) if s == "never" => EarlyStopping::Never,
        _ => EarlyStopping::False,
    };
    Ok(GenerationConfig {
        max_length: int("max_length")? as usize,
        min_length: e
            .get("min_length")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0) as usize,
        num_beams: int("num_beams")? as usize,
        repetition_penalty: float("repetition_penalty", 1.0) as f32,
        no_repeat_ngram_size: e
            .get("no_repeat_ngram_size")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0) as usize,
        length_penalty: float("length_penalty", 1.0),
        early_stopping,
        eos_token_ids: vec![int("eos")?],
        pad_token_id: Some(int("pad")?),
    })
}

/// Runs the `blip_generate` section: greedy and beam-search captions (`sequences`, compared
/// exactly: any differing id fails).
pub fn run_blip_generate(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let cases = cases(fixture, "blip_generate");
    if cases.is_empty() {
        return Ok(vec![]);
    }
    let model = load_model(fixture, device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, _) = crate::case_id_and_tol(case, i, 0.0);
        let pixels = fixture
            .tensor_of(case, "pixel_values")?
            .to_tensor::<4>(device)?;
        let prefix: Vec<i64> = match case.get("input_ids") {
            Some(v) if !v.is_null() => {
                let t = fixture.tensor_of(case, "input_ids")?;
                let width = t.shape.last().copied().unwrap_or(0);
                t.data.iter().take(width).map(|&v| v as i64).collect()
            }
            _ => Vec::new(),
        };
        let config = generation_config(fixture, case)?;
        let ours = model.generate(pixels, &prefix, &config)?;
        let reference = fixture.tensor_of(case, "sequences")?;
        let flat: Vec<f32> = ours.iter().flatten().map(|&v| v as f32).collect();
        let same_shape = reference.shape == [ours.len(), ours.first().map_or(0, Vec::len)];
        let cmp = if same_shape {
            compare_slices(&flat, &reference.data)
        } else {
            Comparison {
                max_abs: f64::INFINITY,
                max_rel: f64::INFINITY,
            }
        };
        out.push(CaseResult::new(
            format!("blip_generate.{id}.sequences"),
            cmp,
            0.0,
        ));
    }
    Ok(out)
}

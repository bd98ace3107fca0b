//! The LoRA sections: `unet_lora` (fast-tiny and its variants: the base `unet/` with a LoRA
//! merged) and `text_encoder_lora` (the variants' `text_encoder/` with a LoRA merged). Each
//! case names a LoRA `file` (any layout; `null`: none) and a `scale`; ids are
//! `<section>.<id>`, each within the case's `tol` (default 1e-4).

use crate::Result;
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;
use sonic_clip::text_encoder::ClipTextModel;
use sonic_core::fixtures::{CaseResult, Fixture, compare};
use sonic_core::lora::{LoraComponent, LoraFile};
use sonic_core::weights::LoadOptions;
use sonic_unet::unet_2d_condition::UNet2DConditionModel;

/// Default tolerance of a LoRA case.
pub const LORA_TOL: f64 = 1e-4;

/// `base` with the case's LoRA file merged into `component` at its scale (a copy of `base`
/// when the case has no file).
fn merged<M: Module>(
    base: &M,
    fixture: &Fixture,
    case: &Value,
    component: LoraComponent,
    names: &LoadOptions,
) -> Result<M> {
    let scale = case
        .get("scale")
        .and_then(Value::as_f64)
        .ok_or_else(|| fixture.schema_error("scale"))? as f32;
    Ok(match case.get("file").and_then(Value::as_str) {
        Some(file) => {
            LoraFile::open(&fixture.dir.join(file))?
                .merge_into(base.clone(), component, scale, false, names)?
                .0
        }
        None => base.clone(),
    })
}

/// The `unet_lora` section: `sample` / `timestep` / `encoder_hidden_states` -> `out`.
pub fn run_unet_lora(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let Some(cases) = fixture.section("unet_lora").and_then(Value::as_array) else {
        return Ok(vec![]);
    };
    let base = UNet2DConditionModel::from_dir(&fixture.dir.join("unet"), device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, LORA_TOL);
        let unet = merged(
            &base,
            fixture,
            case,
            LoraComponent::Unet,
            &UNet2DConditionModel::load_options(),
        )?;
        let sample = fixture.tensor_of(case, "sample")?.to_tensor::<4>(device)?;
        let t = case
            .get("timestep")
            .and_then(Value::as_f64)
            .ok_or_else(|| fixture.schema_error("timestep"))?;
        let b = sample.dims()[0];
        let text = fixture
            .tensor_of(case, "encoder_hidden_states")?
            .to_tensor::<3>(device)?;
        let y = unet.forward_with(
            sample,
            &vec![t as f32; b],
            sonic_unet::UNetInputs::new(text),
        )?;
        out.push(CaseResult::new(
            format!("unet_lora.{id}"),
            compare(&y, fixture.tensor_of(case, "out")?)?,
            tol,
        ));
    }
    Ok(out)
}

/// The `text_encoder_lora` section: `input_ids` -> `out` (`last_hidden_state`).
pub fn run_text_encoder_lora(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let Some(cases) = fixture
        .section("text_encoder_lora")
        .and_then(Value::as_array)
    else {
        return Ok(vec![]);
    };
    let base = ClipTextModel::from_dir(&fixture.dir.join("text_encoder"), device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, LORA_TOL);
        let model = merged(
            &base,
            fixture,
            case,
            LoraComponent::TextEncoder,
            &ClipTextModel::load_options(),
        )?;
        let ids = fixture.tensor_of(case, "input_ids")?;
        let [b, s] = ids.shape[..] else {
            return Err(fixture.schema_error("input_ids").into());
        };
        let ids: Vec<i64> = ids.data.iter().map(|&v| v as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, s]), device);
        let hidden = model.forward(ids)?;
        out.push(CaseResult::new(
            format!("text_encoder_lora.{id}"),
            compare(&hidden, fixture.tensor_of(case, "out")?)?,
            tol,
        ));
    }
    Ok(out)
}

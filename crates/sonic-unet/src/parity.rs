//! The `unet` section of the SD reference fixtures: the output and every recorded block
//! intermediate, each <= 1e-4.

use crate::error::UNetError;
use crate::hooks::RecordBlocks;
use crate::unet_2d_condition::UNet2DConditionModel;
use burn::tensor::Device;
use sonic_core::fixtures::{CaseResult, Comparison, Fixture, compare};

/// Tolerance of the UNet output and intermediates.
pub const UNET_TOL: f64 = 1e-4;

/// Runs one plain-UNet case (no adapters): `sample`, `timesteps`, `encoder_hidden_states` ->
/// `out` and `intermediates`; ids are `<prefix>.out` and `<prefix>.<intermediate>`.
pub fn run_plain_case(
    unet: &UNet2DConditionModel,
    fixture: &Fixture,
    case: &serde_json::Value,
    prefix: &str,
    device: &Device,
) -> Result<Vec<CaseResult>, UNetError> {
    let sample = fixture.tensor_of(case, "sample")?.to_tensor::<4>(device)?;
    let timesteps = fixture.tensor_of(case, "timesteps")?.data.clone();
    let text = fixture
        .tensor_of(case, "encoder_hidden_states")?
        .to_tensor::<3>(device)?;
    let mut rec = RecordBlocks::default();
    let out = unet.forward_with(sample, &timesteps, text, None, &mut rec)?;
    let mut results = vec![CaseResult::new(
        format!("{prefix}.out"),
        compare(&out, fixture.tensor_of(case, "out")?)?,
        UNET_TOL,
    )];
    if let Some(inter) = case.get("intermediates").and_then(|v| v.as_object()) {
        for (name, key) in inter {
            let key = key.as_str().ok_or_else(|| fixture.schema_error(name))?;
            let reference = fixture.tensors.get(key)?;
            let cmp = if name == "time_embedding" {
                match &rec.time_embedding {
                    Some(t) => compare(t, reference)?,
                    None => Comparison {
                        max_abs: f64::INFINITY,
                        max_rel: f64::INFINITY,
                    },
                }
            } else {
                match rec.blocks.iter().find(|(n, _)| n == name) {
                    Some((_, t)) => compare(t, reference)?,
                    None => Comparison {
                        max_abs: f64::INFINITY,
                        max_rel: f64::INFINITY,
                    },
                }
            };
            results.push(CaseResult::new(format!("{prefix}.{name}"), cmp, UNET_TOL));
        }
    }
    Ok(results)
}

/// Runs every case of the `unet` section of an SD fixture (a folder with `unet/`).
pub fn run_unet(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>, UNetError> {
    let Some(cases) = fixture.section("unet").and_then(|s| s.as_array()) else {
        return Ok(vec![]);
    };
    let unet = UNet2DConditionModel::from_dir(&fixture.dir.join("unet"), device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        out.extend(run_plain_case(&unet, fixture, case, &format!("unet.{i}"), device)?);
    }
    Ok(out)
}

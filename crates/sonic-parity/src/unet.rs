//! The `unet` section of the SD reference fixtures: the output and every recorded block
//! intermediate, each <= 1e-4.

use crate::Result;
use burn::tensor::Device;
use sonic_core::fixtures::{CaseResult, Comparison, Fixture, compare};
use sonic_unet::adapter::AdapterStrength;
use sonic_unet::hooks::{AdapterTap, RecordBlocks};
use sonic_unet::unet_2d_condition::UNet2DConditionModel;

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
) -> Result<Vec<CaseResult>> {
    let sample = fixture.tensor_of(case, "sample")?.to_tensor::<4>(device)?;
    let timesteps = fixture.tensor_of(case, "timesteps")?.data.clone();
    let text = fixture
        .tensor_of(case, "encoder_hidden_states")?
        .to_tensor::<3>(device)?;
    let mut rec = RecordBlocks::default();
    let tokens = match case.get("audio_tokens").and_then(|v| v.as_str()) {
        Some(key) => Some(fixture.tensors.get(key)?.to_tensor::<3>(device)?),
        None => None,
    };
    let adapter = match (tokens, case.get("f_multiplier").and_then(|v| v.as_f64())) {
        (Some(t), Some(f)) => Some(unet.prepare_adapters(t, AdapterStrength::Global(f as f32))),
        _ => None,
    };
    let out = unet.forward_with(
        sample,
        &timesteps,
        sonic_unet::UNetInputs::new(text)
            .maybe_adapters(adapter.as_ref())
            .hook(&mut rec),
    )?;
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
    if let Some(taps) = case.get("adapter_taps").and_then(|v| v.as_object()) {
        for (block, fields) in taps {
            for (field, tap) in [
                ("adapter_in", AdapterTap::In),
                ("adapter_attn", AdapterTap::Attn),
                ("adapter_out", AdapterTap::Out),
            ] {
                let key = fields
                    .get(field)
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| fixture.schema_error(field))?;
                let reference = fixture.tensors.get(key)?;
                let cmp = match rec
                    .adapter_taps
                    .iter()
                    .find(|(n, t, _)| n == block && *t == tap)
                {
                    Some((_, _, t)) => compare(t, reference)?,
                    None => Comparison {
                        max_abs: f64::INFINITY,
                        max_rel: f64::INFINITY,
                    },
                };
                results.push(CaseResult::new(
                    format!("{prefix}.adapter.{block}.{field}"),
                    cmp,
                    UNET_TOL,
                ));
            }
        }
    }
    Ok(results)
}

/// The SD base folder of a SonicDiffusion fixture: `sd_fixture` in its cases.json or in its
/// `config.json` (relative to the fixture folder); `None` for an SD fixture.
pub fn sd_base(fixture: &Fixture) -> Result<Option<std::path::PathBuf>> {
    if let Some(b) = fixture.cases.get("sd_fixture").and_then(|v| v.as_str()) {
        return Ok(Some(fixture.dir.join(b)));
    }
    let cfg = fixture.dir.join("config.json");
    if cfg.is_file() {
        let v: serde_json::Value = sonic_core::config::read_json(&cfg)?;
        if let Some(b) = v.get("sd_fixture").and_then(|v| v.as_str()) {
            return Ok(Some(fixture.dir.join(b)));
        }
    }
    Ok(None)
}

/// Runs every case of the `unet` section of a fixture: an SD fixture (a folder with `unet/`),
/// or a SonicDiffusion fixture naming its SD base in `sd_fixture` with `adapters.safetensors`
/// beside (cases then carry `audio_tokens`, `f_multiplier` and `adapter_taps`).
pub fn run_unet(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let Some(cases) = fixture.section("unet").and_then(|s| s.as_array()) else {
        return Ok(vec![]);
    };
    let unet = match sd_base(fixture)? {
        Some(base) => {
            let unet = UNet2DConditionModel::from_dir(&base.join("unet"), device)?;
            let adapters = fixture.dir.join("adapters.safetensors");
            unet.with_adapters(&adapters, device)?.0
        }
        None => UNet2DConditionModel::from_dir(&fixture.dir.join("unet"), device)?,
    };
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        out.extend(run_plain_case(
            &unet,
            fixture,
            case,
            &format!("unet.{i}"),
            device,
        )?);
    }
    Ok(out)
}

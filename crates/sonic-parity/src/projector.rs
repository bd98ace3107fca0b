//! The `projector` section of the reference fixtures (`sonic-tiny`, `sonic-projector-full`):
//! the output and every listed intermediate of each case, <= 1e-4.
//!
//! A fixture folder holds the weights at `<dir>/projector.safetensors` and the sizes in
//! `<dir>/config.json` (section `projector`). Each case names its `embeddings`, its `out`
//! and a map of `intermediates` (`emb_projection.<i>`, `block.<i>.attn`, `block.<i>.out`);
//! an optional `mode` (`faithful` / `chained`) overrides the config's block wiring.

use crate::Result;
use burn::tensor::Device;
use sonic_core::fixtures::{CaseResult, Fixture, compare};
use sonic_projector::config::{BlockMode, ProjectorConfig};
use sonic_projector::model::Projector;

/// Tolerance of the projector outputs and intermediates (max |ours - ref| / max |ref|).
pub const PROJECTOR_TOL: f64 = 1e-4;

/// Runs every case of the `projector` section of `fixture` (none when the section is
/// absent): ids `projector.<case>.out` and `projector.<case>.<intermediate>`, where `<case>`
/// is the case's index (or its key when the section is an object).
pub fn run_projector(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let cases: Vec<(String, &serde_json::Value)> = match fixture.section("projector") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, c)| (i.to_string(), c))
            .collect(),
        Some(serde_json::Value::Object(o)) => o.iter().map(|(k, c)| (k.clone(), c)).collect(),
        Some(_) => return Err(fixture.schema_error("projector").into()),
        None => return Ok(vec![]),
    };
    if cases.is_empty() {
        return Ok(vec![]);
    }
    let config = ProjectorConfig::from_file(&fixture.dir.join("config.json"))?;
    let mut projector = Projector::from_file_with_config(
        &fixture.dir.join("projector.safetensors"),
        &config,
        device,
    )?;
    let mut out = Vec::new();
    for (name, case) in cases {
        let mode = match case.get("mode") {
            None => config.mode,
            Some(m) => m
                .as_str()
                .and_then(|s| s.parse::<BlockMode>().ok())
                .ok_or_else(|| crate::ParityError::from(fixture.schema_error("mode")))?,
        };
        projector.set_mode(mode);
        let embeddings = fixture
            .tensor_of(case, "embeddings")?
            .to_tensor::<2>(device)?;
        let trace = projector.forward_with_intermediates(embeddings)?;
        out.push(CaseResult::new(
            format!("projector.{name}.out"),
            compare(&trace.out, fixture.tensor_of(case, "out")?)?,
            PROJECTOR_TOL,
        ));
        if let Some(inter) = case.get("intermediates") {
            let inter = inter
                .as_object()
                .ok_or_else(|| crate::ParityError::from(fixture.schema_error("intermediates")))?;
            for (key, tensor_name) in inter {
                let reference = fixture.tensors.get(
                    tensor_name
                        .as_str()
                        .ok_or_else(|| crate::ParityError::from(fixture.schema_error(key)))?,
                )?;
                let ours = trace
                    .get(key)
                    .ok_or_else(|| crate::ParityError::from(fixture.schema_error(key)))?;
                out.push(CaseResult::new(
                    format!("projector.{name}.{key}"),
                    compare(ours, reference)?,
                    PROJECTOR_TOL,
                ));
            }
        }
    }
    projector.set_mode(config.mode);
    Ok(out)
}

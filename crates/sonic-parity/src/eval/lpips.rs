//! The `lpips` section (tests-data/eval-metrics/lpips, made by tools/fixtures/eval_lpips.py):
//! LPIPS distances of image pairs against the `lpips` PyPI package (0.1.4), for each trunk.
//!
//! Each case names its trunk (`net`), the formula spec of its weights (`formula`, rebuilt
//! into a temporary safetensors file and read through [`Lpips::from_file`], so the package's
//! key names are checked too), whether the images are in `[0, 1]` (`unit`) and the smallest
//! image side the trunk accepts (`min_size`). Results per case: `distance` `[B]`, `layers`
//! `[L, B]` (each tap's term), `min_size` (exact) and, where the case has identical pairs
//! (`same`), `identical` (their distance must be exactly 0).

use crate::{ParityError, Result};
use burn::tensor::{Device, Tensor};
use sonic_core::fixtures::{CaseResult, Comparison, Fixture, compare, compare_slices, to_host};
use sonic_core::formula::FormulaSpec;
use sonic_eval::lpips::{Lpips, LpipsNet};
use std::collections::BTreeMap;
use std::path::Path;

/// Tolerance of the distances and their per-layer terms.
pub const LPIPS_TOL: f64 = 1e-4;

/// Builds the model of a formula spec: the spec is written to a temporary safetensors file
/// and loaded through the normal loader.
fn model_of(spec_path: &Path, net: LpipsNet, device: &Device) -> Result<Lpips> {
    let spec = FormulaSpec::from_file(spec_path)?;
    let tmp = std::env::temp_dir().join(format!(
        "sonic-parity-lpips-{}-{}-{}.safetensors",
        std::process::id(),
        net,
        spec.seed
    ));
    spec.write_safetensors(&tmp)?;
    let model = Lpips::from_file(&tmp, net, device);
    // A leftover temporary file is harmless; the load result is what matters.
    let _ = std::fs::remove_file(&tmp);
    Ok(model?)
}

/// Runs every case of the `lpips` section of `fixture`.
pub fn run_lpips(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let Some(cases) = fixture.section("lpips").and_then(|s| s.as_array()) else {
        return Ok(vec![]);
    };
    let mut models: BTreeMap<(String, &'static str), Lpips> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, LPIPS_TOL);
        let net = LpipsNet::parse(fixture.str_field(case, "net")?)?;
        let spec = fixture.str_field(case, "formula")?.to_string();
        let key = (spec.clone(), net.name());
        if !models.contains_key(&key) {
            let model = model_of(&fixture.dir.join(&spec), net, device)?;
            models.insert(key.clone(), model);
        }
        let model = models
            .get(&key)
            .ok_or_else(|| ParityError::fixture(&id, "model cache"))?;
        let unit = case
            .get("unit")
            .and_then(serde_json::Value::as_bool)
            .ok_or_else(|| fixture.schema_error("unit"))?;

        let min = fixture.f64_field(case, "min_size")? as f32;
        out.push(CaseResult::new(
            format!("lpips.{id}.min_size"),
            compare_slices(&[model.min_size() as f32], &[min]),
            0.0,
        ));

        let a = fixture.tensor_of(case, "a")?.to_tensor::<4>(device)?;
        let b = fixture.tensor_of(case, "b")?.to_tensor::<4>(device)?;
        let d = if unit {
            model.distance_layers_unit(a, b)?
        } else {
            model.distance_layers(a, b)?
        };
        out.push(CaseResult::new(
            format!("lpips.{id}.distance"),
            compare(&d.total, fixture.tensor_of(case, "distance")?)?,
            tol,
        ));
        let layers = Tensor::stack::<2>(d.layers, 0);
        out.push(CaseResult::new(
            format!("lpips.{id}.layers"),
            compare(&layers, fixture.tensor_of(case, "layers")?)?,
            tol,
        ));

        let same = &fixture.tensor_of(case, "same")?.data;
        if same.iter().any(|&s| s > 0.0) {
            let ours = to_host(&d.total)?;
            let worst = ours
                .iter()
                .zip(same)
                .filter(|&(_, &s)| s > 0.0)
                .fold(0f64, |m, (&v, _)| m.max(f64::from(v).abs()));
            out.push(CaseResult::new(
                format!("lpips.{id}.identical"),
                Comparison {
                    max_abs: worst,
                    max_rel: worst,
                },
                0.0,
            ));
        }
    }
    Ok(out)
}

//! The `inception` and `fid` sections (tests-data/eval-metrics/fid, made by
//! tools/fixtures/eval_fid.py) against the `pytorch-fid` PyPI package (0.3.0).
//!
//! `inception`: pytorch-fid's InceptionV3 with formula weights (`inception/formula.json`,
//! rebuilt into a temporary safetensors file and read through
//! [`FidInceptionV3::from_file`], so the checkpoint's key names are checked too). Each case
//! gives PNG files (`images`, decoded as PIL's `convert("RGB")` + `ToTensor`) or a tensor
//! (`input`), and the features of `dims` (`get_activations`).
//!
//! `fid`: the statistics and Frechet distance of two feature sets (`features_a`,
//! `features_b`) against pytorch-fid's `calculate_frechet_distance` (`fid`), relative or
//! absolute (`compare`); where given, the statistics of set a (`mu_a`, `sigma_a`) within
//! `stats_tol`.

use crate::{ParityError, Result};
use burn::tensor::Device;
use sonic_core::fixtures::{CaseResult, Comparison, Fixture, compare, compare_slices};
use sonic_core::formula::FormulaSpec;
use sonic_eval::fid::{FeatureStats, frechet_distance};
use sonic_eval::images::{load_picture, pictures_to_tensor};
use sonic_eval::inception::{FidBlock, FidInceptionV3};

/// Tolerance of the Inception features.
pub const FEATURE_TOL: f64 = 1e-4;
/// Tolerance of the FID values (relative).
pub const FID_TOL: f64 = 1e-3;

/// The model of the fixture's formula spec: the spec is written to a temporary safetensors
/// file and loaded through the normal loader.
fn model_of(fixture: &Fixture, device: &Device) -> Result<FidInceptionV3> {
    let spec = FormulaSpec::from_file(&fixture.dir.join("inception").join("formula.json"))?;
    let tmp = std::env::temp_dir().join(format!(
        "sonic-parity-fid-inception-{}-{}.safetensors",
        std::process::id(),
        spec.seed
    ));
    spec.write_safetensors(&tmp)?;
    let model = FidInceptionV3::from_file(&tmp, device);
    // A leftover temporary file is harmless; the load result is what matters.
    let _ = std::fs::remove_file(&tmp);
    Ok(model?)
}

/// Runs every case of the `inception` section of `fixture`.
pub fn run_inception(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let Some(cases) = fixture.section("inception").and_then(|s| s.as_array()) else {
        return Ok(vec![]);
    };
    let model = model_of(fixture, device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, FEATURE_TOL);
        let dims = fixture.f64_field(case, "dims")? as usize;
        let block = FidBlock::from_dims(dims)
            .ok_or_else(|| ParityError::fixture(&id, format!("no block of {dims} dims")))?;
        let x = match case.get("images").and_then(serde_json::Value::as_array) {
            Some(files) => {
                let images = files
                    .iter()
                    .map(|f| {
                        let f = f.as_str().ok_or_else(|| fixture.schema_error("images"))?;
                        Ok(load_picture(&fixture.dir.join(f))?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                pictures_to_tensor(&images, device)?
            }
            None => fixture.tensor_of(case, "input")?.to_tensor::<4>(device)?,
        };
        let features = model.features(x, block)?;
        out.push(CaseResult::new(
            format!("inception.{id}.features"),
            compare(&features, fixture.tensor_of(case, "features")?)?,
            tol,
        ));
    }
    Ok(out)
}

/// The statistics of a reference feature tensor `[N, d]`.
fn stats_of(fixture: &Fixture, case: &serde_json::Value, key: &str) -> Result<FeatureStats> {
    let t = fixture.tensor_of(case, key)?;
    let &[n, d] = t.shape.as_slice() else {
        return Err(fixture.schema_error(key).into());
    };
    Ok(FeatureStats::from_features(&t.data, n, d)?)
}

/// Runs every case of the `fid` section of `fixture`.
pub fn run_fid(fixture: &Fixture, _device: &Device) -> Result<Vec<CaseResult>> {
    let Some(cases) = fixture.section("fid").and_then(|s| s.as_array()) else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, FID_TOL);
        let a = stats_of(fixture, case, "features_a")?;
        let b = stats_of(fixture, case, "features_b")?;
        let ours = frechet_distance(&a, &b)?;
        let reference = fixture.f64_field(case, "fid")?;
        let max_abs = (ours - reference).abs();
        let max_rel = match fixture.str_field(case, "compare")? {
            "absolute" => max_abs,
            "relative" => max_abs / reference.abs(),
            other => {
                return Err(ParityError::fixture(
                    &id,
                    format!("unknown comparison `{other}`"),
                ));
            }
        };
        out.push(CaseResult::new(
            format!("fid.{id}.fid"),
            Comparison {
                max_abs,
                // NaN (a 0 reference compared relatively) must fail.
                max_rel: if max_rel.is_nan() {
                    f64::INFINITY
                } else {
                    max_rel
                },
            },
            tol,
        ));
        if case.get("mu_a").is_some() {
            let stats_tol = fixture.f64_field(case, "stats_tol")?;
            let narrow = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
            for (key, ours) in [("mu_a", &a.mean), ("sigma_a", &a.cov)] {
                out.push(CaseResult::new(
                    format!("fid.{id}.{key}"),
                    compare_slices(&narrow(ours), &fixture.tensor_of(case, key)?.data),
                    stats_tol,
                ));
            }
        }
    }
    Ok(out)
}

//! The `schedulers` and `ddpm_training` sections: the reference fixtures' scheduler cases.
//!
//! A `schedulers` case (see the fixtures' `cases.json`) holds a diffusers `class` and
//! `config`, `num_inference_steps`, the expected `timesteps` and `init_noise_sigma`, a starting
//! latent `x_start` and per step the tensors `scaled_input`, `model_output` and `prev_sample`;
//! LCM cases add per step the `noise` the step drew (absent on the last) and its `denoised`
//! estimate, and are replayed with that noise. [`run_scheduler_case`] replays a case: our own sample is carried from step to step (so errors
//! accumulate as they would in a pipeline), and every tensor is compared with
//! [`sonic_core::fixtures::compare`].
//!
//! Result ids are `<case>.timesteps`, `<case>.init_noise_sigma`,
//! `<case>.<step>.scaled_input`, `<case>.<step>.prev_sample` (and LCM's
//! `<case>.<step>.denoised`), where `<case>` is the case's
//! `name`, or its class when it has none.

use crate::{ParityError, Result};
use burn::tensor::{Device, Tensor};
use serde_json::Value;
use sonic_core::fixtures::{CaseResult, Comparison, Fixture, TensorFile, compare, compare_slices};
use sonic_schedulers::{
    DdpmSchedule, LcmScheduler, Scheduler, SchedulerKind, scheduler_from_config,
};

fn fixture_err(case: &str, message: impl Into<String>) -> ParityError {
    ParityError::fixture(case, message)
}

fn get<'a>(case: &'a Value, name: &str, key: &str) -> Result<&'a Value> {
    case.get(key)
        .ok_or_else(|| fixture_err(name, format!("missing field `{key}`")))
}

fn get_str<'a>(case: &'a Value, name: &str, key: &str) -> Result<&'a str> {
    get(case, name, key)?
        .as_str()
        .ok_or_else(|| fixture_err(name, format!("field `{key}` is not a string")))
}

fn get_f64(case: &Value, name: &str, key: &str) -> Result<f64> {
    sonic_schedulers::json::lenient_f64(get(case, name, key)?)
        .ok_or_else(|| fixture_err(name, format!("field `{key}` is not a number")))
}

/// The id prefix of a case: its `name`, else its `class`.
pub fn case_name(case: &Value) -> String {
    case.get("name")
        .and_then(Value::as_str)
        .or_else(|| case.get("class").and_then(Value::as_str))
        .unwrap_or("scheduler")
        .to_string()
}

/// Compares two float lists as float32 values (length mismatch: infinite error).
fn compare_f64s(ours: &[f64], reference: &[f64]) -> Comparison {
    let a: Vec<f32> = ours.iter().map(|&x| x as f32).collect();
    let b: Vec<f32> = reference.iter().map(|&x| x as f32).collect();
    compare_slices(&a, &b)
}

/// Replays one `schedulers` case on `device` and compares every tensor with the reference.
///
/// Errors only when the case itself is malformed or the scheduler cannot be built; numeric
/// disagreement shows in the returned comparisons (the caller applies its tolerance).
pub fn run_scheduler_case(
    case: &Value,
    tensors: &TensorFile,
    device: &Device,
) -> Result<Vec<(String, Comparison)>> {
    let name = case_name(case);
    let class = get_str(case, &name, "class")?;
    let config = get(case, &name, "config")?;
    let n = get(case, &name, "num_inference_steps")?
        .as_u64()
        .ok_or_else(|| fixture_err(&name, "`num_inference_steps` is not an integer"))?
        as usize;
    let ref_timesteps: Vec<f64> = get(case, &name, "timesteps")?
        .as_array()
        .ok_or_else(|| fixture_err(&name, "`timesteps` is not a list"))?
        .iter()
        .map(|v| {
            v.as_f64()
                .ok_or_else(|| fixture_err(&name, "`timesteps` holds a non-number"))
        })
        .collect::<Result<_>>()?;
    let ref_sigma = get_f64(case, &name, "init_noise_sigma")?;
    let steps = get(case, &name, "steps")?
        .as_array()
        .ok_or_else(|| fixture_err(&name, "`steps` is not a list"))?;

    let mut scheduler: Box<dyn Scheduler> = scheduler_from_config(class, config)?;
    scheduler.set_timesteps(n)?;
    // LCM draws noise in its steps: the recorded noise is given to it instead.
    let lcm = if scheduler.kind() == SchedulerKind::Lcm {
        let mut lcm = LcmScheduler::from_json(config)?;
        lcm.set_timesteps(n)?;
        Some(lcm)
    } else {
        None
    };
    let mut out = Vec::with_capacity(2 + 2 * steps.len());
    out.push((
        format!("{name}.timesteps"),
        compare_f64s(scheduler.timesteps(), &ref_timesteps),
    ));
    out.push((
        format!("{name}.init_noise_sigma"),
        compare_f64s(&[scheduler.init_noise_sigma()], &[ref_sigma]),
    ));
    if steps.len() > scheduler.timesteps().len() {
        return Err(fixture_err(
            &name,
            format!(
                "{} steps recorded but our schedule has {} timesteps",
                steps.len(),
                scheduler.timesteps().len()
            ),
        ));
    }

    let mut x: Tensor<4> = tensors.tensor(get_str(case, &name, "x_start")?, device)?;
    for (i, step) in steps.iter().enumerate() {
        let scaled = scheduler.scale_model_input(x.clone(), i)?;
        let ref_scaled = tensors.get(get_str(step, &name, "scaled_input")?)?;
        out.push((
            format!("{name}.{i}.scaled_input"),
            compare(&scaled, ref_scaled)?,
        ));
        let model_output: Tensor<4> =
            tensors.tensor(get_str(step, &name, "model_output")?, device)?;
        x = match &lcm {
            Some(lcm) => {
                let noise = match step.get("noise") {
                    Some(_) => Some(tensors.tensor(get_str(step, &name, "noise")?, device)?),
                    None => None,
                };
                let o = lcm.step_with_noise(model_output, i, x, noise)?;
                let ref_denoised = tensors.get(get_str(step, &name, "denoised")?)?;
                out.push((
                    format!("{name}.{i}.denoised"),
                    compare(&o.denoised, ref_denoised)?,
                ));
                o.prev_sample
            }
            None => scheduler.step(model_output, i, x)?,
        };
        let ref_prev = tensors.get(get_str(step, &name, "prev_sample")?)?;
        out.push((format!("{name}.{i}.prev_sample"), compare(&x, ref_prev)?));
    }
    Ok(out)
}

/// Checks a `ddpm_training` section: `{config, clean, noise, timesteps, noisy, velocity,
/// alphas_cumprod}` (tensor keys). Ids: `ddpm.alphas_cumprod`, `ddpm.noisy`, `ddpm.velocity`.
pub fn run_ddpm_case(
    section: &Value,
    tensors: &TensorFile,
    device: &Device,
) -> Result<Vec<(String, Comparison)>> {
    let name = "ddpm";
    let schedule = DdpmSchedule::from_json(get(section, name, "config")?)?;
    let mut out = Vec::with_capacity(3);

    let ref_ac = tensors.get(get_str(section, name, "alphas_cumprod")?)?;
    let ours_ac: Vec<f32> = schedule
        .alphas_cumprod()
        .iter()
        .map(|&a| a as f32)
        .collect();
    out.push((
        "ddpm.alphas_cumprod".to_string(),
        compare_slices(&ours_ac, &ref_ac.data),
    ));

    let clean: Tensor<4> = tensors.tensor(get_str(section, name, "clean")?, device)?;
    let noise: Tensor<4> = tensors.tensor(get_str(section, name, "noise")?, device)?;
    let ts_ref = tensors.get(get_str(section, name, "timesteps")?)?;
    let timesteps: Vec<usize> = ts_ref
        .data
        .iter()
        .map(|&t| {
            if t >= 0.0 && t.fract() == 0.0 {
                Ok(t as usize)
            } else {
                Err(fixture_err(
                    name,
                    format!("timestep {t} is not a non-negative integer"),
                ))
            }
        })
        .collect::<Result<_>>()?;

    let noisy = schedule.add_noise(clean.clone(), noise.clone(), &timesteps)?;
    let ref_noisy = tensors.get(get_str(section, name, "noisy")?)?;
    out.push(("ddpm.noisy".to_string(), compare(&noisy, ref_noisy)?));

    let velocity = schedule.get_velocity(clean, noise, &timesteps)?;
    let ref_velocity = tensors.get(get_str(section, name, "velocity")?)?;
    out.push((
        "ddpm.velocity".to_string(),
        compare(&velocity, ref_velocity)?,
    ));
    Ok(out)
}

/// Runs every scheduler case of one fixture's `reference` folder (`cases.json` +
/// `tensors.safetensors`): each entry of its `schedulers` list and, when present, its
/// `ddpm_training` section. Sections a fixture lacks are skipped.
pub fn run_fixture_dir(
    reference_dir: &std::path::Path,
    device: &Device,
) -> Result<Vec<(String, Comparison)>> {
    let cases = sonic_schedulers::json::read_python_json(&reference_dir.join("cases.json"))?;
    let tensors = TensorFile::open(&reference_dir.join("tensors.safetensors"))?;
    let mut out = Vec::new();
    if let Some(list) = cases.get("schedulers").and_then(Value::as_array) {
        for case in list {
            out.extend(run_scheduler_case(case, &tensors, device)?);
        }
    }
    if let Some(section) = cases.get("ddpm_training") {
        out.extend(run_ddpm_case(section, &tensors, device)?);
    }
    Ok(out)
}

/// Tolerance of every scheduler step.
pub const SCHEDULER_TOL: f64 = 1e-4;
/// Tolerance of DDPM add_noise / velocity.
pub const DDPM_TOL: f64 = 1e-5;

/// The `schedulers` section: every case of the list, ids `schedulers.<case>.<...>`, each
/// <= [`SCHEDULER_TOL`].
pub fn run_schedulers(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let Some(section) = fixture.section("schedulers") else {
        return Ok(vec![]);
    };
    let cases = section
        .as_array()
        .ok_or_else(|| fixture_err("schedulers", "`schedulers` is not a list"))?;
    let mut out = Vec::new();
    for case in cases {
        for (id, cmp) in run_scheduler_case(case, &fixture.tensors, device)? {
            out.push(CaseResult::new(
                format!("schedulers.{id}"),
                cmp,
                SCHEDULER_TOL,
            ));
        }
    }
    Ok(out)
}

/// The `ddpm_training` section: ids `ddpm_training.ddpm.<...>`, each <= [`DDPM_TOL`].
pub fn run_ddpm_training(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let Some(section) = fixture.section("ddpm_training") else {
        return Ok(vec![]);
    };
    Ok(run_ddpm_case(section, &fixture.tensors, device)?
        .into_iter()
        .map(|(id, cmp)| CaseResult::new(format!("ddpm_training.{id}"), cmp, DDPM_TOL))
        .collect())
}

//! Parity with diffusers on every scheduler case of the reference fixtures:
//! `schedulers-sd` (SD 1.x / 2.x configs, every spacing, Karras sigmas, PNDM) and the
//! `schedulers` + `ddpm_training` sections of `sd15-tiny` and `sd21-tiny`.

use serde_json::Value;
use sonic_core::fixtures::{Comparison, TensorFile, fixtures_root};
use sonic_parity::schedulers::{case_name, run_ddpm_case, run_scheduler_case};
use sonic_schedulers::{parse_python_json, scheduler_from_config};
use std::path::{Path, PathBuf};

/// max |ours - ref| / max |ref| allowed per scheduler step.
const STEP_TOL: f64 = 1e-4;
/// Allowed for add_noise / get_velocity.
const DDPM_TOL: f64 = 1e-5;

fn fixture_dir(name: &str) -> PathBuf {
    let root = fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("the reference fixtures (../shared/fixtures or $SONIC_FIXTURES) must exist");
    root.join(name).join("reference")
}

fn load(name: &str) -> (Value, TensorFile) {
    let dir = fixture_dir(name);
    let text = std::fs::read_to_string(dir.join("cases.json")).expect("cases.json is readable");
    let cases = parse_python_json(&text, "cases.json").expect("cases.json parses");
    let tensors = TensorFile::open(&dir.join("tensors.safetensors")).expect("tensors load");
    (cases, tensors)
}

fn device() -> burn::tensor::Device {
    sonic_core::device::default_device().expect("a backend is compiled in")
}

/// Checks the timestep list exactly (as float32 values; fractional Karras timesteps within a
/// few float32 ulps), and `init_noise_sigma`.
fn check_timesteps(case: &Value) -> Result<(), String> {
    let name = case_name(case);
    let mut s = scheduler_from_config(case["class"].as_str().unwrap(), &case["config"])
        .map_err(|e| format!("{name}: {e}"))?;
    s.set_timesteps(case["num_inference_steps"].as_u64().unwrap() as usize)
        .map_err(|e| format!("{name}: {e}"))?;
    let reference: Vec<f64> = case["timesteps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let ours = s.timesteps();
    if ours.len() != reference.len() {
        return Err(format!("{name}: timesteps {ours:?} != {reference:?}"));
    }
    for (i, (&a, &b)) in ours.iter().zip(&reference).enumerate() {
        let exact = (a as f32) == (b as f32);
        let fractional = b.fract() != 0.0 || a.fract() != 0.0;
        // Karras timesteps are fractional and pass through float64 `pow` / `log`, whose last
        // bit may differ between numpy's SIMD builds and libm: allow a few float32 ulps there.
        let ulps = 4.0 * f32::EPSILON as f64 * b.abs().max(1.0);
        if !(exact || fractional && (a - b).abs() <= ulps) {
            return Err(format!("{name}: timestep {i}: ours {a} != reference {b}"));
        }
    }
    let sigma_ref = case["init_noise_sigma"].as_f64().unwrap();
    if s.init_noise_sigma() as f32 != sigma_ref as f32 {
        return Err(format!(
            "{name}: init_noise_sigma {} != {sigma_ref}",
            s.init_noise_sigma()
        ));
    }
    Ok(())
}

/// Runs every case of `cases`, returning failures and printing the worst error per case.
fn run_cases(label: &str, cases: &[Value], tensors: &TensorFile) -> Vec<String> {
    let device = device();
    let mut failures = Vec::new();
    for case in cases {
        let name = case_name(case);
        if let Err(e) = check_timesteps(case) {
            failures.push(e);
        }
        let results = match run_scheduler_case(case, tensors, &device) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{label}/{name}: {e}"));
                continue;
            }
        };
        let n_steps = case["steps"].as_array().map_or(0, Vec::len);
        assert!(n_steps > 0, "{name} has steps");
        assert_eq!(
            results.len(),
            2 + 2 * n_steps,
            "{name}: every step compared"
        );
        let mut worst = Comparison::EXACT;
        let mut worst_id = String::new();
        for (id, c) in &results {
            if id.ends_with(".timesteps") || id.ends_with(".init_noise_sigma") {
                continue; // checked exactly above
            }
            if c.max_rel.is_nan() || c.max_rel > STEP_TOL {
                failures.push(format!(
                    "{label}/{id}: max_rel {:.3e} (max_abs {:.3e})",
                    c.max_rel, c.max_abs
                ));
            }
            if c.max_rel >= worst.max_rel {
                worst_id = id.clone();
            }
            worst = worst.worst(*c);
        }
        eprintln!(
            "{label}/{name}: {n_steps} steps, worst max_rel {:.3e} at {worst_id}",
            worst.max_rel
        );
    }
    failures
}

#[test]
fn schedulers_sd_every_case_matches_diffusers() {
    let (cases, tensors) = load("schedulers-sd");
    let list = cases["schedulers"].as_array().expect("a schedulers list");
    assert!(list.len() >= 13, "all schedulers-sd cases are present");
    let failures = run_cases("schedulers-sd", list, &tensors);
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

fn tiny_model_schedulers(model: &str) {
    let (cases, tensors) = load(model);
    let list = cases["schedulers"].as_array().expect("a schedulers list");
    assert_eq!(
        list.len(),
        4,
        "{model}: DDIM, Euler, DPM++ and DDIM-inverse cases"
    );
    let failures = run_cases(model, list, &tensors);
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

#[test]
fn sd15_tiny_schedulers_match_diffusers() {
    tiny_model_schedulers("sd15-tiny");
}

#[test]
fn sd21_tiny_schedulers_match_diffusers() {
    tiny_model_schedulers("sd21-tiny");
}

fn tiny_model_ddpm(model: &str) {
    let (cases, tensors) = load(model);
    let results =
        run_ddpm_case(&cases["ddpm_training"], &tensors, &device()).expect("ddpm case runs");
    let ids: Vec<&str> = results.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["ddpm.alphas_cumprod", "ddpm.noisy", "ddpm.velocity"]);
    for (id, c) in &results {
        eprintln!(
            "{model}/{id}: max_rel {:.3e} max_abs {:.3e}",
            c.max_rel, c.max_abs
        );
        if id == "ddpm.alphas_cumprod" {
            // The float32 table is reproduced bit for bit.
            assert_eq!(c.max_abs, 0.0, "{model}/{id}: max_abs {:.3e}", c.max_abs);
        } else {
            assert!(
                c.max_rel <= DDPM_TOL,
                "{model}/{id}: max_rel {:.3e}",
                c.max_rel
            );
        }
    }
}

#[test]
fn sd15_tiny_ddpm_training_matches_diffusers() {
    tiny_model_ddpm("sd15-tiny");
}

#[test]
fn sd21_tiny_ddpm_training_matches_diffusers() {
    tiny_model_ddpm("sd21-tiny");
}

/// The tiny models' own `scheduler_config.json` (saved by diffusers) builds every class.
#[test]
fn model_scheduler_configs_build_every_class() {
    for model in ["sd15-tiny", "sd21-tiny"] {
        let path = fixture_dir(model)
            .parent()
            .unwrap()
            .join("scheduler")
            .join("scheduler_config.json");
        let config = sonic_schedulers::read_python_json(&path).expect("config parses");
        let mut s = sonic_schedulers::scheduler_from_model_config(&config).expect("builds");
        s.set_timesteps(50).unwrap();
        assert_eq!(
            s.timesteps()[0],
            981.0,
            "{model}: SD leading spacing with offset 1"
        );
        for name in sonic_schedulers::SCHEDULER_NAMES {
            let mut s = sonic_schedulers::scheduler_by_name(name, &config)
                .unwrap_or_else(|e| panic!("{model}/{name}: {e}"));
            s.set_timesteps(20).unwrap();
            assert!(!s.timesteps().is_empty());
        }
    }
}

/// The CLI-facing runner covers every case of a fixture folder.
#[test]
fn fixture_dir_runner_covers_every_case() {
    let dir = fixture_dir("sd15-tiny");
    let results = sonic_parity::schedulers::run_fixture_dir(&dir, &device()).expect("runs");
    // 4 loops (10 + 10 + 12 + 10 steps, 2 tensors each, plus timesteps and init_noise_sigma)
    // and the 3 ddpm comparisons.
    assert_eq!(results.len(), 2 * 42 + 4 * 2 + 3);
    assert!(
        results
            .iter()
            .any(|(id, _)| id == "DPMSolverMultistepScheduler.11.prev_sample")
    );
    let worst = results
        .iter()
        .filter(|(id, _)| !id.ends_with(".timesteps"))
        .map(|(_, c)| c.max_rel)
        .fold(0.0f64, f64::max);
    assert!(worst <= STEP_TOL, "worst {worst:.3e}");
}

//! `sonic parity DIR`: runs every section of a fixture folder's `reference/cases.json`.

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use sonic_core::fixtures::{CaseResult, Fixture};
use std::path::Path;

/// Top-level keys of cases.json that describe the fixture rather than hold cases.
const METADATA_KEYS: &[&str] = &[
    "variant",
    "dtype",
    "versions",
    "tensors",
    "unet_adapter_effect_maxabs",
];

/// Counts of a parity run.
pub struct Summary {
    pub ok: usize,
    pub failed: usize,
    pub skipped: usize,
    pub worst: f64,
}

/// Runs one section; `None` when the section is not implemented yet.
fn run_section(
    fixture: &Fixture,
    section: &str,
    device: &Device,
) -> Option<Result<Vec<CaseResult>>> {
    if let Some(r) = sonic_audio::parity::run_section(section, fixture, device) {
        return Some(r.map_err(Into::into));
    }
    let result = match section {
        "text_encoder" => sonic_clip::parity::run_text_encoder(fixture, device).map_err(Into::into),
        "vae" => sonic_vae::parity::run_vae(fixture, device).map_err(Into::into),
        "unet" => sonic_unet::parity::run_unet(fixture, device).map_err(Into::into),
        "projector" => sonic_projector::parity::run_projector(fixture, device).map_err(Into::into),
        "pipeline" => sonic_pipeline::parity::run_pipeline(fixture, device).map_err(Into::into),
        "schedulers" => run_schedulers(fixture, device),
        "ddpm_training" => run_ddpm(fixture, device),
        _ => return None,
    };
    Some(result)
}

/// Tolerance of every scheduler step.
const SCHEDULER_TOL: f64 = 1e-4;
/// Tolerance of DDPM add_noise / velocity.
const DDPM_TOL: f64 = 1e-5;

fn run_schedulers(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let cases = fixture
        .section("schedulers")
        .and_then(|s| s.as_array())
        .context("`schedulers` is not a list")?;
    let mut out = Vec::new();
    for case in cases {
        for (id, cmp) in
            sonic_schedulers::parity::run_scheduler_case(case, &fixture.tensors, device)?
        {
            out.push(CaseResult::new(
                format!("schedulers.{id}"),
                cmp,
                SCHEDULER_TOL,
            ));
        }
    }
    Ok(out)
}

fn run_ddpm(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let section = fixture
        .section("ddpm_training")
        .context("no ddpm_training section")?;
    Ok(
        sonic_schedulers::parity::run_ddpm_case(section, &fixture.tensors, device)?
            .into_iter()
            .map(|(id, cmp)| CaseResult::new(format!("ddpm_training.{id}"), cmp, DDPM_TOL))
            .collect(),
    )
}

fn fmt(x: f64) -> String {
    format!("{x:.3e}")
}

/// Runs the fixture in `dir`, printing one line per case and a summary line.
pub fn run(dir: &Path, only: &[String], device: &Device) -> Result<Summary> {
    let fixture =
        Fixture::open(dir).with_context(|| format!("opening fixture {}", dir.display()))?;
    let Some(obj) = fixture.cases.as_object() else {
        bail!(
            "{}/reference/cases.json is not a JSON object",
            dir.display()
        );
    };
    let sections: Vec<String> = obj
        .keys()
        .filter(|k| !k.starts_with('_') && !METADATA_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    for s in only {
        if !sections.contains(s) {
            bail!(
                "section `{s}` is not in {}/reference/cases.json (it has: {})",
                dir.display(),
                sections.join(", ")
            );
        }
    }
    let mut summary = Summary {
        ok: 0,
        failed: 0,
        skipped: 0,
        worst: 0.0,
    };
    for section in sections
        .iter()
        .filter(|s| only.is_empty() || only.contains(s))
    {
        match run_section(&fixture, section, device) {
            None => {
                println!("skip {section} max_abs=nan max_rel=nan tol=nan");
                summary.skipped += 1;
            }
            Some(Err(e)) => {
                println!("FAIL {section} max_abs=inf max_rel=inf tol=nan");
                eprintln!("error in section {section}: {}", crate::error_chain(&e));
                summary.failed += 1;
                summary.worst = f64::INFINITY;
            }
            Some(Ok(results)) => {
                for r in results {
                    let status = if r.passed() { "ok" } else { "FAIL" };
                    println!(
                        "{status} {} max_abs={} max_rel={} tol={}",
                        r.id,
                        fmt(r.cmp.max_abs),
                        fmt(r.cmp.max_rel),
                        fmt(r.tol)
                    );
                    if r.passed() {
                        summary.ok += 1;
                    } else {
                        summary.failed += 1;
                    }
                    if r.cmp.max_rel.is_nan() || r.cmp.max_rel > summary.worst {
                        summary.worst = r.cmp.max_rel;
                    }
                }
            }
        }
    }
    println!(
        "parity: {} ok, {} failed, {} skipped, worst max_rel={}",
        summary.ok,
        summary.failed,
        summary.skipped,
        fmt(summary.worst)
    );
    Ok(summary)
}

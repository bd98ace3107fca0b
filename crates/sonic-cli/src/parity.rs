//! `sonic parity DIR`: runs every section of a fixture folder's `reference/cases.json`
//! through the runners of `sonic-parity`, printing one line per compared tensor.

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use sonic_core::fixtures::Fixture;
use std::path::Path;

/// Counts of a parity run.
pub struct Summary {
    pub ok: usize,
    pub failed: usize,
    pub skipped: usize,
    pub worst: f64,
}

fn fmt(x: f64) -> String {
    format!("{x:.3e}")
}

/// Runs the fixture in `dir`, printing one line per case and a summary line.
pub fn run(dir: &Path, only: &[String], device: &Device) -> Result<Summary> {
    let fixture =
        Fixture::open(dir).with_context(|| format!("opening fixture {}", dir.display()))?;
    if !fixture.cases.is_object() {
        bail!(
            "{}/reference/cases.json is not a JSON object",
            dir.display()
        );
    }
    let sections = sonic_parity::fixture_sections(&fixture)?;
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
        match sonic_parity::section(section).map(|s| s.run(&fixture, device)) {
            None => {
                println!("skip {section} max_abs=nan max_rel=nan tol=nan");
                summary.skipped += 1;
            }
            Some(Err(e)) => {
                println!("FAIL {section} max_abs=inf max_rel=inf tol=nan");
                let e = anyhow::Error::from(e);
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

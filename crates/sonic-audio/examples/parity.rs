//! Runs the audio parity sections on a fixture folder (sonic format: `config.json`,
//! `clap.safetensors`, `reference/cases.json`, `reference/tensors.safetensors`):
//!
//! ```sh
//! cargo run -p sonic-audio --release --example parity -- ../shared/fixtures/sonic-tiny
//! ```

use sonic_audio::parity::{SECTIONS, run_section};
use sonic_core::fixtures::Fixture;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: parity <fixture dir>")?;
    let fixture = Fixture::open(Path::new(&dir))?;
    let device = sonic_core::device::default_device()?;
    let mut failed = 0;
    for section in SECTIONS {
        if fixture.section(section).is_none() {
            continue;
        }
        let t = std::time::Instant::now();
        let results = run_section(section, &fixture, &device).ok_or("unknown section")??;
        for r in &results {
            let ok = if r.passed() { "ok  " } else { "FAIL" };
            println!(
                "{ok} {} max_rel={:.3e} max_abs={:.3e} (tol {:e})",
                r.id, r.cmp.max_rel, r.cmp.max_abs, r.tol
            );
            failed += usize::from(!r.passed());
        }
        println!("{section}: {:.2?}", t.elapsed());
    }
    if failed > 0 {
        return Err(format!("{failed} case(s) failed").into());
    }
    Ok(())
}

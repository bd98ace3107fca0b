//! The `vae` section of the reference fixtures (encode: mean, log-variance; decode) and the
//! `vae_tiny` section (the tiny autoencoder's encode and decode), each <= 1e-4.

use crate::Result;
use burn::tensor::Device;
use sonic_core::fixtures::{CaseResult, Fixture, compare};
use sonic_vae::{AutoencoderKL, AutoencoderTiny};

/// Tolerance of the VAE outputs.
pub const VAE_TOL: f64 = 1e-4;

/// Runs every case of the `vae` section of `fixture` (an SD-layout folder with `vae/`).
pub fn run_vae(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let Some(cases) = fixture.section("vae").and_then(|s| s.as_array()) else {
        return Ok(vec![]);
    };
    let vae = AutoencoderKL::from_dir(&fixture.dir.join("vae"), device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let image = fixture.tensor_of(case, "image")?.to_tensor::<4>(device)?;
        let dist = vae.encode(image)?;
        out.push(CaseResult::new(
            format!("vae.{i}.latent_mean"),
            compare(&dist.mean, fixture.tensor_of(case, "latent_mean")?)?,
            VAE_TOL,
        ));
        out.push(CaseResult::new(
            format!("vae.{i}.latent_logvar"),
            compare(&dist.logvar, fixture.tensor_of(case, "latent_logvar")?)?,
            VAE_TOL,
        ));
        let latents = fixture.tensor_of(case, "latents")?.to_tensor::<4>(device)?;
        let decoded = vae.decode(latents)?;
        out.push(CaseResult::new(
            format!("vae.{i}.decoded"),
            compare(&decoded, fixture.tensor_of(case, "decoded")?)?,
            VAE_TOL,
        ));
    }
    Ok(out)
}

/// Runs every case of the `vae_tiny` section of `fixture` (a folder with `vae_tiny/`, an
/// `AutoencoderTiny`): `encode(image)` against `latents`, `decode(z)` against `decoded`, each
/// within the case's `tol` (default [`VAE_TOL`]).
pub fn run_vae_tiny(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let Some(cases) = fixture.section("vae_tiny").and_then(|s| s.as_array()) else {
        return Ok(vec![]);
    };
    let vae = AutoencoderTiny::from_dir(&fixture.dir.join("vae_tiny"), device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, VAE_TOL);
        let image = fixture.tensor_of(case, "image")?.to_tensor::<4>(device)?;
        let latents = vae.encode(image)?;
        out.push(CaseResult::new(
            format!("vae_tiny.{id}.latents"),
            compare(&latents, fixture.tensor_of(case, "latents")?)?,
            tol,
        ));
        let z = fixture.tensor_of(case, "z")?.to_tensor::<4>(device)?;
        let decoded = vae.decode(z)?;
        out.push(CaseResult::new(
            format!("vae_tiny.{id}.decoded"),
            compare(&decoded, fixture.tensor_of(case, "decoded")?)?,
            tol,
        ));
    }
    Ok(out)
}

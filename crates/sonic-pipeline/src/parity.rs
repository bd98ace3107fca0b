//! The `pipeline` section of the SD reference fixtures: whole text-to-image runs with
//! classifier-free guidance from given latents; `out_latents` and `image` <= 1e-3.

use crate::error::PipelineError;
use crate::stable_diffusion::StableDiffusion;
use crate::text_to_image::{TextToImage, text_to_image};
use burn::tensor::Device;
use sonic_core::fixtures::{CaseResult, Fixture, compare};

/// Tolerance of multi-step pipelines.
pub const PIPELINE_TOL: f64 = 1e-3;

/// Runs every case of the `pipeline` section of an SD fixture folder.
pub fn run_pipeline(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>, PipelineError> {
    let Some(cases) = fixture.section("pipeline").and_then(|s| s.as_array()) else {
        return Ok(vec![]);
    };
    let sd = StableDiffusion::from_dir(&fixture.dir, device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let latents = fixture.tensor_of(case, "latents")?;
        let mut req = TextToImage::new(fixture.str_field(case, "prompt")?);
        req.negative_prompt = fixture.str_field(case, "negative_prompt")?.to_string();
        req.guidance_scale = fixture.f64_field(case, "guidance_scale")?;
        req.steps = fixture.f64_field(case, "num_inference_steps")? as usize;
        req.scheduler = fixture.str_field(case, "scheduler")?.to_string();
        let f = sd.vae_scale_factor();
        req.batch_size = latents.shape[0];
        req.height = latents.shape[2] * f;
        req.width = latents.shape[3] * f;
        req.latents = Some(latents.to_tensor::<4>(device)?);
        let result = text_to_image(&sd, &req, &mut |_| {})?;
        out.push(CaseResult::new(
            format!("pipeline.{i}.out_latents"),
            compare(&result.latents, fixture.tensor_of(case, "out_latents")?)?,
            PIPELINE_TOL,
        ));
        out.push(CaseResult::new(
            format!("pipeline.{i}.image"),
            compare(&result.images, fixture.tensor_of(case, "image")?)?,
            PIPELINE_TOL,
        ));
    }
    Ok(out)
}

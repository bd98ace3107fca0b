//! The `pipeline` section of the SD reference fixtures (whole text-to-image runs with
//! classifier-free guidance from given latents) and the `lcm_pipeline` section of the fast
//! variants (LCM + LoRA + tiny autoencoder, replaying diffusers' noise); `out_latents` and
//! `image` <= 1e-3.

use crate::Result;
use burn::tensor::Device;
use sonic_core::fixtures::{CaseResult, Fixture, compare};
use sonic_pipeline::audio_to_image::{AudioToImage, audio_to_image};
use sonic_pipeline::sampling::{SamplingObserver, StepTensors};
use sonic_pipeline::stable_diffusion::StableDiffusion;
use sonic_pipeline::text_to_image::{TextToImage, text_to_image};
use sonic_unet::AdapterStrength;

/// Tolerance of multi-step pipelines.
pub const PIPELINE_TOL: f64 = 1e-3;

/// Runs every case of the `pipeline` section of a fixture folder: text-to-image cases of an SD
/// fixture, or audio-to-image cases of a SonicDiffusion fixture (one naming its SD base).
pub fn run_pipeline(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let Some(cases) = fixture.section("pipeline").and_then(|s| s.as_array()) else {
        return Ok(vec![]);
    };
    if let Some(base) = crate::unet::sd_base(fixture)? {
        return run_audio_pipeline(fixture, &base, cases, device);
    }
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

/// Records the per-step tensors of a run.
#[derive(Default)]
struct Recorder {
    steps: Vec<StepTensors>,
    hook: sonic_unet::hooks::NoHook,
}

impl SamplingObserver for Recorder {
    fn unet_hook(&mut self) -> &mut dyn sonic_unet::hooks::UNetHook {
        &mut self.hook
    }

    fn after_step(&mut self, step: &StepTensors) {
        self.steps.push(step.clone());
    }
}

fn run_audio_pipeline(
    fixture: &Fixture,
    base: &std::path::Path,
    cases: &[serde_json::Value],
    device: &Device,
) -> Result<Vec<CaseResult>> {
    let pipe = sonic_pipeline::sonic::SonicPipeline::builder()
        .model(base)
        .clap(fixture.dir.join("clap.safetensors"))
        .projector(fixture.dir.join("projector.safetensors"))
        .projector_config(fixture.dir.join("config.json"))
        .adapters(fixture.dir.join("adapters.safetensors"))
        .device(device.clone())
        .build()?;
    let sd = &pipe.sd;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let latents = fixture.tensor_of(case, "latents")?;
        let prompt = fixture.str_field(case, "prompt")?;
        // The text side: ids and embeddings of the ("" , prompt) batch.
        let prompts = vec![
            fixture.str_field(case, "negative_prompt")?.to_string(),
            prompt.to_string(),
        ];
        if let Ok(reference) = fixture.tensor_of(case, "prompt_embeds") {
            let emb = sd.encode_prompts(&prompts)?;
            out.push(CaseResult::new(
                format!("pipeline.{i}.prompt_embeds"),
                compare(&emb, reference)?,
                1e-4,
            ));
        }
        // The audio side, end to end from the WAV file: CLAP embedding, tokens, null tokens.
        let wav = fixture.dir.join(fixture.str_field(case, "wav")?);
        let emb = pipe.embed(&[sonic_pipeline::sonic::AudioSource::File(wav)])?;
        out.push(CaseResult::new(
            format!("pipeline.{i}.clap_embedding_l2x2"),
            compare(&emb, fixture.tensor_of(case, "clap_embedding_l2x2")?)?,
            1e-4,
        ));
        let tokens = pipe.projector.forward(emb)?;
        out.push(CaseResult::new(
            format!("pipeline.{i}.audio_tokens"),
            compare(&tokens, fixture.tensor_of(case, "audio_tokens")?)?,
            1e-4,
        ));
        let null = pipe.projector.null_tokens(1, device)?;
        out.push(CaseResult::new(
            format!("pipeline.{i}.null_tokens"),
            compare(&null, fixture.tensor_of(case, "null_tokens")?)?,
            1e-4,
        ));
        let f = sd.vae_scale_factor();
        let req = AudioToImage {
            prompt: prompt.to_string(),
            negative_prompt: prompts[0].clone(),
            guidance_scale: fixture.f64_field(case, "guidance_scale")?,
            audio_guidance_scale: None,
            audio_strength: AdapterStrength::Global(fixture.f64_field(case, "f_multiplier")? as f32),
            steps: fixture.f64_field(case, "num_inference_steps")? as usize,
            scheduler: "model".into(),
            seed: 0,
            width: latents.shape[3] * f,
            height: latents.shape[2] * f,
            batch_size: latents.shape[0],
            latents: Some(latents.to_tensor::<4>(device)?),
            cancel: None,
        };
        let mut rec = Recorder::default();
        let result = audio_to_image(sd, &req, &tokens, &null, &mut rec)?;
        let steps = case
            .get("steps")
            .and_then(|v| v.as_array())
            .ok_or_else(|| fixture.schema_error("steps"))?;
        for (k, step) in steps.iter().enumerate() {
            let ours = rec.steps.get(k);
            for (field, t) in [
                ("eps_uncond", ours.and_then(|s| s.branch_eps.first())),
                ("eps_cond", ours.and_then(|s| s.branch_eps.get(1))),
                ("eps_guided", ours.map(|s| &s.eps)),
                ("latents", ours.map(|s| &s.latents)),
            ] {
                let reference = fixture.tensor_of(step, field)?;
                let cmp = match t {
                    Some(t) => compare(t, reference)?,
                    None => sonic_core::fixtures::Comparison {
                        max_abs: f64::INFINITY,
                        max_rel: f64::INFINITY,
                    },
                };
                out.push(CaseResult::new(
                    format!("pipeline.{i}.step{k}.{field}"),
                    cmp,
                    PIPELINE_TOL,
                ));
            }
        }
        out.push(CaseResult::new(
            format!("pipeline.{i}.out_latents"),
            compare(&result.latents, fixture.tensor_of(case, "out_latents")?)?,
            PIPELINE_TOL,
        ));
        let decoded = sd
            .vae
            .decode(result.latents.clone().div_scalar(sd.vae.scaling_factor()))?;
        out.push(CaseResult::new(
            format!("pipeline.{i}.decoded"),
            compare(&decoded, fixture.tensor_of(case, "decoded")?)?,
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

/// An LCM scheduler that takes each step's noise from a recording (diffusers' own draws)
/// instead of its seed, so that a whole LCM pipeline can be replayed.
struct ReplayLcm {
    inner: sonic_schedulers::LcmScheduler,
    noise: Vec<burn::tensor::Tensor<4>>,
}

impl sonic_schedulers::Scheduler for ReplayLcm {
    fn kind(&self) -> sonic_schedulers::SchedulerKind {
        self.inner.kind()
    }

    fn set_timesteps(&mut self, n: usize) -> Result<(), sonic_schedulers::SchedulerError> {
        self.inner.set_timesteps(n)
    }

    fn timesteps(&self) -> &[f64] {
        self.inner.timesteps()
    }

    fn step(
        &mut self,
        model_output: burn::tensor::Tensor<4>,
        step_index: usize,
        sample: burn::tensor::Tensor<4>,
    ) -> Result<burn::tensor::Tensor<4>, sonic_schedulers::SchedulerError> {
        let noise = self.noise.get(step_index).cloned();
        Ok(self
            .inner
            .step_with_noise(model_output, step_index, sample, noise)?
            .prev_sample)
    }

    fn noise_schedule(&self) -> &sonic_schedulers::NoiseSchedule {
        self.inner.noise_schedule()
    }
}

/// Runs every case of the `lcm_pipeline` section (the held-out fast variants): the folder's
/// `unet/` with the case's `lora` merged at `lora_scale`, an LCM loop of
/// `num_inference_steps` without guidance through the shared sampling loop, replaying the
/// recorded `noise`, from `latents` and `prompt_embeds`, then the tiny autoencoder
/// (`vae_tiny/`): `out_latents` and `image` within the case's `tol` (default
/// [`PIPELINE_TOL`]).
pub fn run_lcm_pipeline(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    use sonic_core::lora::{LoraComponent, LoraFile};
    use sonic_pipeline::sampling::{Conditioning, Guidance, ProgressOnly, denoise};
    use sonic_schedulers::Scheduler;
    use sonic_unet::UNet2DConditionModel;
    let Some(cases) = fixture.section("lcm_pipeline").and_then(|s| s.as_array()) else {
        return Ok(vec![]);
    };
    let base = UNet2DConditionModel::from_dir(&fixture.dir.join("unet"), device)?;
    let tae = sonic_vae::AutoencoderTiny::from_dir(&fixture.dir.join("vae_tiny"), device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, PIPELINE_TOL);
        let lora = LoraFile::open(&fixture.dir.join(fixture.str_field(case, "lora")?))?;
        let (unet, _) = lora.merge_into(
            base.clone(),
            LoraComponent::Unet,
            fixture.f64_field(case, "lora_scale")? as f32,
            false,
            &UNet2DConditionModel::load_options(),
        )?;
        let noise = case
            .get("noise")
            .and_then(|v| v.as_array())
            .ok_or_else(|| fixture.schema_error("noise"))?
            .iter()
            .map(|k| {
                let k = k.as_str().ok_or_else(|| fixture.schema_error("noise"))?;
                Ok(fixture.tensors.get(k)?.to_tensor::<4>(device)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let config = case
            .get("config")
            .ok_or_else(|| fixture.schema_error("config"))?;
        let mut scheduler = ReplayLcm {
            inner: sonic_schedulers::LcmScheduler::from_json(config)?,
            noise,
        };
        let steps = fixture.f64_field(case, "num_inference_steps")? as usize;
        scheduler.set_timesteps(steps)?;
        let latents = fixture.tensor_of(case, "latents")?.to_tensor::<4>(device)?;
        let cond = Conditioning {
            text: fixture
                .tensor_of(case, "prompt_embeds")?
                .to_tensor::<3>(device)?,
            adapter: None,
        };
        let mut report = |_, _, _| {};
        let mut observer = ProgressOnly::new(&mut report, steps);
        let latents = latents.mul_scalar(scheduler.init_noise_sigma());
        let latents = denoise(
            &unet,
            &mut scheduler,
            latents,
            &cond,
            Guidance::None,
            0,
            &mut observer,
        )?;
        out.push(CaseResult::new(
            format!("lcm_pipeline.{id}.out_latents"),
            compare(&latents, fixture.tensor_of(case, "out_latents")?)?,
            tol,
        ));
        let image = tae
            .decode(latents.div_scalar(tae.scaling_factor()))?
            .div_scalar(2.0)
            .add_scalar(0.5)
            .clamp(0.0, 1.0);
        out.push(CaseResult::new(
            format!("lcm_pipeline.{id}.image"),
            compare(&image, fixture.tensor_of(case, "image")?)?,
            tol,
        ));
    }
    Ok(out)
}

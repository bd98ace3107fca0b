//! A run's setting: the tiny base UNet config, the frozen encoders' outputs for every clip and
//! caption (`World`), and the base model's training.

use super::*;

// ---------------------------------------------------------------------------------------------
// Models.

/// The tiny base UNet's config: pixels in and out (`channels`), two levels of `widths`, one
/// resnet per down block, GroupNorm with 8 groups, cross-attention (4 heads, text width
/// `context`) at the half-resolution level and in the mid block; the full-resolution level has
/// none, which keeps attention cheap on CPU.
pub fn base_unet_config(channels: usize, widths: [usize; 2], context: usize) -> Result<UNetConfig> {
    let json = serde_json::json!({
        "in_channels": channels,
        "out_channels": channels,
        "block_out_channels": widths,
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": 4,
        "cross_attention_dim": context,
        "norm_num_groups": 8,
    });
    tr!(UNetConfig::from_json_str(
        &json.to_string(),
        Path::new("<toy-world unet config>")
    ))
}

/// The noise schedule (DDPM's linear betas 1e-4..0.02 over 1000 steps, epsilon prediction) and
/// the matching DDIM sampler config (x0 clipped to [-1, 1]: the pictures live there).
pub(super) fn schedule_json() -> serde_json::Value {
    serde_json::json!({
        "num_train_timesteps": 1000,
        "beta_schedule": "linear",
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "prediction_type": "epsilon",
        "clip_sample": true,
        "set_alpha_to_one": true,
        "steps_offset": 0,
        "timestep_spacing": "leading",
    })
}

pub(super) fn tensor2(v: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

pub(super) fn tensor3(v: Vec<f32>, shape: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

pub(super) fn tensor4(v: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

pub(super) fn host<const D: usize>(t: &Tensor<D>) -> Result<Vec<f32>> {
    tr!(sonic_core::fixtures::to_host(t))
}

pub(super) fn mean_tail(v: &[f64]) -> f64 {
    let tail = &v[v.len().saturating_sub(20)..];
    if tail.is_empty() {
        f64::NAN
    } else {
        tail.iter().sum::<f64>() / tail.len() as f64
    }
}

/// Data of one run, on the host.
pub(super) struct World {
    /// Training pictures per class, each `[3, S, S]`.
    pub(super) pictures: Vec<Vec<Vec<f32>>>,
    /// Training clip embeddings `[n_train, A]` and their classes.
    pub(super) train_clap: Vec<f32>,
    pub(super) train_labels: Vec<usize>,
    /// Held-out clip embeddings and classes.
    pub(super) test_clap: Vec<f32>,
    pub(super) test_labels: Vec<usize>,
    /// CLAP width.
    pub(super) audio_dim: usize,
    /// Caption embeddings (`CLASSES` captions, then ""), each `[T * D]`.
    pub(super) text: Vec<Vec<f32>>,
    /// The frozen CLAP audio encoder and its sample rate.
    pub(super) clap: ClapAudioEncoder,
    pub(super) sample_rate: u32,
    /// Text tokens and width.
    pub(super) text_tokens: usize,
    pub(super) text_dim: usize,
}

pub(super) fn fixture(path: PathBuf, what: &'static str) -> Result<PathBuf> {
    if path.exists() {
        Ok(path)
    } else {
        Err(ToyWorldError::MissingFixture { path, what })
    }
}

pub(super) fn build_world(o: &ToyWorldOptions) -> Result<World> {
    let device = &o.device;
    let sd = fixture(o.fixtures.join("sd15-tiny"), "the tiny SD 1.x model")?;
    let sonic = fixture(o.fixtures.join("sonic-tiny"), "the tiny CLAP encoder")?;
    let clap_weights = fixture(sonic.join("clap.safetensors"), "tiny CLAP weights")?;
    let clap_config = fixture(sonic.join("config.json"), "tiny CLAP config")?;

    // Captions through the frozen text encoder.
    let tokenizer = ClipTokenizer::from_dir(sd.join("tokenizer"))?;
    let encoder = tr!(ClipTextModel::from_dir(&sd.join("text_encoder"), device))?;
    let mut prompts: Vec<&str> = CAPTIONS.to_vec();
    prompts.push("");
    let ids = tokenizer.encode_batch_tensor(&prompts, device)?;
    let emb = tr!(encoder.forward(ids))?;
    let [n, t, d] = emb.dims();
    let flat = host(&emb)?;
    let mut text: Vec<Vec<f32>> = (0..n)
        .map(|i| flat[i * t * d..(i + 1) * t * d].to_vec())
        .collect();
    if o.standardize_captions {
        standardize_captions(&mut text);
    }

    // Pictures, clips and their CLAP embeddings.
    let config = tr!(ClapAudioConfig::from_json_file(&clap_config))?;
    let sample_rate = config.sample_rate;
    let clap = tr!(ClapAudioEncoder::from_file_with_config(
        &clap_weights,
        config,
        device
    ))?;
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let pictures = draw_training_pictures(&mut rng, o.train_per_class, o.image_size);
    let mut clips = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..o.train_per_class + o.test_per_class {
        for c in 0..CLASSES {
            clips.push(synth_sound(c, &mut rng, sample_rate));
            labels.push(c);
        }
    }
    let refs: Vec<&[f32]> = clips.iter().map(|c| c.as_slice()).collect();
    let emb = tr!(clap.encode_samples(&refs, sample_rate))?;
    let audio_dim = emb.dims()[1];
    let all = host(&emb)?;
    let n_train = o.train_per_class * CLASSES;
    Ok(World {
        pictures,
        train_clap: all[..n_train * audio_dim].to_vec(),
        train_labels: labels[..n_train].to_vec(),
        test_clap: all[n_train * audio_dim..].to_vec(),
        test_labels: labels[n_train..].to_vec(),
        audio_dim,
        text,
        clap,
        sample_rate,
        text_tokens: t,
        text_dim: d,
    })
}

/// Keeps only what tells the prompts apart: subtracts the mean over the prompts at every
/// (token, channel) element, then scales all of them by one factor so that the elements' root
/// mean square is 1 (the encoder's own scale). The random-weight text encoder maps the five
/// prompts to sequences that share most of their values (49 in norm, 4.9-6.6 apart), and a
/// base model has to amplify those small differences; with this fixed affine map after the
/// frozen encoder its text conditioning depends far less on the initialisation (seed 12: 0.81
/// -> 0.95 of the captions drawn right; `docs/TRAINING.md`, "Seeds 1-12").
pub(super) fn standardize_captions(text: &mut [Vec<f32>]) {
    let n = text.len();
    let Some(len) = text.first().map(Vec::len) else {
        return;
    };
    let mut sum_sq = 0.0f64;
    for j in 0..len {
        let mean = text.iter().map(|e| e[j] as f64).sum::<f64>() / n as f64;
        for e in text.iter_mut() {
            let v = e[j] as f64 - mean;
            e[j] = v as f32;
            sum_sq += v * v;
        }
    }
    let rms = (sum_sq / (n * len).max(1) as f64).sqrt();
    if rms > 0.0 {
        for e in text.iter_mut() {
            e.iter_mut().for_each(|v| *v = (*v as f64 / rms) as f32);
        }
    }
}

/// Nearest-centroid accuracy of held-out rows `test` (`[n, a]`, classes `test_labels`)
/// against the class centroids of `train` (classes `train_labels`).
pub(super) fn separability(
    train: &[f32],
    train_labels: &[usize],
    test: &[f32],
    test_labels: &[usize],
    a: usize,
) -> f64 {
    let mut centroids = vec![vec![0.0f32; a]; CLASSES];
    let mut counts = [0usize; CLASSES];
    for (i, &l) in train_labels.iter().enumerate() {
        for j in 0..a {
            centroids[l][j] += train[i * a + j];
        }
        counts[l] += 1;
    }
    for (c, n) in centroids.iter_mut().zip(counts) {
        c.iter_mut().for_each(|v| *v /= n.max(1) as f32);
    }
    let correct = test_labels
        .iter()
        .enumerate()
        .filter(|&(i, &l)| {
            let e = &test[i * a..(i + 1) * a];
            let best = (0..CLASSES)
                .min_by(|&x, &y| {
                    let dx: f32 = e
                        .iter()
                        .zip(&centroids[x])
                        .map(|(p, q)| (p - q).powi(2))
                        .sum();
                    let dy: f32 = e
                        .iter()
                        .zip(&centroids[y])
                        .map(|(p, q)| (p - q).powi(2))
                        .sum();
                    dx.total_cmp(&dy)
                })
                .unwrap_or(0);
            best == l
        })
        .count();
    correct as f64 / test_labels.len().max(1) as f64
}

/// Trains the base UNet on pictures and captions (caption dropped with `caption_drop`).
pub(super) fn train_base(
    o: &ToyWorldOptions,
    w: &World,
    schedule: &DdpmSchedule,
    progress: &mut dyn FnMut(&ToyProgress),
) -> Result<(UNet2DConditionModel, f64)> {
    let device = &o.device;
    let s = o.image_size;
    let config = base_unet_config(3, o.base_widths, w.text_dim)?;
    // Seeded so that a run is reproducible (the backend's generator is global).
    let unet = tr!(sonic_train::params::seeded_init(
        device,
        o.seed ^ 0xba5e_1417,
        || { UNet2DConditionModel::new(&config, device) }
    ))?;
    let (mut unet, _) = select_trainable(unet, &|_| true);
    let mut optimizer = adamw(&OptimizerConfig {
        lr: o.base_lr,
        ..OptimizerConfig::default()
    });
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed ^ 0xba5e);
    let (t, d) = (w.text_tokens, w.text_dim);
    let b = o.base_batch;
    let mut losses = Vec::with_capacity(o.base_steps);
    let schedule_lr = cosine();
    for step in 0..o.base_steps {
        let mut x0 = Vec::with_capacity(b * 3 * s * s);
        let mut text = Vec::with_capacity(b * t * d);
        let mut timesteps = Vec::with_capacity(b);
        for _ in 0..b {
            let c = rng.random_range(0..CLASSES);
            let k = rng.random_range(0..o.train_per_class);
            x0.extend_from_slice(&w.pictures[c][k]);
            let caption = if rng.random::<f64>() < o.caption_drop {
                CLASSES
            } else {
                c
            };
            text.extend_from_slice(&w.text[caption]);
            timesteps.push(rng.random_range(0..schedule.num_train_timesteps()));
        }
        let noise: Vec<f32> = (0..b * 3 * s * s).map(|_| normal(&mut rng)).collect();
        let x0 = tensor4(x0, [b, 3, s, s], device);
        let noise = tensor4(noise, [b, 3, s, s], device);
        let text = tensor3(text, [b, t, d], device);
        let noisy = tr!(schedule.add_noise(x0.clone(), noise.clone(), &timesteps))?;
        let ts: Vec<f32> = timesteps.iter().map(|&t| t as f32).collect();
        let pred = tr!(unet.forward(noisy, &ts, text))?;
        let loss = ddpm_loss(schedule, pred, x0, noise, &timesteps)?;
        let value = loss.clone().into_scalar::<f32>() as f64;
        if !value.is_finite() {
            return Err(ToyWorldError::Train(TrainError::NonFinite {
                what: "loss",
                step: step as u64 + 1,
                value,
                last_checkpoint: "none".into(),
            }));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &unet);
        let lr = schedule_lr.lr_at(o.base_lr, step as u64, o.base_steps as u64);
        unet = optimizer.step(lr, unet, grads);
        losses.push(value);
        progress(&ToyProgress::Step {
            phase: "base",
            step: step + 1,
            total: o.base_steps,
            loss: value,
        });
    }
    Ok((untracked(unet), mean_tail(&losses)))
}

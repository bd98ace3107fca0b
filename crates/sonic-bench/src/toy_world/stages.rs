//! Stage 1 (projector) and stage 2 (adapters) on the toy world, with the trainers of
//! `sonic-train`.

use super::*;

/// Cosine decay to zero over the run (every phase uses it: the last steps at a small learning
/// rate average out the step noise, which matters for sample quality).
pub(super) fn cosine() -> LrScheduleConfig {
    LrScheduleConfig {
        kind: LrKind::Cosine,
        warmup_steps: 0,
        min_lr: 0.0,
    }
}

/// A trainer's loop settings: AdamW at `lr` with cosine decay over `steps` of `batch`.
pub(super) fn training(seed: u64, batch: usize, steps: usize, lr: f64) -> TrainingConfig {
    TrainingConfig {
        seed,
        batch_size: batch,
        max_steps: Some(steps as u64),
        optimizer: OptimizerConfig {
            lr,
            ..OptimizerConfig::default()
        },
        lr_schedule: cosine(),
        ..TrainingConfig::default()
    }
}

pub(super) fn stage1_config(o: &ToyWorldOptions) -> Stage1Config {
    Stage1Config {
        training: training(o.seed ^ 0x51, o.stage1_batch, o.stage1_steps, o.stage1_lr),
        loss: Stage1Loss {
            // Default centre 80: every one of the 77 positions weighted. Centred at 8 (the
            // captions are 4-5 tokens) the unweighted tail drifted far from every caption and
            // stage 2 learned less (docs/TRAINING.md, "How the bar was reached").
            token_weight_centre: o.stage1_token_weights.0,
            token_weight_width: o.stage1_token_weights.1,
            negatives: 32,
            ..Stage1Loss::default()
        },
        block_mode: "chained".into(),
        ..Stage1Config::default()
    }
}

/// Stage 1: the projector from CLAP embeddings to caption-like tokens.
pub(super) fn train_stage1(
    o: &ToyWorldOptions,
    w: &World,
    progress: &mut dyn FnMut(&ToyProgress),
) -> Result<(Projector, f64)> {
    let device = &o.device;
    let config =
        ProjectorConfig::new(w.audio_dim, w.text_tokens, 4, 8, 2).with_mode(BlockMode::Chained);
    if config.context_dim() != w.text_dim {
        return Err(ToyWorldError::BadOption {
            name: "projector",
            value: format!("audio width {}", w.audio_dim),
            reason: format!(
                "gives {}-wide tokens; the text encoder's are {} wide",
                config.context_dim(),
                w.text_dim
            ),
        });
    }
    let projector = tr!(sonic_train::stage1::new_projector(
        &config,
        o.seed ^ 0x1417,
        device
    ))?;
    let n = w.train_labels.len();
    let (t, d) = (w.text_tokens, w.text_dim);
    let text: Vec<f32> = w
        .train_labels
        .iter()
        .flat_map(|&l| w.text[l].iter().copied())
        .collect();
    let data = Stage1Data::new(
        tensor2(w.train_clap.clone(), [n, w.audio_dim], device),
        w.train_labels.clone(),
        tensor3(text, [n, t, d], device),
    )?;
    let config = stage1_config(o);
    let text_drop = config.loss.text_drop;
    let mut trainer = Stage1Trainer::new(config, projector, device)?;
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed ^ 0x5151);
    let total = o.stage1_steps as u64;
    let mut losses = Vec::with_capacity(o.stage1_steps);
    for step in 0..o.stage1_steps {
        let idx: Vec<usize> = (0..o.stage1_batch)
            .map(|_| rng.random_range(0..n))
            .collect();
        let batch = trainer.sample_batch(&data, &data, &idx, text_drop)?;
        let report = trainer.train_step(&[batch], total)?;
        losses.push(report.loss);
        progress(&ToyProgress::Step {
            phase: "stage1",
            step: step + 1,
            total: o.stage1_steps,
            loss: report.loss,
        });
    }
    Ok((trainer.projector()?, mean_tail(&losses)))
}

/// Stage 2: adapters on the frozen base UNet, caption always "".
pub(super) fn train_stage2(
    o: &ToyWorldOptions,
    w: &World,
    base: UNet2DConditionModel,
    projector: Projector,
    schedule: DdpmSchedule,
    progress: &mut dyn FnMut(&ToyProgress),
) -> Result<(UNet2DConditionModel, Projector, f64)> {
    let device = &o.device;
    let s = o.image_size;
    let (unet, _) = sonic_train::stage2::add_new_adapters(
        base,
        o.adapter_placement,
        w.text_dim,
        0.0,
        o.seed ^ 0xada9,
        device,
    );
    // One row per (training clip, picture of its class) pair, every clip paired with
    // `pairs` pictures.
    let pairs = 4;
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed ^ 0x5252);
    let (mut latents, mut clap) = (Vec::new(), Vec::new());
    let a = w.audio_dim;
    for (i, &l) in w.train_labels.iter().enumerate() {
        for _ in 0..pairs {
            let k = rng.random_range(0..o.train_per_class);
            latents.extend_from_slice(&w.pictures[l][k]);
            clap.extend_from_slice(&w.train_clap[i * a..(i + 1) * a]);
        }
    }
    let n = w.train_labels.len() * pairs;
    let (t, d) = (w.text_tokens, w.text_dim);
    let empty = &w.text[CLASSES];
    let text: Vec<f32> = (0..n).flat_map(|_| empty.iter().copied()).collect();
    let data = Stage2Data::new(
        tensor4(latents, [n, 3, s, s], device),
        tensor3(text, [n, t, d], device),
        tensor2(clap, [n, a], device),
        tensor3(empty.clone(), [1, t, d], device),
    )?;
    let config = Stage2Config {
        training: training(o.seed ^ 0x52, o.stage2_batch, o.stage2_steps, o.stage2_lr),
        // The caption is "" in every row already.
        text_drop: 0.0,
        audio_drop: o.audio_drop,
        train_projector: o.stage2_train_projector,
        gate_init: 0.0,
        audio_strength: 1.0,
        resolution: s.div_ceil(8) * 8,
        ..Stage2Config::default()
    };
    let mut trainer = Stage2Trainer::new(config, unet, projector, schedule, device)?;
    let total = o.stage2_steps as u64;
    let mut losses = Vec::with_capacity(o.stage2_steps);
    for step in 0..o.stage2_steps {
        let idx: Vec<usize> = (0..o.stage2_batch)
            .map(|_| rng.random_range(0..n))
            .collect();
        let batch = trainer.sample_batch(&data, &idx, true)?;
        let report = trainer.train_step(&[batch], total)?;
        losses.push(report.loss);
        progress(&ToyProgress::Step {
            phase: "stage2",
            step: step + 1,
            total: o.stage2_steps,
            loss: report.loss,
        });
    }
    let model = trainer.model()?;
    Ok((model.unet, model.projector, mean_tail(&losses)))
}

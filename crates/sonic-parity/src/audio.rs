//! The audio sections of the sonic fixture format
//! (`../shared/fixtures/sonic-tiny/reference/cases.json`): `audio_clips`, `resample`,
//! `repeat_pad`, `clap_frontend`, `clap_cnn14`, `clap_projection`, `clap_e2e`.
//!
//! Each runner returns one [`CaseResult`] per compared tensor, with ids beginning with the
//! section name (`clap_cnn14.0.conv_block3`). Decoding and fitting must be exact; resampling
//! and everything downstream of it <= 1e-4 (relative to the reference's max |value|).

use crate::{ParityError, Result};
use burn::tensor::{Device, Tensor, TensorData};
use sonic_audio::config::ClapAudioConfig;
use sonic_audio::decode::decode_file;
use sonic_audio::encoder::ClapAudioEncoder;
use sonic_audio::fit::{CropStart, Fitted, fit_to_length};
use sonic_audio::resample::SincResampler;
use sonic_core::fixtures::{CaseResult, Comparison, Fixture, HostTensor, compare, compare_slices};

/// Tolerance of decoding, channel mixing and fitting: exact.
pub const EXACT_TOL: f64 = 0.0;
/// Tolerance of a lossy clip's decode (a clip marked `"lossy": true`, or an MP3 / Ogg file):
/// independent decoders differ in the last bits (`crates/sonic-audio/tests/decode.rs` holds ours
/// within 1e-6 of libvorbis and 5e-6 of mpg123), so a lossy reference made by another decoder is compared at 1e-5, not exactly.
pub const LOSSY_TOL: f64 = 1e-5;
/// Tolerance of resampling (kernels and outputs) and of anything computed from a resampled
/// clip.
pub const RESAMPLE_TOL: f64 = 1e-4;
/// Tolerance of the front end, every Cnn14 block, the projection and the embeddings.
pub const CLAP_TOL: f64 = 1e-4;

/// The sections these runners cover.
pub const SECTIONS: [&str; 7] = [
    "audio_clips",
    "resample",
    "repeat_pad",
    "clap_frontend",
    "clap_cnn14",
    "clap_projection",
    "clap_e2e",
];

const INF: Comparison = Comparison {
    max_abs: f64::INFINITY,
    max_rel: f64::INFINITY,
};

fn cmp_host(ours: &[f32], shape: &[usize], reference: &HostTensor) -> Comparison {
    if shape != reference.shape.as_slice() {
        return INF;
    }
    compare_slices(ours, &reference.data)
}

/// Loads the fixture's CLAP encoder (`clap.safetensors` + the `clap` section of
/// `config.json`).
pub fn fixture_encoder(fixture: &Fixture, device: &Device) -> Result<ClapAudioEncoder> {
    let cfg_path = fixture.dir.join("config.json");
    let config = if cfg_path.is_file() {
        ClapAudioConfig::from_json_file(&cfg_path)?
    } else {
        ClapAudioConfig::default()
    };
    Ok(ClapAudioEncoder::from_file_with_config(
        fixture.dir.join("clap.safetensors"),
        config,
        device,
    )?)
}

fn cases<'a>(fixture: &'a Fixture, section: &str) -> Vec<&'a serde_json::Value> {
    match fixture.section(section) {
        Some(serde_json::Value::Array(a)) => a.iter().collect(),
        _ => vec![],
    }
}

fn usize_field(fixture: &Fixture, case: &serde_json::Value, key: &str) -> Result<usize> {
    let v = fixture.f64_field(case, key)?;
    if v < 0.0 || v.fract() != 0.0 {
        return Err(fixture.schema_error(key).into());
    }
    Ok(v as usize)
}

fn stack(fixture: &Fixture, case: &serde_json::Value, device: &Device) -> Result<Tensor<2>> {
    let names = case
        .get("inputs")
        .and_then(|v| v.as_array())
        .ok_or_else(|| fixture.schema_error("inputs"))?;
    let mut data = Vec::new();
    let mut n = None;
    for name in names {
        let name = name
            .as_str()
            .ok_or_else(|| fixture.schema_error("inputs"))?;
        let t = fixture.tensors.get(name)?;
        let len = t.data.len();
        if *n.get_or_insert(len) != len {
            return Err(ParityError::fixture(name, "inputs of different lengths"));
        }
        data.extend_from_slice(&t.data);
    }
    let n = n.ok_or_else(|| fixture.schema_error("inputs"))?;
    Ok(Tensor::from_data(
        TensorData::new(data, [names.len(), n]),
        device,
    ))
}

/// `audio_clips`: decode each clip (lossless: samples exact; lossy: <= [`LOSSY_TOL`]), mono
/// mix (the same), resample (<= 1e-4, with the kernel), fit to the clip length at the recorded
/// crop start (as the decode; <= 1e-4 after a resample).
pub fn run_audio_clips(fixture: &Fixture, _device: &Device) -> Result<Vec<CaseResult>> {
    let Some(serde_json::Value::Object(clips)) = fixture.section("audio_clips") else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for (id, clip) in clips {
        let wav = fixture.dir.join(fixture.str_field(clip, "wav")?);
        let audio = decode_file(&wav)?;
        let decode_tol = if is_lossy(clip, &wav) {
            LOSSY_TOL
        } else {
            EXACT_TOL
        };
        let rate = usize_field(fixture, clip, "sample_rate")?;
        let channels = usize_field(fixture, clip, "channels")?;
        let frames = usize_field(fixture, clip, "frames")?;
        let layout_ok = audio.sample_rate as usize == rate
            && audio.num_channels() == channels
            && audio.frames() == frames;
        let flat: Vec<f32> = audio.channels.concat();
        let samples_ref = fixture.tensor_of(clip, "samples")?;
        let c = if layout_ok {
            cmp_host(&flat, &[channels, frames], samples_ref)
        } else {
            INF
        };
        out.push(CaseResult::new(
            format!("audio_clips.{id}.samples"),
            c,
            decode_tol,
        ));
        let mono = audio.to_mono();
        out.push(CaseResult::new(
            format!("audio_clips.{id}.mono"),
            cmp_host(&mono, &[1, mono.len()], fixture.tensor_of(clip, "mono")?),
            decode_tol,
        ));
        let (resampled, fit_tol) = match clip.get("resample") {
            Some(r) if r.is_object() => {
                let orig = usize_field(fixture, r, "orig_freq")? as u32;
                let new = usize_field(fixture, r, "new_freq")? as u32;
                let lpw = usize_field(fixture, r, "lowpass_filter_width")?;
                let rolloff = fixture.f64_field(r, "rolloff")?;
                let rs = SincResampler::with_params(orig, new, lpw, rolloff)?;
                if r.get("kernel").is_some() {
                    let (kshape, k) = rs.dense_kernel()?;
                    out.push(CaseResult::new(
                        format!("audio_clips.{id}.kernel"),
                        cmp_host(&k, &kshape, fixture.tensor_of(r, "kernel")?),
                        RESAMPLE_TOL,
                    ));
                }
                let y = rs.process(&mono);
                out.push(CaseResult::new(
                    format!("audio_clips.{id}.resampled"),
                    cmp_host(&y, &[1, y.len()], fixture.tensor_of(r, "output")?),
                    RESAMPLE_TOL,
                ));
                (y, RESAMPLE_TOL)
            }
            _ => (mono, decode_tol),
        };
        let fit = clip.get("fit").ok_or_else(|| fixture.schema_error("fit"))?;
        let crop = match fit.get("crop_start").and_then(|v| v.as_u64()) {
            Some(s) => CropStart::Sample(s as usize),
            None => CropStart::default(),
        };
        let clap_ref = fixture.tensor_of(clip, "clap_input")?;
        let len = clap_ref.data.len().max(1);
        let (fitted, how) = fit_to_length(&resampled, len, new_rate(clip, rate), crop)?;
        let how_ok = match (how, fit.get("mode").and_then(|m| m.as_str())) {
            (Fitted::Repeat { repeat_factor }, Some("repeat")) => {
                fit.get("repeat_factor").and_then(|v| v.as_u64()) == Some(repeat_factor as u64)
            }
            (Fitted::Crop { .. }, Some("crop")) => true,
            _ => false,
        };
        let c = if how_ok {
            cmp_host(&fitted, &[1, fitted.len()], clap_ref)
        } else {
            INF
        };
        out.push(CaseResult::new(
            format!("audio_clips.{id}.clap_input"),
            c,
            fit_tol,
        ));
    }
    Ok(out)
}

/// Whether a clip's decode is compared as lossy: its `lossy` field when present, else by the
/// file's extension (MP3, Ogg / Vorbis, Opus).
fn is_lossy(clip: &serde_json::Value, file: &std::path::Path) -> bool {
    if let Some(b) = clip.get("lossy").and_then(|v| v.as_bool()) {
        return b;
    }
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("mp3" | "ogg" | "oga" | "opus"))
}

fn new_rate(clip: &serde_json::Value, rate: usize) -> u32 {
    clip.get("resample")
        .and_then(|r| r.get("new_freq"))
        .and_then(|v| v.as_u64())
        .map_or(rate as u32, |v| v as u32)
}

/// `resample`: torchaudio's cached kernel and its output, each <= 1e-4.
pub fn run_resample(fixture: &Fixture, _device: &Device) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    for (i, case) in cases(fixture, "resample").into_iter().enumerate() {
        let orig = usize_field(fixture, case, "orig_freq")? as u32;
        let new = usize_field(fixture, case, "new_freq")? as u32;
        let params = case
            .get("params")
            .ok_or_else(|| fixture.schema_error("params"))?;
        let lpw = usize_field(fixture, params, "lowpass_filter_width")?;
        let rolloff = fixture.f64_field(params, "rolloff")?;
        if let Some(m) = params.get("resampling_method").and_then(|m| m.as_str())
            && m != "sinc_interp_hann"
        {
            return Err(ParityError::fixture(
                format!("resample case {i}"),
                format!("resampling_method {m} is not implemented"),
            ));
        }
        let rs = SincResampler::with_params(orig, new, lpw, rolloff)?;
        if case.get("kernel").is_some() {
            let (kshape, k) = rs.dense_kernel()?;
            out.push(CaseResult::new(
                format!("resample.{i}.kernel"),
                cmp_host(&k, &kshape, fixture.tensor_of(case, "kernel")?),
                RESAMPLE_TOL,
            ));
        }
        let input = fixture.tensor_of(case, "input")?;
        let y = rs.process(&input.data);
        out.push(CaseResult::new(
            format!("resample.{i}.output"),
            cmp_host(&y, &[1, y.len()], fixture.tensor_of(case, "output")?),
            RESAMPLE_TOL,
        ));
    }
    Ok(out)
}

/// `repeat_pad`: tile-repeat and truncate, exact (and the same repeat factor).
pub fn run_repeat_pad(fixture: &Fixture, _device: &Device) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    for (i, case) in cases(fixture, "repeat_pad").into_iter().enumerate() {
        let input = fixture.tensor_of(case, "input")?;
        let reference = fixture.tensor_of(case, "output")?;
        let factor = usize_field(fixture, case, "repeat_factor")?;
        let (y, how) = fit_to_length(
            &input.data,
            reference.data.len(),
            ClapAudioConfig::default().sample_rate,
            CropStart::Centre,
        )?;
        let c = if how
            == (Fitted::Repeat {
                repeat_factor: factor,
            }) {
            cmp_host(&y, &[1, y.len()], reference)
        } else {
            INF
        };
        out.push(CaseResult::new(format!("repeat_pad.{i}"), c, EXACT_TOL));
    }
    Ok(out)
}

/// `clap_frontend`: spectrogram, log-mel and `bn0` output, each <= 1e-4.
pub fn run_clap_frontend(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let cases = cases(fixture, "clap_frontend");
    if cases.is_empty() {
        return Ok(vec![]);
    }
    let enc = fixture_encoder(fixture, device)?;
    let mut out = Vec::new();
    for (i, case) in cases.into_iter().enumerate() {
        let x = stack(fixture, case, device)?;
        let spec = enc.front_end().spectrogram(x);
        out.push(CaseResult::new(
            format!("clap_frontend.{i}.spectrogram"),
            compare(&spec, fixture.tensor_of(case, "spectrogram")?)?,
            CLAP_TOL,
        ));
        let logmel = enc.front_end().logmel(spec);
        out.push(CaseResult::new(
            format!("clap_frontend.{i}.logmel"),
            compare(&logmel, fixture.tensor_of(case, "logmel")?)?,
            CLAP_TOL,
        ));
        let bn0 = enc.model().base.apply_bn0(logmel);
        out.push(CaseResult::new(
            format!("clap_frontend.{i}.bn0"),
            compare(&bn0, fixture.tensor_of(case, "bn0")?)?,
            CLAP_TOL,
        ));
    }
    Ok(out)
}

/// `clap_cnn14`: from the reference `bn0` output, every conv block, the pooled features,
/// `fc1` before and after the ReLU and the AudioSet head, each <= 1e-4.
pub fn run_clap_cnn14(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let cases = cases(fixture, "clap_cnn14");
    if cases.is_empty() {
        return Ok(vec![]);
    }
    let enc = fixture_encoder(fixture, device)?;
    let mut out = Vec::new();
    for (i, case) in cases.into_iter().enumerate() {
        let bn0 = fixture.tensor_of(case, "bn0")?.to_tensor::<4>(device)?;
        let trace = enc.model().base.forward_trace(bn0);
        for (b, block) in trace.blocks.iter().enumerate() {
            let key = format!("conv_block{}", b + 1);
            out.push(CaseResult::new(
                format!("clap_cnn14.{i}.{key}"),
                compare(block, fixture.tensor_of(case, &key)?)?,
                CLAP_TOL,
            ));
        }
        for (key, t) in [
            ("pooled", &trace.pooled),
            ("fc1_preact", &trace.fc1_preact),
            ("embedding", &trace.embedding),
        ] {
            out.push(CaseResult::new(
                format!("clap_cnn14.{i}.{key}"),
                compare(t, fixture.tensor_of(case, key)?)?,
                CLAP_TOL,
            ));
        }
        if case.get("clipwise_output").is_some() {
            let c = match &trace.clipwise_output {
                Some(t) => compare(t, fixture.tensor_of(case, "clipwise_output")?)?,
                None => INF,
            };
            out.push(CaseResult::new(
                format!("clap_cnn14.{i}.clipwise_output"),
                c,
                CLAP_TOL,
            ));
        }
    }
    Ok(out)
}

/// `clap_projection`: msclap's `Projection` on a random input, <= 1e-4.
pub fn run_clap_projection(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let cases = cases(fixture, "clap_projection");
    if cases.is_empty() {
        return Ok(vec![]);
    }
    let enc = fixture_encoder(fixture, device)?;
    let mut out = Vec::new();
    for (i, case) in cases.into_iter().enumerate() {
        let x = fixture.tensor_of(case, "input")?.to_tensor::<2>(device)?;
        let y = enc.model().projection.forward(x);
        out.push(CaseResult::new(
            format!("clap_projection.{i}.out"),
            compare(&y, fixture.tensor_of(case, "out")?)?,
            CLAP_TOL,
        ));
    }
    Ok(out)
}

/// `clap_e2e`: prepared clips -> Cnn14 embedding, AudioSet head, projection, L2 once and
/// twice, each <= 1e-4.
pub fn run_clap_e2e(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let cases = cases(fixture, "clap_e2e");
    if cases.is_empty() {
        return Ok(vec![]);
    }
    let enc = fixture_encoder(fixture, device)?;
    let mut out = Vec::new();
    for (i, case) in cases.into_iter().enumerate() {
        let x = stack(fixture, case, device)?;
        let e = enc.encode_waveforms(x)?;
        let mut pairs = vec![
            ("cnn14_embedding", e.cnn14_embedding),
            ("projection", e.projection),
            ("embedding_l2", e.embedding_l2),
            ("embedding_l2x2", e.embedding_l2x2),
        ];
        if let Some(c) = e.clipwise_output {
            pairs.push(("clipwise_output", c));
        }
        for (key, t) in pairs {
            if case.get(key).is_none() {
                continue;
            }
            out.push(CaseResult::new(
                format!("clap_e2e.{i}.{key}"),
                compare(&t, fixture.tensor_of(case, key)?)?,
                CLAP_TOL,
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod lossy_tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn lossy_clips_are_marked_or_known_by_extension() {
        let none = serde_json::json!({});
        assert!(is_lossy(&none, Path::new("a.OGA")));
        assert!(is_lossy(&none, Path::new("a.mp3")));
        assert!(!is_lossy(&none, Path::new("a.wav")));
        assert!(!is_lossy(&none, Path::new("a.flac")));
        assert!(!is_lossy(
            &serde_json::json!({"lossy": false}),
            Path::new("a.mp3")
        ));
        assert!(is_lossy(
            &serde_json::json!({"lossy": true}),
            Path::new("a.wav")
        ));
        const { assert!(LOSSY_TOL > EXACT_TOL && LOSSY_TOL <= 1e-5) };
    }
}

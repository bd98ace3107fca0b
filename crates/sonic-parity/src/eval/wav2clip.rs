//! The `wav2clip` section (tests-data/eval-metrics/wav2clip, made by
//! tools/fixtures/eval_wav2clip.py): Wav2CLIP's audio encoder against the `wav2clip` package's
//! `embed_audio`, per utterance and frame-level, with the model's formula weights
//! (`formula.json`) and the checkpoint's spectrogram window (the fixture tensor `window`,
//! torch's float32 `hann_window(512)`), written to a temporary safetensors file laid out as
//! the released checkpoint, and its `config.json`.
//!
//! Per case: `waveform` `[B, T]` -> `embedding` (`[B, 512]`, or `[B, 512, frames]` when the case
//! has `frame_length` / `hop_length`), `features` (the ResNet's output) and, when present,
//! `spectrogram` (the normalised log power spectrogram); a case with `hann_window` compares the
//! [`hann_window`] (used when a checkpoint has no window) with torch's. Each within the case's `tol` (default
//! [`WAV2CLIP_TOL`]).

use crate::{ParityError, Result};
use burn::tensor::Device;
use sonic_core::fixtures::{CaseResult, Fixture, compare, compare_slices};
use sonic_core::formula::FormulaSpec;
use sonic_core::weights::{NamedTensor, write_safetensors_f32};
use sonic_eval::wav2clip::{KEY_WINDOW, Wav2Clip, Wav2ClipConfig, hann_window};
use std::path::PathBuf;

/// Tolerance of the embeddings (max |ours - ref| / max |ref|).
pub const WAV2CLIP_TOL: f64 = 1e-4;
/// The fixture tensor holding the checkpoint's spectrogram window.
pub const WINDOW_TENSOR: &str = "window";

/// A weights file in the temporary folder, removed when dropped.
struct TempWeights(PathBuf);

impl TempWeights {
    fn write(tensors: &[NamedTensor]) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "sonic-parity-wav2clip-{}-{nanos}.safetensors",
            std::process::id()
        ));
        let file = Self(path);
        write_safetensors_f32(&file.0, tensors, None)?;
        Ok(file)
    }
}

impl Drop for TempWeights {
    fn drop(&mut self) {
        // The loaded model maps the file: removing it is safe (best effort).
        let _ = std::fs::remove_file(&self.0);
    }
}

fn usize_field(fixture: &Fixture, case: &serde_json::Value, key: &str) -> Result<Option<usize>> {
    match case.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| fixture.schema_error(key).into()),
    }
}

/// Loads the fixture's model: `config.json`, the weights of `formula.json` and the window.
pub fn load_model(fixture: &Fixture, device: &Device) -> Result<Wav2Clip> {
    let dir = &fixture.dir;
    let config = Wav2ClipConfig::from_file(&dir.join("config.json"))?;
    let spec = FormulaSpec::from_file(&dir.join("formula.json"))?;
    let mut tensors: Vec<NamedTensor> = spec.tensors.iter().map(|e| spec.materialise(e)).collect();
    let window = fixture.tensors.get(WINDOW_TENSOR)?;
    tensors.push(NamedTensor {
        name: KEY_WINDOW.to_string(),
        shape: window.shape.clone(),
        data: window.data.clone(),
    });
    let weights = TempWeights::write(&tensors)?;
    Ok(Wav2Clip::from_file_with_config(&weights.0, config, device)?)
}

/// Runs every case of the `wav2clip` section of `fixture`.
pub fn run_wav2clip(fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
    let Some(cases) = fixture.section("wav2clip").and_then(|s| s.as_array()) else {
        return Ok(vec![]);
    };
    let model = load_model(fixture, device)?;
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (id, tol) = crate::case_id_and_tol(case, i, WAV2CLIP_TOL);
        if case.get("hann_window").is_some() {
            let reference = &fixture.tensor_of(case, "hann_window")?.data;
            let ours: Vec<f32> = hann_window(reference.len())
                .iter()
                .map(|&v| v as f32)
                .collect();
            out.push(CaseResult::new(
                format!("wav2clip.{id}.hann_window"),
                compare_slices(&ours, reference),
                tol,
            ));
            continue;
        }
        let waveform = fixture
            .tensor_of(case, "waveform")?
            .to_tensor::<2>(device)?;
        let framing = (
            usize_field(fixture, case, "frame_length")?,
            usize_field(fixture, case, "hop_length")?,
        );
        let trace = match framing {
            (Some(frame), Some(hop)) => model.trace_framed(waveform, frame, hop)?,
            (None, None) => model.trace(waveform)?,
            _ => {
                return Err(ParityError::fixture(
                    format!("wav2clip.{id}"),
                    "frame_length and hop_length come together",
                ));
            }
        };
        if case.get("spectrogram").is_some() {
            out.push(CaseResult::new(
                format!("wav2clip.{id}.spectrogram"),
                compare(&trace.spectrogram, fixture.tensor_of(case, "spectrogram")?)?,
                tol,
            ));
        }
        out.push(CaseResult::new(
            format!("wav2clip.{id}.features"),
            compare(&trace.features, fixture.tensor_of(case, "features")?)?,
            tol,
        ));
        let reference = fixture.tensor_of(case, "embedding")?;
        let cmp = if trace.frames.is_some() {
            compare(&trace.embedding_bdf(), reference)?
        } else {
            compare(&trace.embedding, reference)?
        };
        out.push(CaseResult::new(
            format!("wav2clip.{id}.embedding"),
            cmp,
            tol,
        ));
    }
    Ok(out)
}

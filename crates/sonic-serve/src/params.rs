//! The parameters of a job, read from a request's text fields and checked against the
//! server's limits before anything is queued.

use crate::error::ServeError;
use serde::Serialize;
use sonic_pipeline::edit::EditMode;
use std::collections::HashMap;

/// What the server accepts at most.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of one request body (larger: 413).
    pub max_upload: usize,
    /// Denoising steps.
    pub max_steps: usize,
    /// Width x height of a picture.
    pub max_pixels: usize,
    /// Sounds in one request (mixing).
    pub max_sounds: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload: 32 << 20,
            max_steps: 150,
            max_pixels: 1024 * 1024,
            max_sounds: 4,
        }
    }
}

/// Generation settings of a job (the fields of `POST /api/generate`).
#[derive(Debug, Clone, Serialize)]
pub struct GenerateParams {
    /// Text prompt.
    pub prompt: String,
    /// Negative prompt.
    pub negative_prompt: String,
    /// Denoising steps.
    pub steps: usize,
    /// Guidance scale (text, or text and audio together).
    pub guidance: f64,
    /// Separate audio guidance scale.
    pub audio_guidance: Option<f64>,
    /// Audio strength of the adapters.
    pub audio_strength: f32,
    /// Seed of the initial noise.
    pub seed: u64,
    /// Width in pixels (`None`: the model's default; an edit takes the photo's).
    pub width: Option<usize>,
    /// Height in pixels.
    pub height: Option<usize>,
    /// Mixing weights, one per sound (empty: equal weights).
    pub mix: Vec<f32>,
}

/// Editing settings (the extra fields of `POST /api/edit`).
#[derive(Debug, Clone, Serialize)]
pub struct EditParams {
    /// `pnp` or `sdedit`.
    pub mode: String,
    /// SDEdit strength.
    pub strength: f64,
    /// Fraction of steps with residual injection (PnP).
    pub pnp_f_t: f64,
    /// Fraction of steps with attention injection (PnP).
    pub pnp_attn_t: f64,
}

impl EditParams {
    /// The library's mode.
    pub fn mode(&self) -> EditMode {
        if self.mode == "sdedit" {
            EditMode::SdEdit
        } else {
            EditMode::Pnp
        }
    }
}

/// The text fields of a request.
pub struct Fields(pub HashMap<String, String>);

fn bad(name: &str, value: &str, reason: &str) -> ServeError {
    ServeError::BadRequest(format!("field `{name}` = `{value}`: {reason}"))
}

impl Fields {
    fn get<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ServeError> {
        match self.0.get(name).map(|v| v.trim()) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| bad(name, v, "cannot be parsed")),
        }
    }

    fn number(&self, name: &str, default: f64, lo: f64, hi: f64) -> Result<f64, ServeError> {
        let v = self.get::<f64>(name)?.unwrap_or(default);
        if !(v.is_finite() && (lo..=hi).contains(&v)) {
            return Err(bad(
                name,
                &v.to_string(),
                &format!("must be in [{lo}, {hi}]"),
            ));
        }
        Ok(v)
    }

    /// Generation settings, checked against `limits`; `sounds` is the number of audio files.
    pub fn generate(&self, limits: &Limits, sounds: usize) -> Result<GenerateParams, ServeError> {
        let steps = self.get::<usize>("steps")?.unwrap_or(25);
        if steps == 0 || steps > limits.max_steps {
            return Err(bad(
                "steps",
                &steps.to_string(),
                &format!("must be 1 to {}", limits.max_steps),
            ));
        }
        let side = |name: &str| -> Result<Option<usize>, ServeError> {
            let v = self.get::<usize>(name)?;
            if let Some(v) = v
                && (v == 0 || v % 8 != 0 || v > 4096)
            {
                return Err(bad(
                    name,
                    &v.to_string(),
                    "must be a positive multiple of 8, at most 4096",
                ));
            }
            Ok(v)
        };
        let (width, height) = (side("width")?, side("height")?);
        if let (Some(w), Some(h)) = (width, height)
            && w * h > limits.max_pixels
        {
            return Err(bad(
                "width x height",
                &format!("{w}x{h}"),
                &format!("over the server's {} pixels", limits.max_pixels),
            ));
        }
        let mix: Vec<f32> = match self.0.get("mix").map(|s| s.trim()) {
            None | Some("") => Vec::new(),
            Some(s) => s
                .split(',')
                .map(|w| {
                    w.trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| {
                            bad("mix", s, "weights must be finite numbers, comma separated")
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        if !mix.is_empty() && mix.len() != sounds {
            return Err(bad(
                "mix",
                &format!("{mix:?}"),
                &format!("needs one weight per sound ({sounds})"),
            ));
        }
        if !mix.is_empty() && mix.iter().all(|w| *w == 0.0) {
            return Err(bad("mix", &format!("{mix:?}"), "the weights are all zero"));
        }
        let audio_guidance = match self.get::<f64>("audio_guidance")? {
            Some(a) if !(a.is_finite() && (0.0..=50.0).contains(&a)) => {
                return Err(bad("audio_guidance", &a.to_string(), "must be in [0, 50]"));
            }
            a => a,
        };
        let text = |name: &str| -> Result<String, ServeError> {
            let v = self.0.get(name).cloned().unwrap_or_default();
            if v.len() > 2000 {
                return Err(bad(
                    name,
                    &format!("{} bytes", v.len()),
                    "at most 2000 bytes",
                ));
            }
            Ok(v)
        };
        Ok(GenerateParams {
            prompt: text("prompt")?,
            negative_prompt: text("negative_prompt")?,
            steps,
            guidance: self.number("guidance", 7.5, 0.0, 50.0)?,
            audio_guidance,
            audio_strength: self.number("audio_strength", 1.0, -10.0, 10.0)? as f32,
            seed: self
                .get::<u64>("seed")?
                .unwrap_or_else(|| u64::from(rand::random::<u32>())),
            width,
            height,
            mix,
        })
    }

    /// Editing settings.
    pub fn edit(&self) -> Result<EditParams, ServeError> {
        let mode = self
            .0
            .get("mode")
            .map_or("pnp", |s| s.trim())
            .to_lowercase();
        if mode != "pnp" && mode != "sdedit" {
            return Err(bad("mode", &mode, "must be pnp or sdedit"));
        }
        Ok(EditParams {
            mode,
            strength: self.number("strength", 0.6, 0.0, 1.0)?,
            pnp_f_t: self.number("pnp_f_t", 0.8, 0.0, 1.0)?,
            pnp_attn_t: self.number("pnp_attn_t", 0.8, 0.0, 1.0)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_and_limits() {
        let l = Limits::default();
        let p = fields(&[("seed", "3")]).generate(&l, 1).unwrap();
        assert_eq!((p.steps, p.seed, p.guidance), (25, 3, 7.5));
        for (k, v, needle) in [
            ("steps", "0", "steps"),
            ("steps", "1000", "steps"),
            ("steps", "ten", "parsed"),
            ("width", "60", "multiple of 8"),
            ("guidance", "nan", "guidance"),
            ("guidance", "1e9", "guidance"),
            ("mix", "1,x", "mix"),
            ("mix", "1,2,3", "one weight per sound"),
            ("audio_guidance", "-1", "audio_guidance"),
        ] {
            let e = fields(&[(k, v)]).generate(&l, 2).unwrap_err().to_string();
            assert!(e.contains(needle), "{k}={v}: {e}");
        }
        let e = fields(&[("width", "4096"), ("height", "4096")])
            .generate(&l, 1)
            .unwrap_err();
        assert!(e.to_string().contains("pixels"), "{e}");
        assert!(fields(&[("mode", "magic")]).edit().is_err());
        assert_eq!(
            fields(&[("mode", "SDEdit")]).edit().unwrap().mode(),
            EditMode::SdEdit
        );
    }
}

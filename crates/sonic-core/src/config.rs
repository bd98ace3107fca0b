//! Reading JSON configs into typed structs, with errors that name the file.

use crate::error::{CoreError, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads a whole file, turning I/O errors into [`CoreError::Io`] naming the path.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    open_file(path)?
        .read_to_end(&mut bytes)
        .map_err(|source| CoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(bytes)
}

/// Opens a file for reading; a folder or an unreadable file is an error naming it.
pub fn open_file(path: &Path) -> Result<std::fs::File> {
    let io = |source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory",
        )));
    }
    std::fs::File::open(path).map_err(io)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder is written, synced
/// and renamed into place, so readers never see a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |source: std::io::Error| CoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Parses a JSON file into `T`; serde's message (with line and column) is kept in the error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|e| CoreError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Rewrites Python's non-standard JSON numbers (`NaN`, `Infinity`, `-Infinity`, as written
/// by Python's `json` module, e.g. diffusers' `lambda_min_clipped: -Infinity`) outside string
/// literals into the strings `"NaN"`, `"Infinity"` and `"-Infinity"`, which config readers
/// accept where they expect a float ([`lenient_f64`]).
pub fn sanitize_python_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let replaced = [
            ("-Infinity", "\"-Infinity\""),
            ("Infinity", "\"Infinity\""),
            ("NaN", "\"NaN\""),
        ]
        .iter()
        .find(|(pat, _)| rest.starts_with(pat));
        if let Some((pat, rep)) = replaced {
            out.push_str(rep);
            rest = &rest[pat.len()..];
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A JSON number, or one of the strings `"NaN"`, `"Infinity"`, `"-Infinity"` that
/// [`sanitize_python_json`] produces, as `f64`.
pub fn lenient_f64(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Parses a JSON file that may contain Python's `NaN` / `Infinity` (see
/// [`sanitize_python_json`]) into `T`.
pub fn read_json_lenient<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = read_file(path)?;
    let text = String::from_utf8_lossy(&bytes);
    serde_json::from_str(&sanitize_python_json(&text)).map_err(|e| CoreError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Parses an in-memory JSON value into `T`; `origin` names where it came from in errors.
pub fn from_value<T: DeserializeOwned>(value: &serde_json::Value, origin: &Path) -> Result<T> {
    T::deserialize(value).map_err(|e| CoreError::Json {
        path: origin.to_path_buf(),
        message: e.to_string(),
    })
}

/// Builds an [`CoreError::UnsupportedConfig`] for `key` = `value` in `path`.
pub fn unsupported(
    path: &Path,
    key: &str,
    value: impl serde::Serialize,
    reason: &str,
) -> CoreError {
    CoreError::UnsupportedConfig {
        path: path.to_path_buf(),
        key: key.to_string(),
        value: serde_json::to_string(&value).unwrap_or_else(|_| "?".into()),
        reason: reason.to_string(),
    }
}

/// Sanity limits on model config values, checked before a model is built: far above any
/// released checkpoint (SD 1.x / 2.x, CLIP ViT-L / H, CLAP), low enough that a typo or a
/// malicious config cannot make the process reserve absurd memory for tables sized by the
/// config alone (position embeddings, time-step tables). A value above its limit is a
/// [`CoreError::UnsupportedConfig`] naming the key and the limit.
pub mod limits {
    /// Channels, hidden sizes, embedding and intermediate widths (SD: 1280; CLIP-H MLP: 5120).
    pub const MAX_WIDTH: usize = 1 << 16;
    /// Layers per block, transformer layers, encoder layers (CLIP-bigG: 32).
    pub const MAX_LAYERS: usize = 256;
    /// Resolution levels of a UNet or VAE (SD: 4).
    pub const MAX_LEVELS: usize = 16;
    /// Attention heads (SD 2: 20 per level).
    pub const MAX_HEADS: usize = 4096;
    /// Vocabulary entries (CLIP: 49,408).
    pub const MAX_VOCAB: usize = 1 << 22;
    /// Positions of a text encoder (CLIP: 77).
    pub const MAX_POSITIONS: usize = 1 << 16;
    /// Input / output / latent channels (SD: 4; inpainting: 9).
    pub const MAX_IO_CHANNELS: usize = 1024;
    /// Training timesteps of a noise schedule (SD: 1000).
    pub const MAX_TRAIN_TIMESTEPS: usize = 1 << 20;
}

/// `Ok` when `value` is at most `max`, else [`CoreError::UnsupportedConfig`] for `key` in
/// `path` naming the limit (see [`limits`]).
pub fn check_limit(path: &Path, key: &str, value: usize, max: usize) -> Result<()> {
    if value > max {
        return Err(unsupported(
            path,
            key,
            value,
            &format!("above this implementation's sanity limit of {max}"),
        ));
    }
    Ok(())
}

/// [`check_limit`] on every value of a list (the key names the list).
pub fn check_limits(path: &Path, key: &str, values: &[usize], max: usize) -> Result<()> {
    values
        .iter()
        .try_for_each(|&v| check_limit(path, key, v, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Cfg {
        #[allow(dead_code)]
        a: u32,
    }

    #[test]
    fn python_json_numbers_are_sanitized() {
        let s = sanitize_python_json(r#"{"a": -Infinity, "b": "NaN \" x", "c": [NaN, Infinity]}"#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(lenient_f64(&v["a"]), Some(f64::NEG_INFINITY));
        assert_eq!(v["b"].as_str(), Some("NaN \" x"));
        assert!(lenient_f64(&v["c"][0]).is_some_and(f64::is_nan));
        assert_eq!(lenient_f64(&v["c"][1]), Some(f64::INFINITY));
    }

    #[test]
    fn json_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("sonic-core-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.json");
        std::fs::write(&p, "{\"a\": \"x\"}").unwrap();
        let e = read_json::<Cfg>(&p).unwrap_err();
        assert!(matches!(e, CoreError::Json { .. }));
        assert!(e.to_string().contains("bad.json"), "{e}");
        let e = read_json::<Cfg>(&dir.join("absent.json")).unwrap_err();
        assert!(matches!(e, CoreError::Io { .. }));
        assert!(e.to_string().contains("absent.json"), "{e}");
        let e = read_json::<Cfg>(&dir).unwrap_err();
        assert!(matches!(e, CoreError::Io { .. }));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Reading JSON configs into typed structs, with errors that name the file.

use crate::error::{CoreError, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads a whole file, turning I/O errors into [`CoreError::Io`] naming the path.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    if path.is_dir() {
        return Err(CoreError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
        });
    }
    std::fs::read(path).map_err(|source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses a JSON file into `T`; serde's message (with line and column) is kept in the error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|e| CoreError::Json {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Cfg {
        #[allow(dead_code)]
        a: u32,
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

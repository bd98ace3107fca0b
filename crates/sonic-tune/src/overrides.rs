//! Applying a trial's parameters to a stage config: each parameter name is a dotted key path
//! into the config's JSON object (`"optim.lr"` sets `config["optim"]["lr"]`).

use crate::error::{Result, TuneError};
use crate::space::Params;
use serde_json::{Map, Value};
use std::path::Path;

/// Returns `base` with every parameter of `params` set at its dotted key. Missing objects on
/// the way are created (stage configs may rely on serde defaults for absent keys); a key whose
/// parent exists but is not an object is an error naming the key and `origin` (the base
/// config file). The trainer's config parser then checks the result (unknown keys, types).
pub fn apply_overrides(base: &Value, params: &Params, origin: &Path) -> Result<Value> {
    let mut out = base.clone();
    if !out.is_object() {
        return Err(TuneError::Override {
            path: origin.to_path_buf(),
            key: String::new(),
            reason: format!("the base config is not a JSON object: {base}"),
        });
    }
    for (key, value) in params {
        let parts: Vec<&str> = key.split('.').collect();
        let mut node = &mut out;
        for (depth, part) in parts.iter().enumerate() {
            let prefix = parts[..depth].join(".");
            let obj: &mut Map<String, Value> = match node {
                Value::Object(o) => o,
                other => {
                    return Err(TuneError::Override {
                        path: origin.to_path_buf(),
                        key: key.clone(),
                        reason: format!("`{prefix}` is {other}, not an object"),
                    });
                }
            };
            if depth + 1 == parts.len() {
                obj.insert((*part).to_string(), value.clone());
                break;
            }
            node = obj
                .entry((*part).to_string())
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    Ok(out)
}

/// Makes the relative string paths under `model` absolute against `base_dir` (the trainers
/// resolve model paths against the config file's folder; a derived config written elsewhere
/// must keep pointing at the same files).
pub fn absolutize_model_paths(config: &mut Value, base_dir: &Path) {
    if let Some(Value::Object(model)) = config.get_mut("model") {
        for v in model.values_mut() {
            if let Value::String(s) = v {
                let p = std::path::PathBuf::from(&*s);
                if p.is_relative() {
                    *s = base_dir.join(p).to_string_lossy().into_owned();
                }
            }
        }
    }
}

/// Reads the base config at `base_path`, applies `params`, makes relative `model.*` paths
/// absolute and writes the result to `out` atomically (pretty JSON): the "best config" a
/// trainer can use directly.
pub fn write_config_with_overrides(base_path: &Path, params: &Params, out: &Path) -> Result<()> {
    let base: Value = sonic_core::config::read_json(base_path)?;
    let mut merged = apply_overrides(&base, params, base_path)?;
    let base_dir = base_path.parent().unwrap_or(Path::new("."));
    absolutize_model_paths(&mut merged, base_dir);
    let text = serde_json::to_string_pretty(&merged).map_err(|e| TuneError::Override {
        path: base_path.to_path_buf(),
        key: String::new(),
        reason: e.to_string(),
    })?;
    sonic_core::config::write_atomic(out, format!("{text}\n").as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overrides_nested_keys_and_keeps_the_rest() {
        let base =
            json!({"lr": 1e-4, "loss": {"mse_weight": 1.0, "temperature": 0.1}, "epochs": 3});
        let params: Params = [
            ("lr".to_string(), json!(3e-4)),
            ("loss.temperature".to_string(), json!(0.05)),
            ("optim.beta2".to_string(), json!(0.99)),
        ]
        .into();
        let out = apply_overrides(&base, &params, Path::new("stage1.json")).unwrap();
        assert_eq!(
            out,
            json!({"lr": 3e-4, "loss": {"mse_weight": 1.0, "temperature": 0.05}, "epochs": 3,
                   "optim": {"beta2": 0.99}})
        );
        let bad: Params = [("epochs.x".to_string(), json!(1))].into();
        let e = apply_overrides(&base, &bad, Path::new("stage1.json")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("epochs.x") && msg.contains("stage1.json"),
            "{msg}"
        );
    }

    #[test]
    fn writes_the_merged_config() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.json");
        std::fs::write(
            &base,
            r#"{"lr": 0.0001, "batch_size": 6, "model": {"sd": "sd", "clap": null}}"#,
        )
        .unwrap();
        let out = dir.path().join("best.json");
        let params: Params = [("lr".to_string(), json!(0.0005))].into();
        write_config_with_overrides(&base, &params, &out).unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let sd = dir.path().join("sd").to_string_lossy().into_owned();
        assert_eq!(
            v,
            json!({"lr": 0.0005, "batch_size": 6, "model": {"sd": sd, "clap": null}})
        );
    }
}

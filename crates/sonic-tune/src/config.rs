//! The tune config file (`config/tune.json`): which stage to tune, its base config, the search
//! space, the sampler, the pruner and the per-trial budget.
//!
//! ```json
//! {
//!   "stage": "stage1",
//!   "base_config": "stage1.json",
//!   "study_dir": "../runs/tune-stage1",
//!   "n_trials": 40,
//!   "seed": 42,
//!   "sampler": {"type": "tpe", "n_startup_trials": 10, "n_ei_candidates": 24, "gamma": 0.1},
//!   "pruner": {"type": "median", "n_startup_trials": 5, "n_warmup_steps": 1},
//!   "budget": {"max_steps": 2000, "val_every": 200},
//!   "manifest": "../data/train.csv",
//!   "space": {"lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": true}}
//! }
//! ```
//!
//! Relative paths (`base_config`, `study_dir`, `manifest`, `cache_dir`) are resolved against the folder of the tune
//! config file. Keys starting with `_` are comments. `budget` sets each trial's
//! `training.max_steps` and `training.val_every` (see [`Budget`]; the training crate applies it). Every error names
//! the file and the dotted key.
//!
//! Why one file of over 600 lines: the code is under 500; the rest are its unit tests.

use crate::error::{Result, TuneError};
use crate::pruner::{MedianPruner, SuccessiveHalvingPruner};
use crate::sampler::TpeSettings;
use crate::space::{KeyCtx, SearchSpace, check_keys, get_bool, get_f64, get_i64};
use crate::study::{PrunerConfig, SamplerConfig, StudyConfig};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// A parsed tune config.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// The stage whose validation loss is minimised (`"stage1"` or `"stage2"`).
    pub stage: String,
    /// The stage config the trial parameters override (resolved path).
    pub base_config: PathBuf,
    /// The study folder (resolved path; the CLI's `--study` replaces it).
    pub study_dir: PathBuf,
    /// Trials to run in total, counting those already in the study.
    pub n_trials: usize,
    /// Space, seed, sampler, pruner, crash policy.
    pub study: StudyConfig,
    /// The per-trial budget.
    pub budget: Budget,
    /// The training manifest (resolved path; `sonic tune --manifest` replaces it).
    pub manifest: Option<PathBuf>,
    /// The embedding cache folder (resolved path; default `<study_dir>/cache`).
    pub cache_dir: Option<PathBuf>,
    /// Whether a trial whose training fails with an error is recorded and the search goes on
    /// (default false: the search stops on the first error).
    pub catch_errors: bool,
}

/// How long each trial trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Optimizer steps per trial (sets `training.max_steps`).
    pub max_steps: u64,
    /// Validation (and a report to the pruner) every this many steps, and at the end (sets
    /// `training.val_every`). Pruner steps are these training steps.
    pub val_every: u64,
}

impl Budget {
    /// Parses the tune config's `budget` object: `{"max_steps": N, "val_every": K}`.
    pub fn from_json(value: &Value, origin: &Path) -> Result<Self> {
        let ctx = KeyCtx {
            origin,
            prefix: "budget".into(),
        };
        let obj = value
            .as_object()
            .ok_or_else(|| ctx.err("", format!("expected an object, found {value}")))?;
        check_keys(obj, &["max_steps", "val_every"], &ctx)?;
        let get = |key: &str| -> Result<u64> {
            match obj.get(key) {
                None => Err(ctx.err(key, "missing")),
                Some(v) => match v.as_u64() {
                    Some(n) if n >= 1 => Ok(n),
                    _ => Err(ctx.err(key, format!("expected an integer >= 1, found {v}"))),
                },
            }
        };
        let max_steps = get("max_steps")?;
        let val_every = get("val_every")?;
        if val_every > max_steps {
            return Err(ctx.err(
                "val_every",
                format!("{val_every} exceeds max_steps = {max_steps} (one report at the end only)"),
            ));
        }
        Ok(Self {
            max_steps,
            val_every,
        })
    }
}

const TOP_KEYS: &[&str] = &[
    "stage",
    "base_config",
    "study_dir",
    "n_trials",
    "seed",
    "sampler",
    "pruner",
    "budget",
    "space",
    "manifest",
    "cache_dir",
    "rerun_interrupted",
    "catch_errors",
];

fn uncommented(obj: &Map<String, Value>) -> Map<String, Value> {
    obj.iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn get_usize(
    obj: &Map<String, Value>,
    key: &str,
    default: usize,
    ctx: &KeyCtx<'_>,
) -> Result<usize> {
    if !obj.contains_key(key) {
        return Ok(default);
    }
    let v = get_i64(obj, key, ctx)?;
    usize::try_from(v).map_err(|_| ctx.err(key, format!("must be >= 0, found {v}")))
}

fn get_u64(obj: &Map<String, Value>, key: &str, default: u64, ctx: &KeyCtx<'_>) -> Result<u64> {
    Ok(get_usize(obj, key, default as usize, ctx)? as u64)
}

fn get_string(obj: &Map<String, Value>, key: &str, ctx: &KeyCtx<'_>) -> Result<String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(v) => Err(ctx.err(key, format!("expected a non-empty string, found {v}"))),
        None => Err(ctx.err(key, "missing")),
    }
}

fn sub_object(
    obj: &Map<String, Value>,
    key: &str,
    ctx: &KeyCtx<'_>,
) -> Result<Option<Map<String, Value>>> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(uncommented(o))),
        Some(v) => Err(ctx.err(key, format!("expected an object, found {v}"))),
    }
}

fn parse_sampler(obj: Option<Map<String, Value>>, ctx: &KeyCtx<'_>) -> Result<SamplerConfig> {
    let Some(obj) = obj else {
        return Ok(SamplerConfig::Tpe(TpeSettings::default()));
    };
    let ty = get_string(&obj, "type", ctx)?;
    match ty.as_str() {
        "random" => {
            check_keys(&obj, &["type"], ctx)?;
            Ok(SamplerConfig::Random)
        }
        "tpe" => {
            check_keys(
                &obj,
                &[
                    "type",
                    "n_startup_trials",
                    "n_ei_candidates",
                    "gamma",
                    "gamma_max",
                    "prior_weight",
                    "multivariate",
                ],
                ctx,
            )?;
            let d = TpeSettings::default();
            let gamma = if obj.contains_key("gamma") {
                get_f64(&obj, "gamma", ctx)?
            } else {
                d.gamma
            };
            if gamma <= 0.0 || gamma >= 1.0 {
                return Err(ctx.err("gamma", format!("must lie in (0, 1), found {gamma}")));
            }
            let prior_weight = if obj.contains_key("prior_weight") {
                get_f64(&obj, "prior_weight", ctx)?
            } else {
                d.prior_weight
            };
            if prior_weight <= 0.0 {
                return Err(ctx.err("prior_weight", format!("must be > 0, found {prior_weight}")));
            }
            let n_ei_candidates = get_usize(&obj, "n_ei_candidates", d.n_ei_candidates, ctx)?;
            if n_ei_candidates == 0 {
                return Err(ctx.err("n_ei_candidates", "must be >= 1"));
            }
            let gamma_max = get_usize(&obj, "gamma_max", d.gamma_max, ctx)?;
            if gamma_max == 0 {
                return Err(ctx.err("gamma_max", "must be >= 1"));
            }
            Ok(SamplerConfig::Tpe(TpeSettings {
                seed: 0,
                n_startup_trials: get_usize(&obj, "n_startup_trials", d.n_startup_trials, ctx)?,
                n_ei_candidates,
                gamma,
                gamma_max,
                prior_weight,
                multivariate: get_bool(&obj, "multivariate", ctx)?,
            }))
        }
        other => Err(ctx.err("type", format!("unknown sampler `{other}` (tpe or random)"))),
    }
}

fn parse_pruner(obj: Option<Map<String, Value>>, ctx: &KeyCtx<'_>) -> Result<PrunerConfig> {
    let Some(obj) = obj else {
        return Ok(PrunerConfig::Median(MedianPruner::default()));
    };
    let ty = get_string(&obj, "type", ctx)?;
    match ty.as_str() {
        "none" => {
            check_keys(&obj, &["type"], ctx)?;
            Ok(PrunerConfig::None)
        }
        "median" => {
            check_keys(
                &obj,
                &[
                    "type",
                    "n_startup_trials",
                    "n_warmup_steps",
                    "interval_steps",
                    "n_min_trials",
                ],
                ctx,
            )?;
            let d = MedianPruner::default();
            let interval_steps = get_u64(&obj, "interval_steps", d.interval_steps, ctx)?;
            if interval_steps == 0 {
                return Err(ctx.err("interval_steps", "must be >= 1"));
            }
            Ok(PrunerConfig::Median(MedianPruner {
                n_startup_trials: get_usize(&obj, "n_startup_trials", d.n_startup_trials, ctx)?,
                n_warmup_steps: get_u64(&obj, "n_warmup_steps", d.n_warmup_steps, ctx)?,
                interval_steps,
                n_min_trials: get_usize(&obj, "n_min_trials", d.n_min_trials, ctx)?,
            }))
        }
        "successive_halving" | "asha" => {
            check_keys(
                &obj,
                &[
                    "type",
                    "min_resource",
                    "reduction_factor",
                    "min_early_stopping_rate",
                    "bootstrap_count",
                ],
                ctx,
            )?;
            let d = SuccessiveHalvingPruner::default();
            let min_resource = get_u64(&obj, "min_resource", d.min_resource, ctx)?;
            if min_resource == 0 {
                return Err(ctx.err("min_resource", "must be >= 1"));
            }
            let reduction_factor = get_u64(&obj, "reduction_factor", d.reduction_factor, ctx)?;
            if reduction_factor < 2 {
                return Err(ctx.err(
                    "reduction_factor",
                    format!("must be >= 2, found {reduction_factor}"),
                ));
            }
            let rate = get_u64(&obj, "min_early_stopping_rate", 0, ctx)?;
            let min_early_stopping_rate = u32::try_from(rate)
                .ok()
                .filter(|r| *r < 64)
                .ok_or_else(|| ctx.err("min_early_stopping_rate", format!("too large: {rate}")))?;
            Ok(PrunerConfig::SuccessiveHalving(SuccessiveHalvingPruner {
                min_resource,
                reduction_factor,
                min_early_stopping_rate,
                bootstrap_count: get_usize(&obj, "bootstrap_count", d.bootstrap_count, ctx)?,
            }))
        }
        other => Err(ctx.err(
            "type",
            format!("unknown pruner `{other}` (median, successive_halving / asha, none)"),
        )),
    }
}

/// Why a stage-config key cannot be searched over, if it cannot: the budget sets the run
/// length and validation interval, and the data (split, cached latents) and models are
/// prepared once from the base config before the trials.
fn fixed_key_reason(stage: &str, key: &str) -> Option<&'static str> {
    match key {
        "training.max_steps" | "training.val_every" | "training.epochs" => {
            Some("set by `budget` for every trial, cannot be searched")
        }
        "training.val_fraction" => Some("the validation split is fixed by the base config"),
        "resolution" | "hflip" if stage == "stage2" => {
            Some("the latents are prepared once from the base config")
        }
        k if k == "model" || k.starts_with("model.") => {
            Some("the models are loaded once from the base config")
        }
        _ => None,
    }
}

impl TuneConfig {
    /// Reads and checks a tune config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let value: Value = sonic_core::config::read_json(path)?;
        Self::from_json(&value, path)
    }

    /// Checks an in-memory tune config; `path` is where it came from (relative paths in it are
    /// resolved against its folder).
    pub fn from_json(value: &Value, path: &Path) -> Result<Self> {
        let err = |key: &str, reason: String| TuneError::Config {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        let obj = match value {
            Value::Object(o) => uncommented(o),
            other => return Err(err("", format!("expected a JSON object, found {other}"))),
        };
        for k in obj.keys() {
            if !TOP_KEYS.contains(&k.as_str()) {
                return Err(err(
                    k,
                    format!("unknown key (allowed: {})", TOP_KEYS.join(", ")),
                ));
            }
        }
        // top-level keys have no prefix: build errors by hand through `err`
        let top = |key: &str| KeyCtx {
            origin: path,
            prefix: key.to_string(),
        };
        let stage = match obj.get("stage") {
            Some(Value::String(s)) if s == "stage1" || s == "stage2" => s.clone(),
            Some(v) => {
                return Err(err(
                    "stage",
                    format!("expected \"stage1\" or \"stage2\", found {v}"),
                ));
            }
            None => return Err(err("stage", "missing".into())),
        };
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |key: &str| -> Result<Option<PathBuf>> {
            match obj.get(key) {
                None => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => {
                    let p = PathBuf::from(s);
                    Ok(Some(if p.is_absolute() { p } else { dir.join(p) }))
                }
                Some(v) => Err(err(key, format!("expected a path string, found {v}"))),
            }
        };
        let base_config =
            resolve("base_config")?.ok_or_else(|| err("base_config", "missing".into()))?;
        let study_dir = resolve("study_dir")?.unwrap_or_else(|| dir.join("tune-study"));
        let n_trials = match obj.get("n_trials") {
            None => return Err(err("n_trials", "missing".into())),
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => n as usize,
                _ => {
                    return Err(err(
                        "n_trials",
                        format!("expected an integer >= 1, found {v}"),
                    ));
                }
            },
        };
        let seed = match obj.get("seed") {
            None => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| err("seed", format!("expected an integer >= 0, found {v}")))?,
        };
        let flag = |key: &str, default: bool| -> Result<bool> {
            if obj.contains_key(key) {
                get_bool(
                    &obj,
                    key,
                    &KeyCtx {
                        origin: path,
                        prefix: String::new(),
                    },
                )
                .map_err(|_| err(key, format!("expected true or false, found {}", obj[key])))
            } else {
                Ok(default)
            }
        };
        let rerun_interrupted = flag("rerun_interrupted", true)?;
        let catch_errors = flag("catch_errors", false)?;
        let sampler = parse_sampler(sub_object(&obj, "sampler", &top(""))?, &top("sampler"))?;
        let pruner = parse_pruner(sub_object(&obj, "pruner", &top(""))?, &top("pruner"))?;
        let space_value = match obj.get("space") {
            Some(Value::Object(o)) => Value::Object(uncommented(o)),
            Some(v) => return Err(err("space", format!("expected an object, found {v}"))),
            None => return Err(err("space", "missing".into())),
        };
        let space = SearchSpace::from_json(&space_value, path, "space")?;
        for name in space.params().keys() {
            if let Some(reason) = fixed_key_reason(&stage, name) {
                return Err(err(&format!("space.{name}"), reason.into()));
            }
        }
        let budget = match obj.get("budget") {
            None => return Err(err("budget", "missing".into())),
            Some(Value::Object(o)) => Budget::from_json(&Value::Object(uncommented(o)), path)?,
            Some(v) => return Err(err("budget", format!("expected an object, found {v}"))),
        };
        let manifest = resolve("manifest")?;
        let cache_dir = resolve("cache_dir")?;
        Ok(Self {
            path: path.to_path_buf(),
            stage,
            base_config,
            study_dir,
            n_trials,
            study: StudyConfig {
                space,
                seed,
                sampler,
                pruner,
                rerun_interrupted,
            },
            budget,
            manifest,
            cache_dir,
            catch_errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "_doc": "a comment",
            "stage": "stage1",
            "base_config": "stage1.json",
            "n_trials": 20,
            "seed": 7,
            "sampler": {"type": "tpe", "n_startup_trials": 5},
            "pruner": {"type": "asha", "min_resource": 2, "reduction_factor": 3},
            "budget": {"max_steps": 100, "val_every": 10},
            "manifest": "data/train.csv",
            "space": {"lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": true}}
        })
    }

    #[test]
    fn parses_and_resolves_paths() {
        let c = TuneConfig::from_json(&good(), Path::new("/cfg/tune.json")).unwrap();
        assert_eq!(c.base_config, PathBuf::from("/cfg/stage1.json"));
        assert_eq!(c.study_dir, PathBuf::from("/cfg/tune-study"));
        assert_eq!(c.n_trials, 20);
        assert_eq!(c.study.seed, 7);
        assert!(c.study.rerun_interrupted);
        assert!(
            matches!(c.study.sampler, SamplerConfig::Tpe(ref s) if s.n_startup_trials == 5 && s.n_ei_candidates == 24)
        );
        assert!(
            matches!(c.study.pruner, PrunerConfig::SuccessiveHalving(ref p) if p.min_resource == 2 && p.reduction_factor == 3)
        );
        assert_eq!(
            c.budget,
            Budget {
                max_steps: 100,
                val_every: 10
            }
        );
        assert_eq!(c.manifest, Some(PathBuf::from("/cfg/data/train.csv")));
        assert_eq!(c.cache_dir, None);
    }

    #[test]
    fn errors_name_the_key() {
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|v| {
                    v["stage"] = json!("stage3");
                }),
                "stage",
            ),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("base_config");
                }),
                "base_config",
            ),
            (
                Box::new(|v| {
                    v["n_trials"] = json!(0);
                }),
                "n_trials",
            ),
            (
                Box::new(|v| {
                    v["seed"] = json!(-1);
                }),
                "seed",
            ),
            (
                Box::new(|v| {
                    v["trials"] = json!(3);
                }),
                "trials",
            ),
            (
                Box::new(|v| {
                    v["catch_errors"] = json!("no");
                }),
                "catch_errors",
            ),
            (
                Box::new(|v| {
                    v["sampler"]["type"] = json!("cmaes");
                }),
                "sampler.type",
            ),
            (
                Box::new(|v| {
                    v["sampler"]["gamma"] = json!(1.5);
                }),
                "sampler.gamma",
            ),
            (
                Box::new(|v| {
                    v["sampler"]["n_startup"] = json!(3);
                }),
                "sampler.n_startup",
            ),
            (
                Box::new(|v| {
                    v["sampler"] = json!("tpe");
                }),
                "sampler",
            ),
            (
                Box::new(|v| {
                    v["pruner"]["reduction_factor"] = json!(1);
                }),
                "pruner.reduction_factor",
            ),
            (
                Box::new(|v| {
                    v["pruner"] = json!({"type": "median", "interval_steps": 0});
                }),
                "pruner.interval_steps",
            ),
            (
                Box::new(|v| {
                    v["pruner"] = json!({"type": "median", "n_warmup_steps": -2});
                }),
                "pruner.n_warmup_steps",
            ),
            (
                Box::new(|v| {
                    v["space"]["lr"]["low"] = json!(-1.0);
                }),
                "space.lr.low",
            ),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("space");
                }),
                "space",
            ),
            (
                Box::new(|v| {
                    v["budget"] = json!(3);
                }),
                "budget",
            ),
            (
                Box::new(|v| {
                    v["budget"]["val_every"] = json!(0);
                }),
                "budget.val_every",
            ),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("budget");
                }),
                "budget",
            ),
            (
                Box::new(|v| {
                    v["manifest"] = json!(1);
                }),
                "manifest",
            ),
            (
                Box::new(|v| {
                    v["space"]["training.max_steps"] = json!({"type": "int", "low": 1, "high": 9});
                }),
                "space.training.max_steps",
            ),
            (
                Box::new(|v| {
                    v["space"]["model.projector"] =
                        json!({"type": "categorical", "choices": ["a", "b"]});
                }),
                "space.model.projector",
            ),
            (
                Box::new(|v| {
                    v["space"]["training.val_fraction"] =
                        json!({"type": "float", "low": 0.1, "high": 0.2});
                }),
                "space.training.val_fraction",
            ),
        ];
        for (edit, key) in cases {
            let mut v = good();
            edit(&mut v);
            match TuneConfig::from_json(&v, Path::new("tune.json")) {
                Err(TuneError::Config {
                    key: k,
                    path,
                    reason,
                }) => {
                    assert_eq!(k, key, "{reason}");
                    assert_eq!(path, PathBuf::from("tune.json"));
                }
                other => panic!("{key}: expected a config error, got {other:?}"),
            }
        }
    }
}

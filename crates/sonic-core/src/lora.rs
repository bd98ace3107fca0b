//! LoRA (low-rank adaptation) files, merged into a model's weights at load: no per-step cost.
//!
//! A LoRA layer holds `down` (`[r, in]`, or `[r, in, kh, kw]` for a convolution) and `up`
//! (`[out, r]` or `[out, r, 1, 1]`); merging adds `scale * alpha / r * up @ down` to the
//! targeted weight, which is what diffusers / PEFT compute at run time
//! (`base(x) + scale * alpha / r * up(down(x))`), up to float rounding.
//!
//! Three layouts are read, told apart by their keys:
//! - **diffusers**: `unet.<module>.lora.down.weight` / `.lora.up.weight` (and the older
//!   `<module>.processor.to_q_lora.down.weight`, `text_encoder.<module>.lora_linear_layer.down.weight`);
//! - **PEFT**: `unet.<module>.lora_A.weight` / `.lora_B.weight`, with the LoraConfig that
//!   diffusers writes into the safetensors metadata (`lora_adapter_metadata`) when present;
//! - **kohya** (sd-scripts, A1111): `lora_unet_<module with _>.lora_down.weight` /
//!   `.lora_up.weight` / `.alpha`, and `lora_te_...` for the text encoder; the underscored names
//!   are resolved against the model's own module names.
//!
//! `alpha` follows what diffusers (0.42) sets up when it loads a file, so outputs match it:
//! kohya's per-layer `.alpha`, except for the attention projections, whose alphas diffusers
//! ignores (they take the component's most common alpha); a `<module>.alpha` key; the
//! LoraConfig metadata diffusers writes (`lora_alpha`, `alpha_pattern`, `use_rslora`); else
//! `alpha = r` (factor 1).
//!
//! ```no_run
//! use sonic_core::lora::{LoraComponent, LoraFile};
//! # fn run<M: burn::module::Module>(unet: M) -> Result<(), sonic_core::CoreError> {
//! let lora = LoraFile::open(std::path::Path::new("pytorch_lora_weights.safetensors"))?;
//! let names = sonic_core::weights::LoadOptions::default(); // the model's name rewrites
//! let (unet, merged) = lora.merge_into(unet, LoraComponent::Unet, 1.0, true, &names)?;
//! println!("{} weights changed", merged.len());
//! let unet = merged.unmerge(unet); // the original weights, bit for bit
//! # Ok(()) }
//! ```

use crate::checkpoint::Checkpoint;
use crate::error::{CoreError, Result};
use crate::weights::LoadOptions;
use crate::weights::expected_tensors;
use crate::weights::names::ParamPath;
use crate::weights::remap::CompiledRemaps;
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Which model a LoRA layer changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoraComponent {
    /// The denoising UNet.
    Unet,
    /// The CLIP text encoder.
    TextEncoder,
}

impl LoraComponent {
    /// diffusers' key prefix (`unet`, `text_encoder`).
    pub fn prefix(self) -> &'static str {
        match self {
            LoraComponent::Unet => "unet",
            LoraComponent::TextEncoder => "text_encoder",
        }
    }
}

/// How a LoRA file names its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraLayout {
    /// diffusers' own keys (`lora.down` / `lora.up`).
    Diffusers,
    /// PEFT's keys (`lora_A` / `lora_B`).
    Peft,
    /// kohya's keys (`lora_unet_...lora_down`, `.alpha`).
    Kohya,
}

/// One low-rank layer of a LoRA file.
#[derive(Debug, Clone)]
pub struct LoraLayer {
    /// The model it changes.
    pub component: LoraComponent,
    /// The targeted module: a dotted path in the model's naming (`down_blocks.0.attentions.0.
    /// transformer_blocks.0.attn1.to_q`), or kohya's underscored name, resolved at merge time.
    pub module: String,
    /// Whether `module` is kohya's underscored name.
    pub underscored: bool,
    /// The key of `down` (`lora_A`) as the file spells it.
    pub down_key: String,
    /// The key of `up` (`lora_B`).
    pub up_key: String,
    /// The rank `r`.
    pub rank: usize,
    /// `alpha`: the merged delta is `scale * alpha / r * up @ down` (`alpha / sqrt(r)` with
    /// rsLoRA, already folded in here as an equivalent alpha).
    pub alpha: f32,
}

/// A LoRA file, read and checked, ready to merge.
pub struct LoraFile {
    checkpoint: Checkpoint,
    layout: LoraLayout,
    layers: Vec<LoraLayer>,
}

impl std::fmt::Debug for LoraFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoraFile")
            .field("path", &self.checkpoint.path())
            .field("layout", &self.layout)
            .field("layers", &self.layers.len())
            .finish()
    }
}

/// The weights a merge changed, with their originals when kept.
#[derive(Debug)]
pub struct MergedLora {
    changed: Vec<String>,
    originals: Option<HashMap<String, Tensor<1>>>,
}

/// Which tensor of a layer a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Down,
    Up,
    Alpha,
}

/// A key split into (component, module, part, underscored).
type Parsed = (LoraComponent, String, Part, bool);

fn lora_err(path: &Path, key: &str, message: impl Into<String>) -> CoreError {
    CoreError::Lora {
        path: path.to_path_buf(),
        key: key.to_string(),
        message: message.into(),
    }
}

/// Splits a kohya key (`lora_unet_<name>.lora_down.weight`).
fn parse_kohya(key: &str) -> std::result::Result<Option<Parsed>, String> {
    let Some((name, rest)) = key.split_once('.') else {
        return Ok(None);
    };
    let (component, module) = if let Some(m) = name.strip_prefix("lora_unet_") {
        (LoraComponent::Unet, m)
    } else if let Some(m) = name.strip_prefix("lora_te_") {
        (LoraComponent::TextEncoder, m)
    } else if name.starts_with("lora_te1_") || name.starts_with("lora_te2_") {
        return Err("SDXL's second text encoder (lora_te1_ / lora_te2_) is not supported".into());
    } else {
        return Ok(None);
    };
    let part = match rest {
        "lora_down.weight" => Part::Down,
        "lora_up.weight" => Part::Up,
        "alpha" => Part::Alpha,
        other => return Err(unsupported_part(other)),
    };
    Ok(Some((component, module.to_string(), part, true)))
}

fn unsupported_part(part: &str) -> String {
    if part.contains("dora") || part.contains("magnitude") {
        "DoRA weights are not supported".into()
    } else if part.contains("hada") || part.contains("lokr") {
        "LyCORIS (LoHa / LoKr) layers are not supported".into()
    } else {
        format!("unknown LoRA tensor `{part}`")
    }
}

/// Splits a diffusers or PEFT key.
fn parse_dotted(key: &str) -> std::result::Result<Option<(Parsed, LoraLayout)>, String> {
    let key = key.strip_prefix("base_model.model.").unwrap_or(key);
    let (component, rest) = if let Some(r) = key.strip_prefix("unet.") {
        (LoraComponent::Unet, r)
    } else if let Some(r) = key.strip_prefix("text_encoder.") {
        (LoraComponent::TextEncoder, r)
    } else if key.starts_with("text_encoder_2.") {
        return Err("SDXL's second text encoder is not supported".into());
    } else {
        (LoraComponent::Unet, key)
    };
    const SUFFIXES: [(&str, Part, LoraLayout); 7] = [
        (".lora.down.weight", Part::Down, LoraLayout::Diffusers),
        (".lora.up.weight", Part::Up, LoraLayout::Diffusers),
        (
            ".lora_linear_layer.down.weight",
            Part::Down,
            LoraLayout::Diffusers,
        ),
        (
            ".lora_linear_layer.up.weight",
            Part::Up,
            LoraLayout::Diffusers,
        ),
        (".lora_A.weight", Part::Down, LoraLayout::Peft),
        (".lora_B.weight", Part::Up, LoraLayout::Peft),
        (".alpha", Part::Alpha, LoraLayout::Diffusers),
    ];
    for (suffix, part, layout) in SUFFIXES {
        if let Some(module) = rest.strip_suffix(suffix) {
            let module = module.strip_prefix("text_model.").unwrap_or(module);
            return Ok(Some(((component, module.to_string(), part, false), layout)));
        }
    }
    // The attention-processor layout: `<attn>.processor.to_q_lora.down.weight`.
    for (suffix, part) in [
        ("_lora.down.weight", Part::Down),
        ("_lora.up.weight", Part::Up),
    ] {
        if let Some(stem) = rest.strip_suffix(suffix)
            && let Some((attn, proj)) = stem.rsplit_once(".processor.")
        {
            let proj = if proj == "to_out" { "to_out.0" } else { proj };
            let module = format!("{attn}.{proj}");
            return Ok(Some((
                (component, module, part, false),
                LoraLayout::Diffusers,
            )));
        }
    }
    if rest.contains("lora") || rest.contains("dora") {
        let tail = rest.rsplit('.').take(2).collect::<Vec<_>>().join(".");
        return Err(unsupported_part(&tail));
    }
    Ok(None)
}

/// The LoraConfig values diffusers writes into a file's metadata, per component.
#[derive(Debug, Default)]
struct PeftMeta {
    /// Whether the metadata has any key for the component.
    present: bool,
    lora_alpha: Option<f64>,
    use_rslora: bool,
    alpha_pattern: BTreeMap<String, f64>,
}

fn read_meta(meta: &serde_json::Value, component: LoraComponent) -> PeftMeta {
    let get = |k: &str| meta.get(format!("{}.{k}", component.prefix()));
    let pattern = get("alpha_pattern")
        .and_then(|v| v.as_object())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let prefix = format!("{}.", component.prefix());
    PeftMeta {
        present: meta
            .as_object()
            .is_some_and(|o| o.keys().any(|k| k.starts_with(&prefix))),
        lora_alpha: get("lora_alpha").and_then(|v| v.as_f64()),
        use_rslora: get("use_rslora").and_then(|v| v.as_bool()).unwrap_or(false),
        alpha_pattern: pattern,
    }
}

/// Whether PEFT pattern `pattern` names `module` (the module itself or a dotted suffix).
fn pattern_matches(pattern: &str, module: &str) -> bool {
    module == pattern || module.ends_with(&format!(".{pattern}"))
}

/// Whether diffusers ignores this kohya layer's own alpha: it converts the attention
/// projections (the UNet's `attn1` / `attn2` under `transformer_blocks`, the text encoder's
/// `self_attn` projections) to its attention-processor names, whose alpha keys then match no
/// module, so they take the component's default alpha.
fn kohya_alpha_ignored(layer: &LoraLayer) -> bool {
    let m = &layer.module;
    match layer.component {
        LoraComponent::Unet => {
            m.contains("transformer_blocks") && (m.contains("attn1") || m.contains("attn2"))
        }
        LoraComponent::TextEncoder => {
            m.contains("self_attn")
                && ["q_proj", "k_proj", "v_proj", "out_proj"]
                    .iter()
                    .any(|p| m.ends_with(p))
        }
    }
}

/// Each layer's alpha, as diffusers (0.42) sets up PEFT when it loads the file:
/// - kohya layers: their own `.alpha`, except the attention projections
///   ([`kohya_alpha_ignored`]) and layers without one, which take the component's most common
///   alpha (ties: the first in key order); no alphas at all: `alpha = r`;
/// - other layers: a `<module>.alpha` key; else the file's LoraConfig metadata
///   (`alpha_pattern`, `lora_alpha`, PEFT's default 8; `use_rslora` as `alpha * sqrt(r)`);
///   else `alpha = r` (factor 1).
fn resolve_alphas(
    pending: Vec<(LoraLayer, Option<f32>)>,
    meta: Option<&serde_json::Value>,
) -> Vec<LoraLayer> {
    let mut common: HashMap<LoraComponent, f32> = HashMap::new();
    for component in [LoraComponent::Unet, LoraComponent::TextEncoder] {
        // (alpha, count) in order of first appearance.
        let mut counts: Vec<(f32, usize)> = Vec::new();
        for (_, a) in pending
            .iter()
            .filter(|(l, _)| l.component == component && l.underscored)
        {
            if let Some(a) = a {
                match counts.iter_mut().find(|(v, _)| v == a) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((*a, 1)),
                }
            }
        }
        let best = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
        if let Some((a, _)) = counts.iter().find(|(_, n)| *n == best) {
            common.insert(component, *a);
        }
    }
    pending
        .into_iter()
        .map(|(mut layer, own)| {
            let rank = layer.rank as f32;
            layer.alpha = if layer.underscored {
                let default = common.get(&layer.component).copied();
                match (own, default) {
                    (Some(a), _) if !kohya_alpha_ignored(&layer) => a,
                    (_, Some(d)) => d,
                    (_, None) => rank,
                }
            } else if let Some(a) = own {
                a
            } else if let Some(m) = meta
                .map(|m| read_meta(m, layer.component))
                .filter(|m| m.present)
            {
                let alpha = m
                    .alpha_pattern
                    .iter()
                    .find(|(p, _)| pattern_matches(p, &layer.module))
                    .map(|(_, a)| *a)
                    .or(m.lora_alpha)
                    .unwrap_or(8.0);
                if m.use_rslora {
                    // alpha / sqrt(r) as an equivalent alpha over r.
                    (alpha * (layer.rank as f64).sqrt()) as f32
                } else {
                    alpha as f32
                }
            } else {
                rank
            };
            layer
        })
        .collect()
}

impl LoraFile {
    /// Reads a LoRA file (safetensors or a torch pickle) and checks that every layer has a
    /// `down` and an `up` of one rank.
    pub fn open(path: &Path) -> Result<Self> {
        let checkpoint = Checkpoint::open(path)?;
        let meta: Option<serde_json::Value> = checkpoint
            .metadata()
            .get("lora_adapter_metadata")
            .map(|raw| {
                serde_json::from_str(raw)
                    .map_err(|e| lora_err(path, "lora_adapter_metadata", format!("not JSON: {e}")))
            })
            .transpose()?;
        // (component, module, underscored) -> (down key, up key, alpha key)
        type Slots = (Option<String>, Option<String>, Option<String>);
        let mut groups: BTreeMap<(LoraComponent, String, bool), Slots> = BTreeMap::new();
        let mut layouts: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut keys: Vec<&str> = checkpoint.keys().collect();
        keys.sort_unstable();
        for key in &keys {
            let parsed = match parse_kohya(key) {
                Ok(Some(p)) => Some((p, LoraLayout::Kohya)),
                Ok(None) => parse_dotted(key).map_err(|m| lora_err(path, key, m))?,
                Err(m) => return Err(lora_err(path, key, m)),
            };
            let Some(((component, module, part, underscored), layout)) = parsed else {
                return Err(lora_err(
                    path,
                    key,
                    "not a LoRA tensor (expected lora_down / lora_up, lora_A / lora_B, \
                     lora.down / lora.up or alpha keys)",
                ));
            };
            if part != Part::Alpha {
                *layouts
                    .entry(match layout {
                        LoraLayout::Diffusers => "diffusers",
                        LoraLayout::Peft => "peft",
                        LoraLayout::Kohya => "kohya",
                    })
                    .or_default() += 1;
            }
            let slot = groups.entry((component, module, underscored)).or_default();
            let place = match part {
                Part::Down => &mut slot.0,
                Part::Up => &mut slot.1,
                Part::Alpha => &mut slot.2,
            };
            *place = Some(key.to_string());
        }
        let layout = match layouts.iter().max_by_key(|(_, n)| **n).map(|(k, _)| *k) {
            Some("kohya") => LoraLayout::Kohya,
            Some("peft") => LoraLayout::Peft,
            Some(_) => LoraLayout::Diffusers,
            None => {
                return Err(lora_err(
                    path,
                    "(file)",
                    "holds no LoRA layers (no lora_down / lora_A / lora.down keys)",
                ));
            }
        };

        let mut pending = Vec::with_capacity(groups.len());
        // Key order of the down tensors (sorted, as safetensors lists them, which is the
        // order diffusers converts kohya layers in) breaks ties of the default alpha.
        let mut ordered: Vec<_> = groups.into_iter().collect();
        ordered.sort_by(|a, b| a.1.0.cmp(&b.1.0));
        for ((component, module, underscored), (down, up, alpha_key)) in ordered {
            let (down_key, up_key) = match (down, up) {
                (Some(d), Some(u)) => (d, u),
                (Some(k), None) | (None, Some(k)) => {
                    return Err(lora_err(path, &k, "has no matching up / down tensor"));
                }
                (None, None) => {
                    // An alpha without a layer is ignored, as diffusers ignores it.
                    continue;
                }
            };
            let shape = |k: &str| checkpoint.shape(k).unwrap_or_default();
            let (ds, us) = (shape(&down_key), shape(&up_key));
            let spatial_up = us.len() == 4 && (us[2] != 1 || us[3] != 1);
            if !(ds.len() == 2 || ds.len() == 4)
                || !(us.len() == 2 || us.len() == 4)
                || ds[0] == 0
                || spatial_up
                || us[1] != ds[0]
            {
                return Err(lora_err(
                    path,
                    &down_key,
                    format!(
                        "down {ds:?} and up {us:?} (`{up_key}`) are not a rank-r pair \
                         ([r, in(, kh, kw)] and [out, r(, 1, 1)])"
                    ),
                ));
            }
            let rank = ds[0];
            let alpha = match &alpha_key {
                Some(k) => {
                    let (_, v) = checkpoint
                        .read_f32(k)?
                        .ok_or_else(|| lora_err(path, k, "cannot be read"))?;
                    match v.as_slice() {
                        [a] if a.is_finite() => Some(*a),
                        _ => return Err(lora_err(path, k, "alpha must be one finite number")),
                    }
                }
                None => None,
            };
            pending.push((
                LoraLayer {
                    component,
                    module,
                    underscored,
                    down_key,
                    up_key,
                    rank,
                    alpha: 0.0,
                },
                alpha,
            ));
        }
        let layers = resolve_alphas(pending, meta.as_ref());
        tracing::debug!(file = %path.display(), ?layout, layers = layers.len(), "read LoRA");
        Ok(Self {
            checkpoint,
            layout,
            layers,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.checkpoint.path()
    }

    /// The layout it was written in.
    pub fn layout(&self) -> LoraLayout {
        self.layout
    }

    /// Its layers.
    pub fn layers(&self) -> &[LoraLayer] {
        &self.layers
    }

    /// Whether it changes `component`.
    pub fn targets(&self, component: LoraComponent) -> bool {
        self.layers.iter().any(|l| l.component == component)
    }

    /// Merges the layers for `component` into `module`'s weights at `scale` (diffusers'
    /// `set_adapters` weight): every targeted weight `W` becomes
    /// `W + scale * alpha / r * up @ down`. With `keep_originals` the changed weights'
    /// originals are kept (memory: those weights once more) so that
    /// [`MergedLora::unmerge`] restores them bit for bit. At scale 0 nothing changes.
    /// `names` are the module's weight-name rewrites (its [`LoadOptions::remaps`] from
    /// diffusers' names to the module's, and their inverse [`LoadOptions::file_key`]), so
    /// that the LoRA's diffusers names find the module's weights.
    ///
    /// Errors, before any weight changes, when a layer targets a module the model lacks or
    /// whose weight has another size.
    pub fn merge_into<M: Module>(
        &self,
        module: M,
        component: LoraComponent,
        scale: f32,
        keep_originals: bool,
        names: &LoadOptions,
    ) -> Result<(M, MergedLora)> {
        if !scale.is_finite() {
            return Err(lora_err(
                self.path(),
                "(scale)",
                format!("{scale} is not finite"),
            ));
        }
        let deltas = self.plan(&module, component, names)?;
        let mut merged = MergedLora {
            changed: Vec::new(),
            originals: keep_originals.then(HashMap::new),
        };
        if scale == 0.0 || deltas.is_empty() {
            return Ok((module, merged));
        }
        let mut mapper = Merger {
            at: ParamPath::default(),
            file: self,
            deltas: &deltas,
            scale,
            merged: &mut merged,
            error: None,
        };
        let module = module.map(&mut mapper);
        if let Some(e) = mapper.error {
            return Err(e);
        }
        Ok((module, merged))
    }

    /// Resolves the layers for `component` against the module's weights: weight name ->
    /// (layer, PyTorch weight shape).
    fn plan<M: Module>(
        &self,
        module: &M,
        component: LoraComponent,
        names: &LoadOptions,
    ) -> Result<HashMap<String, (usize, Vec<usize>)>> {
        let remaps = CompiledRemaps::new(&names.remaps, self.path())?;
        let tensors = expected_tensors(module);
        let weights: HashMap<&str, &Vec<usize>> = tensors
            .iter()
            .filter_map(|(k, s)| Some((k.strip_suffix(".weight")?, s)))
            .filter(|(_, s)| s.len() == 2 || s.len() == 4)
            .collect();
        // kohya's names are diffusers' module paths with `_` for `.`.
        let underscored: HashMap<String, &str> = weights
            .keys()
            .map(|m| {
                let weight = format!("{m}.weight");
                let file = names
                    .file_key
                    .map_or_else(|| weight.clone(), |f| f(&weight));
                let file = file.strip_suffix(".weight").unwrap_or(&file);
                (file.replace('.', "_"), *m)
            })
            .collect();
        let mut plan = HashMap::new();
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.component != component {
                continue;
            }
            let target = if layer.underscored {
                let name = layer.module.as_str();
                let name = name.strip_prefix("text_model_").unwrap_or(name);
                underscored.get(name).copied()
            } else {
                let mapped = remaps.apply(&format!("{}.weight", layer.module));
                let mapped = mapped.strip_suffix(".weight").unwrap_or(&mapped);
                weights.get_key_value(mapped).map(|(k, _)| *k)
            };
            let Some(target) = target else {
                return Err(lora_err(
                    self.path(),
                    &layer.down_key,
                    format!(
                        "targets `{}`, which the {} does not have (a LoRA for another model?)",
                        layer.module,
                        match component {
                            LoraComponent::Unet => "UNet",
                            LoraComponent::TextEncoder => "text encoder",
                        }
                    ),
                ));
            };
            let shape = weights[target].clone();
            let ds = self.checkpoint.shape(&layer.down_key).unwrap_or_default();
            let us = self.checkpoint.shape(&layer.up_key).unwrap_or_default();
            let fan_in: usize = ds[1..].iter().product();
            let numel: usize = shape.iter().product();
            if us[0] != shape[0] || us[0] * fan_in != numel {
                return Err(lora_err(
                    self.path(),
                    &layer.down_key,
                    format!(
                        "down {ds:?} / up {us:?} do not fit `{target}.weight` of shape {shape:?}"
                    ),
                ));
            }
            if plan
                .insert(format!("{target}.weight"), (i, shape))
                .is_some()
            {
                return Err(lora_err(
                    self.path(),
                    &layer.down_key,
                    format!("`{target}` is targeted twice"),
                ));
            }
        }
        Ok(plan)
    }

    /// The delta `alpha / r * up @ down` of layer `i` as `[out, fan_in]`, on `device`.
    fn delta(&self, i: usize, device: &Device) -> Result<Tensor<2>> {
        let layer = &self.layers[i];
        let read = |k: &str| -> Result<(Vec<usize>, Vec<f32>)> {
            self.checkpoint
                .read_f32(k)?
                .ok_or_else(|| lora_err(self.path(), k, "cannot be read"))
        };
        let (ds, down) = read(&layer.down_key)?;
        let (us, up) = read(&layer.up_key)?;
        if let Some(k) = [(&layer.down_key, &down), (&layer.up_key, &up)]
            .iter()
            .find(|(_, v)| v.iter().any(|x| !x.is_finite()))
            .map(|(k, _)| *k)
        {
            return Err(lora_err(self.path(), k, "holds NaN or infinite values"));
        }
        let r = layer.rank;
        let fan_in: usize = ds[1..].iter().product();
        let down = Tensor::<2>::from_data(TensorData::new(down, [r, fan_in]), device);
        let up = Tensor::<2>::from_data(TensorData::new(up, [us[0], r]), device);
        Ok(up.matmul(down).mul_scalar(layer.alpha / r as f32))
    }
}

impl MergedLora {
    /// How many weights the merge changed.
    pub fn len(&self) -> usize {
        self.changed.len()
    }

    /// Whether it changed none (scale 0, or no layer for the component).
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }

    /// The changed weights, in PyTorch naming.
    pub fn changed(&self) -> &[String] {
        &self.changed
    }

    /// Whether the originals were kept, so that [`MergedLora::unmerge`] can restore them.
    pub fn can_unmerge(&self) -> bool {
        self.originals.is_some()
    }

    /// Puts the original weights back (bit for bit). Without kept originals the module is
    /// returned unchanged, with a warning in the log.
    pub fn unmerge<M: Module>(self, module: M) -> M {
        let Some(originals) = self.originals else {
            tracing::warn!("LoRA merged without keeping the originals: nothing to unmerge");
            return module;
        };
        let mut mapper = Restorer {
            at: ParamPath::default(),
            originals,
        };
        module.map(&mut mapper)
    }
}

struct Merger<'a> {
    at: ParamPath,
    file: &'a LoraFile,
    deltas: &'a HashMap<String, (usize, Vec<usize>)>,
    scale: f32,
    merged: &'a mut MergedLora,
    error: Option<CoreError>,
}

impl ModuleMapper for Merger<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        let dims = param.lazy_shape().to_vec();
        let (name, _) = self.at.pytorch(&dims);
        let Some((layer, pt_shape)) = self.deltas.get(&name) else {
            return param;
        };
        let device = param.lazy_device();
        let delta = match self.file.delta(*layer, &device) {
            Ok(d) => d.mul_scalar(self.scale),
            Err(e) => {
                self.error = Some(e);
                return param;
            }
        };
        let linear = self.at.is_linear_weight(D);
        let delta = if linear {
            // Burn keeps Linear weights as [in, out].
            delta.transpose()
        } else {
            delta
        };
        debug_assert_eq!(
            pt_shape.iter().product::<usize>(),
            dims.iter().product::<usize>()
        );
        self.merged.changed.push(name.clone());
        let originals = self.merged.originals.as_mut();
        param.map(|w| {
            if let Some(o) = originals {
                let n = w.shape().num_elements();
                o.insert(name, w.clone().reshape([n]));
            }
            let shape = w.shape();
            w + delta.reshape(shape)
        })
    }
}

struct Restorer {
    at: ParamPath,
    originals: HashMap<String, Tensor<1>>,
}

impl ModuleMapper for Restorer {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dims = param.lazy_shape();
        let (name, _) = self.at.pytorch(&dims.to_vec());
        match self.originals.remove(&name) {
            Some(o) => param.map(|_| o.reshape(dims)),
            None => param,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_layout_split_into_module_and_part() {
        let k = parse_kohya("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight")
            .unwrap()
            .unwrap();
        assert_eq!(
            (k.0, k.1.as_str(), k.2, k.3),
            (
                LoraComponent::Unet,
                "down_blocks_0_attentions_0_proj_in",
                Part::Down,
                true
            )
        );
        assert!(parse_kohya("lora_te2_x.alpha").is_err());
        assert!(parse_kohya("lora_unet_x.hada_w1_a").is_err());
        let ((c, m, p, _), l) = parse_dotted(
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.up.weight",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (c, m.as_str(), p, l),
            (
                LoraComponent::TextEncoder,
                "encoder.layers.0.self_attn.q_proj",
                Part::Up,
                LoraLayout::Diffusers
            )
        );
        let ((_, m, p, _), l) = parse_dotted("unet.mid_block.attentions.0.proj_in.lora_A.weight")
            .unwrap()
            .unwrap();
        assert_eq!(
            (m.as_str(), p, l),
            (
                "mid_block.attentions.0.proj_in",
                Part::Down,
                LoraLayout::Peft
            )
        );
        let ((_, m, _, _), _) = parse_dotted(
            "unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.down.weight",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            m,
            "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0"
        );
        assert!(parse_dotted("unet.x.lora_magnitude_vector").is_err());
        assert!(parse_dotted("unet.conv_in.weight").unwrap().is_none());
    }

    use crate::weights::tensor_file::{NamedTensor, write_safetensors_f32};
    use burn::nn::conv::{Conv2d, Conv2dConfig};
    use burn::nn::{Linear, LinearConfig};

    #[derive(Module, Debug)]
    struct Tiny {
        proj: Linear,
        conv: Conv2d,
    }

    fn tiny(device: &Device) -> Tiny {
        Tiny {
            proj: LinearConfig::new(3, 2).init(device),
            conv: Conv2dConfig::new([2, 4], [3, 3]).init(device),
        }
    }

    fn t(name: &str, shape: &[usize], data: Vec<f32>) -> NamedTensor {
        NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            data,
        }
    }

    fn ramp(n: usize, k: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 - n as f32 / 2.0) * k).collect()
    }

    fn write(dir: &Path, name: &str, tensors: &[NamedTensor]) -> std::path::PathBuf {
        let path = dir.join(name);
        write_safetensors_f32(&path, tensors, None).unwrap();
        path
    }

    fn values<const D: usize>(x: Tensor<D>) -> Vec<f32> {
        x.into_data().try_into_vec::<f32>().unwrap()
    }

    /// The merged weights are `W + scale * alpha / r * up @ down`, in PyTorch's layout for a
    /// linear layer (Burn keeps it transposed) and a 3x3 convolution (kohya's `[r, in, 3, 3]`
    /// down, `[out, r, 1, 1]` up).
    #[test]
    fn merging_adds_the_scaled_low_rank_product() {
        let device = Device::default();
        let dir = tempfile::tempdir().unwrap();
        let base = tiny(&device);
        let (down, up) = (ramp(2 * 3, 0.1), ramp(2 * 2, 0.3));
        let (cdown, cup) = (ramp(18, 0.05), ramp(4, 0.2));
        let path = write(
            dir.path(),
            "k.safetensors",
            &[
                t("lora_unet_proj.lora_down.weight", &[2, 3], down.clone()),
                t("lora_unet_proj.lora_up.weight", &[2, 2], up.clone()),
                t("lora_unet_proj.alpha", &[], vec![1.0]),
                t(
                    "lora_unet_conv.lora_down.weight",
                    &[1, 2, 3, 3],
                    cdown.clone(),
                ),
                t("lora_unet_conv.lora_up.weight", &[4, 1, 1, 1], cup.clone()),
                t("lora_unet_conv.alpha", &[], vec![3.0]),
            ],
        );
        let lora = LoraFile::open(&path).unwrap();
        assert_eq!(lora.layout(), LoraLayout::Kohya);
        let w0 = values(base.proj.weight.val()); // [in 3, out 2]
        let c0 = values(base.conv.weight.val()); // [4, 2, 3, 3]
        let (merged, m) = lora
            .merge_into(
                base,
                LoraComponent::Unet,
                0.5,
                false,
                &LoadOptions::default(),
            )
            .unwrap();
        assert_eq!(m.len(), 2);
        let w = values(merged.proj.weight.val());
        for o in 0..2 {
            for i in 0..3 {
                let delta: f32 = (0..2).map(|r| up[o * 2 + r] * down[r * 3 + i]).sum();
                let want = w0[i * 2 + o] + 0.5 * (1.0 / 2.0) * delta;
                assert!((w[i * 2 + o] - want).abs() < 1e-6, "proj [{o},{i}]");
            }
        }
        let c = values(merged.conv.weight.val());
        for o in 0..4 {
            for j in 0..18 {
                let want = c0[o * 18 + j] + 0.5 * 3.0 * cup[o] * cdown[j];
                assert!((c[o * 18 + j] - want).abs() < 1e-6, "conv [{o},{j}]");
            }
        }
    }

    #[test]
    fn bad_files_are_typed_errors_naming_file_and_key() {
        let device = Device::default();
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(&str, Vec<NamedTensor>, &str, &str)> = vec![
            (
                "missing_target",
                vec![
                    t("unet.nope.lora_A.weight", &[1, 3], vec![0.1; 3]),
                    t("unet.nope.lora_B.weight", &[2, 1], vec![0.1; 2]),
                ],
                "unet.nope.lora_A.weight",
                "does not have",
            ),
            (
                "wrong_shape",
                vec![
                    t("unet.proj.lora_A.weight", &[1, 5], vec![0.1; 5]),
                    t("unet.proj.lora_B.weight", &[2, 1], vec![0.1; 2]),
                ],
                "unet.proj.lora_A.weight",
                "do not fit",
            ),
            (
                "no_up",
                vec![t("unet.proj.lora_A.weight", &[1, 3], vec![0.1; 3])],
                "unet.proj.lora_A.weight",
                "no matching",
            ),
            (
                "rank_mismatch",
                vec![
                    t("unet.proj.lora_A.weight", &[2, 3], vec![0.1; 6]),
                    t("unet.proj.lora_B.weight", &[2, 1], vec![0.1; 2]),
                ],
                "unet.proj.lora_A.weight",
                "rank-r pair",
            ),
            (
                "not_lora",
                vec![t("proj.weight", &[2, 3], vec![0.1; 6])],
                "proj.weight",
                "not a LoRA tensor",
            ),
            (
                "nan",
                vec![
                    t("unet.proj.lora_A.weight", &[1, 3], vec![f32::NAN; 3]),
                    t("unet.proj.lora_B.weight", &[2, 1], vec![0.1; 2]),
                ],
                "unet.proj.lora_A.weight",
                "NaN",
            ),
            (
                "dora",
                vec![t("lora_unet_proj.dora_scale", &[2, 1], vec![0.1; 2])],
                "lora_unet_proj.dora_scale",
                "DoRA",
            ),
        ];
        for (name, tensors, key, what) in cases {
            let path = write(dir.path(), &format!("{name}.safetensors"), &tensors);
            let result = LoraFile::open(&path).and_then(|l| {
                l.merge_into(
                    tiny(&device),
                    LoraComponent::Unet,
                    1.0,
                    false,
                    &LoadOptions::default(),
                )
            });
            let e = result.err().unwrap_or_else(|| panic!("{name}: no error"));
            let msg = e.to_string();
            assert!(
                matches!(e, CoreError::Lora { .. })
                    && msg.contains(key)
                    && msg.contains(what)
                    && msg.contains(&format!("{name}.safetensors")),
                "{name}: {msg}"
            );
        }
        // An empty or garbage file is an error of the reader, naming the file.
        let path = dir.path().join("garbage.safetensors");
        std::fs::write(&path, b"not a tensor file").unwrap();
        let e = LoraFile::open(&path).unwrap_err().to_string();
        assert!(e.contains("garbage.safetensors"), "{e}");
    }

    #[test]
    fn peft_patterns_match_whole_segments() {
        assert!(pattern_matches("to_q", "a.b.to_q"));
        assert!(pattern_matches("a.b.to_q", "a.b.to_q"));
        assert!(!pattern_matches("q", "a.b.to_q"));
    }
}

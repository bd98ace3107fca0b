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

mod alpha;
mod keys;
mod merge;

pub use merge::MergedLora;

use crate::checkpoint::Checkpoint;
use crate::error::{CoreError, Result};
use alpha::resolve_alphas;
use keys::{Part, parse_dotted, parse_kohya};
use std::collections::BTreeMap;
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

pub(crate) fn lora_err(path: &Path, key: &str, message: impl Into<String>) -> CoreError {
    CoreError::Lora {
        path: path.to_path_buf(),
        key: key.to_string(),
        message: message.into(),
    }
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
}

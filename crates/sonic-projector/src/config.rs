//! The projector's sizes: from a JSON config, from a weights file's shapes, or the official
//! release's.
//!
//! A config file is either a bare object or one with a `projector` section (the fixtures'
//! `config.json`):
//!
//! ```json
//! { "projector": { "audio_dim": 1024, "tokens": 77, "heads": 8, "dim_head": 40,
//!                  "layers": 4, "mode": "faithful" } }
//! ```
//!
//! The official constructor argument names (`audio_token_count`, `transformer_layer_count`,
//! `h`) are accepted as aliases. Keys that only restate derived sizes (`context_dim`,
//! `inner_dim`, `attention_scale`) are checked against the sizes they follow from; `gelu`
//! must name the exact (erf) GELU; any other key is ignored.
//!
//! Why one file of over 600 lines: the code is about 500 lines; the rest are its unit tests.

use crate::error::{ProjectorError, Result};
use crate::weights;
use serde::{Deserialize, Serialize};
use sonic_core::config::unsupported;
use std::collections::BTreeMap;
use std::path::Path;

/// How the attention blocks are wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockMode {
    /// The official release: every block reads the projection output and only the last block
    /// reaches the output (`out = between[i](attn[i](proj)) + proj`, for every `i`). The
    /// released weights were trained this way.
    #[default]
    Faithful,
    /// Ours, for new training: block `i` reads block `i - 1`'s output
    /// (`h_i = between[i](attn[i](h_{i-1})) + h_{i-1}`, `h_{-1} = proj`).
    Chained,
}

impl std::fmt::Display for BlockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Faithful => "faithful",
            Self::Chained => "chained",
        })
    }
}

impl std::str::FromStr for BlockMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "faithful" | "official" => Ok(Self::Faithful),
            "chained" => Ok(Self::Chained),
            other => Err(format!(
                "unknown block mode `{other}` (expected `faithful` or `chained`)"
            )),
        }
    }
}

/// The head count assumed when a bare weights file (which cannot tell `heads` from
/// `dim_head`) is loaded: the official `Adapter`'s `h = 8`.
pub const DEFAULT_HEADS: usize = 8;

/// The key of a safetensors file's `__metadata__` under which [`crate::Projector::save_safetensors`]
/// stores the config as JSON (read back by [`ProjectorConfig::infer_from_file`]).
pub const METADATA_KEY: &str = "projector_config";

/// Upper bound on the parameter count a config may describe (guards against configs or
/// weight headers declaring absurd sizes).
pub const MAX_PARAMS: usize = 1 << 34;

/// The sizes and wiring of the audio projector (the official `Adapter(audio_dim,
/// context_dim, h, dim_head, audio_token_count, transformer_layer_count)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectorConfig {
    /// Width of the audio embedding (1024 for MS-CLAP 2022).
    pub audio_dim: usize,
    /// Number of audio tokens `T` (77 in the release).
    #[serde(alias = "audio_token_count")]
    pub tokens: usize,
    /// Attention heads per block (8 in the release).
    #[serde(alias = "h")]
    pub heads: usize,
    /// Width of each head (40 in the release).
    pub dim_head: usize,
    /// Number of attention blocks (4 in the release).
    #[serde(alias = "transformer_layer_count")]
    pub layers: usize,
    /// How the blocks are wired (default: faithful).
    #[serde(default)]
    pub mode: BlockMode,
    /// Kernel size of every convolution (17).
    #[serde(default = "default_kernel")]
    pub kernel_size: usize,
    /// Padding of the length-preserving convolutions 0, 2, 5 (8; must be `(kernel - 1) / 2`).
    #[serde(default = "default_padding")]
    pub padding: usize,
    /// Stride of the transposed convolution 8 (3).
    #[serde(default = "default_up_stride")]
    pub up_stride: usize,
    /// Padding of the transposed convolution 8 (7).
    #[serde(default = "default_strided_padding")]
    pub up_padding: usize,
    /// Stride of the last convolution 12 (4).
    #[serde(default = "default_down_stride")]
    pub down_stride: usize,
    /// Padding of the last convolution 12 (7).
    #[serde(default = "default_strided_padding")]
    pub down_padding: usize,
    /// Epsilon of the three joint LayerNorms (1e-5, PyTorch's default).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Input channels of the first convolution; only 1 (the embedding is unsqueezed).
    #[serde(default = "one")]
    pub initial_channel_dim: usize,
    /// The token width as declared (optional; checked against [`Self::context_dim`]).
    #[serde(default, rename = "context_dim", skip_serializing)]
    pub declared_context_dim: Option<usize>,
    /// The attention width as declared (optional; checked against [`Self::inner_dim`]).
    #[serde(default, rename = "inner_dim", skip_serializing)]
    pub declared_inner_dim: Option<usize>,
    /// The attention scale as declared (optional; checked against [`Self::scale`]).
    #[serde(default, rename = "attention_scale", skip_serializing)]
    pub declared_attention_scale: Option<f64>,
    /// The GELU flavour as declared (optional; only the exact, erf-based GELU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gelu: Option<String>,
}

fn default_kernel() -> usize {
    17
}
fn default_padding() -> usize {
    8
}
fn default_up_stride() -> usize {
    3
}
fn default_down_stride() -> usize {
    4
}
fn default_strided_padding() -> usize {
    7
}
fn default_eps() -> f64 {
    1e-5
}
fn one() -> usize {
    1
}

impl ProjectorConfig {
    /// A projector of the given sizes with the official layer hyperparameters (kernel 17,
    /// strides 3 / 4, paddings 8 / 7 / 7, eps 1e-5) in faithful mode.
    pub fn new(
        audio_dim: usize,
        tokens: usize,
        heads: usize,
        dim_head: usize,
        layers: usize,
    ) -> Self {
        Self {
            audio_dim,
            tokens,
            heads,
            dim_head,
            layers,
            mode: BlockMode::Faithful,
            kernel_size: default_kernel(),
            padding: default_padding(),
            up_stride: default_up_stride(),
            up_padding: default_strided_padding(),
            down_stride: default_down_stride(),
            down_padding: default_strided_padding(),
            layer_norm_eps: default_eps(),
            initial_channel_dim: 1,
            declared_context_dim: None,
            declared_inner_dim: None,
            declared_attention_scale: None,
            gelu: None,
        }
    }

    /// The released projector: `Adapter(audio_token_count=77, transformer_layer_count=4)`
    /// (1024 -> 77 x 768, 8 heads x 40), faithful mode.
    pub fn official() -> Self {
        Self::new(1024, 77, 8, 40, 4)
    }

    /// The same config with another block wiring.
    pub fn with_mode(mut self, mode: BlockMode) -> Self {
        self.mode = mode;
        self
    }

    /// The same config with another head count (`dim_head` follows so that the attention
    /// width stays the same; it must divide it).
    pub fn with_heads(mut self, heads: usize) -> Result<Self> {
        let inner = self.inner_dim();
        if heads == 0 || !inner.is_multiple_of(heads) {
            return Err(unsupported(
                Path::new("<config>"),
                "heads",
                heads,
                &format!("must divide the attention width {inner}"),
            )
            .into());
        }
        self.heads = heads;
        self.dim_head = inner / heads;
        self.declared_attention_scale = None;
        Ok(self)
    }

    /// Reads a JSON config file: a bare config or one with a `projector` section.
    pub fn from_file(path: &Path) -> Result<Self> {
        let value: serde_json::Value = sonic_core::config::read_json_lenient(path)?;
        Self::from_json_value(&value, path)
    }

    /// Parses a config from JSON (bare, or with a `projector` section); `origin` names where
    /// it came from in errors.
    pub fn from_json_value(value: &serde_json::Value, origin: &Path) -> Result<Self> {
        let section = value.get("projector").unwrap_or(value);
        let cfg: Self = sonic_core::config::from_value(section, origin)?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Width of the attention projections, `heads * dim_head`.
    pub fn inner_dim(&self) -> usize {
        self.heads.saturating_mul(self.dim_head)
    }

    /// The attention scale, `dim_head ^ -0.5`.
    pub fn scale(&self) -> f64 {
        (self.dim_head as f64).powf(-0.5)
    }

    /// Length after the transposed convolution (`(audio_dim - 1) * up_stride - 2 *
    /// up_padding + kernel`; `3 * audio_dim` in the release), `None` when not positive.
    pub fn up_len(&self) -> Option<usize> {
        self.audio_dim
            .checked_sub(1)?
            .checked_mul(self.up_stride)?
            .checked_add(self.kernel_size)?
            .checked_sub(2usize.checked_mul(self.up_padding)?)
            .filter(|&l| l > 0)
    }

    /// Width of the audio tokens: the length after the last strided convolution,
    /// `(up_len + 2 * down_padding - kernel) / down_stride + 1` (= `floor((3a - 3) / 4) + 1`
    /// in the release; 768 for a = 1024). 0 when the sizes do not fit.
    pub fn context_dim(&self) -> usize {
        self.try_context_dim().unwrap_or(0)
    }

    fn try_context_dim(&self) -> Option<usize> {
        let padded = self
            .up_len()?
            .checked_add(2usize.checked_mul(self.down_padding)?)?;
        let span = padded.checked_sub(self.kernel_size)?;
        if self.down_stride == 0 {
            return None;
        }
        Some(span / self.down_stride + 1)
    }

    /// The number of parameters (6,130,050 for the release), `None` on overflow.
    pub fn num_params(&self) -> Option<usize> {
        let t = self.tokens;
        let k = self.kernel_size;
        let a = self.audio_dim;
        let c = self.try_context_dim()?;
        let inner = self.heads.checked_mul(self.dim_head)?;
        let conv = |cin: usize| cin.checked_mul(t)?.checked_mul(k)?.checked_add(t);
        let norm = |len: usize| t.checked_mul(len)?.checked_mul(2);
        let projection = [
            conv(1)?,
            conv(t)?,
            norm(a)?,
            conv(t)?,
            norm(a)?,
            conv(t)?,
            norm(self.up_len()?)?,
            conv(t)?,
        ]
        .iter()
        .try_fold(0usize, |s, &x| s.checked_add(x))?;
        let block = [
            c.checked_mul(inner)?.checked_mul(3)?,
            inner.checked_mul(inner)?.checked_add(inner)?,
            inner.checked_mul(c)?.checked_add(c)?,
        ]
        .iter()
        .try_fold(0usize, |s, &x| s.checked_add(x))?;
        projection
            .checked_add(block.checked_mul(self.layers)?)?
            .checked_add(c.checked_mul(c)?.checked_add(c)?)
    }

    /// Rejects sizes this implementation cannot build (`origin` names the config's source).
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let bad = |key: &str, value: serde_json::Value, reason: &str| -> ProjectorError {
            unsupported(origin, key, value, reason).into()
        };
        for (key, v) in [
            ("audio_dim", self.audio_dim),
            ("tokens", self.tokens),
            ("heads", self.heads),
            ("dim_head", self.dim_head),
            ("layers", self.layers),
            ("kernel_size", self.kernel_size),
            ("up_stride", self.up_stride),
            ("down_stride", self.down_stride),
        ] {
            if v == 0 {
                return Err(bad(key, v.into(), "must be positive"));
            }
        }
        if self.initial_channel_dim != 1 {
            return Err(bad(
                "initial_channel_dim",
                self.initial_channel_dim.into(),
                "only 1 (the embedding [B, audio_dim] is unsqueezed to one channel)",
            ));
        }
        if self.padding.checked_mul(2).and_then(|p| p.checked_add(1)) != Some(self.kernel_size) {
            return Err(bad(
                "padding",
                self.padding.into(),
                &format!(
                    "the convolutions before the LayerNorms must keep the length: padding = (kernel_size - 1) / 2 = {}",
                    self.kernel_size.saturating_sub(1) / 2
                ),
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(bad(
                "layer_norm_eps",
                serde_json::json!(self.layer_norm_eps),
                "must be positive and finite",
            ));
        }
        if self.up_len().is_none() || self.try_context_dim().is_none() {
            return Err(bad(
                "audio_dim",
                self.audio_dim.into(),
                "too short for the transposed / strided convolutions",
            ));
        }
        match self.num_params() {
            Some(n) if n <= MAX_PARAMS => {}
            _ => {
                return Err(bad(
                    "audio_dim",
                    self.audio_dim.into(),
                    "the sizes describe an impossibly large projector",
                ));
            }
        }
        if let Some(c) = self.declared_context_dim
            && c != self.context_dim()
        {
            return Err(bad(
                "context_dim",
                c.into(),
                &format!(
                    "the convolutions give {} for audio_dim {} (floor((3a - 3) / 4) + 1 with the official layers)",
                    self.context_dim(),
                    self.audio_dim
                ),
            ));
        }
        if let Some(i) = self.declared_inner_dim
            && i != self.inner_dim()
        {
            return Err(bad(
                "inner_dim",
                i.into(),
                &format!("must be heads * dim_head = {}", self.inner_dim()),
            ));
        }
        if let Some(s) = self.declared_attention_scale
            && (s - self.scale()).abs() > 1e-6 * self.scale()
        {
            return Err(bad(
                "attention_scale",
                serde_json::json!(s),
                &format!("must be dim_head ^ -0.5 = {}", self.scale()),
            ));
        }
        if let Some(g) = &self.gelu {
            let g = g.to_ascii_lowercase();
            if !(g.starts_with("exact") || g.starts_with("erf") || g == "none" || g == "gelu") {
                return Err(bad(
                    "gelu",
                    g.into(),
                    "only the exact (erf) GELU of nn.GELU()",
                ));
            }
        }
        Ok(())
    }

    /// Every tensor of a projector of this config, in PyTorch naming and layout (the keys of
    /// the official state dict): key -> shape, read from the module built (lazily, without
    /// allocating its parameters) from this config.
    pub fn expected_shapes(&self) -> Result<BTreeMap<String, Vec<usize>>> {
        let projector = crate::Projector::new(self, &burn::tensor::Device::default())?;
        Ok(weights::file_shapes(&projector))
    }

    /// Infers the sizes from a weights file's tensor shapes (PyTorch keys, as in the
    /// official state dict): `audio_dim` and `tokens` from the first LayerNorm, the kernel
    /// from the first convolution, the layer count from the `cross_attention.<i>` entries, the
    /// attention width from `to_q_adapter`. A bare state dict cannot tell `heads` from
    /// `dim_head`: `heads` is taken as given, else [`DEFAULT_HEADS`] (the release's).
    /// Nothing else is checked here: loading compares every shape.
    pub fn infer_from_shapes(
        shapes: &BTreeMap<String, Vec<usize>>,
        origin: &Path,
        heads: Option<usize>,
    ) -> Result<Self> {
        let missing = |key: &str| -> ProjectorError {
            sonic_core::CoreError::MissingTensor {
                path: origin.to_path_buf(),
                key: key.to_string(),
                expected: vec![],
            }
            .into()
        };
        let dim = |key: &str, rank: usize, i: usize| -> Result<usize> {
            let s = shapes.get(key).ok_or_else(|| missing(key))?;
            if s.len() != rank {
                return Err(sonic_core::CoreError::WeightsFile {
                    path: origin.to_path_buf(),
                    message: format!("`{key}` has shape {s:?}, expected rank {rank}"),
                }
                .into());
            }
            Ok(s[i])
        };
        let tokens = dim("audio_emb_projection.4.weight", 2, 0)?;
        let audio_dim = dim("audio_emb_projection.4.weight", 2, 1)?;
        let kernel_size = dim("audio_emb_projection.0.weight", 3, 2)?;
        let inner = dim("cross_attention.0.to_q_adapter.weight", 2, 0)?;
        let layers = shapes
            .keys()
            .filter_map(|k| {
                k.strip_prefix("cross_attention.")?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |m| m + 1);
        let heads = heads.unwrap_or(DEFAULT_HEADS);
        if heads == 0 || !inner.is_multiple_of(heads) {
            return Err(unsupported(
                origin,
                "heads",
                heads,
                &format!(
                    "does not divide the attention width {inner} of the weights; give the head count in a config"
                ),
            )
            .into());
        }
        let mut cfg = Self::new(audio_dim, tokens, heads, inner / heads, layers);
        cfg.kernel_size = kernel_size;
        cfg.padding = kernel_size.saturating_sub(1) / 2;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Infers the config of a weights file (safetensors or torch pickle, detected from the
    /// bytes): the config stored in the safetensors metadata by
    /// [`crate::Projector::save_safetensors`] when there is one, else the sizes from the shapes
    /// with [`DEFAULT_HEADS`] heads and faithful mode (see [`Self::infer_from_shapes`]).
    pub fn infer_from_file(path: &Path) -> Result<Self> {
        let file = weights::open(path)?;
        if let Some(json) = file.metadata().get(METADATA_KEY) {
            let value: serde_json::Value =
                serde_json::from_str(json).map_err(|e| sonic_core::CoreError::Json {
                    path: path.to_path_buf(),
                    message: format!("metadata `{METADATA_KEY}`: {e}"),
                })?;
            return Self::from_json_value(&value, path);
        }
        Self::infer_from_shapes(&file.shapes(), path, None)
    }

    /// [`Self::infer_from_file`] for a safetensors file.
    pub fn infer_from_safetensors(path: &Path) -> Result<Self> {
        Self::infer_from_file(path)
    }

    /// [`Self::infer_from_file`] for a torch state-dict pickle (`audio_projector_*.pth`).
    pub fn infer_from_pytorch(path: &Path) -> Result<Self> {
        Self::infer_from_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_sizes() {
        let c = ProjectorConfig::official();
        assert_eq!(c.up_len(), Some(3072));
        assert_eq!(c.context_dim(), 768);
        assert_eq!(c.inner_dim(), 320);
        assert_eq!(c.num_params(), Some(6_130_050));
        assert!((c.scale() - 0.15811388300841897).abs() < 1e-15);
        c.validate(Path::new("x")).unwrap();
    }

    #[test]
    fn context_rule_matches_the_formula() {
        for a in 2..300 {
            let c = ProjectorConfig::new(a, 7, 2, 4, 1);
            assert_eq!(c.context_dim(), (3 * a - 3) / 4 + 1, "audio_dim {a}");
            assert_eq!(c.up_len(), Some(3 * a));
        }
    }

    #[test]
    fn fixture_style_config_parses_and_checks_derived_keys() {
        let v = serde_json::json!({"projector": {
            "audio_dim": 43, "tokens": 77, "context_dim": 32, "heads": 4, "dim_head": 10,
            "layers": 4, "inner_dim": 40, "initial_channel_dim": 1, "kernel_size": 17,
            "layer_norm_eps": 1e-05, "gelu": "exact (erf)",
            "attention_scale": 0.31622776601683794,
            "context_dim_rule": "floor((3 * audio_dim - 3) / 4) + 1"}});
        let c = ProjectorConfig::from_json_value(&v, Path::new("c.json")).unwrap();
        assert_eq!(
            (c.context_dim(), c.inner_dim(), c.mode),
            (32, 40, BlockMode::Faithful)
        );
        let mut bad = v.clone();
        bad["projector"]["context_dim"] = 33.into();
        let e = ProjectorConfig::from_json_value(&bad, Path::new("c.json")).unwrap_err();
        assert!(e.to_string().contains("context_dim"), "{e}");
        let mut bad = v.clone();
        bad["projector"]["gelu"] = "tanh".into();
        assert!(ProjectorConfig::from_json_value(&bad, Path::new("c.json")).is_err());
        let mut bad = v;
        bad["projector"]["heads"] = 0.into();
        assert!(ProjectorConfig::from_json_value(&bad, Path::new("c.json")).is_err());
    }

    #[test]
    fn official_aliases_and_mode() {
        let v = serde_json::json!({"audio_dim": 1024, "audio_token_count": 77, "h": 8,
            "dim_head": 40, "transformer_layer_count": 4, "mode": "chained"});
        let c = ProjectorConfig::from_json_value(&v, Path::new("c.json")).unwrap();
        assert_eq!(c, ProjectorConfig::official().with_mode(BlockMode::Chained));
        let round: ProjectorConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(round, c);
    }

    #[test]
    fn absurd_sizes_are_rejected() {
        let c = ProjectorConfig::new(usize::MAX / 2, 77, 8, 40, 4);
        assert!(c.validate(Path::new("x")).is_err());
        let c = ProjectorConfig::new(1 << 20, 1 << 12, 8, 40, 4);
        assert!(c.validate(Path::new("x")).is_err());
        let mut c = ProjectorConfig::official();
        c.padding = 7;
        assert!(c.validate(Path::new("x")).is_err());
    }

    #[test]
    fn infer_from_official_shapes() {
        let c = ProjectorConfig::official();
        let shapes = c.expected_shapes().unwrap();
        let got = ProjectorConfig::infer_from_shapes(&shapes, Path::new("w"), None).unwrap();
        assert_eq!(got, c);
        let got = ProjectorConfig::infer_from_shapes(&shapes, Path::new("w"), Some(4)).unwrap();
        assert_eq!((got.heads, got.dim_head), (4, 80));
        assert!(ProjectorConfig::infer_from_shapes(&shapes, Path::new("w"), Some(7)).is_err());
        let e =
            ProjectorConfig::infer_from_shapes(&BTreeMap::new(), Path::new("w"), None).unwrap_err();
        assert!(
            e.to_string().contains("audio_emb_projection.4.weight"),
            "{e}"
        );
    }

    #[test]
    fn block_mode_parses() {
        assert_eq!("Chained".parse::<BlockMode>(), Ok(BlockMode::Chained));
        assert_eq!("faithful".parse::<BlockMode>(), Ok(BlockMode::Faithful));
        assert!("x".parse::<BlockMode>().is_err());
        assert_eq!(BlockMode::Chained.to_string(), "chained");
    }
}

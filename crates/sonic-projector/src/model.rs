//! The projector module: the official `Adapter` (`ldm/modules/encoders/audio_projector_res.py`)
//! on Burn.
//!
//! `[B, audio_dim]` -> unsqueeze -> `audio_emb_projection` (convolutions, GELUs, LayerNorms
//! over `[T, length]` jointly) -> `[B, T, context_dim]` -> attention blocks (self-attention
//! over the tokens, no output projection, then `between_attention[i]` and a residual) ->
//! `to_out_adapter` -> `[B, T, context_dim]` audio tokens.

use crate::config::{BlockMode, METADATA_KEY, ProjectorConfig};
use crate::error::Result;
use crate::weights::{self, module_to_file_key};
use burn::module::{Module, Param};
use burn::nn::conv::{Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig1d};
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, bridge};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor};
use sonic_core::weights::{NamedTensor, write_safetensors_f32};
use sonic_kernels::activation::gelu;
use sonic_kernels::conv::conv1d;
use std::path::Path;

/// `nn.LayerNorm([T, L])`: normalises each sample jointly over its last two dimensions, with
/// an elementwise affine of shape `[T, L]` (PyTorch names `weight`, `bias`). Burn's
/// `LayerNorm` only normalises the last dimension, hence this module.
#[derive(Module, Debug)]
pub struct JointLayerNorm {
    /// Scale, `[T, L]`.
    pub weight: Param<Tensor<2>>,
    /// Shift, `[T, L]`.
    pub bias: Param<Tensor<2>>,
    /// Added to the variance.
    pub eps: f64,
}

impl JointLayerNorm {
    /// A norm over `[rows, cols]` with weight 1 and bias 0 (PyTorch's initialisation).
    pub fn new(rows: usize, cols: usize, eps: f64, device: &Device) -> Self {
        Self {
            weight: Initializer::Ones.init([rows, cols], device),
            bias: Initializer::Zeros.init([rows, cols], device),
            eps,
        }
    }

    /// Normalises `[B, T, L]` over `(T, L)` per sample (biased variance, as PyTorch).
    ///
    /// The statistics are reduced in two stages (over `L`, then over `T`): equal-sized chunks
    /// keep the mean exact while bounding the float32 rounding error by the chunk sizes
    /// instead of `T * L`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let mean = x.clone().mean_dim(2).mean_dim(1);
        let centered = x - mean;
        let var = centered.clone().square().mean_dim(2).mean_dim(1);
        let normed = centered / var.add_scalar(self.eps).sqrt();
        normed * self.weight.val().unsqueeze_dim::<3>(0) + self.bias.val().unsqueeze_dim::<3>(0)
    }
}

/// `audio_emb_projection`, the official `nn.Sequential` (indices in the field names; GELU
/// and dropout have no weights): 0 Conv1d(1 -> T), 1 GELU, 2 Conv1d, 3 GELU, 4 LayerNorm, 5
/// Conv1d, 6 GELU, 7 LayerNorm, 8 ConvTranspose1d (stride 3), 9 GELU, 10 LayerNorm, 11 GELU,
/// 12 Conv1d (stride 4), 13 Dropout.
#[derive(Module, Debug)]
pub struct AudioEmbProjection {
    /// Index 0: `Conv1d(1, T, k, padding = (k - 1) / 2)`.
    pub conv_0: Conv1d,
    /// Index 2: `Conv1d(T, T, k, padding = (k - 1) / 2)`.
    pub conv_2: Conv1d,
    /// Index 4: `LayerNorm([T, audio_dim])`.
    pub norm_4: JointLayerNorm,
    /// Index 5: `Conv1d(T, T, k, padding = (k - 1) / 2)`.
    pub conv_5: Conv1d,
    /// Index 7: `LayerNorm([T, audio_dim])`.
    pub norm_7: JointLayerNorm,
    /// Index 8: `ConvTranspose1d(T, T, k, stride 3, padding 7)`.
    pub conv_transpose_8: ConvTranspose1d,
    /// Index 10: `LayerNorm([T, up_len])`.
    pub norm_10: JointLayerNorm,
    /// Index 12: `Conv1d(T, T, k, stride 4, padding 7)`.
    pub conv_12: Conv1d,
}

impl AudioEmbProjection {
    /// Builds the stage with untrained weights (PyTorch-like initialisation).
    pub fn new(config: &ProjectorConfig, device: &Device) -> Self {
        let t = config.tokens;
        let k = config.kernel_size;
        let conv = |cin: usize, stride: usize, pad: usize| {
            Conv1dConfig::new(cin, t, k)
                .with_stride(stride)
                .with_padding(PaddingConfig1d::Explicit(pad, pad))
                .init(device)
        };
        let eps = config.layer_norm_eps;
        Self {
            conv_0: conv(1, 1, config.padding),
            conv_2: conv(t, 1, config.padding),
            norm_4: JointLayerNorm::new(t, config.audio_dim, eps, device),
            conv_5: conv(t, 1, config.padding),
            norm_7: JointLayerNorm::new(t, config.audio_dim, eps, device),
            conv_transpose_8: ConvTranspose1dConfig::new([t, t], k)
                .with_stride(config.up_stride)
                .with_padding(config.up_padding)
                .init(device),
            norm_10: JointLayerNorm::new(t, config.up_len().unwrap_or(0), eps, device),
            conv_12: conv(t, config.down_stride, config.down_padding),
        }
    }

    /// `[B, 1, audio_dim]` -> `[B, T, context_dim]`; with `record`, pushes the output of every
    /// Sequential index 0..=13 in order.
    pub fn forward(&self, x: Tensor<3>, mut record: Option<&mut Vec<Tensor<3>>>) -> Tensor<3> {
        let mut keep = |x: Tensor<3>| -> Tensor<3> {
            if let Some(r) = record.as_deref_mut() {
                r.push(x.clone());
            }
            x
        };
        let x = keep(conv1d(&self.conv_0, x));
        let x = keep(gelu(x));
        let x = keep(conv1d(&self.conv_2, x));
        let x = keep(gelu(x));
        let x = keep(self.norm_4.forward(x));
        let x = keep(conv1d(&self.conv_5, x));
        let x = keep(gelu(x));
        let x = keep(self.norm_7.forward(x));
        let x = keep(self.conv_transpose_8.forward(x));
        let x = keep(gelu(x));
        let x = keep(self.norm_10.forward(x));
        let x = keep(gelu(x));
        let x = keep(conv1d(&self.conv_12, x));
        // 13: Dropout, the identity at inference.
        keep(x)
    }
}

/// The official `MyCrossAttention` (despite its name, a self-attention over the audio
/// tokens): `to_{q,k,v}_adapter` without bias, `heads` heads, scale `dim_head ^ -0.5`, no
/// output projection.
#[derive(Module, Debug)]
pub struct TokenAttention {
    /// Query projection, context_dim -> inner.
    pub to_q_adapter: Linear,
    /// Key projection, context_dim -> inner.
    pub to_k_adapter: Linear,
    /// Value projection, context_dim -> inner.
    pub to_v_adapter: Linear,
    /// Number of heads.
    pub heads: usize,
    /// Scale of the scores.
    pub scale: f64,
}

impl TokenAttention {
    /// Builds the attention with untrained weights.
    pub fn new(config: &ProjectorConfig, device: &Device) -> Self {
        let lin = || {
            LinearConfig::new(config.context_dim(), config.inner_dim())
                .with_bias(false)
                .init(device)
        };
        Self {
            to_q_adapter: lin(),
            to_k_adapter: lin(),
            to_v_adapter: lin(),
            heads: config.heads,
            scale: config.scale(),
        }
    }

    /// `[B, T, context_dim]` -> `[B, T, inner]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let split = |t: Tensor<3>| -> Tensor<4> {
            let [b, n, c] = t.dims();
            t.reshape([b, n, self.heads, c / self.heads])
                .swap_dims(1, 2)
        };
        let q = split(self.to_q_adapter.forward(x.clone()));
        let k = split(self.to_k_adapter.forward(x.clone()));
        let v = split(self.to_v_adapter.forward(x));
        let o = attention(
            q,
            k,
            v,
            None,
            None,
            AttentionModuleOptions {
                scale: Some(self.scale),
                softcap: None,
                is_causal: false,
            },
        );
        let [b, h, n, d] = o.dims();
        o.swap_dims(1, 2).reshape([b, n, h * d])
    }
}

/// `between_attention[i]`: `Linear(inner, inner)` (index 0), GELU, `Linear(inner,
/// context_dim)` (index 2), Dropout.
#[derive(Module, Debug)]
pub struct BetweenAttention {
    /// Index 0.
    pub linear_0: Linear,
    /// Index 2.
    pub linear_2: Linear,
}

impl BetweenAttention {
    /// Builds the block with untrained weights.
    pub fn new(config: &ProjectorConfig, device: &Device) -> Self {
        let inner = config.inner_dim();
        Self {
            linear_0: LinearConfig::new(inner, inner).init(device),
            linear_2: LinearConfig::new(inner, config.context_dim()).init(device),
        }
    }

    /// `[B, T, inner]` -> `[B, T, context_dim]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.linear_2.forward(gelu(self.linear_0.forward(x)))
    }
}

/// Everything a forward pass computed, for parity checks and inspection.
#[derive(Debug, Clone)]
pub struct ProjectorTrace {
    /// Outputs of `audio_emb_projection[0..=13]` (`emb_projection.<i>`).
    pub emb_projection: Vec<Tensor<3>>,
    /// Self-attention output of each block (`block.<i>.attn`), `[B, T, inner]`.
    pub block_attn: Vec<Tensor<3>>,
    /// Output of each block, `between_attention[i](attn) + residual` (`block.<i>.out`).
    pub block_out: Vec<Tensor<3>>,
    /// The audio tokens, `[B, T, context_dim]`.
    pub out: Tensor<3>,
}

impl ProjectorTrace {
    /// The tensor called `name` in the fixtures' naming: `emb_projection.<i>`,
    /// `block.<i>.attn`, `block.<i>.out` or `out`.
    pub fn get(&self, name: &str) -> Option<&Tensor<3>> {
        if name == "out" {
            return Some(&self.out);
        }
        if let Some(i) = name.strip_prefix("emb_projection.") {
            return self.emb_projection.get(i.parse::<usize>().ok()?);
        }
        let (i, what) = name.strip_prefix("block.")?.split_once('.')?;
        let i: usize = i.parse().ok()?;
        match what {
            "attn" => self.block_attn.get(i),
            "out" => self.block_out.get(i),
            _ => None,
        }
    }

    /// Every recorded tensor with its name, in computation order.
    pub fn named(&self) -> Vec<(String, &Tensor<3>)> {
        let mut v: Vec<(String, &Tensor<3>)> = self
            .emb_projection
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("emb_projection.{i}"), t))
            .collect();
        for (i, (a, o)) in self.block_attn.iter().zip(&self.block_out).enumerate() {
            v.push((format!("block.{i}.attn"), a));
            v.push((format!("block.{i}.out"), o));
        }
        v.push(("out".into(), &self.out));
        v
    }
}

/// The SonicDiffusion audio projector: CLAP embeddings `[B, audio_dim]` to audio tokens
/// `[B, T, context_dim]`. Field names mirror the official state-dict keys (see
/// [`crate::weights`]).
#[derive(Module, Debug)]
pub struct Projector {
    /// The convolutional stage.
    pub audio_emb_projection: AudioEmbProjection,
    /// The self-attention of each block.
    pub cross_attention: Vec<TokenAttention>,
    /// The MLP of each block.
    pub between_attention: Vec<BetweenAttention>,
    /// The output projection (`to_out_adapter.0`; `.1` is dropout).
    pub to_out_adapter: Vec<Linear>,
    /// The sizes and wiring.
    #[module(skip)]
    config: ProjectorConfig,
}

impl Projector {
    /// Builds a projector with untrained weights (PyTorch-like initialisation: Kaiming-uniform
    /// convolutions and linears, LayerNorms at weight 1 and bias 0), e.g. for training.
    pub fn new(config: &ProjectorConfig, device: &Device) -> Result<Self> {
        config.validate(Path::new("<config>"))?;
        let layers = config.layers;
        Ok(Self {
            audio_emb_projection: AudioEmbProjection::new(config, device),
            cross_attention: (0..layers)
                .map(|_| TokenAttention::new(config, device))
                .collect(),
            between_attention: (0..layers)
                .map(|_| BetweenAttention::new(config, device))
                .collect(),
            to_out_adapter: vec![
                LinearConfig::new(config.context_dim(), config.context_dim()).init(device),
            ],
            config: config.clone(),
        })
    }

    /// Loads a weights file (safetensors or the official torch pickle, detected from the
    /// bytes) with its config inferred from the file (see
    /// [`ProjectorConfig::infer_from_file`]: the released files need nothing else).
    pub fn from_file(path: &Path, device: &Device) -> Result<Self> {
        let config = ProjectorConfig::infer_from_file(path)?;
        Self::from_file_with_config(path, &config, device)
    }

    /// Loads a weights file (safetensors or torch pickle) into a projector of `config`; the
    /// file's keys and shapes are checked against the config before the model is built.
    pub fn from_file_with_config(
        path: &Path,
        config: &ProjectorConfig,
        device: &Device,
    ) -> Result<Self> {
        config.validate(path)?;
        let file = weights::open(path)?;
        // The parameters are allocated lazily: names and shapes are checked against the file
        // before any memory is taken for them.
        let model = Self::new(config, device)?;
        model.load_file(&file)
    }

    /// Loads the tensors of an opened projector file (see [`weights::open`]) into this
    /// projector, after checking every name and shape.
    pub fn load_file(self, file: &sonic_core::checkpoint::Checkpoint) -> Result<Self> {
        Ok(file.load_into(self, &weights::load_options())?)
    }

    /// Loads a weights file using the config at `config_path` (a bare config or a file with a
    /// `projector` section, such as the fixtures' `config.json`).
    pub fn from_files(weights: &Path, config_path: &Path, device: &Device) -> Result<Self> {
        let config = ProjectorConfig::from_file(config_path)?;
        Self::from_file_with_config(weights, &config, device)
    }

    /// The config.
    pub fn config(&self) -> &ProjectorConfig {
        &self.config
    }

    /// The block wiring.
    pub fn mode(&self) -> BlockMode {
        self.config.mode
    }

    /// Switches the block wiring (the weights are the same in both modes).
    pub fn set_mode(&mut self, mode: BlockMode) {
        self.config.mode = mode;
    }

    /// The same projector with another block wiring.
    pub fn with_mode(mut self, mode: BlockMode) -> Self {
        self.set_mode(mode);
        self
    }

    fn check_input(&self, embeddings: &Tensor<2>) -> Result<()> {
        let [b, a] = embeddings.dims();
        if b == 0 || a != self.config.audio_dim {
            return Err(sonic_core::CoreError::BadShape {
                what: "audio embeddings",
                expected: format!("[B >= 1, {}]", self.config.audio_dim),
                found: vec![b, a],
            }
            .into());
        }
        Ok(())
    }

    fn block(&self, i: usize, x: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let attn = self.cross_attention[i].forward(x.clone());
        let out = self.between_attention[i].forward(attn.clone()) + x;
        (attn, out)
    }

    fn project_out(&self, x: Tensor<3>) -> Tensor<3> {
        self.to_out_adapter.iter().fold(x, |h, l| l.forward(h))
    }

    fn checked_layers(&self) -> Result<usize> {
        let n = self.cross_attention.len();
        if n == 0 || self.between_attention.len() != n {
            return Err(sonic_core::config::unsupported(
                Path::new("<projector>"),
                "layers",
                n,
                "needs at least one block and as many MLPs as attentions",
            )
            .into());
        }
        Ok(n)
    }

    /// The audio tokens `[B, T, context_dim]` of CLAP embeddings `[B, audio_dim]`.
    ///
    /// In faithful mode only the last block reaches the output, so only it is computed (the
    /// official loop computes and discards the others; the result is the same).
    pub fn forward(&self, embeddings: Tensor<2>) -> Result<Tensor<3>> {
        self.check_input(&embeddings)?;
        let layers = self.checked_layers()?;
        let proj = self
            .audio_emb_projection
            .forward(embeddings.unsqueeze_dim(1), None);
        let out = match self.config.mode {
            BlockMode::Faithful => self.block(layers - 1, proj).1,
            BlockMode::Chained => (0..layers).fold(proj, |h, i| self.block(i, h).1),
        };
        Ok(self.project_out(out))
    }

    /// [`Self::forward`], recording every intermediate (all blocks are computed, in both
    /// modes).
    pub fn forward_with_intermediates(&self, embeddings: Tensor<2>) -> Result<ProjectorTrace> {
        self.check_input(&embeddings)?;
        let layers = self.checked_layers()?;
        let mut emb_projection = Vec::with_capacity(14);
        let proj = self
            .audio_emb_projection
            .forward(embeddings.unsqueeze_dim(1), Some(&mut emb_projection));
        let mut block_attn = Vec::with_capacity(layers);
        let mut block_out: Vec<Tensor<3>> = Vec::with_capacity(layers);
        for i in 0..layers {
            let input = match (self.config.mode, block_out.last()) {
                (BlockMode::Chained, Some(prev)) => prev.clone(),
                _ => proj.clone(),
            };
            let (a, o) = self.block(i, input);
            block_attn.push(a);
            block_out.push(o);
        }
        let last = block_out.last().cloned().unwrap_or(proj);
        Ok(ProjectorTrace {
            emb_projection,
            block_attn,
            block_out,
            out: self.project_out(last),
        })
    }

    /// The unconditional audio tokens for guidance, `projector(zeros(audio_dim))` repeated
    /// `batch` times: `[batch, T, context_dim]`.
    pub fn null_tokens(&self, batch: usize, device: &Device) -> Result<Tensor<3>> {
        if batch == 0 {
            return Err(sonic_core::CoreError::BadShape {
                what: "null tokens batch",
                expected: "at least 1".into(),
                found: vec![0],
            }
            .into());
        }
        let one = self.forward(Tensor::zeros([1, self.config.audio_dim], device))?;
        Ok(if batch == 1 {
            one
        } else {
            one.repeat_dim(0, batch)
        })
    }

    /// Writes the weights as a safetensors file with the official keys (loadable by the
    /// official PyTorch code after `safetensors.torch.load_file`), atomically, with the config
    /// as JSON in the `__metadata__` entry [`METADATA_KEY`].
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let mut tensors = Vec::new();
        for t in self.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
            let data = bridge::to_data(&t).map_err(|e| sonic_core::CoreError::WeightsFile {
                path: path.to_path_buf(),
                message: format!("cannot read `{}`: {e}", t.name),
            })?;
            let values = data
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| sonic_core::CoreError::Readback(format!("{e:?}")))?;
            tensors.push(NamedTensor {
                name: module_to_file_key(&t.name),
                shape: t.shape.to_vec(),
                data: values,
            });
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        let json =
            serde_json::to_string(&self.config).map_err(|e| sonic_core::CoreError::Json {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let meta = std::collections::HashMap::from([(METADATA_KEY.to_string(), json)]);
        write_safetensors_f32(path, &tensors, Some(meta))?;
        Ok(())
    }
}

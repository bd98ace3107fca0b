//! The UNet's blocks (diffusers' `unet_2d_blocks.py`): `CrossAttnDownBlock2D` / `DownBlock2D`
//! (one type, with or without attentions), `UNetMidBlock2DCrossAttn`, and
//! `CrossAttnUpBlock2D` / `UpBlock2D`.

use crate::hooks::UNetHook;
use crate::transformer_2d::{BlockDims, Transformer2DModel};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use sonic_layers::downsampling::Downsample2D;
use sonic_layers::resnet::ResnetBlock2D;
use sonic_layers::upsampling::Upsample2D;

/// What a transformer block takes from the call's precomputed inputs, looked up by the block's
/// path.
pub type BlockSource<'a> = dyn FnMut(&str) -> BlockInputs + 'a;

/// One transformer block's precomputed inputs ([`BlockSource`]).
#[derive(Debug, Clone, Default)]
pub struct BlockInputs {
    /// The text cross-attention's keys and values (`attn2`), when the call has them
    /// ([`crate::inputs::TextKv`]); without them the block computes them from the text.
    pub text_kv: Option<(Tensor<4>, Tensor<4>)>,
    /// The adapter's keys, values and strength, when the block has an adapter and the call
    /// adapter inputs.
    pub adapter: Option<((Tensor<4>, Tensor<4>), f32)>,
}

/// Shared sizes of a block.
#[derive(Debug, Clone, Copy)]
pub struct BlockSpec {
    /// Time-embedding width.
    pub temb: usize,
    /// GroupNorm groups.
    pub groups: usize,
    /// Resnet epsilon.
    pub eps: f64,
    /// Heads of the attentions.
    pub heads: usize,
    /// Text-token width.
    pub cross_attention_dim: usize,
    /// Transformer blocks per attention.
    pub transformer_layers: usize,
    /// Linear `proj_in` / `proj_out`.
    pub linear_projection: bool,
}

impl BlockSpec {
    fn attention(&self, dim: usize, device: &Device) -> Transformer2DModel {
        Transformer2DModel::new(
            BlockDims {
                dim,
                heads: self.heads,
                cross_attention_dim: self.cross_attention_dim,
            },
            self.transformer_layers,
            self.groups,
            self.linear_projection,
            device,
        )
    }
}

/// Runs resnet `r` with the optional residual hook.
fn run_resnet(
    r: &ResnetBlock2D,
    h: Tensor<4>,
    temb: &Tensor<2>,
    hook: &mut dyn UNetHook,
    name: &dyn Fn() -> String,
) -> Tensor<4> {
    if hook.active() {
        let n = name();
        if hook.wants_resnet(&n) {
            let res = r.residual(h.clone(), Some(temb.clone()));
            let res = hook.resnet_residual(&n, res);
            return r.combine(h, res);
        }
    }
    r.forward(h, Some(temb.clone()))
}

/// A down block: resnets (each followed by an attention in the cross-attention variant), then
/// an optional stride-2 downsampler.
#[derive(Module, Debug)]
pub struct DownBlock {
    /// The resnets.
    pub resnets: Vec<ResnetBlock2D>,
    /// The attentions (empty for `DownBlock2D`).
    pub attentions: Vec<Transformer2DModel>,
    /// The downsampler (`downsamplers.0`), absent on the last level.
    pub downsamplers: Vec<Downsample2D>,
}

impl DownBlock {
    /// `layers` resnets `c_in -> c_out`, with attentions when `cross`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c_in: usize,
        c_out: usize,
        layers: usize,
        cross: bool,
        downsample: Option<usize>,
        spec: &BlockSpec,
        device: &Device,
    ) -> Self {
        Self {
            resnets: (0..layers)
                .map(|i| {
                    let cin = if i == 0 { c_in } else { c_out };
                    ResnetBlock2D::new(cin, c_out, Some(spec.temb), spec.groups, spec.eps, device)
                })
                .collect(),
            attentions: if cross {
                (0..layers).map(|_| spec.attention(c_out, device)).collect()
            } else {
                vec![]
            },
            downsamplers: downsample
                .map(|pad| vec![Downsample2D::new(c_out, c_out, pad, device)])
                .unwrap_or_default(),
        }
    }

    /// Returns the output and the states kept for the skip connections.
    pub fn forward(
        &self,
        x: Tensor<4>,
        temb: &Tensor<2>,
        text: &Tensor<3>,
        blocks: &mut BlockSource<'_>,
        hook: &mut dyn UNetHook,
        name: &str,
    ) -> (Tensor<4>, Vec<Tensor<4>>) {
        let mut h = x;
        let mut states = Vec::with_capacity(self.resnets.len() + 1);
        for (i, r) in self.resnets.iter().enumerate() {
            h = run_resnet(r, h, temb, hook, &|| format!("{name}.resnets.{i}"));
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(h, text, blocks, hook, &|| format!("{name}.attentions.{i}"));
            }
            states.push(h.clone());
        }
        for d in &self.downsamplers {
            h = d.forward(h);
            states.push(h.clone());
        }
        (h, states)
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, then (attention, resnet) pairs.
#[derive(Module, Debug)]
pub struct MidBlock {
    /// The resnets (one more than attentions).
    pub resnets: Vec<ResnetBlock2D>,
    /// The attentions.
    pub attentions: Vec<Transformer2DModel>,
    /// Output scale of the resnets (`mid_block_scale_factor`).
    pub output_scale_factor: f64,
}

impl MidBlock {
    /// A mid block on `c` channels with one attention.
    pub fn new(c: usize, scale: f64, spec: &BlockSpec, device: &Device) -> Self {
        let resnet = || ResnetBlock2D::new(c, c, Some(spec.temb), spec.groups, spec.eps, device);
        Self {
            resnets: vec![resnet(), resnet()],
            attentions: vec![spec.attention(c, device)],
            output_scale_factor: scale,
        }
    }

    /// Runs the block.
    pub fn forward(
        &self,
        x: Tensor<4>,
        temb: &Tensor<2>,
        text: &Tensor<3>,
        blocks: &mut BlockSource<'_>,
        hook: &mut dyn UNetHook,
    ) -> Tensor<4> {
        let scale = |h: Tensor<4>| {
            if self.output_scale_factor == 1.0 {
                h
            } else {
                h.div_scalar(self.output_scale_factor)
            }
        };
        let mut h = x;
        for (i, r) in self.resnets.iter().enumerate() {
            if i > 0
                && let Some(attn) = self.attentions.get(i - 1)
            {
                h = attn.forward(h, text, blocks, hook, &|| {
                    format!("mid_block.attentions.{}", i - 1)
                });
            }
            h = scale(run_resnet(r, h, temb, hook, &|| {
                format!("mid_block.resnets.{i}")
            }));
        }
        h
    }
}

/// An up block: resnets over the concatenation with skip states (each followed by an attention
/// in the cross-attention variant), then an optional x2 upsampler.
#[derive(Module, Debug)]
pub struct UpBlock {
    /// The resnets.
    pub resnets: Vec<ResnetBlock2D>,
    /// The attentions (empty for `UpBlock2D`).
    pub attentions: Vec<Transformer2DModel>,
    /// The upsampler (`upsamplers.0`), absent on the last level.
    pub upsamplers: Vec<Upsample2D>,
}

impl UpBlock {
    /// `layers` resnets; the first takes `prev_out + skip`, the last's skip has `c_in` channels.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c_in: usize,
        c_out: usize,
        prev_out: usize,
        layers: usize,
        cross: bool,
        upsample: bool,
        spec: &BlockSpec,
        device: &Device,
    ) -> Self {
        Self {
            resnets: (0..layers)
                .map(|i| {
                    let skip = if i + 1 == layers { c_in } else { c_out };
                    let cin = if i == 0 { prev_out } else { c_out };
                    ResnetBlock2D::new(
                        cin + skip,
                        c_out,
                        Some(spec.temb),
                        spec.groups,
                        spec.eps,
                        device,
                    )
                })
                .collect(),
            attentions: if cross {
                (0..layers).map(|_| spec.attention(c_out, device)).collect()
            } else {
                vec![]
            },
            upsamplers: if upsample {
                vec![Upsample2D::new(c_out, c_out, device)]
            } else {
                vec![]
            },
        }
    }

    /// Runs the block, consuming skip states from the end of `skips`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: Tensor<4>,
        skips: &mut Vec<Tensor<4>>,
        temb: &Tensor<2>,
        text: &Tensor<3>,
        upsample_size: Option<[usize; 2]>,
        blocks: &mut BlockSource<'_>,
        hook: &mut dyn UNetHook,
        name: &str,
    ) -> Tensor<4> {
        let mut h = x;
        for (i, r) in self.resnets.iter().enumerate() {
            if let Some(skip) = skips.pop() {
                h = Tensor::cat(vec![h, skip], 1);
            }
            h = run_resnet(r, h, temb, hook, &|| format!("{name}.resnets.{i}"));
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(h, text, blocks, hook, &|| format!("{name}.attentions.{i}"));
            }
        }
        for u in &self.upsamplers {
            h = u.forward(h, upsample_size);
        }
        h
    }
}

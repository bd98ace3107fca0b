//! What one UNet call is conditioned on besides the noisy sample and its timesteps: the text
//! tokens (and, optionally, their keys / values precomputed for the run: [`TextKv`]), the
//! adapters' audio keys / values, and a feature hook, bundled in [`UNetInputs`].

use crate::adapter::AdapterInput;
use crate::hooks::UNetHook;
use burn::tensor::Tensor;

/// The per-call conditioning of [`crate::UNet2DConditionModel::forward_with`].
///
/// ```no_run
/// # use sonic_unet::{UNet2DConditionModel, UNetInputs, AdapterStrength};
/// # fn f(unet: &UNet2DConditionModel, x: burn::tensor::Tensor<4>,
/// #      text: burn::tensor::Tensor<3>, audio: burn::tensor::Tensor<3>)
/// #      -> Result<(), sonic_unet::UNetError> {
/// // Adapter and text keys / values are computed once per sampling run, then reused every step.
/// let adapters = unet.prepare_adapters(audio, AdapterStrength::Global(1.0));
/// let text_kv = unet.prepare_text(text.clone());
/// let eps = unet.forward_with(
///     x,
///     &[981.0],
///     UNetInputs::new(text).text_kv(&text_kv).adapters(&adapters),
/// )?;
/// # Ok(()) }
/// ```
pub struct UNetInputs<'a> {
    /// The text tokens (`encoder_hidden_states`) `[B, N, cross_attention_dim]`.
    pub text: Tensor<3>,
    /// The text cross-attentions' keys / values of `text`, prepared once for the run
    /// ([`crate::UNet2DConditionModel::prepare_text`]); `None` computes them in the call.
    pub text_kv: Option<&'a TextKv>,
    /// The adapters' inputs ([`crate::UNet2DConditionModel::prepare_adapters`]); `None` runs
    /// the UNet as if it had no adapters.
    pub adapters: Option<&'a AdapterInput>,
    /// A hook that observes or replaces named features; `None` for none.
    pub hook: Option<&'a mut dyn UNetHook>,
}

impl<'a> UNetInputs<'a> {
    /// Text tokens only: no adapters, no hook.
    pub fn new(text: Tensor<3>) -> Self {
        Self {
            text,
            text_kv: None,
            adapters: None,
            hook: None,
        }
    }

    /// With the text keys / values prepared from the same `text` for the run.
    pub fn text_kv(mut self, text_kv: &'a TextKv) -> Self {
        self.text_kv = Some(text_kv);
        self
    }

    /// With the adapters' inputs.
    pub fn adapters(mut self, adapters: &'a AdapterInput) -> Self {
        self.adapters = Some(adapters);
        self
    }

    /// With the adapters' inputs when there are any.
    pub fn maybe_adapters(mut self, adapters: Option<&'a AdapterInput>) -> Self {
        self.adapters = adapters;
        self
    }

    /// With a feature hook.
    pub fn hook(mut self, hook: &'a mut dyn UNetHook) -> Self {
        self.hook = Some(hook);
        self
    }
}

/// The keys and values of every text cross-attention (`attn2`) of a UNet for one text tensor,
/// by transformer block ([`crate::UNet2DConditionModel::prepare_text`]). The text is the same
/// at every step of a sampling run, so these are computed once per run instead of at every
/// step, as the adapters' are; the result is the same bit for bit.
#[derive(Debug, Clone)]
pub struct TextKv {
    /// Per transformer block (traversal order): its path, keys and values `[B, heads, N, d]`.
    pub(crate) blocks: Vec<(String, Tensor<4>, Tensor<4>)>,
    /// The shape of the text they were computed from.
    pub(crate) text_dims: [usize; 3],
}

impl TextKv {
    /// The shape `[B, N, cross_attention_dim]` of the text these were computed from.
    pub fn text_dims(&self) -> [usize; 3] {
        self.text_dims
    }

    /// The number of transformer blocks covered.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether no block is covered (a UNet without transformer blocks).
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The keys and values of the transformer block at path `block`.
    pub fn get(&self, block: &str) -> Option<(Tensor<4>, Tensor<4>)> {
        self.blocks
            .iter()
            .find(|(b, _, _)| b == block)
            .map(|(_, k, v)| (k.clone(), v.clone()))
    }
}

//! What one UNet call is conditioned on besides the noisy sample and its timesteps: the text
//! tokens, the adapters' audio keys / values, and a feature hook, bundled in [`UNetInputs`].

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
/// // Adapter keys / values are computed once per sampling run, then reused every step.
/// let adapters = unet.prepare_adapters(audio, AdapterStrength::Global(1.0));
/// let eps = unet.forward_with(x, &[981.0], UNetInputs::new(text).adapters(&adapters))?;
/// # Ok(()) }
/// ```
pub struct UNetInputs<'a> {
    /// The text tokens (`encoder_hidden_states`) `[B, N, cross_attention_dim]`.
    pub text: Tensor<3>,
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
            adapters: None,
            hook: None,
        }
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

//! Wav2CLIP's networks as Burn modules whose paths are the released checkpoint's keys:
//!
//! - `audio_encoder` (the package's `ResNet(BasicBlock, [2, 2, 2, 2])`, ResNet-18 on one input
//!   channel without a classifier): `conv1` 7x7 stride 2 padding 3 (1 -> 64, no bias), `bn1`,
//!   ReLU, max pool 3x3 stride 2 padding 1, `layer1`..`layer4` of `BasicBlock`s (64, 128, 256,
//!   512 channels; the first block of stages 2-4 has stride 2 and a `downsample` = 1x1 stride-2
//!   convolution + BatchNorm), then the mean over frequency and time: `[N, 512]`;
//! - `audio_transform` (`MLPLayers(units=[512, 512, 512])`): `sequential.0` Linear, ReLU,
//!   Dropout (identity in eval mode), `sequential.3` Linear.
//!
//! Every BatchNorm uses its running statistics (the package puts the encoder in eval mode) and
//! PyTorch's epsilon 1e-5.

use super::config::{STAGE_WIDTHS, Wav2ClipConfig};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};
use sonic_layers::conv2d_forward;

/// PyTorch's BatchNorm epsilon.
pub const BN_EPS: f64 = 1e-5;
/// Channels of the stem (`conv1`).
const STEM_WIDTH: usize = 64;

fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .init(device)
}

fn batch_norm(c: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(c).with_epsilon(BN_EPS).init(device)
}

/// One entry of a `downsample` sequence (`nn.Sequential(conv1x1, BatchNorm2d)`).
#[derive(Module, Debug)]
pub enum DownsampleLayer {
    /// `downsample.0`: the 1x1 strided convolution.
    Conv(Conv2d),
    /// `downsample.1`: its BatchNorm.
    Norm(BatchNorm),
}

/// torchvision-style `BasicBlock`:
/// `relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x))`.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// 3x3, carries the block's stride.
    pub conv1: Conv2d,
    /// After `conv1`.
    pub bn1: BatchNorm,
    /// 3x3, stride 1.
    pub conv2: Conv2d,
    /// After `conv2`.
    pub bn2: BatchNorm,
    /// The projection of the skip path when the stride or width changes.
    pub downsample: Option<Vec<DownsampleLayer>>,
}

impl BasicBlock {
    /// A block `c_in -> c_out` with `stride`.
    pub fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv1: conv(c_in, c_out, 3, stride, device),
            bn1: batch_norm(c_out, device),
            conv2: conv(c_out, c_out, 3, 1, device),
            bn2: batch_norm(c_out, device),
            downsample: (stride != 1 || c_in != c_out).then(|| {
                vec![
                    DownsampleLayer::Conv(conv(c_in, c_out, 1, stride, device)),
                    DownsampleLayer::Norm(batch_norm(c_out, device)),
                ]
            }),
        }
    }

    /// Runs the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(layers) => layers.iter().fold(x.clone(), |h, l| match l {
                DownsampleLayer::Conv(c) => conv2d_forward(c, h),
                DownsampleLayer::Norm(n) => n.forward(h),
            }),
            None => x.clone(),
        };
        let h = relu(self.bn1.forward(conv2d_forward(&self.conv1, x)));
        let h = self.bn2.forward(conv2d_forward(&self.conv2, h));
        relu(h + identity)
    }
}

/// The package's `ResNet` after its spectrogram front end.
#[derive(Module, Debug)]
pub struct ResNet {
    /// 7x7 stride-2 stem, 1 -> 64 channels.
    pub conv1: Conv2d,
    /// After the stem.
    pub bn1: BatchNorm,
    /// Stage 1 (64 channels, stride 1).
    pub layer1: Vec<BasicBlock>,
    /// Stage 2 (128, stride 2).
    pub layer2: Vec<BasicBlock>,
    /// Stage 3 (256, stride 2).
    pub layer3: Vec<BasicBlock>,
    /// Stage 4 (512, stride 2).
    pub layer4: Vec<BasicBlock>,
}

impl ResNet {
    /// The network with `layers[i]` blocks in stage `i` (4 stages), untrained and lazily
    /// initialised (nothing is allocated until its weights are loaded).
    pub fn new(layers: &[usize], device: &Device) -> Self {
        let mut c_in = STEM_WIDTH;
        let mut stages: Vec<Vec<BasicBlock>> = STAGE_WIDTHS
            .iter()
            .zip(layers)
            .enumerate()
            .map(|(i, (&c, &n))| {
                let stride = if i == 0 { 1 } else { 2 };
                let blocks = (0..n)
                    .map(|j| {
                        let (from, s) = if j == 0 { (c_in, stride) } else { (c, 1) };
                        BasicBlock::new(from, c, s, device)
                    })
                    .collect();
                c_in = c;
                blocks
            })
            .collect();
        stages.resize_with(4, Vec::new);
        let layer4 = stages.pop().unwrap_or_default();
        let layer3 = stages.pop().unwrap_or_default();
        let layer2 = stages.pop().unwrap_or_default();
        let layer1 = stages.pop().unwrap_or_default();
        Self {
            conv1: conv(1, STEM_WIDTH, 7, 2, device),
            bn1: batch_norm(STEM_WIDTH, device),
            layer1,
            layer2,
            layer3,
            layer4,
        }
    }

    /// `[N, 1, bins, frames]` normalised log spectrograms -> `[N, 512]` (average pool).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.bn1.forward(conv2d_forward(&self.conv1, x)));
        let x = max_pool2d(
            x,
            MaxPoolOptions::new([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1]),
        );
        let x = [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .into_iter()
            .flatten()
            .fold(x, |h, block| block.forward(h));
        let [n, c, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([n, c])
    }
}

/// A layer without weights of `MLPLayers.sequential`.
#[derive(Module, Debug)]
pub struct Passive {
    /// Which one.
    #[module(skip)]
    pub role: PassiveRole,
}

/// The weightless layers of `MLPLayers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveRole {
    /// `nn.ReLU`.
    Relu,
    /// `nn.Dropout` (the identity at inference).
    Dropout,
}

/// One entry of `MLPLayers.sequential`.
#[derive(Module, Debug)]
pub enum MlpLayer {
    /// `nn.Linear`.
    Linear(Linear),
    /// ReLU or dropout.
    Passive(Passive),
}

/// The package's `MLPLayers(units)`: `Linear, ReLU, Dropout` per pair of widths, the last
/// ReLU and Dropout dropped; indices are the weight keys (`sequential.0`, `sequential.3`).
#[derive(Module, Debug)]
pub struct MlpLayers {
    /// The layers.
    pub sequential: Vec<MlpLayer>,
}

impl MlpLayers {
    /// The layers for `units` (`[512, 512, 512]`: Linear, ReLU, Dropout, Linear).
    pub fn new(units: &[usize], device: &Device) -> Self {
        let mut sequential = Vec::new();
        for w in units.windows(2) {
            sequential.push(MlpLayer::Linear(LinearConfig::new(w[0], w[1]).init(device)));
            for role in [PassiveRole::Relu, PassiveRole::Dropout] {
                sequential.push(MlpLayer::Passive(Passive { role }));
            }
        }
        sequential.truncate(sequential.len().saturating_sub(2));
        Self { sequential }
    }

    /// Runs the layers on `[N, units[0]]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.sequential.iter().fold(x, |h, l| match l {
            MlpLayer::Linear(lin) => lin.forward(h),
            MlpLayer::Passive(Passive {
                role: PassiveRole::Relu,
            }) => relu(h),
            MlpLayer::Passive(Passive {
                role: PassiveRole::Dropout,
            }) => h,
        })
    }
}

/// The audio half of the released checkpoint: `audio_encoder` and `audio_transform`.
#[derive(Module, Debug)]
pub struct Wav2ClipModel {
    /// The ResNet.
    pub audio_encoder: ResNet,
    /// The projection MLP.
    pub audio_transform: MlpLayers,
}

impl Wav2ClipModel {
    /// The untrained model of a validated `config` (lazily initialised).
    pub fn new(config: &Wav2ClipConfig, device: &Device) -> Self {
        Self {
            audio_encoder: ResNet::new(&config.layers, device),
            audio_transform: MlpLayers::new(&config.mlp_units, device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonic_core::weights::expected_tensors;

    #[test]
    fn keys_and_parameters_are_the_packages() {
        let device = Device::default();
        let m = Wav2ClipModel::new(&Wav2ClipConfig::default(), &device);
        let t = expected_tensors(&m);
        assert_eq!(t["audio_encoder.conv1.weight"], vec![64, 1, 7, 7]);
        assert_eq!(
            t["audio_encoder.layer2.0.downsample.0.weight"],
            vec![128, 64, 1, 1]
        );
        assert_eq!(t["audio_encoder.layer4.1.bn2.running_var"], vec![512]);
        assert_eq!(t["audio_transform.sequential.3.weight"], vec![512, 512]);
        assert!(!t.contains_key("audio_encoder.layer1.0.downsample.0.weight"));
        assert!(!t.contains_key("audio_transform.sequential.6.weight"));
        // Learned parameters (running statistics excluded), as counted by PyTorch.
        let params: usize = t
            .iter()
            .filter(|(k, _)| !k.contains("running_"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert_eq!(params, 11_695_552);
        // The ResNet's 121 state-dict entries less the window and 20 `num_batches_tracked`,
        // and the MLP's two weights and biases.
        assert_eq!(t.len(), 121 - 1 - 20 + 4);
    }

    #[test]
    fn shapes_flow_through() {
        let device = Device::default();
        let config = Wav2ClipConfig {
            layers: vec![1, 1, 1, 1],
            mlp_units: vec![512, 8],
            ..Default::default()
        };
        let m = Wav2ClipModel::new(&config, &device);
        assert_eq!(m.audio_transform.sequential.len(), 1);
        let x = Tensor::<4>::ones([2, 1, 33, 5], &device);
        let f = m.audio_encoder.forward(x);
        assert_eq!(f.dims(), [2, 512]);
        assert_eq!(m.audio_transform.forward(f).dims(), [2, 8]);
    }
}

//! msclap's Cnn14 (`msclap.models.audio.Cnn14`) and `Projection`, as Burn modules whose
//! field names mirror the PyTorch ones, so that checkpoint keys under `audio_encoder.` map
//! one to one (`base.conv_block1.conv1.weight`, `projection.linear1.weight`, ...).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::activation::{gelu, relu, sigmoid};
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Device, Tensor};

/// Epsilon of every BatchNorm and of the projection's LayerNorm (PyTorch's default).
pub const NORM_EPS: f64 = 1e-5;

/// The sizes of a CLAP audio encoder, read from its weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClapSizes {
    /// Mel bins (`bn0` features).
    pub mel_bins: usize,
    /// Output channels of the six conv blocks (64, 128, 256, 512, 1024, 2048 for CLAP 2022).
    pub widths: [usize; 6],
    /// Width of the Cnn14 embedding (`fc1` output, msclap's `out_emb`).
    pub out_emb: usize,
    /// AudioSet classes of `fc_audioset` (`None` when the checkpoint has no classifier head).
    pub classes: Option<usize>,
    /// Width of the projected embedding (`d_proj`, 1024 for CLAP 2022).
    pub d_proj: usize,
}

/// `ConvBlock`: two 3x3 convolutions without bias, each followed by BatchNorm and ReLU, then
/// an average pool.
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// First convolution.
    pub conv1: Conv2d,
    /// Second convolution.
    pub conv2: Conv2d,
    /// BatchNorm after `conv1`.
    pub bn1: BatchNorm,
    /// BatchNorm after `conv2`.
    pub bn2: BatchNorm,
}

fn conv3x3(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

fn batch_norm(c: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(c).with_epsilon(NORM_EPS).init(device)
}

impl ConvBlock {
    /// A block `c_in -> c_out`.
    pub fn new(c_in: usize, c_out: usize, device: &Device) -> Self {
        Self {
            conv1: conv3x3(c_in, c_out, device),
            conv2: conv3x3(c_out, c_out, device),
            bn1: batch_norm(c_out, device),
            bn2: batch_norm(c_out, device),
        }
    }

    /// `relu(bn2(conv2(relu(bn1(conv1(x))))))`, then `avg_pool2d(pool)` (floor mode;
    /// `[1, 1]` is the identity).
    pub fn forward(&self, x: Tensor<4>, pool: [usize; 2]) -> Tensor<4> {
        let x = relu(
            self.bn1
                .forward(sonic_layers::conv2d_forward(&self.conv1, x)),
        );
        let x = relu(
            self.bn2
                .forward(sonic_layers::conv2d_forward(&self.conv2, x)),
        );
        if pool == [1, 1] {
            x
        } else {
            avg_pool2d(x, AvgPoolOptions::new(pool))
        }
    }
}

/// Intermediate outputs of [`Cnn14::forward_trace`].
#[derive(Debug, Clone)]
pub struct Cnn14Trace {
    /// Outputs of conv blocks 1-6 (after pooling), `[B, C, T', F']`.
    pub blocks: Vec<Tensor<4>>,
    /// Max + mean over time of the frequency mean, `[B, C6]`.
    pub pooled: Tensor<2>,
    /// `fc1(pooled)` before the ReLU.
    pub fc1_preact: Tensor<2>,
    /// `relu(fc1(pooled))`, the embedding.
    pub embedding: Tensor<2>,
    /// `sigmoid(fc_audioset(embedding))` when the head is present.
    pub clipwise_output: Option<Tensor<2>>,
}

/// msclap's Cnn14 after the log-mel front end: `bn0` over the mel bins, six conv blocks,
/// pooling and `fc1` (plus the unused AudioSet head `fc_audioset`).
#[derive(Module, Debug)]
pub struct Cnn14 {
    /// BatchNorm over the mel bins.
    pub bn0: BatchNorm,
    /// Conv block 1 (1 -> `widths[0]`).
    pub conv_block1: ConvBlock,
    /// Conv block 2.
    pub conv_block2: ConvBlock,
    /// Conv block 3.
    pub conv_block3: ConvBlock,
    /// Conv block 4.
    pub conv_block4: ConvBlock,
    /// Conv block 5.
    pub conv_block5: ConvBlock,
    /// Conv block 6 (no pooling).
    pub conv_block6: ConvBlock,
    /// `widths[5] -> out_emb`.
    pub fc1: Linear,
    /// The AudioSet classifier (`out_emb -> classes`), not on the embedding path.
    pub fc_audioset: Option<Linear>,
}

impl Cnn14 {
    /// A randomly initialised Cnn14 of the given sizes.
    pub fn new(sizes: &ClapSizes, device: &Device) -> Self {
        let w = sizes.widths;
        Self {
            bn0: batch_norm(sizes.mel_bins, device),
            conv_block1: ConvBlock::new(1, w[0], device),
            conv_block2: ConvBlock::new(w[0], w[1], device),
            conv_block3: ConvBlock::new(w[1], w[2], device),
            conv_block4: ConvBlock::new(w[2], w[3], device),
            conv_block5: ConvBlock::new(w[3], w[4], device),
            conv_block6: ConvBlock::new(w[4], w[5], device),
            fc1: LinearConfig::new(w[5], sizes.out_emb).init(device),
            fc_audioset: sizes
                .classes
                .map(|c| LinearConfig::new(sizes.out_emb, c).init(device)),
        }
    }

    /// `bn0` applied over the mel bins of a log-mel spectrogram `[B, 1, T, M]` (PyTorch
    /// transposes to `[B, M, T, 1]`, normalises, and transposes back).
    pub fn apply_bn0(&self, logmel: Tensor<4>) -> Tensor<4> {
        self.bn0.forward(logmel.swap_dims(1, 3)).swap_dims(1, 3)
    }

    fn blocks(&self) -> [&ConvBlock; 6] {
        [
            &self.conv_block1,
            &self.conv_block2,
            &self.conv_block3,
            &self.conv_block4,
            &self.conv_block5,
            &self.conv_block6,
        ]
    }

    /// The embedding `relu(fc1(max_t + mean_t of mean_f(blocks(x))))` of a `bn0` output
    /// `[B, 1, T, M]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        for (i, block) in self.blocks().iter().enumerate() {
            x = block.forward(x, if i < 5 { [2, 2] } else { [1, 1] });
        }
        relu(self.fc1.forward(pool_time_freq(x)))
    }

    /// Like [`Self::forward`], keeping every intermediate.
    pub fn forward_trace(&self, x: Tensor<4>) -> Cnn14Trace {
        let mut x = x;
        let mut blocks = Vec::with_capacity(6);
        for (i, block) in self.blocks().iter().enumerate() {
            x = block.forward(x, if i < 5 { [2, 2] } else { [1, 1] });
            blocks.push(x.clone());
        }
        let pooled = pool_time_freq(x);
        let fc1_preact = self.fc1.forward(pooled.clone());
        let embedding = relu(fc1_preact.clone());
        let clipwise_output = self
            .fc_audioset
            .as_ref()
            .map(|fc| sigmoid(fc.forward(embedding.clone())));
        Cnn14Trace {
            blocks,
            pooled,
            fc1_preact,
            embedding,
            clipwise_output,
        }
    }
}

/// `x.mean(dim=3)`, then `max over time + mean over time`: `[B, C, T, F] -> [B, C]`.
fn pool_time_freq(x: Tensor<4>) -> Tensor<2> {
    let [b, c, _, _] = x.dims();
    let x = x.mean_dim(3); // [B, C, T, 1]
    let max = x.clone().max_dim(2).reshape([b, c]);
    let mean = x.mean_dim(2).reshape([b, c]);
    max + mean
}

/// msclap's `Projection`: `e1 = linear1(x)`, `e2 = linear2(gelu(e1))`,
/// `layer_norm(e1 + e2)` (dropout is the identity at inference).
#[derive(Module, Debug)]
pub struct Projection {
    /// `d_in -> d_out`, no bias.
    pub linear1: Linear,
    /// `d_out -> d_out`, no bias.
    pub linear2: Linear,
    /// LayerNorm over `d_out`.
    pub layer_norm: LayerNorm,
}

impl Projection {
    /// A randomly initialised projection `d_in -> d_out`.
    pub fn new(d_in: usize, d_out: usize, device: &Device) -> Self {
        Self {
            linear1: LinearConfig::new(d_in, d_out).with_bias(false).init(device),
            linear2: LinearConfig::new(d_out, d_out)
                .with_bias(false)
                .init(device),
            layer_norm: LayerNormConfig::new(d_out)
                .with_epsilon(NORM_EPS)
                .init(device),
        }
    }

    /// Projects `[B, d_in]` to `[B, d_out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let e1 = self.linear1.forward(x);
        let e2 = self.linear2.forward(gelu(e1.clone()));
        self.layer_norm.forward(e1 + e2)
    }
}

/// msclap's `AudioEncoder` without the front-end constants: `base` (Cnn14) and `projection`.
#[derive(Module, Debug)]
pub struct ClapAudioModel {
    /// The Cnn14 audio tower.
    pub base: Cnn14,
    /// The projection to the joint space.
    pub projection: Projection,
}

impl ClapAudioModel {
    /// A randomly initialised model of the given sizes.
    pub fn new(sizes: &ClapSizes, device: &Device) -> Self {
        Self {
            base: Cnn14::new(sizes, device),
            projection: Projection::new(sizes.out_emb, sizes.d_proj, device),
        }
    }
}

/// `x / ||x||_2` over the last dimension (the norm floored at `1e-12`, which only matters for
/// an all-zero row).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

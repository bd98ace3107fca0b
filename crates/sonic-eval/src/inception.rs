//! pytorch-fid's InceptionV3 (`pytorch_fid.inception.InceptionV3` with
//! `use_fid_inception=True`): the Inception network of TensorFlow's FID implementation, up to
//! the final average pool (the 2048 "pool3" features FID is computed on).
//!
//! It is torchvision's `Inception3` with pytorch-fid's patched blocks (`FIDInceptionA`,
//! `FIDInceptionC`, `FIDInceptionE_1`: the 3x3 average pool of the pool branch ignores the
//! zero padding, `count_include_pad=False`; `FIDInceptionE_2`: a 3x3 max pool instead).
//! Every convolution is torchvision's `BasicConv2d`: convolution without bias, BatchNorm
//! (eps 0.001, running statistics), ReLU.
//!
//! Input handling as pytorch-fid's defaults: images `[B, 3, H, W]` with values in `[0, 1]`
//! are resized to 299x299 (bilinear, `align_corners=False`, no antialiasing: PyTorch's
//! `F.interpolate` default) and mapped to `[-1, 1]` (`2x - 1`).
//!
//! Weights: the keys of pytorch-fid's released checkpoint `pt_inception-2015-12-05-6726825d.pth`
//! (`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_var`, ...), as safetensors or
//! the PyTorch file itself; its classifier (`fc.*`) and `num_batches_tracked` buffers are not
//! used.
//!
//! ```no_run
//! use sonic_eval::images::{load_picture, pictures_to_tensor};
//! use sonic_eval::inception::FidInceptionV3;
//! # fn main() -> Result<(), sonic_eval::EvalError> {
//! let device = burn::tensor::Device::default();
//! let model = FidInceptionV3::from_file(std::path::Path::new("pt_inception.safetensors"), &device)?;
//! let image = load_picture(std::path::Path::new("sample.png"))?;
//! let pool3 = model.forward(pictures_to_tensor(&[image], &device)?)?; // [1, 2048]
//! # Ok(()) }
//! ```

use crate::error::EvalError;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, interpolate, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, InterpolateMode, InterpolateOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor};
use sonic_core::CoreError;
use sonic_core::weights::{LoadOptions, Remap, load_weights};
use sonic_layers::conv2d_forward;
use std::path::Path;

type Result<T> = std::result::Result<T, EvalError>;

/// Epsilon of every BatchNorm (torchvision's `BasicConv2d`).
pub const BN_EPS: f64 = 0.001;
/// The side the input is resized to when [`FidInceptionV3::resize_input`] is set.
pub const INPUT_SIZE: usize = 299;
/// The largest input side accepted (a larger image is not an image FID is computed on, and
/// its float32 tensor alone would take gigabytes).
pub const MAX_SIDE: usize = 8192;
/// Width of the pool3 features.
pub const POOL3_DIMS: usize = 2048;

/// torchvision's `BasicConv2d`: `relu(bn(conv(x)))`, the convolution without bias.
#[derive(Module, Debug)]
pub struct BasicConv2d {
    /// The convolution (`conv.weight`).
    pub conv: Conv2d,
    /// The BatchNorm (`bn.weight`, `bn.bias`, `bn.running_mean`, `bn.running_var`).
    pub bn: BatchNorm,
}

impl BasicConv2d {
    /// A `[kh, kw]` convolution `c_in -> c_out` with `stride` and symmetric padding
    /// `[ph, pw]`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: [usize; 2],
        stride: usize,
        padding: [usize; 2],
        device: &Device,
    ) -> Self {
        let [ph, pw] = padding;
        Self {
            conv: Conv2dConfig::new([c_in, c_out], kernel)
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(ph, pw, ph, pw))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(c_out)
                .with_epsilon(BN_EPS)
                .init(device),
        }
    }

    fn square(c_in: usize, c_out: usize, k: usize, stride: usize, pad: usize, d: &Device) -> Self {
        Self::new(c_in, c_out, [k, k], stride, [pad, pad], d)
    }

    /// Runs the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.bn.forward(conv2d_forward(&self.conv, x)))
    }
}

/// The 3x3, stride 1, padding 1 average pool of the FID blocks, which averages over the
/// window's pixels inside the image only (`count_include_pad=False`).
fn avg_pool_3x3_same(x: Tensor<4>) -> Tensor<4> {
    avg_pool2d(
        x,
        AvgPoolOptions::new([3, 3])
            .with_stride([1, 1])
            .with_padding([1, 1])
            .with_count_include_pad(false),
    )
}

/// The 3x3 max pool with stride `stride` and padding `padding` (padding never wins).
fn max_pool_3x3(x: Tensor<4>, stride: usize, padding: usize) -> Tensor<4> {
    max_pool2d(
        x,
        MaxPoolOptions::new([3, 3])
            .with_stride([stride, stride])
            .with_padding([padding, padding]),
    )
}

/// `FIDInceptionA` (torchvision's `InceptionA` with the average pool ignoring padding).
#[derive(Module, Debug)]
pub struct InceptionA {
    /// 1x1 -> 64.
    pub branch1x1: BasicConv2d,
    /// 1x1 -> 48.
    pub branch5x5_1: BasicConv2d,
    /// 5x5 48 -> 64.
    pub branch5x5_2: BasicConv2d,
    /// 1x1 -> 64.
    pub branch3x3dbl_1: BasicConv2d,
    /// 3x3 64 -> 96.
    pub branch3x3dbl_2: BasicConv2d,
    /// 3x3 96 -> 96.
    pub branch3x3dbl_3: BasicConv2d,
    /// 1x1 -> `pool_features` after the average pool.
    pub branch_pool: BasicConv2d,
}

impl InceptionA {
    /// The block for `c_in` channels (out: `224 + pool_features`).
    pub fn new(c_in: usize, pool_features: usize, d: &Device) -> Self {
        Self {
            branch1x1: BasicConv2d::square(c_in, 64, 1, 1, 0, d),
            branch5x5_1: BasicConv2d::square(c_in, 48, 1, 1, 0, d),
            branch5x5_2: BasicConv2d::square(48, 64, 5, 1, 2, d),
            branch3x3dbl_1: BasicConv2d::square(c_in, 64, 1, 1, 0, d),
            branch3x3dbl_2: BasicConv2d::square(64, 96, 3, 1, 1, d),
            branch3x3dbl_3: BasicConv2d::square(96, 96, 3, 1, 1, d),
            branch_pool: BasicConv2d::square(c_in, pool_features, 1, 1, 0, d),
        }
    }

    /// Runs the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b5 = self
            .branch5x5_2
            .forward(self.branch5x5_1.forward(x.clone()));
        let b3 = self.branch3x3dbl_3.forward(
            self.branch3x3dbl_2
                .forward(self.branch3x3dbl_1.forward(x.clone())),
        );
        let bp = self.branch_pool.forward(avg_pool_3x3_same(x));
        Tensor::cat(vec![b1, b5, b3, bp], 1)
    }
}

/// torchvision's `InceptionB` (grid reduction; unchanged by pytorch-fid).
#[derive(Module, Debug)]
pub struct InceptionB {
    /// 3x3 stride 2 -> 384.
    pub branch3x3: BasicConv2d,
    /// 1x1 -> 64.
    pub branch3x3dbl_1: BasicConv2d,
    /// 3x3 64 -> 96.
    pub branch3x3dbl_2: BasicConv2d,
    /// 3x3 stride 2 96 -> 96.
    pub branch3x3dbl_3: BasicConv2d,
}

impl InceptionB {
    /// The block for `c_in` channels (out: `480 + c_in`).
    pub fn new(c_in: usize, d: &Device) -> Self {
        Self {
            branch3x3: BasicConv2d::square(c_in, 384, 3, 2, 0, d),
            branch3x3dbl_1: BasicConv2d::square(c_in, 64, 1, 1, 0, d),
            branch3x3dbl_2: BasicConv2d::square(64, 96, 3, 1, 1, d),
            branch3x3dbl_3: BasicConv2d::square(96, 96, 3, 2, 0, d),
        }
    }

    /// Runs the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self.branch3x3.forward(x.clone());
        let bd = self.branch3x3dbl_3.forward(
            self.branch3x3dbl_2
                .forward(self.branch3x3dbl_1.forward(x.clone())),
        );
        let bp = max_pool_3x3(x, 2, 0);
        Tensor::cat(vec![b3, bd, bp], 1)
    }
}

/// `FIDInceptionC` (torchvision's `InceptionC`, factorised 7x7 convolutions, with the
/// average pool ignoring padding).
#[derive(Module, Debug)]
pub struct InceptionC {
    /// 1x1 -> 192.
    pub branch1x1: BasicConv2d,
    /// 1x1 -> c7.
    pub branch7x7_1: BasicConv2d,
    /// 1x7.
    pub branch7x7_2: BasicConv2d,
    /// 7x1 -> 192.
    pub branch7x7_3: BasicConv2d,
    /// 1x1 -> c7.
    pub branch7x7dbl_1: BasicConv2d,
    /// 7x1.
    pub branch7x7dbl_2: BasicConv2d,
    /// 1x7.
    pub branch7x7dbl_3: BasicConv2d,
    /// 7x1.
    pub branch7x7dbl_4: BasicConv2d,
    /// 1x7 -> 192.
    pub branch7x7dbl_5: BasicConv2d,
    /// 1x1 -> 192 after the average pool.
    pub branch_pool: BasicConv2d,
}

impl InceptionC {
    /// The block for `c_in` channels with `c7` channels inside the 7x7 branches (out: 768).
    pub fn new(c_in: usize, c7: usize, d: &Device) -> Self {
        let row = |a, b| BasicConv2d::new(a, b, [1, 7], 1, [0, 3], d);
        let col = |a, b| BasicConv2d::new(a, b, [7, 1], 1, [3, 0], d);
        Self {
            branch1x1: BasicConv2d::square(c_in, 192, 1, 1, 0, d),
            branch7x7_1: BasicConv2d::square(c_in, c7, 1, 1, 0, d),
            branch7x7_2: row(c7, c7),
            branch7x7_3: col(c7, 192),
            branch7x7dbl_1: BasicConv2d::square(c_in, c7, 1, 1, 0, d),
            branch7x7dbl_2: col(c7, c7),
            branch7x7dbl_3: row(c7, c7),
            branch7x7dbl_4: col(c7, c7),
            branch7x7dbl_5: row(c7, 192),
            branch_pool: BasicConv2d::square(c_in, 192, 1, 1, 0, d),
        }
    }

    /// Runs the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b7 = [&self.branch7x7_1, &self.branch7x7_2, &self.branch7x7_3]
            .iter()
            .fold(x.clone(), |h, c| c.forward(h));
        let bd = [
            &self.branch7x7dbl_1,
            &self.branch7x7dbl_2,
            &self.branch7x7dbl_3,
            &self.branch7x7dbl_4,
            &self.branch7x7dbl_5,
        ]
        .iter()
        .fold(x.clone(), |h, c| c.forward(h));
        let bp = self.branch_pool.forward(avg_pool_3x3_same(x));
        Tensor::cat(vec![b1, b7, bd, bp], 1)
    }
}

/// torchvision's `InceptionD` (grid reduction; unchanged by pytorch-fid).
#[derive(Module, Debug)]
pub struct InceptionD {
    /// 1x1 -> 192.
    pub branch3x3_1: BasicConv2d,
    /// 3x3 stride 2 -> 320.
    pub branch3x3_2: BasicConv2d,
    /// 1x1 -> 192.
    pub branch7x7x3_1: BasicConv2d,
    /// 1x7.
    pub branch7x7x3_2: BasicConv2d,
    /// 7x1.
    pub branch7x7x3_3: BasicConv2d,
    /// 3x3 stride 2.
    pub branch7x7x3_4: BasicConv2d,
}

impl InceptionD {
    /// The block for `c_in` channels (out: `512 + c_in`).
    pub fn new(c_in: usize, d: &Device) -> Self {
        Self {
            branch3x3_1: BasicConv2d::square(c_in, 192, 1, 1, 0, d),
            branch3x3_2: BasicConv2d::square(192, 320, 3, 2, 0, d),
            branch7x7x3_1: BasicConv2d::square(c_in, 192, 1, 1, 0, d),
            branch7x7x3_2: BasicConv2d::new(192, 192, [1, 7], 1, [0, 3], d),
            branch7x7x3_3: BasicConv2d::new(192, 192, [7, 1], 1, [3, 0], d),
            branch7x7x3_4: BasicConv2d::square(192, 192, 3, 2, 0, d),
        }
    }

    /// Runs the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self
            .branch3x3_2
            .forward(self.branch3x3_1.forward(x.clone()));
        let b7 = [
            &self.branch7x7x3_1,
            &self.branch7x7x3_2,
            &self.branch7x7x3_3,
            &self.branch7x7x3_4,
        ]
        .iter()
        .fold(x.clone(), |h, c| c.forward(h));
        let bp = max_pool_3x3(x, 2, 0);
        Tensor::cat(vec![b3, b7, bp], 1)
    }
}

/// The pool of an [`InceptionE`] block's pool branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EPool {
    /// `FIDInceptionE_1`: 3x3 average pool ignoring padding.
    Average,
    /// `FIDInceptionE_2`: 3x3 max pool (stride 1, padding 1).
    Max,
}

/// `FIDInceptionE_1` / `FIDInceptionE_2` (torchvision's `InceptionE`, expanded filter bank,
/// with the pool of [`EPool`]).
#[derive(Module, Debug)]
pub struct InceptionE {
    /// 1x1 -> 320.
    pub branch1x1: BasicConv2d,
    /// 1x1 -> 384.
    pub branch3x3_1: BasicConv2d,
    /// 1x3.
    pub branch3x3_2a: BasicConv2d,
    /// 3x1.
    pub branch3x3_2b: BasicConv2d,
    /// 1x1 -> 448.
    pub branch3x3dbl_1: BasicConv2d,
    /// 3x3 448 -> 384.
    pub branch3x3dbl_2: BasicConv2d,
    /// 1x3.
    pub branch3x3dbl_3a: BasicConv2d,
    /// 3x1.
    pub branch3x3dbl_3b: BasicConv2d,
    /// 1x1 -> 192 after the pool.
    pub branch_pool: BasicConv2d,
    /// The pool of the pool branch.
    #[module(skip)]
    pub pool: EPool,
}

impl InceptionE {
    /// The block for `c_in` channels (out: 2048).
    pub fn new(c_in: usize, pool: EPool, d: &Device) -> Self {
        let row = |a, b| BasicConv2d::new(a, b, [1, 3], 1, [0, 1], d);
        let col = |a, b| BasicConv2d::new(a, b, [3, 1], 1, [1, 0], d);
        Self {
            branch1x1: BasicConv2d::square(c_in, 320, 1, 1, 0, d),
            branch3x3_1: BasicConv2d::square(c_in, 384, 1, 1, 0, d),
            branch3x3_2a: row(384, 384),
            branch3x3_2b: col(384, 384),
            branch3x3dbl_1: BasicConv2d::square(c_in, 448, 1, 1, 0, d),
            branch3x3dbl_2: BasicConv2d::square(448, 384, 3, 1, 1, d),
            branch3x3dbl_3a: row(384, 384),
            branch3x3dbl_3b: col(384, 384),
            branch_pool: BasicConv2d::square(c_in, 192, 1, 1, 0, d),
            pool,
        }
    }

    /// Runs the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let h = self.branch3x3_1.forward(x.clone());
        let b3 = Tensor::cat(
            vec![
                self.branch3x3_2a.forward(h.clone()),
                self.branch3x3_2b.forward(h),
            ],
            1,
        );
        let h = self
            .branch3x3dbl_2
            .forward(self.branch3x3dbl_1.forward(x.clone()));
        let bd = Tensor::cat(
            vec![
                self.branch3x3dbl_3a.forward(h.clone()),
                self.branch3x3dbl_3b.forward(h),
            ],
            1,
        );
        let pooled = match self.pool {
            EPool::Average => avg_pool_3x3_same(x),
            EPool::Max => max_pool_3x3(x, 1, 1),
        };
        let bp = self.branch_pool.forward(pooled);
        Tensor::cat(vec![b1, b3, bd, bp], 1)
    }
}

/// The output blocks of pytorch-fid's `InceptionV3` (`BLOCK_INDEX_BY_DIM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FidBlock {
    /// Block 0, the first max pool: 64 channels.
    MaxPool1,
    /// Block 1, the second max pool: 192 channels.
    MaxPool2,
    /// Block 2, the input of the auxiliary classifier (after `Mixed_6e`): 768 channels.
    PreAux,
    /// Block 3, the final average pool: 2048 features ("pool3", what FID uses).
    Pool3,
}

impl FidBlock {
    /// The block whose output has `dims` channels (pytorch-fid's `--dims`), if any.
    pub fn from_dims(dims: usize) -> Option<Self> {
        match dims {
            64 => Some(Self::MaxPool1),
            192 => Some(Self::MaxPool2),
            768 => Some(Self::PreAux),
            2048 => Some(Self::Pool3),
            _ => None,
        }
    }

    /// The block's channel count.
    pub fn dims(self) -> usize {
        match self {
            Self::MaxPool1 => 64,
            Self::MaxPool2 => 192,
            Self::PreAux => 768,
            Self::Pool3 => POOL3_DIMS,
        }
    }
}

/// Output side of a valid (unpadded) `k`, stride `s` window over `n` pixels, if any.
fn valid(n: usize, k: usize, s: usize) -> Option<usize> {
    n.checked_sub(k).map(|r| r / s + 1)
}

/// The spatial side after the network up to `block` for an input side `n` (`None` when the
/// input is too small for some layer).
fn side_after(n: usize, block: FidBlock) -> Option<usize> {
    // Conv2d_1a (3, s2), Conv2d_2a (3), Conv2d_2b (3, pad 1), maxpool1 (3, s2).
    let n = valid(valid(valid(n, 3, 2)?, 3, 1)?, 3, 2)?;
    if block == FidBlock::MaxPool1 {
        return Some(n);
    }
    // Conv2d_3b (1), Conv2d_4a (3), maxpool2 (3, s2).
    let n = valid(valid(n, 3, 1)?, 3, 2)?;
    if block == FidBlock::MaxPool2 {
        return Some(n);
    }
    // Mixed_5b..d keep the size, Mixed_6a (3, s2), Mixed_6b..e keep it.
    let n = valid(n, 3, 2)?;
    if block == FidBlock::PreAux {
        return Some(n);
    }
    // Mixed_7a (3, s2), Mixed_7b..c keep it.
    valid(n, 3, 2)
}

/// pytorch-fid's `InceptionV3` with the FID Inception (`use_fid_inception=True`): every layer
/// up to the final average pool. Field names are the checkpoint's in snake case
/// (`Conv2d_1a_3x3` -> `conv2d_1a_3x3`, `Mixed_5b` -> `mixed_5b`).
#[derive(Module, Debug)]
pub struct FidInceptionV3 {
    /// 3x3 stride 2, 3 -> 32.
    pub conv2d_1a_3x3: BasicConv2d,
    /// 3x3, 32 -> 32.
    pub conv2d_2a_3x3: BasicConv2d,
    /// 3x3 padding 1, 32 -> 64.
    pub conv2d_2b_3x3: BasicConv2d,
    /// 1x1, 64 -> 80.
    pub conv2d_3b_1x1: BasicConv2d,
    /// 3x3, 80 -> 192.
    pub conv2d_4a_3x3: BasicConv2d,
    /// 192 -> 256.
    pub mixed_5b: InceptionA,
    /// 256 -> 288.
    pub mixed_5c: InceptionA,
    /// 288 -> 288.
    pub mixed_5d: InceptionA,
    /// 288 -> 768, halves the size.
    pub mixed_6a: InceptionB,
    /// 768 -> 768 (c7 = 128).
    pub mixed_6b: InceptionC,
    /// 768 -> 768 (c7 = 160).
    pub mixed_6c: InceptionC,
    /// 768 -> 768 (c7 = 160).
    pub mixed_6d: InceptionC,
    /// 768 -> 768 (c7 = 192).
    pub mixed_6e: InceptionC,
    /// 768 -> 1280, halves the size.
    pub mixed_7a: InceptionD,
    /// 1280 -> 2048 (`FIDInceptionE_1`).
    pub mixed_7b: InceptionE,
    /// 2048 -> 2048 (`FIDInceptionE_2`).
    pub mixed_7c: InceptionE,
    /// Resize the input to 299x299 first (pytorch-fid's `resize_input`, default on).
    #[module(skip)]
    pub resize_input: bool,
    /// Map the input from `[0, 1]` to `[-1, 1]` first (`normalize_input`, default on).
    #[module(skip)]
    pub normalize_input: bool,
}

/// The checkpoint key of a module path (`conv2d_1a_3x3.*` -> `Conv2d_1a_3x3.*`,
/// `mixed_5b.*` -> `Mixed_5b.*`).
fn file_key(module_path: &str) -> String {
    if let Some(rest) = module_path.strip_prefix("conv2d_") {
        format!("Conv2d_{rest}")
    } else if let Some(rest) = module_path.strip_prefix("mixed_") {
        format!("Mixed_{rest}")
    } else {
        module_path.to_string()
    }
}

impl FidInceptionV3 {
    /// The network with untrained weights (lazily initialised: nothing is allocated until
    /// used or loaded), with pytorch-fid's default input handling.
    pub fn new(device: &Device) -> Self {
        let d = device;
        Self {
            conv2d_1a_3x3: BasicConv2d::square(3, 32, 3, 2, 0, d),
            conv2d_2a_3x3: BasicConv2d::square(32, 32, 3, 1, 0, d),
            conv2d_2b_3x3: BasicConv2d::square(32, 64, 3, 1, 1, d),
            conv2d_3b_1x1: BasicConv2d::square(64, 80, 1, 1, 0, d),
            conv2d_4a_3x3: BasicConv2d::square(80, 192, 3, 1, 0, d),
            mixed_5b: InceptionA::new(192, 32, d),
            mixed_5c: InceptionA::new(256, 64, d),
            mixed_5d: InceptionA::new(288, 64, d),
            mixed_6a: InceptionB::new(288, d),
            mixed_6b: InceptionC::new(768, 128, d),
            mixed_6c: InceptionC::new(768, 160, d),
            mixed_6d: InceptionC::new(768, 160, d),
            mixed_6e: InceptionC::new(768, 192, d),
            mixed_7a: InceptionD::new(768, d),
            mixed_7b: InceptionE::new(1280, EPool::Average, d),
            mixed_7c: InceptionE::new(2048, EPool::Max, d),
            resize_input: true,
            normalize_input: true,
        }
    }

    /// The options that load pytorch-fid's checkpoint keys: `Conv2d_*` / `Mixed_*` to the
    /// snake-case fields; `fc.*` (the 1008-class classifier) and `num_batches_tracked` skipped.
    pub fn load_options() -> LoadOptions {
        LoadOptions {
            remaps: vec![
                Remap::new(r"^Conv2d_", "conv2d_"),
                Remap::new(r"^Mixed_", "mixed_"),
            ],
            ignore: vec![
                r"^fc\.(weight|bias)$".into(),
                r"num_batches_tracked$".into(),
            ],
            file_key: Some(file_key),
            ..LoadOptions::default()
        }
    }

    /// Loads pytorch-fid's weights (safetensors, or the `.pth` checkpoint itself) with every
    /// name and shape checked.
    pub fn from_file(path: &Path, device: &Device) -> Result<Self> {
        Ok(load_weights(
            Self::new(device),
            path,
            &Self::load_options(),
        )?)
    }

    /// Sets [`Self::resize_input`].
    pub fn with_resize_input(mut self, resize_input: bool) -> Self {
        self.resize_input = resize_input;
        self
    }

    /// Sets [`Self::normalize_input`].
    pub fn with_normalize_input(mut self, normalize_input: bool) -> Self {
        self.normalize_input = normalize_input;
        self
    }

    /// Checks an input `[B, 3, H, W]` for `block`: a batch, three channels, sides at most
    /// [`MAX_SIDE`], and (without resizing) large enough to reach the block.
    pub fn check_input(&self, dims: [usize; 4], block: FidBlock) -> Result<()> {
        let [b, c, h, w] = dims;
        let bad = |expected: String| {
            EvalError::from(CoreError::BadShape {
                what: "FID Inception input",
                expected,
                found: dims.to_vec(),
            })
        };
        if b == 0 || c != 3 {
            return Err(bad("[B >= 1, 3, H, W]".into()));
        }
        if h == 0 || w == 0 || h > MAX_SIDE || w > MAX_SIDE {
            return Err(bad(format!("sides of 1 to {MAX_SIDE} pixels")));
        }
        if !self.resize_input && (side_after(h, block).is_none() || side_after(w, block).is_none())
        {
            return Err(bad(format!(
                "sides large enough to reach the {}-channel block without resizing (75 \
                 pixels for pool3)",
                block.dims()
            )));
        }
        Ok(())
    }

    /// The output of `block` (`[B, C, h, w]`; for [`FidBlock::Pool3`] `h = w = 1`) for images
    /// `[B, 3, H, W]` in `[0, 1]` (pytorch-fid's `InceptionV3([block])(x)[0]`).
    pub fn block_output(&self, x: Tensor<4>, block: FidBlock) -> Result<Tensor<4>> {
        self.check_input(x.dims(), block)?;
        let mut x = x;
        if self.resize_input {
            x = interpolate(
                x,
                InterpolateOptions::new(InterpolateMode::Bilinear)
                    .with_align_corners(false)
                    .with_output_size([INPUT_SIZE, INPUT_SIZE]),
            );
        }
        if self.normalize_input {
            x = x.mul_scalar(2.0).sub_scalar(1.0);
        }
        let x = self.conv2d_1a_3x3.forward(x);
        let x = self.conv2d_2a_3x3.forward(x);
        let x = self.conv2d_2b_3x3.forward(x);
        let x = max_pool_3x3(x, 2, 0);
        if block == FidBlock::MaxPool1 {
            return Ok(x);
        }
        let x = self.conv2d_3b_1x1.forward(x);
        let x = self.conv2d_4a_3x3.forward(x);
        let x = max_pool_3x3(x, 2, 0);
        if block == FidBlock::MaxPool2 {
            return Ok(x);
        }
        let x = self.mixed_5b.forward(x);
        let x = self.mixed_5c.forward(x);
        let x = self.mixed_5d.forward(x);
        let x = self.mixed_6a.forward(x);
        let x = self.mixed_6b.forward(x);
        let x = self.mixed_6c.forward(x);
        let x = self.mixed_6d.forward(x);
        let x = self.mixed_6e.forward(x);
        if block == FidBlock::PreAux {
            return Ok(x);
        }
        let x = self.mixed_7a.forward(x);
        let x = self.mixed_7b.forward(x);
        let x = self.mixed_7c.forward(x);
        Ok(global_average(x))
    }

    /// The features `[B, C]` of `block` as pytorch-fid's `get_activations` takes them: the
    /// block output, averaged over its spatial positions when they are more than one.
    pub fn features(&self, x: Tensor<4>, block: FidBlock) -> Result<Tensor<2>> {
        let out = self.block_output(x, block)?;
        let [b, c, h, w] = out.dims();
        let out = if h * w == 1 { out } else { global_average(out) };
        Ok(out.reshape([b, c]))
    }

    /// The pool3 features `[B, 2048]` FID is computed on, for images `[B, 3, H, W]` in
    /// `[0, 1]`.
    pub fn forward(&self, x: Tensor<4>) -> Result<Tensor<2>> {
        self.features(x, FidBlock::Pool3)
    }
}

/// `AdaptiveAvgPool2d((1, 1))`: the mean over the spatial positions, `[B, C, 1, 1]`.
fn global_average(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c, 1, 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_through_the_network() {
        assert_eq!(side_after(299, FidBlock::MaxPool1), Some(73));
        assert_eq!(side_after(299, FidBlock::MaxPool2), Some(35));
        assert_eq!(side_after(299, FidBlock::PreAux), Some(17));
        assert_eq!(side_after(299, FidBlock::Pool3), Some(8));
        assert_eq!(side_after(75, FidBlock::Pool3), Some(1));
        assert_eq!(side_after(74, FidBlock::Pool3), None);
        assert_eq!(side_after(2, FidBlock::MaxPool1), None);
    }

    #[test]
    fn blocks_by_dims() {
        for dims in [64, 192, 768, 2048] {
            assert_eq!(FidBlock::from_dims(dims).map(FidBlock::dims), Some(dims));
        }
        assert_eq!(FidBlock::from_dims(1000), None);
    }

    #[test]
    fn file_keys_are_the_checkpoint_names() {
        assert_eq!(
            file_key("conv2d_1a_3x3.conv.weight"),
            "Conv2d_1a_3x3.conv.weight"
        );
        assert_eq!(
            file_key("mixed_5b.branch1x1.bn.running_var"),
            "Mixed_5b.branch1x1.bn.running_var"
        );
    }
}

//! LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
//! Metric"), exactly as the `lpips` PyPI package (0.1.4) computes it with
//! `LPIPS(net, version='0.1', lpips=True, spatial=False)` in eval mode: the structure
//! preservation score of image edits (the distance between the input photo and the edited
//! result; lower is closer).
//!
//! For images `a`, `b` `[B, 3, H, W]` in `[-1, 1]`:
//!
//! 1. the package's `ScalingLayer`: `x -> (x - shift) / scale` per RGB channel, with the fixed
//!    constants `shift = [-0.030, -0.088, -0.188]`, `scale = [0.458, 0.448, 0.450]` (buffers of
//!    the package, not learned: held here as constants);
//! 2. a trunk (torchvision's AlexNet, VGG16 or SqueezeNet 1.1 `features`) tapped after the
//!    ReLU that ends each of the package's slices (`relu1..relu5`; 7 taps for SqueezeNet);
//! 3. per tap `k`, features unit-normalised over channels at each pixel
//!    (`f / (sqrt(sum_c f^2) + 1e-10)`), squared differences `(f_a - f_b)^2`, the 1x1
//!    convolution `lin_k` (one output, no bias; dropout is off in eval mode), and the mean over
//!    the pixels;
//! 4. the sum over the taps: one distance per image pair, `[B]`.
//!
//! Weights are read with the package's state-dict names: the trunk as `net.slice{S}.{I}.*`
//! (`I` the torchvision `features` index, e.g. `net.slice1.0.weight`, `net.slice2.3.bias`;
//! SqueezeNet's `Fire` modules as `net.slice2.3.squeeze.weight`, `.expand1x1.`, `.expand3x3.`)
//! and the linear layers as `lin{K}.model.1.weight` `[1, C, 1, 1]`. A whole
//! `LPIPS(...).state_dict()` also holds `scaling_layer.shift` / `.scale` and the aliases
//! `lins.{K}.model.1.weight` (the same tensors as `lin{K}`): those are ignored.
//! [`Lpips::from_torchvision`] reads the two original files instead: torchvision's weights
//! (`features.{I}.*`) and the package's `weights/v0.1/{net}.pth`.
//!
//! ```no_run
//! use sonic_eval::lpips::{Lpips, LpipsNet};
//! # fn main() -> Result<(), sonic_eval::EvalError> {
//! let device = burn::tensor::Device::default();
//! let lpips = Lpips::from_file("lpips_alex.safetensors".as_ref(), LpipsNet::Alex, &device)?;
//! let a = burn::tensor::Tensor::<4>::zeros([1, 3, 64, 64], &device);
//! let b = a.clone();
//! let d = lpips.distance(a, b)?; // [1], here 0
//! # Ok(()) }
//! ```

use crate::EvalError;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor, TensorData};
use sonic_core::CoreError;
use sonic_core::weights::{LoadOptions, Remap, load_weights};
use sonic_layers::conv2d_forward;
use std::path::Path;

type Result<T, E = EvalError> = std::result::Result<T, E>;

/// The package's `ScalingLayer.shift`.
pub const SHIFT: [f32; 3] = [-0.030, -0.088, -0.188];
/// The package's `ScalingLayer.scale`.
pub const SCALE: [f32; 3] = [0.458, 0.448, 0.450];
/// The `eps` of the package's `normalize_tensor`.
pub const NORM_EPS: f32 = 1e-10;
/// The largest image side [`LpipsNet::min_size`] looks at (every trunk runs far below).
const MAX_PROBE: usize = 1024;

/// The trunks of the package (`net=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LpipsNet {
    /// `alex`: torchvision's AlexNet `features[0..12]`, 5 taps (the package's default).
    Alex,
    /// `vgg` / `vgg16`: torchvision's VGG16 `features[0..30]`, 5 taps.
    Vgg,
    /// `squeeze`: torchvision's SqueezeNet 1.1 `features[0..13]`, 7 taps.
    Squeeze,
}

/// One layer of a trunk's `features` sequence, as torchvision defines it (dilation 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `Conv2d(c_in, c_out, k, stride, padding)`, biased.
    Conv {
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    },
    /// `ReLU`.
    Relu,
    /// `MaxPool2d(k, stride, ceil_mode)`, no padding.
    Pool { k: usize, stride: usize, ceil: bool },
    /// torchvision's `Fire(c_in, squeeze, expand1x1, expand3x3)`.
    Fire {
        c_in: usize,
        squeeze: usize,
        e1: usize,
        e3: usize,
    },
}

const fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> Op {
    Op::Conv {
        c_in,
        c_out,
        k,
        stride,
        pad,
    }
}

const fn fire(c_in: usize, squeeze: usize, e: usize) -> Op {
    Op::Fire {
        c_in,
        squeeze,
        e1: e,
        e3: e,
    }
}

const POOL3: Op = Op::Pool {
    k: 3,
    stride: 2,
    ceil: false,
};
const POOL3_CEIL: Op = Op::Pool {
    k: 3,
    stride: 2,
    ceil: true,
};
const POOL2: Op = Op::Pool {
    k: 2,
    stride: 2,
    ceil: false,
};
const RELU: Op = Op::Relu;

const ALEX: [Op; 12] = [
    conv(3, 64, 11, 4, 2),
    RELU,
    POOL3,
    conv(64, 192, 5, 1, 2),
    RELU,
    POOL3,
    conv(192, 384, 3, 1, 1),
    RELU,
    conv(384, 256, 3, 1, 1),
    RELU,
    conv(256, 256, 3, 1, 1),
    RELU,
];

const VGG: [Op; 30] = [
    conv(3, 64, 3, 1, 1),
    RELU,
    conv(64, 64, 3, 1, 1),
    RELU,
    POOL2,
    conv(64, 128, 3, 1, 1),
    RELU,
    conv(128, 128, 3, 1, 1),
    RELU,
    POOL2,
    conv(128, 256, 3, 1, 1),
    RELU,
    conv(256, 256, 3, 1, 1),
    RELU,
    conv(256, 256, 3, 1, 1),
    RELU,
    POOL2,
    conv(256, 512, 3, 1, 1),
    RELU,
    conv(512, 512, 3, 1, 1),
    RELU,
    conv(512, 512, 3, 1, 1),
    RELU,
    POOL2,
    conv(512, 512, 3, 1, 1),
    RELU,
    conv(512, 512, 3, 1, 1),
    RELU,
    conv(512, 512, 3, 1, 1),
    RELU,
];

const SQUEEZE: [Op; 13] = [
    conv(3, 64, 3, 2, 0),
    RELU,
    POOL3_CEIL,
    fire(64, 16, 64),
    fire(128, 16, 64),
    POOL3_CEIL,
    fire(128, 32, 128),
    fire(256, 32, 128),
    POOL3_CEIL,
    fire(256, 48, 192),
    fire(384, 48, 192),
    fire(384, 64, 256),
    fire(512, 64, 256),
];

/// PyTorch's output length of a convolution or max pooling (dilation 1) over `input`, `None`
/// where PyTorch refuses (the output would be empty).
fn out_len(input: usize, k: usize, stride: usize, pad: usize, ceil: bool) -> Option<usize> {
    let (i, k, s, p) = (input as i64, k as i64, stride as i64, pad as i64);
    let num = i + 2 * p - (k - 1) - 1 + if ceil { s - 1 } else { 0 };
    let mut out = num.div_euclid(s) + 1;
    // A last window that would start past the input is dropped (pooling_output_shape).
    if ceil && (out - 1) * s >= i + p {
        out -= 1;
    }
    usize::try_from(out).ok().filter(|&o| o >= 1)
}

impl LpipsNet {
    /// Every trunk.
    pub const ALL: [LpipsNet; 3] = [LpipsNet::Alex, LpipsNet::Vgg, LpipsNet::Squeeze];

    /// Parses the package's `net=` name (`alex`, `vgg` / `vgg16`, `squeeze`).
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "alex" => Ok(LpipsNet::Alex),
            "vgg" | "vgg16" => Ok(LpipsNet::Vgg),
            "squeeze" => Ok(LpipsNet::Squeeze),
            _ => Err(EvalError::input(
                "LPIPS net",
                format!("`{name}` is not one of alex, vgg, vgg16, squeeze"),
            )),
        }
    }

    /// The package's name (`alex`, `vgg`, `squeeze`; also the stem of its weights file).
    pub fn name(self) -> &'static str {
        match self {
            LpipsNet::Alex => "alex",
            LpipsNet::Vgg => "vgg",
            LpipsNet::Squeeze => "squeeze",
        }
    }

    fn ops(self) -> &'static [Op] {
        match self {
            LpipsNet::Alex => &ALEX,
            LpipsNet::Vgg => &VGG,
            LpipsNet::Squeeze => &SQUEEZE,
        }
    }

    /// The `features` index that ends each of the package's slices (the taps).
    pub fn taps(self) -> &'static [usize] {
        match self {
            LpipsNet::Alex => &[1, 4, 7, 9, 11],
            LpipsNet::Vgg => &[3, 8, 15, 22, 29],
            LpipsNet::Squeeze => &[1, 4, 7, 9, 10, 11, 12],
        }
    }

    /// The channels of each tap (the package's `chns`, the widths of the `lin` layers).
    pub fn channels(self) -> Vec<usize> {
        let mut width = 3;
        let mut out = Vec::new();
        let taps = self.taps();
        for (i, op) in self.ops().iter().enumerate() {
            match *op {
                Op::Conv { c_out, .. } => width = c_out,
                Op::Fire { e1, e3, .. } => width = e1 + e3,
                Op::Relu | Op::Pool { .. } => {}
            }
            if taps.contains(&i) {
                out.push(width);
            }
        }
        out
    }

    /// The slice (1-based, as the package's `slice{S}`) that holds `features` index `i`.
    fn slice_of(self, i: usize) -> usize {
        1 + self.taps().iter().take_while(|&&t| t < i).count()
    }

    /// The side of the last tap's map for an image side `n` (`None`: the trunk cannot run).
    pub fn output_len(self, n: usize) -> Option<usize> {
        self.ops().iter().try_fold(n, |n, op| match *op {
            Op::Conv { k, stride, pad, .. } => out_len(n, k, stride, pad, false),
            Op::Pool { k, stride, ceil } => out_len(n, k, stride, 0, ceil),
            // 1x1 and 3x3 (padding 1) convolutions keep the size.
            Op::Fire { .. } | Op::Relu => Some(n),
        })
    }

    /// The smallest image side the trunk accepts (PyTorch refuses smaller: a pooling window
    /// would not fit): 31 for AlexNet, 16 for VGG16, 17 for SqueezeNet 1.1.
    pub fn min_size(self) -> usize {
        (1..=MAX_PROBE)
            .find(|&n| self.output_len(n).is_some())
            .unwrap_or(MAX_PROBE)
    }

    /// The weights-file key of a module path (`net.{I}.x` -> `net.slice{S}.{I}.x`,
    /// `lins.{K}.weight` -> `lin{K}.model.1.weight`).
    pub fn file_key(self, module_key: &str) -> String {
        if let Some(rest) = module_key.strip_prefix("net.")
            && let Some((index, tail)) = rest.split_once('.')
            && let Ok(i) = index.parse::<usize>()
        {
            return format!("net.slice{}.{i}.{tail}", self.slice_of(i));
        }
        if let Some(rest) = module_key.strip_prefix("lins.")
            && let Some((k, _)) = rest.split_once('.')
        {
            return format!("lin{k}.model.1.weight");
        }
        module_key.to_string()
    }

    /// The rewrites from the package's keys to the module's: exactly the trunk's weighted
    /// layers in their slices, and the `lin` layers.
    fn remaps(self) -> Vec<Remap> {
        let mut remaps: Vec<Remap> = self
            .ops()
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(op, Op::Conv { .. } | Op::Fire { .. }))
            .map(|(i, _)| {
                Remap::new(
                    format!(r"^net\.slice{}\.{i}\.", self.slice_of(i)),
                    format!("net.{i}."),
                )
            })
            .collect();
        remaps.push(Remap::new(r"^lin(\d+)\.model\.1\.", "lins.$1."));
        remaps
    }
}

impl std::fmt::Display for LpipsNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn file_key_alex(k: &str) -> String {
    LpipsNet::Alex.file_key(k)
}
fn file_key_vgg(k: &str) -> String {
    LpipsNet::Vgg.file_key(k)
}
fn file_key_squeeze(k: &str) -> String {
    LpipsNet::Squeeze.file_key(k)
}

/// torchvision's `Fire`: `cat(relu(expand1x1(s)), relu(expand3x3(s)))`, `s = relu(squeeze(x))`.
#[derive(Module, Debug)]
pub struct Fire {
    /// 1x1 squeeze convolution.
    pub squeeze: Conv2d,
    /// 1x1 expand convolution.
    pub expand1x1: Conv2d,
    /// 3x3 expand convolution (padding 1).
    pub expand3x3: Conv2d,
}

impl Fire {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        use burn::tensor::activation::relu;
        let s = relu(conv2d_forward(&self.squeeze, x));
        let e1 = relu(conv2d_forward(&self.expand1x1, s.clone()));
        let e3 = relu(conv2d_forward(&self.expand3x3, s));
        Tensor::cat(vec![e1, e3], 1)
    }
}

/// One entry of a trunk's `features` (indices as torchvision's, so as the weight keys).
// Burn's `Module` is not implemented for `Box`, and a trunk holds at most 30 layers.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Layer {
    /// A convolution (`net.{I}.weight` / `.bias`).
    Conv(Conv2d),
    /// A ReLU.
    Relu(Relu),
    /// A max pooling.
    Pool(MaxPool2d),
    /// A SqueezeNet `Fire` module.
    Fire(Fire),
}

impl Layer {
    fn new(op: Op, device: &Device) -> Self {
        let conv = |c_in, c_out, k: usize, stride, pad| {
            Conv2dConfig::new([c_in, c_out], [k, k])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .init(device)
        };
        match op {
            Op::Conv {
                c_in,
                c_out,
                k,
                stride,
                pad,
            } => Layer::Conv(conv(c_in, c_out, k, stride, pad)),
            Op::Relu => Layer::Relu(Relu::new()),
            Op::Pool { k, stride, ceil } => Layer::Pool(
                MaxPool2dConfig::new([k, k])
                    .with_strides([stride, stride])
                    .with_ceil_mode(ceil)
                    .init(),
            ),
            Op::Fire {
                c_in,
                squeeze,
                e1,
                e3,
            } => Layer::Fire(Fire {
                squeeze: conv(c_in, squeeze, 1, 1, 0),
                expand1x1: conv(squeeze, e1, 1, 1, 0),
                expand3x3: conv(squeeze, e3, 3, 1, 1),
            }),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Layer::Conv(c) => conv2d_forward(c, x),
            Layer::Relu(r) => r.forward(x),
            Layer::Pool(p) => p.forward(x),
            Layer::Fire(f) => f.forward(x),
        }
    }
}

/// Distances with their parts.
#[derive(Debug, Clone)]
pub struct LpipsDistance {
    /// The distance of each pair, `[B]` (the package's output).
    pub total: Tensor<1>,
    /// Each tap's term, `[B]` per tap (the package's `retPerLayer` list); they sum to
    /// `total`.
    pub layers: Vec<Tensor<1>>,
}

/// The package's `LPIPS` module (`lpips=True`, `version='0.1'`, `spatial=False`, eval mode).
#[derive(Module, Debug)]
pub struct Lpips {
    /// The trunk's `features[0..=last tap]`, indexed as torchvision's.
    pub net: Vec<Layer>,
    /// The 1x1 `lin` convolutions (`[1, C, 1, 1]`, no bias), one per tap.
    pub lins: Vec<Conv2d>,
    /// Which trunk.
    #[module(skip)]
    pub kind: LpipsNet,
}

impl Lpips {
    /// The model with untrained weights (lazily initialised: nothing is allocated until used
    /// or loaded).
    pub fn new(net: LpipsNet, device: &Device) -> Self {
        Self {
            net: net.ops().iter().map(|&op| Layer::new(op, device)).collect(),
            lins: net
                .channels()
                .into_iter()
                .map(|c| {
                    Conv2dConfig::new([c, 1], [1, 1])
                        .with_bias(false)
                        .init(device)
                })
                .collect(),
            kind: net,
        }
    }

    /// How [`Lpips::from_file`] reads a file with the package's state-dict names.
    pub fn load_options(net: LpipsNet) -> LoadOptions {
        LoadOptions {
            remaps: net.remaps(),
            ignore: vec![
                r"^scaling_layer\.(shift|scale)$".into(),
                r"^lins\.\d+\.model\.1\.weight$".into(),
            ],
            file_key: Some(match net {
                LpipsNet::Alex => file_key_alex,
                LpipsNet::Vgg => file_key_vgg,
                LpipsNet::Squeeze => file_key_squeeze,
            }),
            ..LoadOptions::default()
        }
    }

    /// Loads one weights file (safetensors or torch pickle) holding the trunk and the `lin`
    /// layers under the package's state-dict names (`net.slice1.0.weight`,
    /// `lin0.model.1.weight`, ...); a missing, unexpected or misshapen tensor is an error
    /// naming the key and the file.
    pub fn from_file(path: &Path, net: LpipsNet, device: &Device) -> Result<Self> {
        Ok(load_weights(
            Self::new(net, device),
            path,
            &Self::load_options(net),
        )?)
    }

    /// Loads the two files the package itself combines: torchvision's trunk weights
    /// (`alexnet` / `vgg16` / `squeezenet1_1` state dict: `features.{I}.*`; the classifier is
    /// ignored) and the package's
    /// `weights/v0.1/{net}.pth` (`lin{K}.model.1.weight`).
    pub fn from_torchvision(
        backbone: &Path,
        lins: &Path,
        net: LpipsNet,
        device: &Device,
    ) -> Result<Self> {
        let trunk = LoadOptions {
            remaps: vec![Remap::new(r"^features\.", "net.")],
            ignore: vec![r"^classifier\.".into()],
            subset: Some(r"^net\.".into()),
            file_key: Some(|k: &str| k.replacen("net.", "features.", 1)),
            ..LoadOptions::default()
        };
        let model = load_weights(Self::new(net, device), backbone, &trunk)?;
        let lin = LoadOptions {
            subset: Some(r"^lins\.".into()),
            ..Self::load_options(net)
        };
        Ok(load_weights(model, lins, &lin)?)
    }

    /// Which trunk.
    pub fn net(&self) -> LpipsNet {
        self.kind
    }

    /// The smallest image side accepted ([`LpipsNet::min_size`]).
    pub fn min_size(&self) -> usize {
        self.kind.min_size()
    }

    /// Checks one input: `[B >= 1, 3, H, W]` with `H, W` at least [`Self::min_size`], finite.
    fn check(&self, x: &Tensor<4>, what: &str) -> Result<()> {
        let [b, c, h, w] = x.dims();
        let min = self.min_size();
        if b == 0 || c != 3 {
            return Err(EvalError::input(
                format!("LPIPS {what}"),
                format!("expected images [B >= 1, 3, H, W], got {:?}", x.dims()),
            ));
        }
        if self.kind.output_len(h).is_none() || self.kind.output_len(w).is_none() {
            return Err(EvalError::input(
                format!("LPIPS {what}"),
                format!(
                    "images of {h}x{w} pixels are too small for the {} trunk: it needs at \
                     least {min}x{min}",
                    self.kind
                ),
            ));
        }
        let finite = x
            .clone()
            .is_finite()
            .all()
            .try_into_scalar::<bool>()
            .map_err(|e| CoreError::Readback(format!("{e:?}")))?;
        if !finite {
            return Err(EvalError::input(
                format!("LPIPS {what}"),
                "holds NaN or infinite values",
            ));
        }
        Ok(())
    }

    /// The package's `ScalingLayer`: `(x - shift) / scale` per channel.
    fn scale_input(x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        let constant = |v: [f32; 3]| {
            Tensor::<4>::from_data(TensorData::new(v.to_vec(), [1, 3, 1, 1]), &device)
        };
        x.sub(constant(SHIFT)).div(constant(SCALE))
    }

    fn taps_of(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let taps = self.kind.taps();
        let mut out = Vec::with_capacity(taps.len());
        let mut h = Self::scale_input(x);
        for (i, layer) in self.net.iter().enumerate() {
            h = layer.forward(h);
            if taps.contains(&i) {
                out.push(h.clone());
            }
        }
        out
    }

    /// The trunk's tapped features of images `[B, 3, H, W]` in `[-1, 1]` (after the scaling
    /// layer, before normalisation): the package's `net.forward(scaling_layer(x))`.
    pub fn features(&self, x: Tensor<4>) -> Result<Vec<Tensor<4>>> {
        self.check(&x, "input")?;
        Ok(self.taps_of(x))
    }

    /// The distance of each pair of images `a`, `b` `[B, 3, H, W]` in `[-1, 1]` with each
    /// tap's term (`forward(a, b, retPerLayer=True)`). `a` and `b` must have the same shape,
    /// sides of at least [`Self::min_size`] and finite values.
    pub fn distance_layers(&self, a: Tensor<4>, b: Tensor<4>) -> Result<LpipsDistance> {
        if a.dims() != b.dims() {
            return Err(EvalError::input(
                "LPIPS distance",
                format!(
                    "the two image batches differ in shape: {:?} and {:?}",
                    a.dims(),
                    b.dims()
                ),
            ));
        }
        self.check(&a, "first images")?;
        self.check(&b, "second images")?;
        let n = a.dims()[0];
        // One pass over both batches.
        let taps = self.taps_of(Tensor::cat(vec![a, b], 0));
        let mut layers = Vec::with_capacity(taps.len());
        for (f, lin) in taps.into_iter().zip(&self.lins) {
            let [_, c, h, w] = f.dims();
            let f = normalize(f);
            let d = f.clone().narrow(0, 0, n) - f.narrow(0, n, n);
            let weighted = (d.clone() * d) * lin.weight.val().reshape([1, c, 1, 1]);
            let per_pixel = weighted.sum_dim(1).reshape([n, h * w]);
            layers.push(per_pixel.mean_dim(1).reshape([n]));
        }
        let total = layers
            .iter()
            .cloned()
            .reduce(|acc, l| acc + l)
            .ok_or_else(|| EvalError::input("LPIPS distance", "the trunk has no taps"))?;
        Ok(LpipsDistance { total, layers })
    }

    /// The distance of each pair of images `a`, `b` `[B, 3, H, W]` in `[-1, 1]`: `[B]`
    /// (the package's `forward(a, b)`, squeezed).
    pub fn distance(&self, a: Tensor<4>, b: Tensor<4>) -> Result<Tensor<1>> {
        Ok(self.distance_layers(a, b)?.total)
    }

    /// [`Self::distance`] of images in `[0, 1]` (the package's `normalize=True`: `2x - 1`).
    pub fn distance_unit(&self, a: Tensor<4>, b: Tensor<4>) -> Result<Tensor<1>> {
        Ok(self.distance_layers_unit(a, b)?.total)
    }

    /// [`Self::distance_layers`] of images in `[0, 1]`.
    pub fn distance_layers_unit(&self, a: Tensor<4>, b: Tensor<4>) -> Result<LpipsDistance> {
        let to_signed = |x: Tensor<4>| x.mul_scalar(2.0).sub_scalar(1.0);
        self.distance_layers(to_signed(a), to_signed(b))
    }
}

/// The package's `normalize_tensor`: `f / (sqrt(sum_c f^2) + 1e-10)`.
fn normalize(f: Tensor<4>) -> Tensor<4> {
    let norm = (f.clone() * f.clone())
        .sum_dim(1)
        .sqrt()
        .add_scalar(NORM_EPS);
    f / norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_follows_pytorch() {
        assert_eq!(LpipsNet::Alex.min_size(), 31);
        assert_eq!(LpipsNet::Vgg.min_size(), 16);
        assert_eq!(LpipsNet::Squeeze.min_size(), 17);
        assert_eq!(LpipsNet::Alex.output_len(64), Some(3));
        assert_eq!(LpipsNet::Alex.output_len(30), None);
        // Ceil mode: a window over 2 pixels is kept, one over 1 is not.
        assert_eq!(out_len(2, 3, 2, 0, true), Some(1));
        assert_eq!(out_len(1, 3, 2, 0, true), None);
        assert_eq!(out_len(6, 3, 2, 0, true), Some(3));
        assert_eq!(out_len(7, 3, 2, 0, false), Some(3));
        assert_eq!(LpipsNet::Alex.channels(), [64, 192, 384, 256, 256]);
        assert_eq!(LpipsNet::Vgg.channels(), [64, 128, 256, 512, 512]);
        assert_eq!(
            LpipsNet::Squeeze.channels(),
            [64, 128, 256, 384, 384, 512, 512]
        );
    }

    #[test]
    fn keys_follow_the_package() {
        let net = LpipsNet::Squeeze;
        assert_eq!(
            net.file_key("net.3.squeeze.weight"),
            "net.slice2.3.squeeze.weight"
        );
        assert_eq!(
            net.file_key("net.12.expand3x3.bias"),
            "net.slice7.12.expand3x3.bias"
        );
        assert_eq!(net.file_key("lins.6.weight"), "lin6.model.1.weight");
        assert_eq!(LpipsNet::Vgg.file_key("net.28.bias"), "net.slice5.28.bias");
        assert_eq!(
            LpipsNet::Alex.file_key("net.10.weight"),
            "net.slice5.10.weight"
        );
        for net in LpipsNet::ALL {
            assert_eq!(LpipsNet::parse(net.name()).unwrap(), net);
            let m = Lpips::new(net, &Device::default());
            assert_eq!(m.net.len(), net.taps().last().unwrap() + 1);
            assert_eq!(m.lins.len(), net.taps().len());
        }
        assert!(LpipsNet::parse("resnet").is_err());
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let device = Device::default();
        let m = Lpips::new(LpipsNet::Alex, &device);
        let ok = Tensor::<4>::zeros([1, 3, 32, 32], &device);
        let msg = |r: Result<Tensor<1>>| r.unwrap_err().to_string();
        let e = msg(m.distance(ok.clone(), Tensor::zeros([1, 3, 32, 33], &device)));
        assert!(e.contains("differ in shape"), "{e}");
        let e = msg(m.distance(
            Tensor::zeros([1, 3, 30, 40], &device),
            Tensor::zeros([1, 3, 30, 40], &device),
        ));
        assert!(e.contains("31x31"), "{e}");
        let e = msg(m.distance(
            Tensor::zeros([1, 1, 32, 32], &device),
            Tensor::zeros([1, 1, 32, 32], &device),
        ));
        assert!(e.contains("[B >= 1, 3, H, W]"), "{e}");
        let nan = ok.clone().slice_assign(
            [0..1, 0..1, 3..4, 5..6],
            Tensor::from_data([[[[f32::NAN]]]], &device),
        );
        let e = msg(m.distance(ok.clone(), nan));
        assert!(e.contains("NaN") && e.contains("second"), "{e}");
        // 31 is enough.
        let x = Tensor::<4>::zeros([2, 3, 31, 31], &device);
        assert_eq!(m.distance(x.clone(), x).unwrap().dims(), [2]);
    }
}

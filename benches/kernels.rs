//! Criterion benchmarks of the hot kernels of the UNet / VAE at Stable Diffusion 1.x sizes
//! (guidance batch 2, on the default device, float32): scaled-dot-product attention (self and
//! text cross, and the whole attention module), 3x3 convolutions and GroupNorm at the three
//! UNet widths, a resnet block, and GEGLU.
//!
//! Each kernel of `sonic-kernels` is measured back to back with the plain Burn path it
//! replaces (`...-fused` / `...-burn`), so that the ratio holds even on a loaded machine.
//!
//! `cargo bench -p sonic-diffusion --bench kernels` (`-- attention` to pick a group).

use burn::tensor::DType;
use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use sonic_diffusion::attn::attention_processor::{Attention, AttentionConfig};
use sonic_diffusion::kernels::attention::{scaled_dot_product, scaled_dot_product_burn};
use sonic_diffusion::kernels::norm::group_norm_silu;
use sonic_diffusion::layers::resnet::ResnetBlock2D;
use std::hint::black_box;

fn device() -> Device {
    sonic_diffusion::core::device::default_device().unwrap_or_default()
}

fn randn<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Forces the computation (the backend may be lazy) without copying much: reads one value.
fn sync<const D: usize>(t: Tensor<D>) {
    let _ = black_box(t.sum().into_scalar::<f32>());
}

fn attention(c: &mut Criterion) {
    let d = device();
    let mut g = c.benchmark_group("attention");
    g.sample_size(10);
    // Level 1 of SD1.x at 512 pixels (64x64 latents): 4096 tokens, 8 heads x 40.
    for (name, n, m) in [
        ("self-4096", 4096, 4096),
        ("self-1024", 1024, 1024),
        ("cross-4096x77", 4096, 77),
    ] {
        let q = randn([2, 8, n, 40], &d);
        let k = randn([2, 8, m, 40], &d);
        let v = randn([2, 8, m, 40], &d);
        g.bench_function(format!("{name}-fused"), |b| {
            b.iter(|| sync(scaled_dot_product(q.clone(), k.clone(), v.clone())))
        });
        g.bench_function(format!("{name}-burn"), |b| {
            b.iter(|| sync(scaled_dot_product_burn(q.clone(), k.clone(), v.clone())))
        });
        if n == 4096 {
            let (qb, kb, vb) = (
                q.clone().cast(DType::BF16),
                k.clone().cast(DType::BF16),
                v.clone().cast(DType::BF16),
            );
            g.bench_function(format!("{name}-bf16-fused"), |b| {
                b.iter(|| sync(scaled_dot_product(qb.clone(), kb.clone(), vb.clone())))
            });
            g.bench_function(format!("{name}-bf16-burn"), |b| {
                b.iter(|| sync(scaled_dot_product_burn(qb.clone(), kb.clone(), vb.clone())))
            });
        }
        // The same with explicit products and a softmax, 512 queries at a time.
        g.bench_function(format!("{name}-matmul-softmax"), |b| {
            b.iter(|| {
                let kt = k.clone().swap_dims(2, 3).mul_scalar(1.0 / 40f64.sqrt());
                let parts: Vec<Tensor<4>> = (0..n)
                    .step_by(512)
                    .map(|s| {
                        let scores = q.clone().narrow(2, s, 512.min(n - s)).matmul(kt.clone());
                        burn::tensor::activation::softmax(scores, 3).matmul(v.clone())
                    })
                    .collect();
                sync(Tensor::cat(parts, 2))
            })
        });
    }
    // The whole module (projections, head split / merge, output projection).
    let attn = Attention::new(&AttentionConfig::new(320, 8, 40).with_cross(768), &d);
    let x = randn([2, 4096, 320], &d);
    let text = randn([2, 77, 768], &d);
    g.bench_function("module-cross-4096x77", |b| {
        b.iter(|| sync(attn.forward(x.clone(), Some(text.clone()))))
    });
    g.finish();
}

fn conv_norm(c: &mut Criterion) {
    let d = device();
    let mut g = c.benchmark_group("conv_norm");
    g.sample_size(10);
    for (name, ch, s) in [
        ("320x64x64", 320, 64),
        ("640x32x32", 640, 32),
        ("1280x16x16", 1280, 16),
        ("1280x8x8", 1280, 8),
    ] {
        let conv = sonic_diffusion::layers::conv2d(ch, ch, 3, 1, 1, &d);
        let x = randn([2, ch, s, s], &d);
        g.bench_function(format!("conv3x3-burn-{name}"), |b| {
            b.iter(|| sync(conv.forward(x.clone())))
        });
        g.bench_function(format!("conv3x3-im2col-{name}"), |b| {
            b.iter(|| sync(sonic_diffusion::layers::conv2d_im2col(&conv, x.clone())))
        });
        g.bench_function(format!("conv3x3-kernel-{name}"), |b| {
            b.iter(|| sync(sonic_diffusion::kernels::conv::conv2d(&conv, x.clone())))
        });
        let gn = sonic_diffusion::layers::group_norm(32, ch, 1e-5, &d);
        g.bench_function(format!("groupnorm-silu-burn-{name}"), |b| {
            b.iter(|| sync(burn::tensor::activation::silu(gn.forward(x.clone()))))
        });
        g.bench_function(format!("groupnorm-silu-fused-{name}"), |b| {
            b.iter(|| sync(group_norm_silu(&gn, x.clone())))
        });
    }
    g.finish();
}

/// The VAE decoder's 3x3 convolutions (batch 1, 512 -> 128 channels, 64 -> 512 pixels).
fn vae_conv(c: &mut Criterion) {
    let d = device();
    let mut g = c.benchmark_group("vae_conv");
    g.sample_size(10);
    for (name, ch, s) in [
        ("512x64x64", 512, 64),
        ("512x128x128", 512, 128),
        ("256x256x256", 256, 256),
        ("128x512x512", 128, 512),
    ] {
        let conv = sonic_diffusion::layers::conv2d(ch, ch, 3, 1, 1, &d);
        let x = randn([1, ch, s, s], &d);
        g.bench_function(format!("conv3x3-burn-{name}"), |b| {
            b.iter(|| sync(conv.forward(x.clone())))
        });
        g.bench_function(format!("conv3x3-im2col-{name}"), |b| {
            b.iter(|| sync(sonic_diffusion::layers::conv2d_im2col(&conv, x.clone())))
        });
        g.bench_function(format!("conv3x3-kernel-{name}"), |b| {
            b.iter(|| sync(sonic_diffusion::kernels::conv::conv2d(&conv, x.clone())))
        });
        // The kernel's two paths on host slices: banded im2col products and Winograd
        // F(2x2, 3x3) (what `conv3x3-kernel` takes at these sizes).
        let geometry = sonic_diffusion::kernels::conv::Geometry::of(&conv, x.dims())
            .expect("a 3x3 convolution the kernel takes");
        let host = |t: Tensor<4>| t.into_data().try_into_vec::<f32>().expect("f32");
        let xs = host(x.clone());
        let ws = host(conv.weight.val());
        g.bench_function(format!("conv3x3-im2col-slices-{name}"), |b| {
            b.iter(|| sonic_diffusion::kernels::conv::conv2d_f32(&geometry, &xs, &ws, None))
        });
        g.bench_function(format!("conv3x3-winograd-slices-{name}"), |b| {
            b.iter(|| sonic_diffusion::kernels::winograd::conv3x3_f32(&geometry, &xs, &ws, None))
        });
    }
    g.finish();
}

fn resnet(c: &mut Criterion) {
    let d = device();
    let mut g = c.benchmark_group("resnet");
    g.sample_size(10);
    let block = ResnetBlock2D::new(320, 320, Some(1280), 32, 1e-5, &d);
    let x = randn([2, 320, 64, 64], &d);
    let temb = randn([2, 1280], &d);
    g.bench_function("resnet-320x64x64", |b| {
        b.iter(|| sync(block.forward(x.clone(), Some(temb.clone()))))
    });
    g.finish();
}

/// GEGLU of the UNet's feed-forwards at the three widths (tokens of a 64 x 64 latent, batch 2):
/// the fused pass against Burn's slices + `gelu` + multiply.
fn geglu(c: &mut Criterion) {
    let d = device();
    let mut g = c.benchmark_group("geglu");
    g.sample_size(10);
    for (tokens, width) in [(4096, 320), (1024, 640), (256, 1280)] {
        let h = randn([2, tokens, 2 * 4 * width], &d);
        g.bench_function(format!("geglu-fused-{tokens}x{width}"), |b| {
            b.iter(|| sync(sonic_diffusion::kernels::activation::geglu(h.clone())))
        });
        g.bench_function(format!("geglu-burn-{tokens}x{width}"), |b| {
            b.iter(|| {
                let c2 = 2 * 4 * width;
                let hidden = h.clone().slice([0..2, 0..tokens, 0..c2 / 2]);
                let gate = h.clone().slice([0..2, 0..tokens, c2 / 2..c2]);
                sync(hidden * burn::tensor::activation::gelu(gate))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, attention, conv_norm, vae_conv, resnet, geglu);
criterion_main!(benches);

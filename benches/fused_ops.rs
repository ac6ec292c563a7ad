//! Fused operations against burn's defaults (`pretrain::models::fused`), Flex backend, release
//! build: each convolution of the SimCLR small CNN (batch 512 = 256 x two views), forward and
//! backward through `Autodiff<Flex>`, and its weight and input gradients alone; GELU (exact, at
//! ViT-tiny's MLP width; tanh, at GPT-mini's) and layer normalization (ViT-tiny's width),
//! forward and backward; attention (ViT-tiny, BERT-tiny with padding, GPT-mini causal) and the
//! cross-entropy of GPT-mini's vocabulary logits, forward and backward.
//!
//! `cargo bench -p pretrain-benches --bench fused_ops`

use criterion::{Criterion, criterion_group, criterion_main};
use pretrain::burn::backend::{Autodiff, Flex};
use pretrain::burn::nn::LayerNormConfig;
use pretrain::burn::tensor::activation;
use pretrain::burn::tensor::module::conv2d as burn_conv2d;
use pretrain::burn::tensor::ops::{ConvOptions, ModuleOps};
use pretrain::burn::tensor::{Bool, Distribution, Int, Tensor, TensorData, TensorPrimitive};
use pretrain::models::FusedBackend;
use pretrain::models::fused::{self, conv2d};

type Ad = Autodiff<Flex>;

/// The `pretrain` binary's allocator: the kernels allocate their outputs and im2col buffers per
/// call, and the system allocator's page faults would be most of what a benchmark measured.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The small CNN's 3x3 convolutions: (input channels, output channels, side).
const LAYERS: [(usize, usize, usize); 4] = [(1, 32, 28), (32, 64, 14), (64, 128, 7), (128, 256, 3)];
const BATCH: usize = 512;

fn convolutions(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d_3x3");
    group.sample_size(10);
    let device = Default::default();
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    for (c_in, c_out, side) in LAYERS {
        let name = format!("{c_in}to{c_out}_{side}x{side}_batch{BATCH}");
        let x = Tensor::<Ad, 4>::random([BATCH, c_in, side, side], Distribution::Default, &device);
        let weight = Tensor::<Ad, 4>::random([c_out, c_in, 3, 3], Distribution::Default, &device);
        let up =
            Tensor::<Ad, 4>::random([BATCH, c_out, side, side], Distribution::Default, &device);
        for fused in [false, true] {
            let label = if fused { "fused" } else { "default" };
            group.bench_function(format!("{name}/forward_backward/{label}"), |b| {
                b.iter(|| {
                    let (x, w) = (x.clone().require_grad(), weight.clone().require_grad());
                    let y = if fused {
                        conv2d(x.clone(), w.clone(), None, options.clone())
                    } else {
                        burn_conv2d(x.clone(), w.clone(), None, options.clone())
                    };
                    let grads = (y * up.clone()).sum().backward();
                    (x.grad(&grads), w.grad(&grads))
                })
            });
        }
        let [x, weight, up] =
            [x.inner(), weight.inner(), up.inner()].map(|t| t.into_primitive().tensor());
        for fused in [false, true] {
            let label = if fused { "fused" } else { "default" };
            for input in [false, true] {
                let what = if input { "x_grad" } else { "weight_grad" };
                group.bench_function(format!("{name}/{what}/{label}"), |b| {
                    b.iter(|| {
                        let args = (x.clone(), weight.clone(), up.clone(), options.clone());
                        let grad = match (fused, input) {
                            (true, false) => {
                                Flex::fused_conv2d_weight_grad(args.0, args.1, args.2, args.3)
                            }
                            (true, true) => {
                                Flex::fused_conv2d_x_grad(args.0, args.1, args.2, args.3)
                            }
                            (false, false) => {
                                Flex::conv2d_weight_backward(args.0, args.1, args.2, args.3)
                            }
                            (false, true) => {
                                Flex::conv2d_x_backward(args.0, args.1, args.2, args.3)
                            }
                        };
                        Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(grad))
                    })
                });
            }
        }
    }
    group.finish();
}

fn element_wise(c: &mut Criterion) {
    let mut group = c.benchmark_group("element_wise");
    group.sample_size(10);
    let device = Default::default();
    // ViT-tiny-28's MLP hidden activations (batch 64 x 50 tokens x 512) and GPT-mini's (32 x
    // 128 tokens x 1024).
    let vit = Tensor::<Ad, 3>::random([64, 50, 512], Distribution::Normal(0.0, 1.0), &device);
    let gpt = Tensor::<Ad, 3>::random([32, 128, 1024], Distribution::Normal(0.0, 1.0), &device);
    let forward_backward = |x: &Tensor<Ad, 3>, f: &dyn Fn(Tensor<Ad, 3>) -> Tensor<Ad, 3>| {
        let x = x.clone().require_grad();
        let grads = f(x.clone()).sum().backward();
        x.grad(&grads)
    };
    group.bench_function("gelu_64x50x512/default", |b| {
        b.iter(|| forward_backward(&vit, &|x| activation::gelu(x)))
    });
    group.bench_function("gelu_64x50x512/fused", |b| {
        b.iter(|| forward_backward(&vit, &|x| fused::gelu(x)))
    });
    group.bench_function("gelu_tanh_32x128x1024/default", |b| {
        b.iter(|| forward_backward(&gpt, &|x| activation::gelu_approximate(x)))
    });
    group.bench_function("gelu_tanh_32x128x1024/fused", |b| {
        b.iter(|| forward_backward(&gpt, &|x| fused::gelu_tanh(x)))
    });
    // ViT-tiny-28's block input: 64 x 50 tokens x 128.
    let x = Tensor::<Ad, 3>::random([64, 50, 128], Distribution::Normal(0.0, 1.0), &device);
    let burns = LayerNormConfig::new(128).init::<Ad>(&device);
    let ours = pretrain::models::norm::LayerNormConfig::new(128).init::<Ad>(&device);
    group.bench_function("layer_norm_64x50x128/default", |b| {
        b.iter(|| forward_backward(&x, &|x| burns.forward(x)))
    });
    group.bench_function("layer_norm_64x50x128/fused", |b| {
        b.iter(|| forward_backward(&x, &|x| ours.forward(x)))
    });
    group.finish();
}

fn attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("attention");
    group.sample_size(10);
    let device = Default::default();
    // (name, [batch, heads, seq, d_head], padded keys of every other sample, causal): ViT-tiny-28
    // (50 tokens, 4 heads of 32), BERT-tiny (2 heads of 64, 128 tokens), GPT-mini (6 heads of 32).
    let shapes = [
        ("vit_tiny_64x4x50x32", [64, 4, 50, 32], 0, false),
        ("bert_tiny_32x2x128x64_padded", [32, 2, 128, 64], 40, false),
        ("gpt_mini_32x6x128x32_causal", [32, 6, 128, 32], 0, true),
    ];
    for (name, [batch, heads, seq, d_head], padded, causal) in shapes {
        // Heads split from [batch, seq, heads * d_head] projections, as the models do.
        let projection = || {
            Tensor::<Ad, 3>::random(
                [batch, seq, heads * d_head],
                Distribution::Normal(0.0, 1.0),
                &device,
            )
        };
        let [q, k, v] = [projection(), projection(), projection()];
        let mask: Vec<bool> = (0..batch * seq)
            .map(|i| (i / seq) % 2 == 1 && i % seq >= seq - padded)
            .collect();
        let padding = (padded > 0).then(|| {
            Tensor::<Ad, 2, Bool>::from_data(TensorData::new(mask, [batch, seq]), &device)
        });
        let causal_offset = causal.then_some(0);
        for fused in [false, true] {
            let label = if fused { "fused" } else { "default" };
            group.bench_function(format!("{name}/forward_backward/{label}"), |b| {
                b.iter(|| {
                    let [q, k, v] = [&q, &k, &v].map(|x| x.clone().require_grad());
                    let split =
                        |x: Tensor<Ad, 3>| x.reshape([batch, seq, heads, d_head]).swap_dims(1, 2);
                    let (qh, kh, vh) = (split(q.clone()), split(k.clone()), split(v.clone()));
                    let y = if fused {
                        fused::attention(qh, kh, vh, padding.clone(), causal_offset, 0.0)
                    } else {
                        let weights =
                            fused::attention_weights(qh, kh, padding.as_ref(), causal_offset);
                        fused::merge_heads(weights.matmul(vh))
                    };
                    let grads = y.sum().backward();
                    (q.grad(&grads), k.grad(&grads), v.grad(&grads))
                })
            });
        }
    }
    group.finish();
}

fn cross_entropy(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_entropy");
    group.sample_size(10);
    let device = Default::default();
    // GPT-mini's step: 32 x 128 positions, 8,192-token vocabulary.
    let (rows, vocab) = (4096, 8192);
    let logits = Tensor::<Ad, 2>::random([rows, vocab], Distribution::Normal(0.0, 2.0), &device);
    let targets = Tensor::<Ad, 1, Int>::from_data(
        TensorData::new((0..rows as i64).map(|i| i * 31 % 8192).collect(), [rows]),
        &device,
    );
    for fused in [false, true] {
        let label = if fused { "fused" } else { "default" };
        group.bench_function(format!("{rows}x{vocab}/forward_backward/{label}"), |b| {
            b.iter(|| {
                let x = logits.clone().require_grad();
                let loss = if fused {
                    fused::cross_entropy(x.clone(), targets.clone())
                } else {
                    // burn's operations, every row counted.
                    let picked = targets.clone().reshape([rows, 1]);
                    activation::log_softmax(x.clone(), 1)
                        .gather(1, picked)
                        .mean()
                        .neg()
                };
                let grads = loss.backward();
                x.grad(&grads)
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    convolutions,
    element_wise,
    attention,
    cross_entropy
);
criterion_main!(benches);

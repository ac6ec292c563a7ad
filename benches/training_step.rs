//! Training-step benchmarks: forward, backward and AdamW update of the four reference
//! workloads (MAE on ViT-tiny-28, batch 256, 75% masked; BERT-tiny MLM, batch 32 x 128 tokens,
//! 8,192-token vocabulary; SimCLR with the small CNN, batch 256 x two views; GPT-mini causal
//! LM, batch 32 x 128 predicted tokens, 8,192-token vocabulary), and a transformer block's
//! forward and backward alone. Flex backend, release build.
//!
//! `cargo bench -p pretrain-benches --bench training_step`
//! (`cargo xtask bench step` prints the same measurement as one JSON line, on any backend.)

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pretrain::burn::backend::{Autodiff, Flex};
use pretrain::burn::tensor::{Distribution, Tensor};
use pretrain::data::Named;
use pretrain::models::TransformerBlockConfig;
use pretrain_benches::step::{StepModel, prepare_step};

type Ad = Autodiff<Flex>;

fn training_steps(c: &mut Criterion) {
    let mut group = c.benchmark_group("training_step");
    group.sample_size(10);
    let device = Default::default();
    for &model in StepModel::all() {
        let batch = model.default_batch();
        let mut step = prepare_step::<Ad>(model, batch, 0, &device).expect("workload builds");
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("{}/batch{batch}", model.name()), |b| {
            b.iter(|| step().expect("step runs"))
        });
    }
    group.finish();
}

fn attention_block(c: &mut Criterion) {
    // ViT-tiny-28's block: width 128, 4 heads, MLP 512, 50 tokens (49 patches and CLS).
    let device = Default::default();
    let block = TransformerBlockConfig::new(128, 4, 512)
        .init::<Ad>(&device)
        .expect("block builds");
    let x = Tensor::<Ad, 3>::random([64, 50, 128], Distribution::Default, &device);
    let mut group = c.benchmark_group("transformer_block");
    group.sample_size(20);
    group.throughput(Throughput::Elements(64));
    group.bench_function("width128_heads4_tokens50_batch64/forward_backward", |b| {
        b.iter(|| {
            let x = x.clone().require_grad();
            let grads = block.forward(x.clone(), None).sum().backward();
            x.grad(&grads).expect("input gradient")
        })
    });
    group.finish();
}

criterion_group!(benches, training_steps, attention_block);
criterion_main!(benches);

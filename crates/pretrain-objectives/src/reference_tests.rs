//! Every loss against PyTorch and against finite differences.
//!
//! `fixtures/reference_losses.json` holds inputs, loss values (and their named parts) and
//! gradients computed by `tools/reference/losses.py` from the authors' reference formulas.
//! Regenerate with:
//! `python3 tools/reference/losses.py > crates/pretrain-objectives/fixtures/reference_losses.json`.
//! Values must match to 1e-5 relative to `max(1, |reference|)`; gradients to the same
//! tolerance relative to the largest gradient entry. Central finite differences (f32, step
//! 1e-2) must agree with autodiff to `2e-3 + 2e-2 |grad|`.
//!
//! `fixtures/reference_gpt.json` (`tools/reference/gpt.py`) holds a tiny GPT-2's weights
//! (learned and rotary positions), token windows, logits, the causal-LM loss with and without
//! document-boundary masking, and the token embedding's gradient: the `Gpt` loaded with those
//! weights must match them to 1e-5.

use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use pretrain_models::FusedBackend;
use pretrain_models::init::init_seeded;
use serde_json::Value;

use crate::testing::Ad;
use crate::{ReconstructionLoss, negative_cosine};
use crate::{
    barlow_twins_terms, byol_loss, info_nce, masked_patch_l1, masked_patch_mse,
    masked_token_cross_entropy, normalize_patches, nt_xent, reconstruction_loss, vicreg_terms,
};
use pretrain_models::patchify;

const FIXTURE: &str = include_str!("../fixtures/reference_losses.json");

struct Case<'a>(&'a Value);

impl Case<'_> {
    fn name(&self) -> &str {
        self.0["name"].as_str().unwrap()
    }

    fn param(&self, name: &str) -> f64 {
        self.0["params"][name].as_f64().unwrap()
    }

    fn data(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let input = &self.0["inputs"][name];
        let shape = input["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize);
        let data = input["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32);
        (data.collect(), shape.collect())
    }

    fn input<const D: usize>(&self, name: &str) -> Tensor<Ad, D> {
        let (data, shape) = self.data(name);
        Tensor::from_data(TensorData::new(data, shape), &Default::default())
    }

    fn ints<const D: usize>(&self, name: &str) -> Tensor<Ad, D, Int> {
        let input = &self.0["int_inputs"][name];
        let shape: Vec<usize> = input["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let data: Vec<i64> = input["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        Tensor::from_data(TensorData::new(data, shape), &Default::default())
    }

    fn expect_value(&self, what: &str, reference: f64, actual: f64) {
        let tolerance = 1e-5 * reference.abs().max(1.0);
        assert!(
            (actual - reference).abs() <= tolerance,
            "{} {what}: {actual} vs PyTorch {reference}",
            self.name()
        );
    }

    fn expect_parts(&self, parts: &[(&str, Tensor<Ad, 1>)]) {
        for (name, value) in parts {
            let reference = self.0["parts"][*name].as_f64().unwrap();
            self.expect_value(name, reference, scalar(value.clone()));
        }
    }

    /// Loss value, autodiff gradient against PyTorch's, and finite differences, for the
    /// input `name` (every other input held fixed inside `loss`).
    fn check<const D: usize>(&self, name: &str, loss: impl Fn(Tensor<Ad, D>) -> Tensor<Ad, 1>) {
        let x = self.input::<D>(name).require_grad();
        let value = loss(x.clone());
        self.expect_value(
            "loss",
            self.0["loss"].as_f64().unwrap(),
            scalar(value.clone()),
        );
        let grads = value.backward();
        let grad: Vec<f32> = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
        let reference: Vec<f64> = self.0["grads"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let scale = reference.iter().fold(1e-3f64, |m, g| m.max(g.abs()));
        for (i, (g, r)) in grad.iter().zip(&reference).enumerate() {
            assert!(
                (f64::from(*g) - r).abs() <= 1e-5 * scale.max(1.0),
                "{} d/d{name}[{i}]: {g} vs PyTorch {r}",
                self.name()
            );
        }
        self.finite_differences(name, &grad, loss);
    }

    fn finite_differences<const D: usize>(
        &self,
        name: &str,
        grad: &[f32],
        loss: impl Fn(Tensor<Ad, D>) -> Tensor<Ad, 1>,
    ) {
        let (data, shape) = self.data(name);
        let at = |i: usize, delta: f32| {
            let mut moved = data.clone();
            moved[i] += delta;
            scalar(loss(Tensor::from_data(
                TensorData::new(moved, shape.clone()),
                &Default::default(),
            )))
        };
        let step = 1e-2;
        for (i, g) in grad.iter().enumerate() {
            let numeric = (at(i, step) - at(i, -step)) / (2.0 * f64::from(step));
            let g = f64::from(*g);
            assert!(
                (numeric - g).abs() <= 2e-3 + 2e-2 * g.abs(),
                "{} d/d{name}[{i}]: autodiff {g} vs finite difference {numeric}",
                self.name()
            );
        }
    }
}

fn scalar<B: FusedBackend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

#[test]
fn losses_match_pytorch_and_finite_differences() {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 12);
    for value in cases {
        let c = Case(value);
        match c.name() {
            "nt_xent" => {
                let t = c.param("temperature");
                c.check("z1", |z1| nt_xent(z1, c.input("z2"), t));
                c.check("z2", |z2| nt_xent(c.input("z1"), z2, t));
            }
            "info_nce" => {
                let t = c.param("temperature");
                c.check("q", |q| info_nce(q, c.input("k"), c.input("queue"), t));
                c.check("k", |k| info_nce(c.input("q"), k, c.input("queue"), t));
                c.check("queue", |queue| {
                    info_nce(c.input("q"), c.input("k"), queue, t)
                });
            }
            "byol" => c.check("p", |p| byol_loss(p, c.input("z"))),
            "simsiam" => c.check("p", |p| negative_cosine(p, c.input("z"))),
            "barlow_twins" => {
                let lambda = c.param("lambda");
                let terms = barlow_twins_terms(c.input("z1"), c.input("z2"));
                c.expect_parts(&[
                    ("on_diagonal", terms.on_diagonal),
                    ("off_diagonal", terms.off_diagonal),
                ]);
                c.check("z1", |z1| {
                    barlow_twins_terms(z1, c.input("z2")).loss(lambda)
                });
                c.check("z2", |z2| {
                    barlow_twins_terms(c.input("z1"), z2).loss(lambda)
                });
            }
            "vicreg" => {
                let weights = crate::VicRegWeights::new();
                let terms = vicreg_terms(c.input("z1"), c.input("z2"));
                c.expect_parts(&[
                    ("invariance", terms.invariance),
                    ("variance", terms.variance),
                    ("covariance", terms.covariance),
                ]);
                c.check("z1", |z1| vicreg_terms(z1, c.input("z2")).loss(&weights));
                c.check("z2", |z2| vicreg_terms(c.input("z1"), z2).loss(&weights));
            }
            name @ ("mae" | "mae_norm_pix" | "simmim") => {
                let patch = c.param("patch") as usize;
                let loss = |imgs: Tensor<Ad, 4>, pred: Tensor<Ad, 3>| {
                    let target = patchify(imgs, patch);
                    match name {
                        "mae" => masked_patch_mse(pred, target, c.input("hidden")),
                        "mae_norm_pix" => {
                            masked_patch_mse(pred, normalize_patches(target), c.input("hidden"))
                        }
                        _ => masked_patch_l1(pred, target, c.input("hidden")),
                    }
                };
                c.check("pred", |pred| loss(c.input("imgs"), pred));
                c.check("imgs", |imgs| loss(imgs, c.input("pred")));
            }
            "masked_cross_entropy" => c.check("logits", |logits| {
                masked_token_cross_entropy(logits, c.ints("targets"))
            }),
            "mse" => c.check("output", |out: Tensor<Ad, 2>| {
                reconstruction_loss(out, c.input("target"), ReconstructionLoss::Mse)
            }),
            "bce" => c.check("output", |out: Tensor<Ad, 2>| {
                reconstruction_loss(out, c.input("target"), ReconstructionLoss::Bce)
            }),
            other => panic!("fixture case {other} has no test"),
        }
    }
}

fn matrix(rows: usize, cols: usize, f: impl Fn(usize, usize) -> f32) -> Tensor<Ad, 2> {
    let data: Vec<f32> = (0..rows * cols).map(|i| f(i / cols, i % cols)).collect();
    Tensor::from_data(TensorData::new(data, [rows, cols]), &Default::default())
}

#[test]
fn nt_xent_is_invariant_to_pair_order_and_view_swap() {
    let case = serde_json::from_str::<Value>(FIXTURE).unwrap();
    let c = Case(&case["cases"][0]);
    let (z1, z2): (Tensor<Ad, 2>, Tensor<Ad, 2>) = (c.input("z1"), c.input("z2"));
    let loss = scalar(nt_xent(z1.clone(), z2.clone(), 0.5));
    let order = Tensor::<Ad, 1, Int>::from_data([5, 2, 7, 0, 1, 6, 3, 4], &Default::default());
    let shuffled = scalar(nt_xent(
        z1.clone().select(0, order.clone()),
        z2.clone().select(0, order),
        0.5,
    ));
    assert!((loss - shuffled).abs() < 1e-6, "{loss} vs {shuffled}");
    let swapped = scalar(nt_xent(z2, z1, 0.5));
    assert!((loss - swapped).abs() < 1e-6, "{loss} vs {swapped}");
}

#[test]
fn perfect_encoders_reach_the_analytic_minimum() {
    // n images embedded at the vertices of a regular simplex (cosine -1/(n-1) between
    // different images), both views identical: NT-Xent's minimum
    // ln(1 + 2(n-1) exp((-1/(n-1) - 1) / t)); any perturbation costs more.
    let (n, t) = (6, 0.5);
    let simplex = matrix(n, n, |i, j| if i == j { 1.0 } else { 0.0 } - 1.0 / n as f32);
    let minimum = (1.0 + 2.0 * (n - 1) as f64 * ((-1.0 / (n - 1) as f64 - 1.0) / t).exp()).ln();
    let at_simplex = scalar(nt_xent(simplex.clone(), simplex.clone(), t));
    assert!(
        (at_simplex - minimum).abs() < 1e-5,
        "{at_simplex} vs {minimum}"
    );
    for seed in 0..5u64 {
        let noise = matrix(n, n, |i, j| {
            (((i * 7 + j * 13 + seed as usize * 31) % 17) as f32 - 8.0) * 0.01
        });
        let moved = simplex.clone() + noise;
        assert!(scalar(nt_xent(moved.clone(), moved, t)) > minimum);
    }

    // Identical, standardized, decorrelated views (Hadamard columns): Barlow Twins' C = I and
    // VICReg's three terms vanish; BYOL's loss is 0 and SimSiam's -1 for identical vectors.
    let hadamard = |i: usize, j: usize| {
        if (i & (j + 1)).count_ones().is_multiple_of(2) {
            1.0
        } else {
            -1.0
        }
    };
    let z = matrix(8, 4, hadamard);
    let barlow = scalar(barlow_twins_terms(z.clone(), z.clone()).loss(0.0051));
    assert!(barlow.abs() < 1e-6, "{barlow}");
    let vicreg = scalar(vicreg_terms(z.clone(), z.clone()).loss(&crate::VicRegWeights::new()));
    assert!(vicreg.abs() < 1e-6, "{vicreg}");
    assert!(scalar(byol_loss(z.clone(), z.clone())).abs() < 1e-6);
    assert!((scalar(negative_cosine(z.clone(), z)) + 1.0).abs() < 1e-6);
}

/// `tools/reference/gpt.py`: a tiny GPT-2 (learned and rotary positions) in PyTorch.
const GPT_FIXTURE: &str = include_str!("../fixtures/reference_gpt.json");

fn floats(value: &Value) -> (Vec<f32>, Vec<usize>) {
    let list = |v: &Value| v.as_array().unwrap().clone();
    let data = list(&value["data"])
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let shape = list(&value["shape"])
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    (data, shape)
}

fn expect_close(what: &str, actual: &[f32], reference: &[f32]) {
    assert_eq!(actual.len(), reference.len(), "{what}");
    let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (a, r)) in actual.iter().zip(reference).enumerate() {
        assert!(
            (a - r).abs() <= 1e-5 * scale,
            "{what}[{i}]: {a} vs PyTorch {r}"
        );
    }
}

#[test]
fn gpt_logits_loss_and_gradient_match_pytorch() {
    use crate::{CausalLm, CausalLmConfig, Objective};
    use pretrain_data::packed::CausalBatch;
    use pretrain_models::{GptConfig, GptPositions, load_safetensors_bytes};
    use safetensors::tensor::{Dtype, TensorView};

    let fixture: Value = serde_json::from_str(GPT_FIXTURE).unwrap();
    let device = Default::default();
    for case in fixture["cases"].as_array().unwrap() {
        let positions = case["positions"].as_str().unwrap();
        let n = |key: &str| case["config"][key].as_u64().unwrap() as usize;
        let gpt = GptConfig::new(
            n("vocab_size"),
            n("block_size"),
            n("n_layer"),
            n("n_head"),
            n("d_model"),
        )
        .with_positions(match positions {
            "rope" => GptPositions::Rope,
            _ => GptPositions::Learned,
        });
        // The fixture's weights, under pretrain's names, as a safetensors file.
        let tensors: Vec<(String, Vec<u8>, Vec<usize>)> = case["weights"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, value)| {
                let (data, shape) = floats(value);
                let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name.clone(), bytes, shape)
            })
            .collect();
        let views = tensors.iter().map(|(name, bytes, shape)| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap(),
            )
        });
        let bytes = safetensors::serialize(views, None).unwrap();
        let objective = |mask: bool| -> CausalLm<Ad> {
            let mut objective = init_seeded(&device, 1001, || {
                CausalLmConfig::new(gpt.clone())
                    .with_end_of_text(Some(n("end_of_text") as u32))
                    .with_mask_document_boundaries(mask)
                    .init::<Ad>(&device)
                    .unwrap()
            });
            objective.model = load_safetensors_bytes(
                objective.model,
                bytes.clone(),
                std::path::Path::new("reference_gpt.json"),
            )
            .unwrap();
            objective
        };
        let ints = |key: &str| -> Tensor<Ad, 2, Int> {
            let shape: Vec<usize> = case["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let data: Vec<i64> = case[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            Tensor::from_data(TensorData::new(data, shape), &device)
        };
        let batch = || CausalBatch {
            inputs: ints("inputs"),
            targets: ints("targets"),
        };
        let what = |name: &str| format!("GPT ({positions} positions) {name}");

        let plain = objective(false);
        let logits: Vec<f32> = plain
            .model
            .forward(ints("inputs"))
            .into_data()
            .to_vec()
            .unwrap();
        expect_close(&what("logits"), &logits, &floats(&case["logits"]).0);
        for (objective, key) in [(&plain, "loss"), (&objective(true), "masked_loss")] {
            let loss = objective.forward_step(batch()).unwrap().loss;
            let reference = case[key].as_f64().unwrap();
            let actual = scalar(loss.clone());
            assert!(
                (actual - reference).abs() <= 1e-5 * reference.max(1.0),
                "{}: {actual} vs PyTorch {reference}",
                what(key)
            );
            if key == "loss" {
                let grads = loss.backward();
                let grad: Vec<f32> = plain
                    .model
                    .wte
                    .weight
                    .grad(&grads)
                    .unwrap()
                    .into_data()
                    .to_vec()
                    .unwrap();
                expect_close(&what("d loss / d wte"), &grad, &floats(&case["wte_grad"]).0);
            }
        }
    }
}

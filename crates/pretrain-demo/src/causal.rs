//! The causal-LM section of the demo: a `clm` recipe pre-trained, then its held-out bits per
//! byte beside the n-gram baselines (the bar: at least 10% below the bigram's), seeded
//! generations from fixed prompts, and few-shot prompting on the recipe's labeled set.

use std::path::Path;

use pretrain::backend::BackendKind;
use pretrain::finetune::FewShotReport;
use pretrain::models::SamplingConfig;
use serde::Serialize;

use pretrain_recipes::Result;
use pretrain_recipes::few_shot::run_few_shot;
use pretrain_recipes::generate::{GenerateOptions, run_generate};
use pretrain_recipes::heldout::HeldOutReport;
use pretrain_recipes::recipe::Recipe;

use crate::checks::Check;

/// Prompts the demo continues, each with one seed.
pub const PROMPTS: [&str; 3] = ["KING HENRY:\n", "To be, or not to be", "My lord, the"];

/// Tokens generated per prompt.
const SAMPLE_TOKENS: usize = 120;

/// The held-out bits per byte of the LM must be at most this share of the bigram's.
pub const BIGRAM_SHARE: f64 = 0.9;

/// One generation.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// The prompt.
    pub prompt: String,
    /// The text after it.
    pub text: String,
    /// Sampling seed.
    pub seed: u64,
    /// Tokens per second of the generation (with the KV cache).
    pub tokens_per_sec: f64,
}

/// What the demo measured of a causal-LM recipe.
#[derive(Debug, Clone, Serialize)]
pub struct CausalLmResult {
    /// The recipe.
    pub recipe: String,
    /// Held-out bits per byte of the model and the baselines.
    pub heldout: Option<HeldOutReport>,
    /// Few-shot prompting (when the recipe has a `[few_shot]` section).
    pub few_shot: Option<FewShotReport>,
    /// Generations from [`PROMPTS`] (temperature 0.8, top-k 40).
    pub samples: Vec<Sample>,
}

/// Evaluates the finished causal-LM run of `recipe` in `run_dir`.
pub fn evaluate_causal(
    recipe: &Recipe,
    run_dir: &Path,
    heldout: Option<HeldOutReport>,
    backend: BackendKind,
) -> Result<CausalLmResult> {
    let few_shot = match recipe.few_shot {
        Some(_) => {
            eprintln!("[demo] few-shot prompting of {}", recipe.name);
            Some(run_few_shot(run_dir, backend, &run_dir.join("finetune"))?)
        }
        None => None,
    };
    let samples = PROMPTS
        .iter()
        .zip(1..)
        .map(|(prompt, seed)| {
            let options = GenerateOptions {
                run_dir: run_dir.to_path_buf(),
                prompt: prompt.to_string(),
                max_tokens: SAMPLE_TOKENS,
                sampling: SamplingConfig::new()
                    .with_temperature(0.8)
                    .with_top_k(Some(40))
                    .with_seed(seed),
                stop: Vec::new(),
            };
            let generated = run_generate(&options, backend, &mut |_| {})?;
            Ok(Sample {
                prompt: prompt.to_string(),
                text: generated.text,
                seed,
                tokens_per_sec: generated.tokens as f64 / generated.seconds.max(1e-9),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CausalLmResult {
        recipe: recipe.name.clone(),
        heldout,
        few_shot,
        samples,
    })
}

/// The bar of each causal-LM result: held-out bits per byte at most [`BIGRAM_SHARE`] of the
/// bigram baseline's.
pub fn checks(results: &[CausalLmResult]) -> Vec<Check> {
    results
        .iter()
        .map(|r| {
            let pair = r
                .heldout
                .as_ref()
                .and_then(|h| Some((h.model_bits_per_byte, h.bigram()?)));
            Check {
                name: format!(
                    "causal LM ({}): held-out bits per byte at least {:.0}% below the bigram's",
                    r.recipe,
                    100.0 * (1.0 - BIGRAM_SHARE)
                ),
                required: true,
                passed: pair.is_some_and(|(model, bigram)| model <= BIGRAM_SHARE * bigram),
                detail: match pair {
                    Some((model, bigram)) => format!(
                        "model {model:.3} vs bigram {bigram:.3} (needs at most {:.3}; {:+.1}%)",
                        BIGRAM_SHARE * bigram,
                        100.0 * (model / bigram - 1.0)
                    ),
                    None => "no held-out evaluation".into(),
                },
            }
        })
        .collect()
}

/// The section of `report.md`.
pub fn markdown(results: &[CausalLmResult]) -> String {
    let mut out = String::new();
    for r in results {
        out += &format!("\n## Causal language model: {}\n\n", r.recipe);
        if let Some(h) = &r.heldout {
            out += &format!(
                "Held-out bits per byte ({} tokens, {:.2} bytes per token; lower is better):\n\n\
                 | model | bits per byte |\n|---|---|\n| the LM | {:.3} |\n",
                h.tokens, h.bytes_per_token, h.model_bits_per_byte
            );
            for (name, bpb) in &h.baselines {
                out += &format!("| {name} | {bpb:.3} |\n");
            }
        }
        if let Some(f) = &r.few_shot {
            out += &format!(
                "\nFew-shot prompting on {} ({} test texts; always guessing the majority class: \
                 {:.1}%), accuracy (%) mean ± std over the seeds of the in-context examples:\n\n\
                 | shots | tokens per text | accuracy |\n|---|---|---|\n",
                f.dataset,
                f.queries,
                100.0 * f.majority
            );
            for row in &f.rows {
                out += &format!("| {} | {} | {} |\n", row.shots, row.text_tokens, row.cell());
            }
        }
        out += "\nSamples (temperature 0.8, top-k 40):\n\n";
        for s in &r.samples {
            let text = format!("{}{}", s.prompt, s.text);
            let quoted: Vec<String> = text.lines().map(|l| format!("> {l}")).collect();
            out += &format!(
                "Seed {} ({:.0} tokens/s):\n\n{}\n\n",
                s.seed,
                s.tokens_per_sec,
                quoted.join("\n")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretrain::data::Named;
    use pretrain::models::NgramKind;

    fn result(model: f64, bigram: f64) -> CausalLmResult {
        CausalLmResult {
            recipe: "clm".into(),
            heldout: Some(HeldOutReport {
                tokens: 1000,
                bytes_per_token: 1.0,
                model_bits_per_byte: model,
                baselines: vec![
                    (NgramKind::Unigram.name().into(), 4.0),
                    (NgramKind::Bigram.name().into(), bigram),
                ],
            }),
            few_shot: None,
            samples: Vec::new(),
        }
    }

    #[test]
    fn the_bar_needs_ten_percent_below_the_bigram() {
        let passed = |model, bigram| checks(&[result(model, bigram)])[0].passed;
        assert!(passed(2.7, 3.0));
        assert!(!passed(2.71, 3.0));
        assert!(!passed(3.1, 3.0));
        let check = &checks(&[result(2.4, 3.0)])[0];
        assert!(check.required);
        assert!(
            check
                .detail
                .contains("model 2.400 vs bigram 3.000 (needs at most 2.700; -20.0%)"),
            "{}",
            check.detail
        );
        let none = CausalLmResult {
            heldout: None,
            ..result(1.0, 3.0)
        };
        assert!(!checks(&[none])[0].passed);
    }
}

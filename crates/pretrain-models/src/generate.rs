//! Text generation with a [`Gpt`]: the prompt through the KV cache once, then one token at a
//! time; greedy, temperature, top-k and top-p (nucleus) sampling from a seeded generator, so a
//! seed gives the same text every time.

use crate::fused::FusedBackend;
use burn::config::Config;
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::error::{ModelError, Result};
use crate::gpt::{Gpt, KvCache};

/// How tokens are chosen.
#[derive(Config, Debug, PartialEq)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 picks the most likely token (greedy).
    #[config(default = 1.0)]
    pub temperature: f64,
    /// Sample among the `k` most likely tokens only.
    #[config(default = "None")]
    pub top_k: Option<usize>,
    /// Sample among the most likely tokens whose probabilities sum to at least `p`.
    #[config(default = "None")]
    pub top_p: Option<f64>,
    /// Seed of the sampler.
    #[config(default = 0)]
    pub seed: u64,
    /// Reuse the keys and values of earlier positions (false: recompute the whole context for
    /// every token, to compare; the tokens are the same either way).
    #[config(default = true)]
    pub kv_cache: bool,
}

impl SamplingConfig {
    /// Refuses a negative or non-finite temperature, `top_k = 0` and `top_p` outside (0, 1].
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, message: String| ModelError::InvalidConfig {
            model: "sampling",
            field,
            message,
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(bad(
                "temperature",
                format!("{} is not a number >= 0", self.temperature),
            ));
        }
        if self.top_k == Some(0) {
            return Err(bad("top_k", "0 leaves no token to sample".into()));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(bad("top_p", format!("{p} is not in (0, 1]")));
        }
        Ok(())
    }
}

/// Picks the next token from `logits` (one per vocabulary entry).
pub fn sample_token(logits: &[f32], config: &SamplingConfig, rng: &mut StdRng) -> u32 {
    let argmax = |values: &[f32]| {
        values
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 { (i, v) } else { best }
            })
            .0 as u32
    };
    if config.temperature == 0.0 || config.top_k == Some(1) {
        return argmax(logits);
    }
    // Candidates by decreasing logit (ties by id, so the order is deterministic).
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order.truncate(config.top_k.unwrap_or(order.len()));
    let top = f64::from(logits[order[0]]);
    let mut weights: Vec<f64> = order
        .iter()
        .map(|&i| ((f64::from(logits[i]) - top) / config.temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    if let Some(p) = config.top_p {
        let mut cumulative = 0.0;
        let keep = weights
            .iter()
            .position(|w| {
                cumulative += w / total;
                cumulative >= p
            })
            .map_or(weights.len(), |i| i + 1);
        weights.truncate(keep);
        order.truncate(keep);
    }
    let total: f64 = weights.iter().sum();
    let mut draw = rng.random::<f64>() * total;
    for (&i, w) in order.iter().zip(&weights) {
        draw -= w;
        if draw <= 0.0 {
            return i as u32;
        }
    }
    order[order.len() - 1] as u32
}

/// Generates up to `max_tokens` tokens after `prompt`, calling `on_token` with each; it
/// returns `false` to stop (an end-of-text token, a stop string). Returns the generated
/// tokens. Once the context is full, each step recomputes the last `block_size` positions
/// (a sliding window) instead of using the cache.
pub fn generate<B: FusedBackend>(
    model: &Gpt<B>,
    prompt: &[u32],
    max_tokens: usize,
    config: &SamplingConfig,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Vec<u32>> {
    config.validate()?;
    model.check_context(prompt.len())?;
    let device = model.wte.weight.val().device();
    let tensor = |tokens: &[u32]| {
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, tokens.len()]), &device)
    };
    let last_logits = |logits: Tensor<B, 3>| -> Vec<f32> {
        let [_, seq, vocab] = logits.dims();
        logits
            .slice([0..1, seq - 1..seq, 0..vocab])
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32 logits")
    };
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut context = prompt.to_vec();
    let mut cache = KvCache::new(model);
    let mut logits = last_logits(model.forward_cached(tensor(prompt), &mut cache));
    // Without the cache, every step below recomputes the context (up to the block size).
    let mut generated = Vec::new();
    while generated.len() < max_tokens {
        let next = sample_token(&logits, config, &mut rng);
        generated.push(next);
        context.push(next);
        if !on_token(next) || generated.len() == max_tokens {
            break;
        }
        logits = if config.kv_cache && cache.len() < model.block_size() {
            last_logits(model.forward_cached(tensor(&[next]), &mut cache))
        } else {
            let window = &context[context.len().saturating_sub(model.block_size())..];
            last_logits(model.forward(tensor(window)))
        };
    }
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::GptConfig;
    use crate::init::init_seeded;
    use crate::testing::TestBackend as Flex;

    fn greedy() -> SamplingConfig {
        SamplingConfig::new().with_temperature(0.0)
    }

    #[test]
    fn sampler_truncates_and_is_seeded() {
        let logits = [0.0f32, 3.0, 2.9, -1.0, 2.95];
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(sample_token(&logits, &greedy(), &mut rng), 1);
        let top1 = SamplingConfig::new().with_top_k(Some(1));
        assert_eq!(sample_token(&logits, &top1, &mut rng), 1);
        // Top-k 2 never leaves the two largest; top-p 0.5 keeps only what reaches half.
        let top2 = SamplingConfig::new().with_top_k(Some(2));
        let nucleus = SamplingConfig::new().with_top_p(Some(0.3));
        for _ in 0..200 {
            assert!([1, 4].contains(&sample_token(&logits, &top2, &mut rng)));
            assert_eq!(sample_token(&logits, &nucleus, &mut rng), 1);
        }
        // Plain sampling reaches the others, and a seed repeats its draws.
        let draws = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..100)
                .map(|_| sample_token(&logits, &SamplingConfig::new(), &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
        assert!(draws(3).contains(&2) && draws(3).contains(&0));
        assert!(
            SamplingConfig::new()
                .with_top_p(Some(1.5))
                .validate()
                .is_err()
        );
        assert!(
            SamplingConfig::new()
                .with_temperature(-1.0)
                .validate()
                .is_err()
        );
        assert!(
            SamplingConfig::new()
                .with_top_k(Some(0))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn generation_is_seeded_stops_on_request_and_slides_past_the_context() {
        let device = Default::default();
        let model = init_seeded(&device, 1001, || {
            GptConfig {
                block_size: 8,
                ..GptConfig::gpt_nano(17)
            }
            .init::<Flex>(&device)
            .unwrap()
        });
        let config = SamplingConfig::new().with_seed(7);
        let run = |config: &SamplingConfig, max| {
            generate(&model, &[1, 2, 3], max, config, &mut |_| true).unwrap()
        };
        let a = run(&config, 12);
        assert_eq!(a.len(), 12, "past the 8-position context");
        assert_eq!(a, run(&config, 12));
        // Recomputing the context every step samples the same tokens.
        assert_eq!(a, run(&config.clone().with_kv_cache(false), 12));
        // Greedy decoding through the cache equals choosing each argmax from a full forward.
        let cached = run(&greedy(), 5);
        let mut context = vec![1u32, 2, 3];
        for &token in &cached {
            let ids: Vec<i64> = context.iter().map(|&t| i64::from(t)).collect();
            let n = ids.len();
            let logits = model.forward(Tensor::from_data(TensorData::new(ids, [1, n]), &device));
            let last: Vec<f32> = logits
                .slice([0..1, n - 1..n, 0..17])
                .into_data()
                .to_vec()
                .unwrap();
            let mut rng = StdRng::seed_from_u64(0);
            assert_eq!(sample_token(&last, &greedy(), &mut rng), token);
            context.push(token);
        }
        // The callback stops it; a prompt longer than the context is refused.
        let mut seen = 0;
        let stopped = generate(&model, &[1], 10, &config, &mut |_| {
            seen += 1;
            seen < 3
        })
        .unwrap();
        assert_eq!(stopped.len(), 3);
        let err = generate(&model, &[1; 9], 3, &config, &mut |_| true).unwrap_err();
        assert!(err.to_string().contains("9 tokens"), "{err}");
    }
}

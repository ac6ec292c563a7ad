//! Count-based language models, the baselines a neural LM's held-out bits per byte are read
//! against: add-one unigram, add-k bigram, and an interpolated Kneser-Ney trigram (Chen &
//! Goodman's formulation with one discount per order). Fitted on the same training tokens as
//! the network; written here because no maintained Rust crate fits token-id n-grams.

use std::collections::HashMap;

pretrain_data::named_enum! {
    /// Which baseline, named as reports write it (strum's `IntoStaticStr`; `Named::name` of
    /// `pretrain-data`), simplest first (`VariantArray`).
    pub enum NgramKind {
        /// Add-one smoothed unigram.
        #[serde(rename = "unigram (add-one)")]
        #[strum(serialize = "unigram (add-one)")]
        Unigram,
        /// Add-k smoothed bigram.
        #[serde(rename = "bigram (add-0.1)")]
        #[strum(serialize = "bigram (add-0.1)")]
        Bigram,
        /// Interpolated Kneser-Ney trigram.
        #[serde(rename = "trigram (interpolated Kneser-Ney)")]
        #[strum(serialize = "trigram (interpolated Kneser-Ney)")]
        KneserNeyTrigram,
    }
}

/// The add-k constant of the bigram.
pub const BIGRAM_K: f64 = 0.1;

/// The Kneser-Ney discount (the usual 0.75).
pub const KN_DISCOUNT: f64 = 0.75;

/// N-gram counts of a token stream.
#[derive(Debug, Clone)]
pub struct NgramCounts {
    vocab: usize,
    total: f64,
    unigram: Vec<f64>,
    /// Count of each token as the first of a bigram (every position but the last).
    bigram_context: Vec<f64>,
    bigram: HashMap<(u32, u32), f64>,
    trigram: HashMap<(u32, u32, u32), f64>,
    /// `c(u v ·)` and the number of distinct `w` after `u v`.
    trigram_context: HashMap<(u32, u32), (f64, f64)>,
    /// Distinct `u` before `v w` (continuation counts of bigrams).
    bigram_continuation: HashMap<(u32, u32), f64>,
    /// Per `v`: sum over `w` of the continuation counts of `v w`, and the number of such `w`.
    continuation_context: HashMap<u32, (f64, f64)>,
    /// Distinct `v` before `w`, and their total over all `w`.
    unigram_continuation: Vec<f64>,
    continuation_total: f64,
}

impl NgramCounts {
    /// Counts `tokens` (ids below `vocab`).
    pub fn fit(tokens: &[u32], vocab: usize) -> Self {
        let mut unigram = vec![0.0; vocab];
        let mut bigram_context = vec![0.0; vocab];
        let mut bigram: HashMap<(u32, u32), f64> = HashMap::new();
        let mut trigram: HashMap<(u32, u32, u32), f64> = HashMap::new();
        for (i, &w) in tokens.iter().enumerate() {
            unigram[w as usize] += 1.0;
            if i >= 1 {
                *bigram.entry((tokens[i - 1], w)).or_default() += 1.0;
                bigram_context[tokens[i - 1] as usize] += 1.0;
            }
            if i >= 2 {
                *trigram
                    .entry((tokens[i - 2], tokens[i - 1], w))
                    .or_default() += 1.0;
            }
        }
        let mut trigram_context: HashMap<(u32, u32), (f64, f64)> = HashMap::new();
        let mut bigram_continuation: HashMap<(u32, u32), f64> = HashMap::new();
        for (&(u, v, w), &c) in &trigram {
            let entry = trigram_context.entry((u, v)).or_default();
            entry.0 += c;
            entry.1 += 1.0;
            *bigram_continuation.entry((v, w)).or_default() += 1.0;
        }
        let mut continuation_context: HashMap<u32, (f64, f64)> = HashMap::new();
        let mut unigram_continuation = vec![0.0; vocab];
        for (&(v, w), &n) in &bigram_continuation {
            let entry = continuation_context.entry(v).or_default();
            entry.0 += n;
            entry.1 += 1.0;
            unigram_continuation[w as usize] += 1.0;
        }
        let continuation_total = unigram_continuation.iter().sum();
        Self {
            vocab,
            total: tokens.len() as f64,
            unigram,
            bigram_context,
            bigram,
            trigram,
            trigram_context,
            bigram_continuation,
            continuation_context,
            unigram_continuation,
            continuation_total,
        }
    }

    /// Probability of token `w` after `history` (the tokens before it, most recent last).
    pub fn probability(&self, kind: NgramKind, history: &[u32], w: u32) -> f64 {
        let v = self.vocab as f64;
        let uniform = 1.0 / v;
        match kind {
            NgramKind::Unigram => (self.unigram[w as usize] + 1.0) / (self.total + v),
            NgramKind::Bigram => match history.last() {
                Some(&prev) => {
                    let pair = self.bigram.get(&(prev, w)).copied().unwrap_or(0.0);
                    (pair + BIGRAM_K) / (self.bigram_context[prev as usize] + BIGRAM_K * v)
                }
                None => (self.unigram[w as usize] + 1.0) / (self.total + v),
            },
            NgramKind::KneserNeyTrigram => {
                let d = KN_DISCOUNT;
                // Lowest order: continuation counts, mixed with the uniform distribution so
                // that unseen tokens keep some mass.
                let lowest = if self.continuation_total > 0.0 {
                    let p = (self.unigram_continuation[w as usize] - d).max(0.0)
                        / self.continuation_total;
                    let types = self
                        .unigram_continuation
                        .iter()
                        .filter(|&&n| n > 0.0)
                        .count();
                    p + d * types as f64 / self.continuation_total * uniform
                } else {
                    uniform
                };
                let middle = match history.last() {
                    Some(&prev) => match self.continuation_context.get(&prev) {
                        Some(&(sum, types)) => {
                            let n = self.bigram_continuation.get(&(prev, w)).copied();
                            (n.unwrap_or(0.0) - d).max(0.0) / sum + d * types / sum * lowest
                        }
                        None => lowest,
                    },
                    None => lowest,
                };
                match history {
                    [.., u, prev] => match self.trigram_context.get(&(*u, *prev)) {
                        Some(&(count, types)) => {
                            let c = self.trigram.get(&(*u, *prev, w)).copied().unwrap_or(0.0);
                            (c - d).max(0.0) / count + d * types / count * middle
                        }
                        None => middle,
                    },
                    _ => middle,
                }
            }
        }
    }

    /// Total bits of `tokens` under `kind`, each token predicted from the ones before it
    /// within the stream.
    pub fn bits(&self, kind: NgramKind, tokens: &[u32]) -> f64 {
        tokens
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                -self
                    .probability(kind, &tokens[i.saturating_sub(2)..i], w)
                    .log2()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretrain_data::Named;

    #[test]
    fn every_baseline_is_a_distribution_and_context_helps() {
        pretrain_data::names::assert_serde_names::<NgramKind>();
        pretrain_data::names::assert_serde_names::<crate::ProjectionRole>();
        // 0 1 0 2 repeated, with some noise: after 0 comes 1 or 2 (a bigram is unsure), after
        // "1 0" always 2 (a trigram knows).
        let pattern = |i: u32| [0, 1, 0, 2][(i % 4) as usize];
        let tokens: Vec<u32> = (0..3000u32)
            .map(|i| if i % 17 == 0 { 5 } else { pattern(i) })
            .collect();
        let counts = NgramCounts::fit(&tokens, 8);
        for &kind in NgramKind::all() {
            for history in [&[][..], &[0][..], &[3, 0][..], &[7, 7][..]] {
                let sum: f64 = (0..8).map(|w| counts.probability(kind, history, w)).sum();
                assert!(
                    (sum - 1.0).abs() < 1e-9,
                    "{kind:?} after {history:?}: {sum}"
                );
            }
        }
        let held_out: Vec<u32> = (0..400u32).map(pattern).collect();
        let bits: Vec<f64> = NgramKind::all()
            .iter()
            .map(|&k| counts.bits(k, &held_out))
            .collect();
        let per_token: Vec<f64> = bits.iter().map(|b| b / 400.0).collect();
        // Entropies of the pattern: 1.5 bits (unigram), 0.5 (bigram), 0 (trigram); the fitted
        // models pay a little for the noise and the smoothing.
        assert!((per_token[0] - 1.5).abs() < 0.15, "{per_token:?}");
        assert!((per_token[1] - 0.5).abs() < 0.1, "{per_token:?}");
        assert!(per_token[2] < 0.2, "{per_token:?}");
    }
}

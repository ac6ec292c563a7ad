//! Token masking for masked language modeling: BERT's 80/10/10 rule over single tokens, whole
//! words, or contiguous spans (SpanBERT).

use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// Label of positions that are not predicted (PyTorch's and HF's ignore index).
pub const IGNORE_INDEX: i64 = -100;

/// What unit is selected for masking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MaskUnit {
    /// Independent tokens (original BERT).
    Token,
    /// All sub-tokens of a word together (needs word ids from the tokenizer).
    WholeWord,
    /// Contiguous spans with geometric lengths (SpanBERT: p = 0.2, at most 10 tokens).
    Span {
        /// Parameter of the geometric length distribution.
        p: f32,
        /// Longest span.
        max_len: usize,
    },
}

/// BERT-style masking configuration (fields left out of a serialized config take BERT's
/// defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenMasker {
    /// Share of (non-special) tokens selected for prediction.
    pub mask_prob: f32,
    /// Of the selected tokens, share replaced by `[MASK]`.
    pub mask_token_share: f32,
    /// Of the selected tokens, share replaced by a random token (the rest stay unchanged).
    pub random_token_share: f32,
    /// Selection unit.
    pub unit: MaskUnit,
}

impl Default for TokenMasker {
    fn default() -> Self {
        Self {
            mask_prob: 0.15,
            mask_token_share: 0.8,
            random_token_share: 0.1,
            unit: MaskUnit::Token,
        }
    }
}

/// The vocabulary facts masking needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskVocab {
    /// Id of `[MASK]`.
    pub mask_id: u32,
    /// Vocabulary size; random replacements are drawn from it.
    pub vocab_size: u32,
    /// Ids never selected nor drawn as replacements (`[PAD]`, `[CLS]`, `[SEP]`, ...).
    pub special_ids: Vec<u32>,
}

/// A masked sequence: model input and prediction targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedTokens {
    /// Input ids after masking.
    pub input_ids: Vec<u32>,
    /// Original id at selected positions, [`IGNORE_INDEX`] elsewhere.
    pub labels: Vec<i64>,
}

impl TokenMasker {
    /// Refuses probabilities outside their ranges and a vocabulary without room to mask.
    pub fn check(&self, vocab: &MaskVocab) -> Result<()> {
        if !(self.mask_prob > 0.0 && self.mask_prob < 1.0) {
            return Err(DataError::config(
                "mask_prob",
                format!("{} must lie in (0, 1)", self.mask_prob),
            ));
        }
        let shares = [self.mask_token_share, self.random_token_share];
        if shares.iter().any(|s| *s < 0.0) || shares.iter().sum::<f32>() > 1.0 + 1e-6 {
            return Err(DataError::config(
                "mask shares",
                format!("{shares:?} must be >= 0 and sum to at most 1"),
            ));
        }
        if let MaskUnit::Span { p, max_len } = self.unit
            && (!(p > 0.0 && p <= 1.0) || max_len == 0)
        {
            return Err(DataError::config(
                "span",
                "p must lie in (0, 1] and max_len be > 0",
            ));
        }
        if vocab.special_ids.len() as u32 >= vocab.vocab_size {
            return Err(DataError::config(
                "vocab_size",
                "no ordinary token to draw replacements from",
            ));
        }
        Ok(())
    }

    /// Masks one sequence. `word_ids[i]` (required for [`MaskUnit::WholeWord`]) is the word of
    /// token `i`, `None` for special tokens.
    pub fn mask(
        &self,
        ids: &[u32],
        word_ids: Option<&[Option<u32>]>,
        vocab: &MaskVocab,
        rng: &mut StdRng,
    ) -> Result<MaskedTokens> {
        self.check(vocab)?;
        let eligible: Vec<usize> = (0..ids.len())
            .filter(|&i| !vocab.special_ids.contains(&ids[i]))
            .collect();
        let budget = if eligible.is_empty() {
            0
        } else {
            ((eligible.len() as f32 * self.mask_prob).round() as usize).max(1)
        };
        let selected = match &self.unit {
            MaskUnit::Token => {
                let mut order = eligible.clone();
                order.shuffle(rng);
                order.truncate(budget);
                order
            }
            MaskUnit::WholeWord => {
                let word_ids = word_ids.ok_or_else(|| {
                    DataError::config("whole-word masking", "needs the tokenizer's word ids")
                })?;
                if word_ids.len() != ids.len() {
                    return Err(DataError::Shape {
                        what: "whole-word masking",
                        expected: format!("{} word ids", ids.len()),
                        found: word_ids.len().to_string(),
                    });
                }
                select_whole_words(&eligible, word_ids, budget, rng)
            }
            MaskUnit::Span { p, max_len } => select_spans(&eligible, budget, *p, *max_len, rng),
        };
        let mut input_ids = ids.to_vec();
        let mut labels = vec![IGNORE_INDEX; ids.len()];
        for i in selected {
            labels[i] = i64::from(ids[i]);
            let r: f32 = rng.random();
            if r < self.mask_token_share {
                input_ids[i] = vocab.mask_id;
            } else if r < self.mask_token_share + self.random_token_share {
                input_ids[i] = random_ordinary_token(vocab, rng);
            }
        }
        Ok(MaskedTokens { input_ids, labels })
    }
}

fn random_ordinary_token(vocab: &MaskVocab, rng: &mut StdRng) -> u32 {
    loop {
        let t = rng.random_range(0..vocab.vocab_size);
        if !vocab.special_ids.contains(&t) {
            return t;
        }
    }
}

/// Groups eligible positions into words and adds whole words in random order while they fit in
/// the budget (HF's whole-word collator does the same).
fn select_whole_words(
    eligible: &[usize],
    word_ids: &[Option<u32>],
    budget: usize,
    rng: &mut StdRng,
) -> Vec<usize> {
    let mut words: Vec<Vec<usize>> = Vec::new();
    for &i in eligible {
        let continues = i > 0
            && words.last().is_some_and(|w| *w.last().unwrap() == i - 1)
            && word_ids[i].is_some()
            && word_ids[i] == word_ids[i - 1];
        if continues {
            words.last_mut().unwrap().push(i);
        } else {
            words.push(vec![i]);
        }
    }
    words.shuffle(rng);
    let mut selected = Vec::new();
    for word in words {
        if selected.len() + word.len() <= budget {
            selected.extend(word);
        }
        if selected.len() == budget {
            break;
        }
    }
    selected
}

/// Picks contiguous runs of eligible positions with geometric lengths until the budget is met.
fn select_spans(
    eligible: &[usize],
    budget: usize,
    p: f32,
    max_len: usize,
    rng: &mut StdRng,
) -> Vec<usize> {
    let mut chosen = vec![false; eligible.len()];
    let mut count = 0;
    let mut attempts = 0;
    while count < budget && attempts < 100 * budget.max(1) {
        attempts += 1;
        let mut len = 1;
        while len < max_len && rng.random::<f32>() >= p {
            len += 1;
        }
        let start = rng.random_range(0..eligible.len());
        for k in start..(start + len).min(eligible.len()) {
            // A span stops at a gap in the eligible positions (e.g. a [SEP]).
            if k > start && eligible[k] != eligible[k - 1] + 1 {
                break;
            }
            if count < budget && !chosen[k] {
                chosen[k] = true;
                count += 1;
            }
        }
    }
    eligible
        .iter()
        .zip(chosen)
        .filter(|(_, c)| *c)
        .map(|(&i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::item_rng;

    fn vocab() -> MaskVocab {
        MaskVocab {
            mask_id: 4,
            vocab_size: 1000,
            special_ids: vec![0, 1, 2, 3, 4],
        }
    }

    /// `[CLS] t t ... [SEP] [PAD]...`: 1 = CLS, 2 = SEP, 0 = PAD.
    fn sequence(n: usize) -> Vec<u32> {
        let mut ids = vec![1];
        ids.extend((0..n as u32).map(|i| 10 + i));
        ids.push(2);
        ids.extend([0, 0, 0]);
        ids
    }

    #[test]
    fn proportions_80_10_10_and_specials_untouched() {
        let masker = TokenMasker::default();
        let ids = sequence(100);
        let (mut selected, mut as_mask, mut random, mut kept) = (0, 0, 0, 0);
        for draw in 0..400 {
            let out = masker
                .mask(&ids, None, &vocab(), &mut item_rng(5, 0, draw))
                .unwrap();
            for (i, &label) in out.labels.iter().enumerate() {
                if label == IGNORE_INDEX {
                    assert_eq!(out.input_ids[i], ids[i]);
                    continue;
                }
                assert!(
                    !vocab().special_ids.contains(&ids[i]),
                    "special token selected"
                );
                selected += 1;
                match out.input_ids[i] {
                    4 => as_mask += 1,
                    t if t == ids[i] => kept += 1,
                    t => {
                        assert!(!vocab().special_ids.contains(&t));
                        random += 1
                    }
                }
            }
        }
        // Exactly 15 of the 100 ordinary tokens in each draw.
        assert_eq!(selected, 400 * 15);
        let share = |n: usize| n as f64 / selected as f64;
        assert!((share(as_mask) - 0.8).abs() < 0.02, "{}", share(as_mask));
        // A random token equal to the original counts as kept (probability 1/995).
        assert!((share(random) - 0.1).abs() < 0.015, "{}", share(random));
        assert!((share(kept) - 0.1).abs() < 0.015, "{}", share(kept));
    }

    #[test]
    fn whole_words_are_masked_together() {
        let ids = sequence(30);
        // Words of 3 tokens each; specials have no word.
        let word_ids: Vec<Option<u32>> = ids
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                if t >= 10 {
                    Some((i as u32 - 1) / 3)
                } else {
                    None
                }
            })
            .collect();
        let masker = TokenMasker {
            mask_prob: 0.3,
            unit: MaskUnit::WholeWord,
            ..Default::default()
        };
        for draw in 0..50 {
            let out = masker
                .mask(&ids, Some(&word_ids), &vocab(), &mut item_rng(1, 0, draw))
                .unwrap();
            let sel: Vec<bool> = out.labels.iter().map(|&l| l != IGNORE_INDEX).collect();
            assert_eq!(sel.iter().filter(|s| **s).count(), 9);
            for w in 0..10 {
                let members: Vec<bool> = (0..ids.len())
                    .filter(|&i| word_ids[i] == Some(w))
                    .map(|i| sel[i])
                    .collect();
                assert!(
                    members.iter().all(|&s| s) || members.iter().all(|&s| !s),
                    "word {w} split"
                );
            }
        }
        assert!(
            masker
                .mask(&ids, None, &vocab(), &mut item_rng(0, 0, 0))
                .is_err()
        );
    }

    #[test]
    fn spans_are_contiguous_and_exact() {
        let ids = sequence(200);
        let masker = TokenMasker {
            unit: MaskUnit::Span {
                p: 0.2,
                max_len: 10,
            },
            ..Default::default()
        };
        let mut runs = 0;
        let mut total = 0;
        for draw in 0..30 {
            let out = masker
                .mask(&ids, None, &vocab(), &mut item_rng(2, 0, draw))
                .unwrap();
            let sel: Vec<bool> = out.labels.iter().map(|&l| l != IGNORE_INDEX).collect();
            total += sel.iter().filter(|s| **s).count();
            runs += sel.windows(2).filter(|w| w[1] && !w[0]).count();
        }
        assert_eq!(total, 30 * 30);
        // Mean span length of a clipped geometric(0.2) is about 4: far fewer runs than tokens.
        assert!(runs * 2 < total, "{runs} runs for {total} tokens");
    }

    #[test]
    fn same_seed_same_mask_and_bad_config() {
        let ids = sequence(40);
        let m = TokenMasker::default();
        let a = m
            .mask(&ids, None, &vocab(), &mut item_rng(1, 2, 3))
            .unwrap();
        assert_eq!(
            a,
            m.mask(&ids, None, &vocab(), &mut item_rng(1, 2, 3))
                .unwrap()
        );
        let bad = TokenMasker {
            mask_prob: 0.0,
            ..Default::default()
        };
        assert!(
            bad.mask(&ids, None, &vocab(), &mut item_rng(0, 0, 0))
                .is_err()
        );
        let bad = TokenMasker {
            mask_token_share: 0.95,
            ..Default::default()
        };
        assert!(
            bad.mask(&ids, None, &vocab(), &mut item_rng(0, 0, 0))
                .is_err()
        );
        // Only special tokens: nothing to mask, no error.
        let out = m
            .mask(&[1, 2, 0], None, &vocab(), &mut item_rng(0, 0, 0))
            .unwrap();
        assert!(out.labels.iter().all(|&l| l == IGNORE_INDEX));
    }
}

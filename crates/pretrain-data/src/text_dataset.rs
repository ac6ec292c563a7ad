//! Datasets that tokenize texts lazily and, for masked language modeling, mask them with
//! per-item seeds (reproducible whatever the number of loader workers).

use burn::data::dataset::Dataset;
use rand::rngs::StdRng;

use crate::batch::TokenizedItem;
use crate::error::{DataError, Result};
use crate::item::TextItem;
use crate::mask::{MaskUnit, MaskVocab, TokenMasker};
use crate::rng::{ItemDraw, Seeded};
use crate::shards::TokenDoc;
use crate::tokenizer::{FixedLengthEncoder, TextTokenizer};

/// Tokenizes each text of `inner` to a fixed length; for classification and feature extraction.
pub struct TokenizedDataset<D> {
    inner: D,
    encoder: FixedLengthEncoder,
}

impl<D: Dataset<TextItem>> TokenizedDataset<D> {
    /// Wraps `inner`, encoding to `max_len` tokens.
    pub fn new(inner: D, tokenizer: &TextTokenizer, max_len: usize) -> Result<Self> {
        Ok(Self {
            inner,
            encoder: tokenizer.fixed_length(max_len)?,
        })
    }
}

impl<D: Dataset<TextItem>> Dataset<TokenizedItem> for TokenizedDataset<D> {
    fn get(&self, index: usize) -> Option<TokenizedItem> {
        let item = self.inner.get(index)?;
        // Encoding a valid string with a configured tokenizer does not fail; treat a failure as a
        // missing item rather than panicking inside a loader worker.
        let enc = self.encoder.encode(&item.text).ok()?;
        Some(TokenizedItem {
            input_ids: enc.ids,
            attention_mask: enc.attention_mask,
            mlm_targets: None,
            label: item.label,
        })
    }

    fn len(&self) -> usize {
        self.inner.len()
    }
}

/// Per-item token masking shared by the MLM datasets: the masker and what it needs of the
/// vocabulary.
#[derive(Debug, Clone)]
struct ItemMasking {
    masker: TokenMasker,
    vocab: MaskVocab,
}

impl ItemMasking {
    /// Checks `masker` against `tokenizer` now, not in a loader worker.
    fn new(masker: TokenMasker, tokenizer: &TextTokenizer) -> Result<Self> {
        let vocab = tokenizer.mask_vocab()?;
        masker
            .check(&vocab)
            .map_err(|e| DataError::config("masker", e.to_string()))?;
        Ok(Self { masker, vocab })
    }

    /// The masked item of sequence `ids` (fixed length).
    fn item(
        &self,
        ids: &[u32],
        word_ids: Option<&[Option<u32>]>,
        attention_mask: Vec<u32>,
        label: Option<usize>,
        rng: &mut StdRng,
    ) -> Option<TokenizedItem> {
        let masked = self.masker.mask(ids, word_ids, &self.vocab, rng).ok()?;
        Some(TokenizedItem {
            input_ids: masked.input_ids,
            attention_mask,
            mlm_targets: Some(masked.labels),
            label,
        })
    }
}

/// Tokenizes and masks each text for masked language modeling; masks are drawn from
/// `(seed, epoch, index)`.
pub type MlmDataset<D> = Seeded<D, TextMasking>;

/// What [`MlmDataset`] does per text: encode to a fixed length, then mask.
pub struct TextMasking {
    encoder: FixedLengthEncoder,
    masking: ItemMasking,
}

impl<D: Dataset<TextItem>> MlmDataset<D> {
    /// Wraps `inner`; masks are drawn from `(seed, epoch, index)`.
    pub fn new(
        inner: D,
        tokenizer: &TextTokenizer,
        max_len: usize,
        masker: TokenMasker,
        seed: u64,
    ) -> Result<Self> {
        let step = TextMasking {
            encoder: tokenizer.fixed_length(max_len)?,
            masking: ItemMasking::new(masker, tokenizer)?,
        };
        Ok(Self::with_step(inner, step, seed))
    }
}

impl ItemDraw for TextMasking {
    type Input = TextItem;
    type Output = TokenizedItem;

    fn draw(&self, item: TextItem, rng: &mut StdRng) -> Option<TokenizedItem> {
        let enc = self.encoder.encode(&item.text).ok()?;
        let word_ids = matches!(self.masking.masker.unit, MaskUnit::WholeWord)
            .then_some(enc.word_ids.as_slice());
        self.masking
            .item(&enc.ids, word_ids, enc.attention_mask, item.label, rng)
    }
}

/// Masks pre-tokenized documents (token shards) for masked language modeling: each becomes
/// `[CLS] tokens [SEP]`, truncated and padded to a fixed length, as [`MlmDataset`] encodes a
/// text. Masking is per token (documents carry no word boundaries).
pub type MlmTokenDataset<D> = Seeded<D, TokenMasking>;

/// What [`MlmTokenDataset`] does per document: frame, truncate and pad, then mask.
pub struct TokenMasking {
    max_len: usize,
    specials: (u32, u32, u32),
    masking: ItemMasking,
}

impl<D: Dataset<TokenDoc>> MlmTokenDataset<D> {
    /// Wraps `inner` (tokenized with `tokenizer`); masks are drawn from `(seed, epoch, index)`.
    pub fn new(
        inner: D,
        tokenizer: &TextTokenizer,
        max_len: usize,
        masker: TokenMasker,
        seed: u64,
    ) -> Result<Self> {
        if matches!(masker.unit, MaskUnit::WholeWord) {
            return Err(DataError::config(
                "masker.unit",
                "whole-word masking needs texts; token shards keep no word boundaries",
            ));
        }
        let ids = tokenizer.specials();
        let (Some(cls), Some(sep)) = (ids.cls, ids.sep) else {
            return Err(DataError::config(
                "tokenizer",
                "has no [CLS]/[SEP] tokens to frame documents with",
            ));
        };
        if max_len < 3 {
            return Err(DataError::config(
                "max_len",
                format!("{max_len} is too short for [CLS] x [SEP]"),
            ));
        }
        let step = TokenMasking {
            max_len,
            specials: (cls, sep, ids.pad),
            masking: ItemMasking::new(masker, tokenizer)?,
        };
        Ok(Self::with_step(inner, step, seed))
    }
}

impl ItemDraw for TokenMasking {
    type Input = TokenDoc;
    type Output = TokenizedItem;

    fn draw(&self, doc: TokenDoc, rng: &mut StdRng) -> Option<TokenizedItem> {
        let (cls, sep, pad) = self.specials;
        let body = doc.ids.len().min(self.max_len - 2);
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(cls);
        ids.extend_from_slice(&doc.ids[..body]);
        ids.push(sep);
        let real = ids.len();
        ids.resize(self.max_len, pad);
        let attention_mask = (0..self.max_len).map(|i| u32::from(i < real)).collect();
        self.masking
            .item(&ids, None, attention_mask, doc.label, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::IGNORE_INDEX;
    use crate::rng::EpochSeeded;
    use crate::testdata;
    use crate::tokenizer::TokenizerTrainConfig;
    use burn::data::dataset::InMemDataset;

    #[test]
    fn mlm_items_mask_only_real_tokens_reproducibly() {
        let docs = testdata::moby_dick_paragraphs();
        let tok = TextTokenizer::train(
            &docs,
            &TokenizerTrainConfig {
                vocab_size: 1500,
                ..Default::default()
            },
        )
        .unwrap();
        let items = TextItem::unlabeled(&docs);
        let masker = TokenMasker {
            unit: MaskUnit::WholeWord,
            ..Default::default()
        };
        let ds = MlmDataset::new(InMemDataset::new(items), &tok, 64, masker, 3).unwrap();
        let a = ds.get(2).unwrap();
        assert_eq!(a.input_ids.len(), 64);
        let targets = a.mlm_targets.clone().unwrap();
        let n_real = a.attention_mask.iter().filter(|&&m| m == 1).count();
        let n_masked = targets.iter().filter(|&&t| t != IGNORE_INDEX).count();
        assert!(
            n_masked >= 1 && n_masked <= n_real / 5 + 2,
            "{n_masked} of {n_real}"
        );
        for (t, m) in targets.iter().zip(&a.attention_mask) {
            assert!(*m == 1 || *t == IGNORE_INDEX, "padding selected");
        }
        assert_eq!(ds.get(2).unwrap(), a);
        ds.set_epoch(1);
        assert_ne!(ds.get(2).unwrap(), a);
        let bad = TokenMasker {
            mask_prob: 2.0,
            ..Default::default()
        };
        let items = vec![TextItem {
            text: "x".into(),
            label: None,
        }];
        assert!(MlmDataset::new(InMemDataset::new(items), &tok, 8, bad, 0).is_err());
    }
}

//! Subword tokenization with Hugging Face's `tokenizers` library, trained offline on a corpus.
//!
//! Trained tokenizers are saved in the standard `tokenizer.json` format, and any existing
//! `tokenizer.json` (BERT, RoBERTa, ...) can be loaded as long as it has padding and mask tokens.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainerBuilder};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams,
};

use crate::error::{DataError, Result};
use crate::mask::MaskVocab;

/// Subword algorithm of a trained tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerKind {
    /// BERT's WordPiece with BERT normalization and pre-tokenization.
    WordPiece,
    /// Byte-level BPE (GPT-2/RoBERTa style): never produces unknown tokens.
    ByteLevelBpe,
}

/// How a tokenizer is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerTrainConfig {
    /// Subword algorithm.
    pub kind: TokenizerKind,
    /// Target vocabulary size, special tokens included.
    pub vocab_size: usize,
    /// Minimum count of a merge/piece.
    pub min_frequency: u64,
    /// Lower-case the text first (WordPiece only; byte-level BPE keeps case).
    pub lowercase: bool,
}

impl Default for TokenizerTrainConfig {
    fn default() -> Self {
        Self {
            kind: TokenizerKind::WordPiece,
            vocab_size: 8000,
            min_frequency: 2,
            lowercase: true,
        }
    }
}

/// Special tokens every trained tokenizer has, in this order (ids 0..5).
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Ids of the special tokens the data pipeline relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    /// Padding.
    pub pad: u32,
    /// Mask token for MLM.
    pub mask: u32,
    /// Sequence start / classification token, when the tokenizer has one.
    pub cls: Option<u32>,
    /// Separator / end of sequence, when the tokenizer has one.
    pub sep: Option<u32>,
}

/// A tokenizer plus the facts MLM needs about it.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    specials: SpecialIds,
    source: Option<PathBuf>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("specials", &self.specials)
            .field("source", &self.source)
            .finish()
    }
}

fn tok_err(path: Option<&Path>, e: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer {
        path: path.map(Path::to_path_buf),
        message: e.to_string(),
    }
}

impl TextTokenizer {
    /// Trains a vocabulary on `corpus` (offline, deterministic for a given corpus and config).
    pub fn train(corpus: &[String], config: &TokenizerTrainConfig) -> Result<Self> {
        if corpus.iter().all(|d| d.trim().is_empty()) {
            return Err(DataError::config("tokenizer corpus", "is empty"));
        }
        if config.vocab_size <= SPECIAL_TOKENS.len() {
            return Err(DataError::config(
                "vocab_size",
                format!(
                    "{} leaves no room beside the {} special tokens",
                    config.vocab_size,
                    SPECIAL_TOKENS.len()
                ),
            ));
        }
        let specials: Vec<AddedToken> = SPECIAL_TOKENS
            .iter()
            .map(|t| AddedToken::from(*t, true))
            .collect();
        let (mut tokenizer, mut trainer) = match config.kind {
            TokenizerKind::WordPiece => {
                let mut t = Tokenizer::new(ModelWrapper::WordPiece(WordPiece::default()));
                t.with_normalizer(Some(BertNormalizer::new(
                    true,
                    true,
                    None,
                    config.lowercase,
                )));
                t.with_pre_tokenizer(Some(BertPreTokenizer));
                t.with_decoder(Some(WordPieceDecoder::default()));
                let trainer = WordPieceTrainerBuilder::new()
                    .vocab_size(config.vocab_size)
                    .min_frequency(config.min_frequency)
                    .special_tokens(specials)
                    .show_progress(false)
                    .build();
                (t, TrainerWrapper::WordPieceTrainer(trainer))
            }
            TokenizerKind::ByteLevelBpe => {
                let mut t = Tokenizer::new(ModelWrapper::BPE(BPE::default()));
                t.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
                t.with_decoder(Some(ByteLevelDecoder::default()));
                let trainer = BpeTrainerBuilder::new()
                    .vocab_size(config.vocab_size)
                    .min_frequency(config.min_frequency)
                    .special_tokens(specials)
                    .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
                    .show_progress(false)
                    .build();
                (t, TrainerWrapper::BpeTrainer(trainer))
            }
        };
        tokenizer
            .train(&mut trainer, corpus.iter())
            .map_err(|e| tok_err(None, e))?;
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| tok_err(None, format!("{t} missing after training")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        tokenizer.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        Self::wrap(tokenizer, None)
    }

    /// Loads a `tokenizer.json` (ours or any Hugging Face one with pad and mask tokens).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let tokenizer = Tokenizer::from_bytes(&bytes).map_err(|e| tok_err(Some(path), e))?;
        Self::wrap(tokenizer, Some(path.to_path_buf()))
    }

    fn wrap(inner: Tokenizer, source: Option<PathBuf>) -> Result<Self> {
        let find = |names: &[&str]| names.iter().find_map(|n| inner.token_to_id(n));
        let missing = |what: &str| {
            tok_err(
                source.as_deref(),
                format!("no {what} token (looked for [PAD]/<pad> and [MASK]/<mask>)"),
            )
        };
        let specials = SpecialIds {
            pad: find(&["[PAD]", "<pad>"]).ok_or_else(|| missing("padding"))?,
            mask: find(&["[MASK]", "<mask>"]).ok_or_else(|| missing("mask"))?,
            cls: find(&["[CLS]", "<s>"]),
            sep: find(&["[SEP]", "</s>"]),
        };
        Ok(Self {
            inner,
            specials,
            source,
        })
    }

    /// Writes `tokenizer.json` atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        self.inner
            .save(&tmp, false)
            .map_err(|e| tok_err(Some(&tmp), e))?;
        std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Ids of the special tokens.
    pub fn specials(&self) -> SpecialIds {
        self.specials
    }

    /// Id of `token`, if in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The facts the token masker needs: mask id, vocabulary size, ids never masked.
    pub fn mask_vocab(&self) -> MaskVocab {
        let mut special_ids: Vec<u32> = self
            .inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| *id)
            .collect();
        special_ids.extend([self.specials.pad, self.specials.mask]);
        special_ids.sort_unstable();
        special_ids.dedup();
        MaskVocab {
            mask_id: self.specials.mask,
            vocab_size: self.vocab_size() as u32,
            special_ids,
        }
    }

    /// An encoder producing sequences of exactly `max_len` tokens (truncated, then padded).
    pub fn fixed_length(&self, max_len: usize) -> Result<FixedLengthEncoder> {
        if max_len < 3 {
            return Err(DataError::config(
                "max_len",
                format!("{max_len} is too short for [CLS] x [SEP]"),
            ));
        }
        let mut inner = self.inner.clone();
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| tok_err(self.source.as_deref(), e))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_len),
            direction: PaddingDirection::Right,
            pad_id: self.specials.pad,
            pad_token: self
                .inner
                .id_to_token(self.specials.pad)
                .unwrap_or_default(),
            ..Default::default()
        }));
        Ok(FixedLengthEncoder { inner, max_len })
    }

    /// Decodes ids back to text (special tokens skipped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| tok_err(self.source.as_deref(), e))
    }
}

/// One encoded sequence of fixed length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedText {
    /// Token ids, `max_len` of them.
    pub ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// Word index of each token (`None` for special and padding tokens).
    pub word_ids: Vec<Option<u32>>,
}

/// A tokenizer configured to truncate and pad to a fixed length.
#[derive(Clone)]
pub struct FixedLengthEncoder {
    inner: Tokenizer,
    max_len: usize,
}

impl FixedLengthEncoder {
    /// Sequence length produced.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Encodes one text.
    pub fn encode(&self, text: &str) -> Result<EncodedText> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| tok_err(None, e))?;
        Ok(EncodedText {
            ids: enc.get_ids().to_vec(),
            attention_mask: enc.get_attention_mask().to_vec(),
            word_ids: enc.get_word_ids().to_vec(),
        })
    }

    /// Encodes many texts (in parallel inside the library).
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<EncodedText>> {
        let encs = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| tok_err(None, e))?;
        Ok(encs
            .iter()
            .map(|enc| EncodedText {
                ids: enc.get_ids().to_vec(),
                attention_mask: enc.get_attention_mask().to_vec(),
                word_ids: enc.get_word_ids().to_vec(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    fn trained(kind: TokenizerKind) -> TextTokenizer {
        let config = TokenizerTrainConfig {
            kind,
            vocab_size: 2000,
            ..Default::default()
        };
        TextTokenizer::train(&testdata::moby_dick_paragraphs(), &config).unwrap()
    }

    #[test]
    fn wordpiece_trains_saves_loads_and_encodes() {
        let tok = trained(TokenizerKind::WordPiece);
        assert!(
            tok.vocab_size() <= 2000 && tok.vocab_size() > 500,
            "{}",
            tok.vocab_size()
        );
        assert_eq!(tok.specials().pad, 0);
        assert_eq!(tok.specials().mask, 4);
        let enc = tok.fixed_length(16).unwrap();
        let e = enc.encode("Call me Ishmael. Some years ago").unwrap();
        assert_eq!(e.ids.len(), 16);
        assert_eq!(e.ids[0], tok.token_id("[CLS]").unwrap());
        let real = e.attention_mask.iter().filter(|&&m| m == 1).count();
        assert_eq!(e.ids[real - 1], tok.token_id("[SEP]").unwrap());
        assert!(e.ids[real..].iter().all(|&i| i == 0));
        assert_eq!(
            tok.decode(&e.ids).unwrap(),
            "call me ishmael. some years ago"
        );
        // "ishmael" is rare in 8 chapters: split into pieces sharing one word id.
        assert!(e.word_ids.iter().filter(|w| **w == Some(2)).count() >= 1);
        // Truncation keeps [SEP] last.
        let long = enc.encode(&testdata::moby_dick_paragraphs()[1]).unwrap();
        assert_eq!(long.ids.len(), 16);
        assert_eq!(long.ids[15], tok.token_id("[SEP]").unwrap());
        assert!(long.attention_mask.iter().all(|&m| m == 1));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path).unwrap();
        let loaded = TextTokenizer::from_file(&path).unwrap();
        assert_eq!(
            loaded
                .fixed_length(16)
                .unwrap()
                .encode_batch(&["Call me Ishmael. Some years ago"])
                .unwrap()[0],
            e
        );
        assert_eq!(loaded.mask_vocab(), tok.mask_vocab());
        assert_eq!(tok.mask_vocab().special_ids, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn byte_level_bpe_has_no_unknowns() {
        let tok = trained(TokenizerKind::ByteLevelBpe);
        let e = tok
            .fixed_length(32)
            .unwrap()
            .encode("Ünïcödé whale 🐋!")
            .unwrap();
        assert!(!e.ids.contains(&tok.token_id("[UNK]").unwrap()));
        assert_eq!(tok.decode(&e.ids).unwrap().trim(), "Ünïcödé whale 🐋!");
    }

    #[test]
    fn loads_a_foreign_hf_tokenizer_and_reports_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let json = r#"{"version":"1.0","truncation":null,"padding":null,
          "added_tokens":[{"id":0,"content":"<pad>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
                          {"id":1,"content":"<mask>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
          "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
          "model":{"type":"WordLevel","vocab":{"<pad>":0,"<mask>":1,"<unk>":2,"whale":3,"white":4},"unk_token":"<unk>"}}"#;
        std::fs::write(&path, json).unwrap();
        let tok = TextTokenizer::from_file(&path).unwrap();
        assert_eq!(
            (tok.specials().pad, tok.specials().mask, tok.specials().cls),
            (0, 1, None)
        );
        let e = tok.fixed_length(4).unwrap().encode("white whale").unwrap();
        assert_eq!(e.ids, vec![4, 3, 0, 0]);

        std::fs::write(&path, json.replace("<mask>", "<other>")).unwrap();
        let err = TextTokenizer::from_file(&path).unwrap_err();
        assert!(
            err.to_string().contains("no mask token") && err.to_string().contains("tokenizer.json"),
            "{err}"
        );
        std::fs::write(&path, "{ not json").unwrap();
        assert!(matches!(
            TextTokenizer::from_file(&path),
            Err(DataError::Tokenizer { .. })
        ));
        assert!(TextTokenizer::train(&[String::new()], &TokenizerTrainConfig::default()).is_err());
    }
}

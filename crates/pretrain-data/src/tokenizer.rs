//! Subword tokenization with Hugging Face's `tokenizers` library, trained offline on a corpus.
//!
//! Trained tokenizers are saved in the standard `tokenizer.json` format, and any existing
//! `tokenizer.json` (BERT, RoBERTa, GPT-2, ...) can be loaded as long as it has a padding token
//! (or GPT-2's end of text, which stands in for it); a Hugging Face checkpoint's older files
//! (GPT-2's `vocab.json` + `merges.txt`, BERT's `vocab.txt`) are read by
//! [`TextTokenizer::from_hf_dir`] into the tokenizer `transformers` builds from them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, NormalizedString, Normalizer, OffsetReferential, OffsetType, PaddingDirection,
    PaddingParams, PaddingStrategy, PreTokenizedString, PreTokenizer, Tokenizer, Trainer,
    TruncationParams,
};

use crate::error::{DataError, Result, panic_message};
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

/// How a tokenizer is trained (fields left out of a serialized config take their defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// Mask token for MLM, when the tokenizer has one (a GPT-2 tokenizer has none).
    pub mask: Option<u32>,
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

/// GPT-2's only special token: the end of a text, which also pads.
pub const GPT2_END_OF_TEXT: &str = "<|endoftext|>";

/// `parse`'s result, its error or panic becoming `path`'s error: `tokenizers` panics on some
/// malformed parts (a decoder that is not valid JSON, found by fuzzing) instead of returning
/// its error.
fn unpanicked<T, E: std::fmt::Display>(
    path: &Path,
    parse: impl FnOnce() -> std::result::Result<T, E>,
) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)) {
        Ok(result) => result.map_err(|e| tok_err(Some(path), e)),
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            Err(tok_err(Some(path), format!("malformed ({message})")))
        }
    }
}

/// Whether a BERT `tokenizer_config.json` (`path`, optional) lower-cases: its `do_lower_case`,
/// true when absent as in `transformers`.
fn hf_lowercase(path: &Path) -> Result<bool> {
    if !path.is_file() {
        return Ok(true);
    }
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| tok_err(Some(path), e))?;
    match config.get("do_lower_case") {
        None | Some(serde_json::Value::Null) => Ok(true),
        Some(serde_json::Value::Bool(lower)) => Ok(*lower),
        Some(other) => Err(tok_err(
            Some(path),
            format!("do_lower_case is {other}, not true or false"),
        )),
    }
}

/// First code point of the private-use planes that stand for word-continuing characters
/// while the vocabulary is learned.
const CONTINUATION_BASE: u32 = 0xF_0000;

/// `word` with every character after the first moved into the private-use planes, so that the
/// trainer sees word-continuing pieces as characters of their own. Hugging Face's WordPiece
/// trainer instead numbers its `##` pieces in hash-map order, which makes the learned ids (and
/// merges tied on count) differ from run to run; here every symbol is a character, numbered
/// in sorted order. Characters that cannot be moved (above U+1FFFF, or private-use already)
/// are left out of training; they tokenize as `[UNK]`, as unseen characters do.
fn mark_continuations(word: &str) -> Option<String> {
    let mut marked = String::with_capacity(word.len() * 2);
    for (i, c) in word.chars().enumerate() {
        let code = c as u32;
        if code >= CONTINUATION_BASE || (i > 0 && code >= 0x2_0000) {
            continue;
        }
        let c = if i == 0 {
            c
        } else {
            char::from_u32(CONTINUATION_BASE + code).expect("below U+110000, not a surrogate")
        };
        marked.push(c);
    }
    (!marked.is_empty()).then_some(marked)
}

/// A learned piece back in WordPiece's spelling: marked characters unmarked, `##` in front of
/// a piece that continues a word.
fn unmark(piece: &str) -> String {
    let mut out = String::with_capacity(piece.len() + 2);
    for (i, c) in piece.chars().enumerate() {
        let code = c as u32;
        if code >= CONTINUATION_BASE {
            if i == 0 {
                out.push_str("##");
            }
            out.push(char::from_u32(code - CONTINUATION_BASE).expect("marked from a char"));
        } else {
            out.push(c);
        }
    }
    out
}

/// Learns a WordPiece vocabulary the way BERT's is made (byte-pair merges over the normalized,
/// pre-tokenized words, then used greedily longest-first), deterministically.
fn train_wordpiece_vocab(
    corpus: &[String],
    normalizer: &BertNormalizer,
    config: &TokenizerTrainConfig,
    specials: Vec<AddedToken>,
) -> Result<WordPiece> {
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(config.vocab_size)
        .min_frequency(config.min_frequency)
        .special_tokens(specials)
        .show_progress(false)
        .build();
    trainer
        .feed(corpus.iter(), |document| {
            let mut normalized = NormalizedString::from(document);
            normalizer.normalize(&mut normalized)?;
            let mut words = PreTokenizedString::from(normalized);
            BertPreTokenizer.pre_tokenize(&mut words)?;
            Ok(words
                .get_splits(OffsetReferential::Original, OffsetType::Byte)
                .into_iter()
                .filter_map(|(word, _, _)| mark_continuations(word))
                .collect())
        })
        .map_err(|e| tok_err(None, e))?;
    let mut bpe = BPE::default();
    trainer.train(&mut bpe).map_err(|e| tok_err(None, e))?;
    let vocab: serde_json::Map<String, serde_json::Value> = bpe
        .get_vocab()
        .into_iter()
        .map(|(piece, id)| (unmark(&piece), id.into()))
        .collect();
    // The model's own serialized form (it borrows strings, so parse from text).
    let model = serde_json::json!({
        "type": "WordPiece",
        "unk_token": "[UNK]",
        "continuing_subword_prefix": "##",
        "max_input_chars_per_word": 100,
        "vocab": vocab,
    });
    serde_json::from_str(&model.to_string()).map_err(|e| tok_err(None, e))
}

impl TextTokenizer {
    /// Trains a vocabulary on `corpus` (offline; the same corpus and config give the same
    /// vocabulary and ids in every process).
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
        let mut tokenizer = match config.kind {
            TokenizerKind::WordPiece => {
                let normalizer = BertNormalizer::new(true, true, None, config.lowercase);
                let vocab = train_wordpiece_vocab(corpus, &normalizer, config, specials.clone())?;
                let mut t = Tokenizer::new(ModelWrapper::WordPiece(vocab));
                t.with_normalizer(Some(normalizer));
                t.with_pre_tokenizer(Some(BertPreTokenizer));
                t.with_decoder(Some(WordPieceDecoder::default()));
                t
            }
            TokenizerKind::ByteLevelBpe => {
                // The whole byte alphabet is given up front and sorted, so ids (and merge ties)
                // never depend on hash-map order: the trainer is deterministic as it is.
                let mut t = Tokenizer::new(ModelWrapper::BPE(BPE::default()));
                t.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
                t.with_decoder(Some(ByteLevelDecoder::default()));
                let mut trainer = TrainerWrapper::BpeTrainer(
                    BpeTrainerBuilder::new()
                        .vocab_size(config.vocab_size)
                        .min_frequency(config.min_frequency)
                        .special_tokens(specials.clone())
                        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
                        .show_progress(false)
                        .build(),
                );
                t.train(&mut trainer, corpus.iter())
                    .map_err(|e| tok_err(None, e))?;
                t
            }
        };
        tokenizer.add_special_tokens(&specials);
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

    /// Loads a `tokenizer.json` (ours or any Hugging Face one with a padding token).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let tokenizer = unpanicked(path, || Tokenizer::from_bytes(&bytes))?;
        Self::wrap(tokenizer, Some(path.to_path_buf()))
    }

    /// The tokenizer of a Hugging Face checkpoint folder: its `tokenizer.json`, or else the
    /// tokenizer `transformers` builds from GPT-2's `vocab.json` + `merges.txt` (byte-level
    /// BPE, `<|endoftext|>` special) or from BERT's `vocab.txt` (WordPiece with BERT's
    /// normalization, lower-cased unless `tokenizer_config.json` says `do_lower_case: false`,
    /// `[CLS] .. [SEP]` added).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Self::from_file(&json);
        }
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        let (vocab_str, merges_str) = (vocab.to_string_lossy(), merges.to_string_lossy());
        if vocab.is_file() && merges.is_file() {
            let bpe = unpanicked(&vocab, || BPE::from_file(&vocab_str, &merges_str).build())?;
            let mut tokenizer = Tokenizer::new(bpe);
            tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
            tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
            tokenizer.with_post_processor(Some(ByteLevel::new(true, false, true)));
            tokenizer.add_special_tokens(&[AddedToken::from(GPT2_END_OF_TEXT, true)]);
            return Self::wrap(tokenizer, Some(vocab));
        }
        let words = dir.join("vocab.txt");
        if words.is_file() {
            let lowercase = hf_lowercase(&dir.join("tokenizer_config.json"))?;
            let words_str = words.to_string_lossy();
            let wordpiece = unpanicked(&words, || {
                WordPiece::from_file(&words_str)
                    .unk_token("[UNK]".into())
                    .build()
            })?;
            let mut tokenizer = Tokenizer::new(wordpiece);
            tokenizer.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)));
            tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
            tokenizer.with_decoder(Some(WordPieceDecoder::default()));
            let specials: Vec<AddedToken> = SPECIAL_TOKENS
                .iter()
                .filter(|t| tokenizer.token_to_id(t).is_some())
                .map(|t| AddedToken::from(*t, true))
                .collect();
            tokenizer.add_special_tokens(&specials);
            let id = |t: &str| {
                tokenizer
                    .token_to_id(t)
                    .ok_or_else(|| tok_err(Some(&words), format!("has no {t} token")))
            };
            let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
            tokenizer.with_post_processor(Some(BertProcessing::new(
                ("[SEP]".into(), sep),
                ("[CLS]".into(), cls),
            )));
            return Self::wrap(tokenizer, Some(words));
        }
        Err(tok_err(
            Some(dir),
            "has no tokenizer: tokenizer.json, vocab.json + merges.txt (GPT-2) or vocab.txt \
             (BERT)",
        ))
    }

    fn wrap(inner: Tokenizer, source: Option<PathBuf>) -> Result<Self> {
        let find = |names: &[&str]| names.iter().find_map(|n| inner.token_to_id(n));
        // GPT-2 has one special token, the end of text, which also pads (as transformers'
        // `pad_token = eos_token` does).
        let specials = SpecialIds {
            pad: find(&["[PAD]", "<pad>", GPT2_END_OF_TEXT]).ok_or_else(|| {
                tok_err(
                    source.as_deref(),
                    format!("no padding token (looked for [PAD], <pad> and {GPT2_END_OF_TEXT})"),
                )
            })?,
            mask: find(&["[MASK]", "<mask>"]),
            cls: find(&["[CLS]", "<s>"]),
            sep: find(&["[SEP]", "</s>", GPT2_END_OF_TEXT]),
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

    /// The facts the token masker needs: mask id, vocabulary size, ids never masked. A
    /// tokenizer without a mask token (GPT-2's) is refused: masked language modeling needs one.
    pub fn mask_vocab(&self) -> Result<MaskVocab> {
        let mask = self.specials.mask.ok_or_else(|| {
            tok_err(
                self.source.as_deref(),
                "no mask token ([MASK] or <mask>): masked language modeling needs one",
            )
        })?;
        let mut special_ids: Vec<u32> = self
            .inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| *id)
            .collect();
        special_ids.extend([self.specials.pad, mask]);
        special_ids.sort_unstable();
        special_ids.dedup();
        Ok(MaskVocab {
            mask_id: mask,
            vocab_size: self.vocab_size() as u32,
            special_ids,
        })
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

    /// Token ids of each text, without special tokens, truncation or padding (what token
    /// shards store).
    pub fn encode_plain_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings = self
            .inner
            .encode_batch(texts.to_vec(), false)
            .map_err(|e| tok_err(self.source.as_deref(), e))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
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
        assert_eq!(tok.specials().mask, Some(4));
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
        assert_eq!(loaded.mask_vocab().unwrap(), tok.mask_vocab().unwrap());
        assert_eq!(tok.mask_vocab().unwrap().special_ids, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn training_gives_the_same_ids_every_time_with_wordpiece_pieces() {
        for kind in [TokenizerKind::WordPiece, TokenizerKind::ByteLevelBpe] {
            // Each training builds fresh hash maps with fresh random keys.
            let (a, b) = (trained(kind), trained(kind));
            assert_eq!(a.inner.get_vocab(true), b.inner.get_vocab(true), "{kind:?}");
        }
        let tok = trained(TokenizerKind::WordPiece);
        let vocab = tok.inner.get_vocab(true);
        assert!(vocab.contains_key("##ing") && vocab.contains_key("whale"));
        assert!(
            vocab
                .keys()
                .all(|p| p.chars().all(|c| (c as u32) < CONTINUATION_BASE))
        );
        let marked = mark_continuations("Ahab's").unwrap();
        assert_eq!(marked.chars().next(), Some('A'));
        assert_eq!(unmark(&marked), "Ahab's");
        assert_eq!(
            unmark(&marked.chars().skip(1).collect::<String>()),
            "##hab's"
        );
        assert_eq!(mark_continuations("\u{F0041}"), None);
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
            (0, Some(1), None)
        );
        let e = tok.fixed_length(4).unwrap().encode("white whale").unwrap();
        assert_eq!(e.ids, vec![4, 3, 0, 0]);

        std::fs::write(&path, json.replace("<mask>", "<other>")).unwrap();
        let err = TextTokenizer::from_file(&path)
            .unwrap()
            .mask_vocab()
            .unwrap_err();
        assert!(
            err.to_string().contains("no mask token") && err.to_string().contains("tokenizer.json"),
            "{err}"
        );
        std::fs::write(&path, json.replace("<pad>", "<other>")).unwrap();
        let err = TextTokenizer::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("no padding token"), "{err}");
        std::fs::write(&path, "{ not json").unwrap();
        assert!(matches!(
            TextTokenizer::from_file(&path),
            Err(DataError::Tokenizer { .. })
        ));
        assert!(TextTokenizer::train(&[String::new()], &TokenizerTrainConfig::default()).is_err());
    }

    #[test]
    fn hugging_face_tokenizer_files_encode_as_transformers_does() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hf-tokenizers");
        let text = std::fs::read_to_string(root.join("expected.json")).unwrap();
        let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
        let texts: Vec<&str> = expected["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        for name in ["gpt2", "bert"] {
            let want = |kind: &str| -> Vec<Vec<u32>> {
                serde_json::from_value(expected[name][kind].clone()).unwrap()
            };
            for form in ["files", "json"] {
                let folder = format!("{name}-{form}");
                let tok = TextTokenizer::from_hf_dir(&root.join(&folder)).unwrap();
                assert_eq!(
                    tok.encode_plain_batch(&texts).unwrap(),
                    want("plain"),
                    "{folder}"
                );
                let special: Vec<Vec<u32>> = tok
                    .inner
                    .encode_batch(texts.clone(), true)
                    .unwrap()
                    .iter()
                    .map(|e| e.get_ids().to_vec())
                    .collect();
                assert_eq!(special, want("special"), "{folder}");
            }
        }
        // GPT-2's end of text pads and separates; it has no mask token.
        let gpt2 = TextTokenizer::from_hf_dir(&root.join("gpt2-files")).unwrap();
        let end = gpt2.token_id(GPT2_END_OF_TEXT);
        assert!(end.is_some());
        let specials = gpt2.specials();
        assert_eq!(
            (Some(specials.pad), specials.sep, specials.mask),
            (end, end, None)
        );
        let err = gpt2.mask_vocab().unwrap_err().to_string();
        assert!(err.contains("vocab.json: no mask token"), "{err}");
        let bert = TextTokenizer::from_hf_dir(&root.join("bert-files")).unwrap();
        assert_eq!(bert.specials().mask, bert.token_id("[MASK]"));

        // Bad folders: nothing to read, a damaged vocab.json, a do_lower_case that is no bool.
        let dir = tempfile::tempdir().unwrap();
        let err = TextTokenizer::from_hf_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no tokenizer: tokenizer.json"), "{err}");
        std::fs::write(dir.path().join("vocab.json"), "{\"a\": ").unwrap();
        std::fs::copy(
            root.join("gpt2-files/merges.txt"),
            dir.path().join("merges.txt"),
        )
        .unwrap();
        let err = TextTokenizer::from_hf_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("vocab.json"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            root.join("bert-files/vocab.txt"),
            dir.path().join("vocab.txt"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"do_lower_case": 1}"#,
        )
        .unwrap();
        let err = TextTokenizer::from_hf_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("do_lower_case is 1"), "{err}");
    }

    #[test]
    fn a_tokenizer_file_that_makes_the_library_panic_is_refused_naming_it() {
        // Found by fuzzing (fuzz/regressions/tokenizer/): a decoder `tokenizers` panics on.
        let bytes = include_bytes!("../../../fuzz/regressions/tokenizer/malformed-decoder.json");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, bytes).unwrap();
        let err = TextTokenizer::from_file(&path).err().unwrap().to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
    }
}

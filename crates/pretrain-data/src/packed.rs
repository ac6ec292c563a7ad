//! Packed sequences for causal language modeling: documents joined by an end-of-text token
//! into one stream ([`TokenStream`]: token shards read in place, or tokens in memory), cut into
//! windows of `block + 1` tokens (inputs and next-token targets overlap by all but one).

use std::ops::Range;
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{DataError, Result};
use crate::rng::EpochSeeded;
use crate::shards::TokenStream;
use crate::tokenizer::TextTokenizer;

/// `block + 1` consecutive tokens of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenWindow {
    /// The tokens.
    pub ids: Vec<u32>,
}

/// Non-overlapping windows over a range of a token stream: window `i` starts at
/// `range.start + i * block` and holds `block + 1` tokens, so every token of the range is
/// predicted once per epoch. The engine's loader shuffles the windows per epoch.
pub struct PackedWindows<S> {
    stream: Arc<S>,
    range: Range<usize>,
    block: usize,
}

impl<S: TokenStream> PackedWindows<S> {
    /// Windows of `block` predicted tokens over `range` of `stream` (e.g. the training
    /// documents' part of it).
    pub fn new(stream: Arc<S>, range: Range<usize>, block: usize) -> Result<Self> {
        if block == 0 {
            return Err(DataError::config("block_size", "must be positive"));
        }
        if range.end > stream.stream_len() || range.len() < block + 1 {
            return Err(DataError::config(
                "block_size",
                format!(
                    "{block} needs at least {} tokens; the stream's range holds {}",
                    block + 1,
                    range.len()
                ),
            ));
        }
        Ok(Self {
            stream,
            range,
            block,
        })
    }

    /// Tokens predicted per window.
    pub fn block(&self) -> usize {
        self.block
    }
}

impl<S: TokenStream> Dataset<TokenWindow> for PackedWindows<S> {
    fn get(&self, index: usize) -> Option<TokenWindow> {
        (index < self.len()).then(|| TokenWindow {
            ids: self
                .stream
                .window(self.range.start + index * self.block, self.block + 1),
        })
    }

    fn len(&self) -> usize {
        (self.range.len() - 1) / self.block
    }
}

impl<S> EpochSeeded for PackedWindows<S> {
    // Windows are fixed; only their order changes (the loader's shuffle).
    fn set_epoch(&self, _epoch: u64) {}
}

/// Texts tokenized into one in-memory stream, each followed by `eot` (for corpora that fit in
/// memory; larger ones are prepared as token shards and read as `PackedShards`).
pub fn pack_texts(tokenizer: &TextTokenizer, texts: &[&str], eot: u32) -> Result<Vec<u32>> {
    let mut stream = Vec::new();
    for ids in tokenizer.encode_plain_batch(texts)? {
        stream.extend(ids);
        stream.push(eot);
    }
    Ok(stream)
}

/// A batch of windows: inputs and their next tokens.
#[derive(Debug, Clone)]
pub struct CausalBatch<B: Backend> {
    /// `[batch, block]` token ids.
    pub inputs: Tensor<B, 2, Int>,
    /// `[batch, block]` the token after each input position.
    pub targets: Tensor<B, 2, Int>,
}

/// Batches [`TokenWindow`]s into a [`CausalBatch`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CausalBatcher;

impl<B: Backend> Batcher<B, TokenWindow, CausalBatch<B>> for CausalBatcher {
    fn batch(&self, items: Vec<TokenWindow>, device: &B::Device) -> CausalBatch<B> {
        let (n, block) = (items.len(), items[0].ids.len() - 1);
        let take = |skip: usize| -> Tensor<B, 2, Int> {
            let ids: Vec<i64> = items
                .iter()
                .flat_map(|w| w.ids[skip..skip + block].iter().map(|&t| i64::from(t)))
                .collect();
            Tensor::from_data(TensorData::new(ids, [n, block]), device)
        };
        CausalBatch {
            inputs: take(0),
            targets: take(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_source::DataSource;
    use crate::prepare::{PrepareOptions, TokenizerSource, prepare};
    use crate::readers::TextUnit;
    use crate::shards::{PackedShards, TokenShards};
    use crate::testdata;
    use crate::tokenizer::{TokenizerKind, TokenizerTrainConfig};

    #[test]
    fn shards_pack_like_texts_in_memory_and_windows_cover_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let source = DataSource::Text {
            paths: vec![testdata::moby_dick().display().to_string()],
            unit: TextUnit::Paragraph,
            encoding: Default::default(),
        };
        let options = PrepareOptions {
            shard_bytes: 3000,
            tokenizer: TokenizerSource::Train {
                config: TokenizerTrainConfig {
                    kind: TokenizerKind::ByteLevelBpe,
                    vocab_size: 400,
                    ..Default::default()
                },
                sample_bytes: 1 << 20,
            },
            ..PrepareOptions::new(dir.path().join("tokens"))
        };
        prepare(&source, &options, &mut |_| {}).unwrap();
        let shards = TokenShards::open(&dir.path().join("tokens")).unwrap();
        assert!(shards.manifest().shards.len() > 3);
        let tokenizer = shards.tokenizer().clone();
        let texts: Vec<String> = source
            .read_texts()
            .unwrap()
            .items
            .into_iter()
            .map(|t| t.text)
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let memory = pack_texts(&tokenizer, &refs, 3).unwrap();
        let packed = PackedShards { shards, eot: 3 };
        assert_eq!(packed.stream_len(), memory.len());
        // Windows crossing documents and shards read the same tokens.
        for start in [0, 1, 777, memory.len() / 2, memory.len() - 40] {
            assert_eq!(
                packed.window(start, 40),
                memory[start..start + 40],
                "at {start}"
            );
        }
        let windows = PackedWindows::new(Arc::new(packed), 0..memory.len(), 32).unwrap();
        assert_eq!(windows.len(), (memory.len() - 1) / 32);
        let last = windows.get(windows.len() - 1).unwrap();
        assert_eq!(last.ids.len(), 33);
        assert_eq!(windows.get(windows.len()), None);
        let batch: CausalBatch<crate::testdata::TestBackend> = CausalBatcher.batch(
            vec![windows.get(0).unwrap(), windows.get(1).unwrap()],
            &Default::default(),
        );
        assert_eq!(batch.inputs.dims(), [2, 32]);
        // Targets are the inputs shifted by one: window 0's target 31 is window 1's input 0.
        let inputs = batch
            .inputs
            .to_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap();
        let targets = batch
            .targets
            .to_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap();
        assert_eq!(targets[..31], inputs[1..32]);
        assert_eq!(targets[31], inputs[32]);
        let short = PackedWindows::new(Arc::new(vec![1u32, 2, 3]), 0..3, 8);
        assert!(short.is_err());
    }
}

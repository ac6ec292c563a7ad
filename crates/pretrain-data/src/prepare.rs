//! `pretrain data prepare`: any [`DataSource`] into a shard folder ([`crate::shards`]), one
//! item at a time (memory bounded by one shard), resumable after an interruption.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use burn::data::dataset::Dataset;

use crate::catalog::sha256_file;
use crate::data_source::{DataSource, Modality};
use crate::error::{DataError, Result};
use crate::shards::{
    FORMAT, ImageShardBuffer, MANIFEST_FILE, Manifest, ShardKind, ShardWriter, TOKENIZER_FILE,
    TokenShardBuffer, unreadable,
};
use crate::tokenizer::{TextTokenizer, TokenizerTrainConfig};

/// What `prepare` does with an item it cannot read (an undecodable image, a text file that
/// is not valid in its encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnBadItem {
    /// Stop with an error naming the item (default).
    #[default]
    Stop,
    /// Skip it, count it and name it in the manifest's `skipped` list.
    Skip,
}

/// Where the tokenizer of token shards comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenizerSource {
    /// A `tokenizer.json` file (copied beside the shards).
    File(PathBuf),
    /// Trained on the first documents of the source, up to `sample_bytes` of text.
    Train {
        /// Training settings.
        config: TokenizerTrainConfig,
        /// Bytes of text to train on.
        sample_bytes: usize,
    },
}

/// How `prepare` writes.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareOptions {
    /// The shard folder (created; an interrupted preparation in it is continued).
    pub out: PathBuf,
    /// Target bytes per shard (a shard holds at least one item).
    pub shard_bytes: usize,
    /// What to do with unreadable items.
    pub on_bad_item: OnBadItem,
    /// Texts: the tokenizer.
    pub tokenizer: TokenizerSource,
}

impl PrepareOptions {
    /// Defaults: 64 MiB shards, stop on a bad item, a WordPiece tokenizer trained on up to
    /// 64 MiB of text.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            shard_bytes: 64 << 20,
            on_bad_item: OnBadItem::Stop,
            tokenizer: TokenizerSource::Train {
                config: TokenizerTrainConfig::default(),
                sample_bytes: 64 << 20,
            },
        }
    }
}

/// How far `prepare` is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareProgress {
    /// Source items read (written or skipped), earlier runs included.
    pub items: usize,
    /// Source items in all, when known before reading (images).
    pub total: Option<usize>,
    /// Shards written.
    pub shards: usize,
}

/// Documents encoded per call of the tokenizer (which parallelizes inside a batch).
const ENCODE_BATCH: usize = 512;

/// Prepares `source` into `options.out`, calling `progress` after every item batch; returns
/// the finished manifest. A folder that already holds a finished preparation of the same
/// source is left as it is; one holding another source, or files that are not shards, is
/// refused.
pub fn prepare(
    source: &DataSource,
    options: &PrepareOptions,
    progress: &mut dyn FnMut(PrepareProgress),
) -> Result<Manifest> {
    if options.shard_bytes == 0 {
        return Err(DataError::config("shard_bytes", "must be positive"));
    }
    let source_json = serde_json::to_value(source).expect("sources serialize");
    let previous = previous_manifest(&options.out, &source_json)?;
    if let Some(manifest) = &previous
        && manifest.complete
    {
        return Ok(manifest.clone());
    }
    std::fs::create_dir_all(&options.out).map_err(|e| DataError::io(&options.out, e))?;
    match source.modality()? {
        Modality::Images => prepare_images(source, source_json, previous, options, progress),
        Modality::Texts => prepare_texts(source, source_json, previous, options, progress),
    }
}

/// The manifest of an interrupted or finished preparation of `source` in `out`, if any.
fn previous_manifest(out: &Path, source: &serde_json::Value) -> Result<Option<Manifest>> {
    if out.join(MANIFEST_FILE).is_file() {
        let manifest = Manifest::read(out)?;
        if &manifest.source != source {
            return Err(DataError::Shard {
                path: out.join(MANIFEST_FILE),
                message: format!(
                    "holds shards of another source ({}); choose another --out",
                    manifest.source
                ),
            });
        }
        return Ok(Some(manifest));
    }
    let occupied = std::fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        return Err(DataError::Shard {
            path: out.to_path_buf(),
            message: "is not empty and holds no shard manifest; choose an empty or new folder"
                .into(),
        });
    }
    Ok(None)
}

fn new_manifest(kind: ShardKind, source: serde_json::Value, classes: Vec<String>) -> Manifest {
    Manifest {
        format: FORMAT.to_string(),
        kind,
        source,
        classes,
        items: 0,
        tokens: 0,
        shards: Vec::new(),
        complete: false,
        next_item: 0,
        skipped: Vec::new(),
    }
}

fn prepare_images(
    source: &DataSource,
    source_json: serde_json::Value,
    previous: Option<Manifest>,
    options: &PrepareOptions,
    progress: &mut dyn FnMut(PrepareProgress),
) -> Result<Manifest> {
    let start = previous.as_ref().map_or(0, |m| m.next_item);
    let stream = source.image_stream(start)?;
    let mut writer = previous.map(|manifest| ShardWriter {
        dir: options.out.clone(),
        manifest,
    });
    let mut skipped = Vec::new();
    let mut buffer: Option<(ImageShardBuffer, usize)> = None;
    let mut next_item = start;
    for (_, item) in stream.items {
        next_item += 1;
        let item = match item {
            Ok(item) => item,
            Err(e) if options.on_bad_item == OnBadItem::Skip => {
                skipped.push(e.to_string());
                continue;
            }
            Err(e) => return Err(e),
        };
        let shape = [item.image.channels, item.image.height, item.image.width];
        let writer = writer.get_or_insert_with(|| ShardWriter {
            dir: options.out.clone(),
            manifest: new_manifest(
                ShardKind::Images { shape },
                source_json.clone(),
                stream.classes.clone(),
            ),
        });
        let (buf, per_shard) = buffer.get_or_insert_with(|| {
            let per_shard = (options.shard_bytes / (4 + shape.iter().product::<usize>())).max(1);
            (ImageShardBuffer::new(shape), per_shard)
        });
        buf.push(&item);
        if buf.items == *per_shard {
            writer.manifest.skipped.append(&mut skipped);
            let items = buf.items;
            writer.write_shard(buf.finish(), items, 0, 0, next_item)?;
            buffer = None;
            progress(PrepareProgress {
                items: next_item,
                total: stream.len,
                shards: writer.manifest.shards.len(),
            });
        }
    }
    let Some(mut writer) = writer else {
        return Err(DataError::Empty {
            path: source.first_path(),
            what: "source (no readable image)",
        });
    };
    writer.manifest.skipped.append(&mut skipped);
    if let Some((mut buf, _)) = buffer {
        let items = buf.items;
        writer.write_shard(buf.finish(), items, 0, 0, next_item)?;
    }
    finish(writer, next_item, stream.len, progress)
}

fn finish(
    mut writer: ShardWriter,
    next_item: usize,
    total: Option<usize>,
    progress: &mut dyn FnMut(PrepareProgress),
) -> Result<Manifest> {
    writer.manifest.next_item = next_item;
    writer.manifest.complete = true;
    writer.manifest.write(&writer.dir)?;
    progress(PrepareProgress {
        items: next_item,
        total,
        shards: writer.manifest.shards.len(),
    });
    Ok(writer.manifest)
}

/// The tokenizer of a text preparation: the one already beside the shards when continuing,
/// else the given file or one trained on the source's first documents; saved as
/// `tokenizer.json` in `out`.
fn shard_tokenizer(
    source: &DataSource,
    previous: Option<&Manifest>,
    options: &PrepareOptions,
) -> Result<(TextTokenizer, String)> {
    let path = options.out.join(TOKENIZER_FILE);
    if previous.is_some() {
        return Ok((TextTokenizer::from_file(&path)?, sha256_file(&path)?));
    }
    let tokenizer = match &options.tokenizer {
        TokenizerSource::File(file) => TextTokenizer::from_file(file)?,
        TokenizerSource::Train {
            config,
            sample_bytes,
        } => {
            let mut sample = Vec::new();
            let mut bytes = 0;
            for (_, item) in source.text_stream()?.items {
                // Unreadable items are dealt with (stopped on or skipped) in the main pass.
                let Ok(item) = item else { continue };
                bytes += item.text.len();
                sample.push(item.text);
                if bytes >= *sample_bytes {
                    break;
                }
            }
            if sample.is_empty() {
                return Err(DataError::Empty {
                    path: source.first_path(),
                    what: "text source",
                });
            }
            TextTokenizer::train(&sample, config)?
        }
    };
    tokenizer.save(&path)?;
    Ok((tokenizer, sha256_file(&path)?))
}

fn prepare_texts(
    source: &DataSource,
    source_json: serde_json::Value,
    previous: Option<Manifest>,
    options: &PrepareOptions,
    progress: &mut dyn FnMut(PrepareProgress),
) -> Result<Manifest> {
    let (tokenizer, tokenizer_sha256) = shard_tokenizer(source, previous.as_ref(), options)?;
    let vocab_size = tokenizer.vocab_size();
    let token_bytes = if vocab_size <= 1 << 16 { 2 } else { 4 };
    let stream = source.text_stream()?;
    let mut writer = ShardWriter {
        dir: options.out.clone(),
        manifest: match previous {
            Some(manifest) => manifest,
            None => new_manifest(
                ShardKind::Tokens {
                    token_bytes,
                    vocab_size,
                    tokenizer_sha256,
                },
                source_json,
                stream.classes.clone(),
            ),
        },
    };
    let start = writer.manifest.next_item;
    let tokens_per_shard = (options.shard_bytes / token_bytes).max(1);
    let mut buffer = TokenShardBuffer::new(token_bytes);
    // Source items read; bad items skipped, each with the count after it (a shard records
    // only the skips it covers, so an interruption neither loses nor repeats one).
    let mut consumed = start;
    let mut skips: Vec<(usize, String)> = Vec::new();
    let mut items = stream.items.skip(start);
    loop {
        let mut batch: Vec<(usize, String, Option<usize>)> = Vec::new();
        let before = consumed;
        for (_, item) in items.by_ref().take(ENCODE_BATCH) {
            consumed += 1;
            match item {
                Ok(item) => batch.push((consumed, item.text, item.label)),
                Err(e) if options.on_bad_item == OnBadItem::Skip => {
                    skips.push((consumed, e.to_string()))
                }
                Err(e) => return Err(e),
            }
        }
        if consumed == before {
            break;
        }
        let texts: Vec<&str> = batch.iter().map(|(_, t, _)| t.as_str()).collect();
        let encoded = tokenizer.encode_plain_batch(&texts)?;
        for (ids, (after, text, label)) in encoded.iter().zip(&batch) {
            buffer.push(ids, *label);
            buffer.text_bytes += text.len();
            if buffer.num_tokens() >= tokens_per_shard {
                flush_tokens(&mut writer, &mut buffer, *after, &mut skips)?;
            }
        }
        progress(PrepareProgress {
            items: consumed,
            total: stream.len,
            shards: writer.manifest.shards.len(),
        });
    }
    flush_tokens(&mut writer, &mut buffer, consumed, &mut skips)?;
    if writer.manifest.items == 0 {
        return Err(DataError::Empty {
            path: source.first_path(),
            what: "text source",
        });
    }
    finish(writer, consumed, stream.len, progress)
}

/// Writes the buffered documents (if any) as a shard that covers the source up to `upto`.
fn flush_tokens(
    writer: &mut ShardWriter,
    buffer: &mut TokenShardBuffer,
    upto: usize,
    skips: &mut Vec<(usize, String)>,
) -> Result<()> {
    let covered = skips.iter().take_while(|(after, _)| *after <= upto).count();
    writer
        .manifest
        .skipped
        .extend(skips.drain(..covered).map(|(_, message)| message));
    if buffer.docs() == 0 {
        return Ok(());
    }
    let (items, tokens) = (buffer.docs(), buffer.num_tokens());
    writer.write_shard(&buffer.to_bytes(), items, tokens, buffer.text_bytes, upto)?;
    *buffer = TokenShardBuffer::new(buffer.token_bytes());
    Ok(())
}

/// Writes `copies` repetitions of the finished shard folder `src` into `out` (items in order,
/// then again), in shards of `shard_bytes`: larger-than-memory data sets for measurements and
/// tests, made from a real one without keeping it in memory.
pub fn replicate(src: &Path, out: &Path, copies: usize, shard_bytes: usize) -> Result<Manifest> {
    let manifest = Manifest::read(src)?;
    if copies == 0 || shard_bytes == 0 {
        return Err(DataError::config(
            "copies",
            "copies and shard_bytes must be positive",
        ));
    }
    let source = serde_json::json!({ "replicate": src, "copies": copies, "of": manifest.source });
    if previous_manifest(out, &source)?.is_some() {
        return Err(DataError::Shard {
            path: out.to_path_buf(),
            message: "already holds these shards".into(),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    let mut writer = ShardWriter {
        dir: out.to_path_buf(),
        manifest: new_manifest(manifest.kind.clone(), source, manifest.classes.clone()),
    };
    let mut read = 0;
    match manifest.kind {
        ShardKind::Images { shape } => {
            let shards = crate::shards::ImageShards::open(src)?;
            let per_shard = (shard_bytes / (4 + shape.iter().product::<usize>())).max(1);
            let mut buffer = ImageShardBuffer::new(shape);
            for _ in 0..copies {
                for i in 0..shards.len() {
                    let item = shards.get(i).ok_or_else(|| unreadable(src, i))?;
                    buffer.push(&item);
                    read += 1;
                    if buffer.items == per_shard {
                        writer.write_shard(buffer.finish(), per_shard, 0, 0, read)?;
                        buffer = ImageShardBuffer::new(shape);
                    }
                }
            }
            if buffer.items > 0 {
                let items = buffer.items;
                writer.write_shard(buffer.finish(), items, 0, 0, read)?;
            }
        }
        ShardKind::Tokens { token_bytes, .. } => {
            std::fs::copy(src.join(TOKENIZER_FILE), out.join(TOKENIZER_FILE))
                .map_err(|e| DataError::io(out.join(TOKENIZER_FILE), e))?;
            let shards = crate::shards::TokenShards::open(src)?;
            let per_shard = (shard_bytes / token_bytes).max(1);
            let mut buffer = TokenShardBuffer::new(token_bytes);
            let mut none = Vec::new();
            // Documents keep no byte counts of their own: each copy adds the bytes per token.
            let bytes_per_token = shards.bytes_per_token();
            for _ in 0..copies {
                for i in 0..shards.len() {
                    let doc = shards.get(i).ok_or_else(|| unreadable(src, i))?;
                    buffer.push(&doc.ids, doc.label);
                    buffer.text_bytes += (doc.ids.len() as f64 * bytes_per_token).round() as usize;
                    read += 1;
                    if buffer.num_tokens() >= per_shard {
                        flush_tokens(&mut writer, &mut buffer, read, &mut none)?;
                    }
                }
            }
            flush_tokens(&mut writer, &mut buffer, read, &mut none)?;
        }
    }
    finish(writer, read, None, &mut |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::sha256_hex;
    use crate::item::ImageItem;
    use crate::mask::{MaskUnit, TokenMasker};
    use crate::shards::{ImageShards, TokenDoc, TokenShards};
    use crate::testdata;
    use crate::text_dataset::{MlmDataset, MlmTokenDataset};
    use crate::{TextEncoding, TextItem};
    use burn::data::dataset::InMemDataset;

    fn fashion_idx() -> DataSource {
        let paths = testdata::fashion_sample_paths();
        DataSource::Idx {
            images: paths.images,
            labels: Some(paths.labels),
        }
    }

    /// Options writing shards of `items` 28x28 images each.
    fn small_shards(out: &Path, items: usize) -> PrepareOptions {
        PrepareOptions {
            shard_bytes: items * (4 + 784),
            ..PrepareOptions::new(out)
        }
    }

    #[test]
    fn image_shards_hold_the_source_items_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("shards");
        let mut calls = 0;
        let manifest =
            prepare(&fashion_idx(), &small_shards(&out, 30), &mut |_| calls += 1).unwrap();
        assert_eq!(manifest.shards.len(), 4, "30 + 30 + 30 + 10 items");
        assert!(manifest.complete && calls >= 4);
        let shards = ImageShards::open(&out).unwrap();
        let items: Vec<ImageItem> = (0..shards.len()).map(|i| shards.get(i).unwrap()).collect();
        assert_eq!(items, testdata::fashion_sample());
        assert_eq!(shards.get(100), None);
        // A finished preparation is left as it is.
        let again = prepare(&fashion_idx(), &small_shards(&out, 30), &mut |_| {}).unwrap();
        assert_eq!(again, manifest);
        // Replicated: the items three times over, in shards of another size.
        let triple = dir.path().join("triple");
        let copies = replicate(&out, &triple, 3, 64 * (4 + 784)).unwrap();
        assert_eq!((copies.items, copies.shards.len()), (300, 5));
        let copies = ImageShards::open(&triple).unwrap();
        assert_eq!(copies.get(0), shards.get(0));
        assert_eq!(copies.get(299), shards.get(99));
        assert_eq!(copies.get(150), shards.get(50));
        assert!(
            replicate(&out, &triple, 2, 1 << 20).is_err(),
            "an occupied folder"
        );
    }

    #[test]
    fn an_interrupted_preparation_continues_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("shards");
        let whole = prepare(&fashion_idx(), &small_shards(&out, 30), &mut |_| {}).unwrap();
        // Rewind the folder to the state after the second shard of an interrupted run.
        let mut cut = whole.clone();
        for entry in cut.shards.drain(2..) {
            std::fs::remove_file(out.join(&entry.file)).unwrap();
        }
        cut.items = 60;
        cut.next_item = 60;
        cut.complete = false;
        cut.write(&out).unwrap();
        let err = ImageShards::open(&out).err().unwrap().to_string();
        assert!(err.contains("interrupted"), "{err}");
        let mut first_report = None;
        let resumed = prepare(&fashion_idx(), &small_shards(&out, 30), &mut |p| {
            first_report.get_or_insert(p.items);
        })
        .unwrap();
        assert_eq!(resumed, whole);
        assert_eq!(
            first_report,
            Some(90),
            "the first 60 items were not read again"
        );
        // Another source is refused, and so is a folder of other files.
        let other = DataSource::Idx {
            images: testdata::fashion_sample_paths().images,
            labels: None,
        };
        let err = prepare(&other, &small_shards(&out, 30), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("another source"), "{err}");
        let err = prepare(&other, &small_shards(dir.path(), 30), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
    }

    #[test]
    fn damaged_shards_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("shards");
        prepare(&fashion_idx(), &small_shards(&out, 30), &mut |_| {}).unwrap();
        let shard = out.join("shard-00001.bin");
        let bytes = std::fs::read(&shard).unwrap();
        let mut flipped = bytes.clone();
        flipped[1000] ^= 1;
        std::fs::write(&shard, &flipped).unwrap();
        let err = ImageShards::open(&out).err().unwrap().to_string();
        assert!(
            err.contains("shard-00001.bin") && err.contains("SHA-256"),
            "{err}"
        );
        std::fs::write(&shard, &bytes[..bytes.len() - 1]).unwrap();
        let err = ImageShards::open(&out).err().unwrap().to_string();
        assert!(
            err.contains("shard-00001.bin") && err.contains("truncated"),
            "{err}"
        );
        std::fs::write(&shard, &bytes).unwrap();
        assert!(ImageShards::open(&out).is_ok());
        // A manifest whose digests match a forged shard still fails on the header checks.
        let mut manifest = Manifest::read(&out).unwrap();
        let mut forged = bytes.clone();
        forged[16] = 3; // three channels
        manifest.shards[1].sha256 = sha256_hex(&forged);
        manifest.write(&out).unwrap();
        std::fs::write(&shard, &forged).unwrap();
        let err = ImageShards::open(&out).err().unwrap().to_string();
        assert!(
            err.contains("shard-00001.bin") && err.contains("channels"),
            "{err}"
        );
        std::fs::write(out.join(MANIFEST_FILE), "{").unwrap();
        let err = ImageShards::open(&out).err().unwrap().to_string();
        assert!(err.contains("manifest.json"), "{err}");
    }

    #[test]
    fn bad_images_stop_or_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir(&images).unwrap();
        for (i, item) in testdata::fashion_sample().iter().take(5).enumerate() {
            let img = image::GrayImage::from_raw(28, 28, item.image.pixels.clone()).unwrap();
            img.save(images.join(format!("{i}.png"))).unwrap();
        }
        std::fs::write(images.join("2.png"), b"not a png").unwrap();
        let source = DataSource::ImageFolder {
            path: images,
            labels: crate::data_source::FolderLabels::None,
            color: crate::readers::ColorMode::Gray,
            size: None,
            resize: false,
        };
        let out = dir.path().join("stop");
        let err = prepare(&source, &PrepareOptions::new(&out), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("2.png"), "{err}");
        let out = dir.path().join("skip");
        let options = PrepareOptions {
            on_bad_item: OnBadItem::Skip,
            ..PrepareOptions::new(&out)
        };
        let manifest = prepare(&source, &options, &mut |_| {}).unwrap();
        assert_eq!((manifest.items, manifest.next_item), (4, 5));
        assert_eq!(manifest.skipped.len(), 1);
        assert!(manifest.skipped[0].contains("2.png"));
    }

    fn tiny_tokenizer() -> TokenizerSource {
        TokenizerSource::Train {
            config: TokenizerTrainConfig {
                vocab_size: 600,
                ..Default::default()
            },
            sample_bytes: 1 << 20,
        }
    }

    #[test]
    fn token_shards_hold_each_document_and_mask_like_texts() {
        let dir = tempfile::tempdir().unwrap();
        let source = DataSource::Text {
            paths: vec![testdata::moby_dick().display().to_string()],
            unit: crate::readers::TextUnit::Paragraph,
            encoding: TextEncoding::Utf8,
        };
        let out = dir.path().join("tokens");
        let options = PrepareOptions {
            shard_bytes: 4096,
            tokenizer: tiny_tokenizer(),
            ..PrepareOptions::new(&out)
        };
        let manifest = prepare(&source, &options, &mut |_| {}).unwrap();
        assert!(
            manifest.shards.len() > 2,
            "{} shards",
            manifest.shards.len()
        );
        let shards = TokenShards::open(&out).unwrap();
        let texts = source.read_texts().unwrap().items;
        assert_eq!(shards.len(), texts.len());
        let tokenizer = &shards.tokenizer().clone();
        for i in [0, texts.len() / 2, texts.len() - 1] {
            let ids = tokenizer
                .encode_plain_batch(&[texts[i].text.as_str()])
                .unwrap();
            assert_eq!(
                shards.get(i).unwrap(),
                TokenDoc {
                    ids: ids[0].clone(),
                    label: None
                }
            );
        }
        // Masked items from shards equal those the texts give (token masking, same seed).
        let masker = TokenMasker {
            unit: MaskUnit::Token,
            ..Default::default()
        };
        let from_texts = MlmDataset::new(
            InMemDataset::new(TextItem::unlabeled(
                &texts.iter().map(|t| t.text.clone()).collect::<Vec<_>>(),
            )),
            tokenizer,
            24,
            masker.clone(),
            5,
        )
        .unwrap();
        // Replicated token shards hold the documents twice over.
        let twice = dir.path().join("twice");
        let manifest = replicate(&out, &twice, 2, 1 << 20).unwrap();
        assert_eq!(manifest.items, 2 * shards.len());
        let copies = TokenShards::open(&twice).unwrap();
        assert_eq!(copies.get(shards.len() + 3), shards.get(3));
        let from_shards = MlmTokenDataset::new(shards, tokenizer, 24, masker, 5).unwrap();
        for i in 0..from_texts.len() {
            assert_eq!(from_shards.get(i), from_texts.get(i), "document {i}");
        }
        // A replaced tokenizer is refused.
        let other = TextTokenizer::train(
            &["something else entirely".to_string()],
            &TokenizerTrainConfig {
                vocab_size: 100,
                ..Default::default()
            },
        )
        .unwrap();
        other.save(&out.join(TOKENIZER_FILE)).unwrap();
        let err = TokenShards::open(&out).err().unwrap().to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
    }

    #[test]
    fn undecodable_text_files_stop_or_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let texts = dir.path().join("texts");
        std::fs::create_dir(&texts).unwrap();
        std::fs::write(
            texts.join("a.txt"),
            "the cat sat on the mat\nthe dog sat too",
        )
        .unwrap();
        std::fs::write(texts.join("b.txt"), b"bad \xff bytes").unwrap();
        std::fs::write(texts.join("c.txt"), "a cat and a dog").unwrap();
        let source = DataSource::Text {
            paths: vec![texts.display().to_string()],
            unit: crate::readers::TextUnit::Line,
            encoding: TextEncoding::Utf8,
        };
        let options = |out: &str, on_bad_item| PrepareOptions {
            on_bad_item,
            tokenizer: tiny_tokenizer(),
            ..PrepareOptions::new(dir.path().join(out))
        };
        let err = prepare(&source, &options("stop", OnBadItem::Stop), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("b.txt"), "{err}");
        let manifest = prepare(&source, &options("skip", OnBadItem::Skip), &mut |_| {}).unwrap();
        assert_eq!((manifest.items, manifest.next_item), (3, 4));
        assert!(manifest.skipped[0].contains("b.txt"));
    }
}

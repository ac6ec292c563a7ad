//! Sharded on-disk datasets: what `pretrain data prepare` writes and pre-training reads in
//! place (positioned reads of fixed-layout records), so a data set may be far larger than
//! memory.
//!
//! A shard folder holds `manifest.json` and `shard-NNNNN.bin` files (and, for tokens, the
//! tokenizer). Every shard starts with a 32-byte header: an 8-byte magic, then little-endian
//! counts. Image shards (`PTSHIMG1`, item count, channels, height, width) hold one record per
//! image: a `u32` label (`u32::MAX`: none) and the `channels * height * width` pixel bytes.
//! Token shards (`PTSHTOK1`, document count, token count, bytes per token) hold the `docs + 1`
//! `u64` document offsets, one `u32` label per document, then every token (`u16` or `u32`).
//!
//! Opening checks each shard against the manifest (size, SHA-256 read through a small buffer,
//! header counts, offsets, labels and token ids in range) and refuses a shard that differs,
//! naming it; reading an item afterwards cannot fail.
//!
//! The format is written by hand: safetensors and Arrow describe tensors and tables, not a
//! random-access store of variable-length documents with labels, and a 32-byte header per
//! shard keeps the reader a few lines of positioned reads.

use std::ops::Range;
use std::path::{Path, PathBuf};

use burn::data::dataset::Dataset;
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::catalog::{sha256_file, sha256_hex};
use crate::data_source::ItemStream;
use crate::error::{DataError, Result};
use crate::item::{Image8, ImageItem};
use crate::tokenizer::TextTokenizer;

/// The manifest's file name.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The tokenizer's file name in a token shard folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Format tag of the manifests this version writes and reads.
pub const FORMAT: &str = "pretrain-shards/1";

/// Bytes of every shard's header.
pub const HEADER_BYTES: usize = 32;

const IMAGE_MAGIC: &[u8; 8] = b"PTSHIMG1";
const TOKEN_MAGIC: &[u8; 8] = b"PTSHTOK1";
const NO_LABEL: u32 = u32::MAX;

/// What the shards of a folder hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ShardKind {
    /// Images of one shape.
    Images {
        /// `[channels, height, width]`.
        shape: [usize; 3],
    },
    /// Tokenized documents.
    Tokens {
        /// Bytes per token: 2 (`u16`) or 4 (`u32`).
        token_bytes: usize,
        /// Vocabulary size of the tokenizer (every id is below it).
        vocab_size: usize,
        /// SHA-256 of the tokenizer file beside the shards.
        tokenizer_sha256: String,
    },
}

/// One shard as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name inside the folder.
    pub file: String,
    /// Items (images or documents).
    pub items: usize,
    /// Tokens (0 for images).
    pub tokens: usize,
    /// File size.
    pub bytes: u64,
    /// SHA-256 of the file.
    pub sha256: String,
    /// UTF-8 bytes of the texts its documents were tokenized from (token shards; for bits
    /// per byte).
    #[serde(default)]
    pub text_bytes: usize,
}

/// `manifest.json`: what a shard folder holds, and how far `prepare` got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// What the shards hold.
    pub kind: ShardKind,
    /// The source prepared (its recipe table, as JSON).
    pub source: serde_json::Value,
    /// Class names (empty when unlabeled).
    pub classes: Vec<String>,
    /// Items in all shards.
    pub items: usize,
    /// Tokens in all shards (0 for images).
    pub tokens: usize,
    /// The shards, in item order.
    pub shards: Vec<ShardEntry>,
    /// Whether `prepare` read the whole source.
    pub complete: bool,
    /// Source items read so far (the shards' items plus those skipped): where an interrupted
    /// `prepare` continues.
    pub next_item: usize,
    /// Items skipped as unreadable (`--on-bad-item skip`), each with its reason.
    pub skipped: Vec<String>,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        let manifest: Self = serde_json::from_slice(&bytes).map_err(|e| DataError::Shard {
            path: path.clone(),
            message: format!("not a shard manifest: {e}"),
        })?;
        if manifest.format != FORMAT {
            return Err(DataError::Shard {
                path,
                message: format!(
                    "format {:?}, this version reads {FORMAT:?}",
                    manifest.format
                ),
            });
        }
        Ok(manifest)
    }

    /// Writes `dir/manifest.json` (through a temporary file, so a reader never sees half).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self).expect("manifests serialize");
        std::fs::write(&tmp, json).map_err(|e| DataError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| DataError::io(&path, e))
    }
}

/// One verified shard file, read in place by positioned reads.
///
/// Items are read with `pread`, not through a map: on a fault the kernel maps whole page-cache
/// folios (and neighbouring pages) into the process, so under random access a mapped data set's
/// resident set grows toward its size (measured: 4 GB resident for 4.7 GB of shards after 30
/// steps). Reads leave the data in the page cache (shared, reclaimable) and the resident set
/// bounded by the batches; each item is copied once either way.
struct ShardFile {
    file: std::fs::File,
    /// Index of its first item among all shards.
    first_item: usize,
    items: usize,
    /// Index of its first token among all shards, and its token count (token shards).
    first_token: usize,
    tokens: usize,
}

impl ShardFile {
    /// `len` bytes at `offset` (inside the verified file, whose size is fixed).
    fn read(&self, offset: usize, len: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0; len];
        read_at(&self.file, &mut buf, offset as u64).ok()?;
        Some(buf)
    }

    fn u32_at(&self, offset: usize) -> Option<u32> {
        Some(u32_at(&self.read(offset, 4)?, 0))
    }
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &std::fs::File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// Opens the shards of `manifest`, each checked against its entry; `check` then validates the
/// bytes (header, layout) of each, mapped for the check.
fn open_shards(
    dir: &Path,
    manifest: &Manifest,
    mut check: impl FnMut(&Path, &ShardEntry, &[u8]) -> Result<()>,
) -> Result<Vec<ShardFile>> {
    if !manifest.complete {
        return Err(DataError::Shard {
            path: dir.join(MANIFEST_FILE),
            message: "preparation was interrupted; run `pretrain data prepare` again to finish it"
                .into(),
        });
    }
    let mut shards = Vec::with_capacity(manifest.shards.len());
    let mut first_item = 0;
    let mut first_token = 0;
    for entry in &manifest.shards {
        let path = dir.join(&entry.file);
        let bad = |message: String| DataError::Shard {
            path: path.clone(),
            message,
        };
        let size = std::fs::metadata(&path)
            .map_err(|e| DataError::io(&path, e))?
            .len();
        if size != entry.bytes {
            return Err(bad(format!(
                "{size} bytes, the manifest records {} (truncated or replaced)",
                entry.bytes
            )));
        }
        // Read through a buffer, not the map: checking a shard does not keep it in memory.
        let digest = sha256_file(&path)?;
        if digest != entry.sha256 {
            return Err(bad(format!(
                "SHA-256 {digest} does not match the manifest's {}",
                entry.sha256
            )));
        }
        let map = map_file(&path)?;
        if map.len() < HEADER_BYTES {
            return Err(bad(format!("{} bytes, shorter than its header", map.len())));
        }
        check(&path, entry, &map)?;
        drop(map);
        shards.push(ShardFile {
            file: std::fs::File::open(&path).map_err(|e| DataError::io(&path, e))?,
            first_item,
            items: entry.items,
            first_token,
            tokens: entry.tokens,
        });
        first_item += entry.items;
        first_token += entry.tokens;
    }
    if first_item != manifest.items {
        return Err(DataError::Shard {
            path: dir.join(MANIFEST_FILE),
            message: format!(
                "its shards hold {first_item} items, it records {}",
                manifest.items
            ),
        });
    }
    Ok(shards)
}

/// Maps `path` read-only, for the checks of [`open_shards`] (the map is dropped after them).
fn map_file(path: &Path) -> Result<Mmap> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    // SAFETY: the map is read-only and lives only while the just-verified file is checked.
    // Should another process truncate it meanwhile, reads would fault (SIGBUS); shard folders
    // are written once by `prepare` and never modified in place, which the documentation
    // states.
    unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, e))
}

/// The shard holding item `index`, and the item's index inside it.
fn locate(shards: &[ShardFile], index: usize) -> Option<(&ShardFile, usize)> {
    let at = shards.partition_point(|s| s.first_item + s.items <= index);
    let shard = shards.get(at)?;
    Some((shard, index - shard.first_item))
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

/// Checks a shard's magic and that its header's counts equal `expected`.
fn check_header(
    path: &Path,
    bytes: &[u8],
    magic: &[u8; 8],
    expected: &[(&str, u64, usize)],
) -> Result<()> {
    if &bytes[..8] != magic {
        return Err(DataError::Shard {
            path: path.to_path_buf(),
            message: format!(
                "does not start with {:?} (not a shard of this kind)",
                String::from_utf8_lossy(magic)
            ),
        });
    }
    for (what, found, wanted) in expected {
        if *found != *wanted as u64 {
            return Err(DataError::Shard {
                path: path.to_path_buf(),
                message: format!("header says {found} {what}, the manifest {wanted}"),
            });
        }
    }
    Ok(())
}

/// Image shards read in place: a `Dataset<ImageItem>` whose items are read from the
/// shard files on access.
pub struct ImageShards {
    dir: PathBuf,
    manifest: Manifest,
    shape: [usize; 3],
    shards: Vec<ShardFile>,
}

impl ImageShards {
    /// Opens and verifies the image shards of `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        let ShardKind::Images { shape } = manifest.kind else {
            return Err(DataError::Shard {
                path: dir.join(MANIFEST_FILE),
                message: "holds tokens, where images are needed".into(),
            });
        };
        let pixels: usize = shape.iter().product();
        let record = 4 + pixels;
        let classes = manifest.classes.len();
        let shards = open_shards(dir, &manifest, |path, entry, bytes| {
            let [c, h, w] = shape.map(|s| s as u64);
            check_header(
                path,
                bytes,
                IMAGE_MAGIC,
                &[
                    ("items", u64_at(bytes, 8), entry.items),
                    ("channels", u64::from(u32_at(bytes, 16)), c as usize),
                    ("rows", u64::from(u32_at(bytes, 20)), h as usize),
                    ("columns", u64::from(u32_at(bytes, 24)), w as usize),
                ],
            )?;
            let expected = HEADER_BYTES + entry.items * record;
            if bytes.len() != expected {
                return Err(DataError::Shard {
                    path: path.to_path_buf(),
                    message: format!("{} bytes, its header implies {expected}", bytes.len()),
                });
            }
            for i in 0..entry.items {
                let label = u32_at(bytes, HEADER_BYTES + i * record);
                if label != NO_LABEL && label as usize >= classes {
                    return Err(DataError::Shard {
                        path: path.to_path_buf(),
                        message: format!(
                            "item {i} has label {label}, the manifest lists {classes} classes"
                        ),
                    });
                }
            }
            Ok(())
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            shape,
            shards,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// `[channels, height, width]` of every image.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// The images from the `start`-th on, in order.
    pub fn image_stream(self, start: usize) -> Result<ItemStream<ImageItem>> {
        let len = self.len();
        let classes = self.manifest.classes.clone();
        Ok(ItemStream {
            len: Some(len),
            classes,
            items: Box::new((start..len).map(move |i| {
                let name = format!("shard item {i}");
                let item = self.get(i).ok_or_else(|| unreadable(&self.dir, i));
                (name, item)
            })),
        })
    }
}

impl Dataset<ImageItem> for ImageShards {
    fn get(&self, index: usize) -> Option<ImageItem> {
        let (shard, i) = locate(&self.shards, index)?;
        let [c, h, w] = self.shape;
        let record = 4 + c * h * w;
        let mut bytes = shard.read(HEADER_BYTES + i * record, record)?;
        let label = u32_at(&bytes, 0);
        bytes.drain(..4);
        Some(ImageItem {
            image: Image8 {
                channels: c,
                height: h,
                width: w,
                pixels: bytes,
            },
            label: (label != NO_LABEL).then_some(label as usize),
        })
    }

    fn len(&self) -> usize {
        self.manifest.items
    }
}

/// The error of an item that could not be read from verified shards (a file changed or
/// removed after opening).
pub(crate) fn unreadable(dir: &Path, index: usize) -> DataError {
    DataError::Shard {
        path: dir.to_path_buf(),
        message: format!("item {index} could not be read: a shard changed after it was opened"),
    }
}

/// A tokenized document read from token shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDoc {
    /// Its tokens (no special tokens added).
    pub ids: Vec<u32>,
    /// Its class, when labeled.
    pub label: Option<usize>,
}

/// Token shards read in place: a `Dataset<TokenDoc>` (one item per document) and the
/// tokenizer they were made with.
pub struct TokenShards {
    manifest: Manifest,
    token_bytes: usize,
    tokenizer: TextTokenizer,
    shards: Vec<ShardFile>,
}

impl TokenShards {
    /// Opens and verifies the token shards of `dir` and their tokenizer.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        let ShardKind::Tokens {
            token_bytes,
            vocab_size,
            ref tokenizer_sha256,
        } = manifest.kind
        else {
            return Err(DataError::Shard {
                path: dir.join(MANIFEST_FILE),
                message: "holds images, where tokens are needed".into(),
            });
        };
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let digest = sha256_file(&tokenizer_path)?;
        if &digest != tokenizer_sha256 {
            return Err(DataError::Shard {
                path: tokenizer_path,
                message: format!(
                    "SHA-256 {digest} is not the tokenizer the shards were made with \
                     ({tokenizer_sha256})"
                ),
            });
        }
        let tokenizer = TextTokenizer::from_file(&tokenizer_path)?;
        if tokenizer.vocab_size() != vocab_size || !matches!(token_bytes, 2 | 4) {
            return Err(DataError::Shard {
                path: dir.join(MANIFEST_FILE),
                message: format!(
                    "records {vocab_size} tokens of {token_bytes} bytes; the tokenizer has {}",
                    tokenizer.vocab_size()
                ),
            });
        }
        let classes = manifest.classes.len();
        let shards = open_shards(dir, &manifest, |path, entry, bytes| {
            check_token_shard(path, entry, bytes, token_bytes, vocab_size, classes)
        })?;
        Ok(Self {
            token_bytes,
            tokenizer,
            shards,
            manifest,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The tokenizer the shards were made with.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Tokens in all shards.
    pub fn num_tokens(&self) -> usize {
        self.manifest.tokens
    }

    /// UTF-8 bytes of the texts per token (0 when the manifest does not record the bytes).
    pub fn bytes_per_token(&self) -> f64 {
        let bytes: usize = self.manifest.shards.iter().map(|s| s.text_bytes).sum();
        bytes as f64 / self.manifest.tokens.max(1) as f64
    }

    /// Where document `doc`'s tokens lie: its shard, the shard's layout, the document's index
    /// in it and its range of the shard's tokens.
    fn doc_span(&self, doc: usize) -> Option<(&ShardFile, TokenLayout, usize, Range<usize>)> {
        let (shard, d) = locate(&self.shards, doc)?;
        let layout = TokenLayout::new(shard.items, shard.tokens, self.token_bytes);
        let bounds = shard.read(layout.offsets + 8 * d, 16)?;
        let span = u64_at(&bounds, 0) as usize..u64_at(&bounds, 8) as usize;
        Some((shard, layout, d, span))
    }

    /// Tokens `range` of `shard`.
    fn tokens(
        &self,
        shard: &ShardFile,
        layout: &TokenLayout,
        range: Range<usize>,
    ) -> Option<Vec<u32>> {
        let bytes = shard.read(
            layout.tokens + range.start * self.token_bytes,
            range.len() * self.token_bytes,
        )?;
        Some(
            (0..range.len())
                .map(|t| token_at(&bytes, 0, self.token_bytes, t))
                .collect(),
        )
    }

    /// Position of document `doc` (`0..=len`) in the packed stream, where every document is
    /// followed by one end-of-text token: the tokens before it, plus one per earlier document.
    pub fn packed_start(&self, doc: usize) -> usize {
        match self.doc_span(doc) {
            Some((shard, _, _, span)) => shard.first_token + span.start + doc,
            None => self.manifest.tokens + self.manifest.items,
        }
    }
}

/// A token sequence read by windows: the packed documents of a causal language model.
pub trait TokenStream: Send + Sync {
    /// Tokens in the stream.
    fn stream_len(&self) -> usize;

    /// Tokens `start..start + len` (`start + len <= stream_len()`).
    fn window(&self, start: usize, len: usize) -> Vec<u32>;
}

/// Token shards as one stream: every document followed by `eot`, read in place.
pub struct PackedShards {
    /// The shards.
    pub shards: TokenShards,
    /// The end-of-text id placed after every document.
    pub eot: u32,
}

impl TokenStream for PackedShards {
    fn stream_len(&self) -> usize {
        self.shards.manifest.tokens + self.shards.manifest.items
    }

    fn window(&self, start: usize, len: usize) -> Vec<u32> {
        let shards = &self.shards;
        // The last document starting at or before `start` (binary search over documents).
        let (mut lo, mut hi) = (0, shards.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if shards.packed_start(mid) <= start {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let mut doc = lo;
        let mut at = start - shards.packed_start(doc);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let Some((shard, layout, _, span)) = shards.doc_span(doc) else {
                break;
            };
            let take = (span.len() - at.min(span.len())).min(len - out.len());
            let first = span.start + at.min(span.len());
            match shards.tokens(shard, &layout, first..first + take) {
                Some(tokens) => out.extend(tokens),
                None => break,
            }
            if out.len() < len {
                out.push(self.eot);
            }
            doc += 1;
            at = 0;
        }
        out
    }
}

impl TokenStream for Vec<u32> {
    fn stream_len(&self) -> usize {
        self.len()
    }

    fn window(&self, start: usize, len: usize) -> Vec<u32> {
        self[start..start + len].to_vec()
    }
}

/// Validates a token shard's header, layout, offsets, labels and ids.
fn check_token_shard(
    path: &Path,
    entry: &ShardEntry,
    bytes: &[u8],
    token_bytes: usize,
    vocab_size: usize,
    classes: usize,
) -> Result<()> {
    let bad = |message: String| DataError::Shard {
        path: path.to_path_buf(),
        message,
    };
    check_header(
        path,
        bytes,
        TOKEN_MAGIC,
        &[
            ("documents", u64_at(bytes, 8), entry.items),
            ("tokens", u64_at(bytes, 16), entry.tokens),
            ("bytes per token", u64::from(u32_at(bytes, 24)), token_bytes),
        ],
    )?;
    let layout = TokenLayout::new(entry.items, entry.tokens, token_bytes);
    if bytes.len() != layout.total {
        return Err(bad(format!(
            "{} bytes, its header implies {}",
            bytes.len(),
            layout.total
        )));
    }
    let mut previous = 0;
    for d in 0..=entry.items {
        let offset = u64_at(bytes, layout.offsets + 8 * d);
        let in_order = offset >= previous && offset <= entry.tokens as u64;
        if !in_order
            || (d == 0 && offset != 0)
            || (d == entry.items && offset != entry.tokens as u64)
        {
            return Err(bad(format!(
                "document offset {d} ({offset}) is out of order"
            )));
        }
        previous = offset;
    }
    for d in 0..entry.items {
        let label = u32_at(bytes, layout.labels + 4 * d);
        if label != NO_LABEL && label as usize >= classes {
            return Err(bad(format!(
                "document {d} has label {label}, the manifest lists {classes} classes"
            )));
        }
    }
    if let Some(t) = (0..entry.tokens)
        .find(|&t| token_at(bytes, layout.tokens, token_bytes, t) as usize >= vocab_size)
    {
        return Err(bad(format!(
            "token {t} is id {}, not below the vocabulary's {vocab_size}",
            token_at(bytes, layout.tokens, token_bytes, t)
        )));
    }
    Ok(())
}

fn token_at(bytes: &[u8], base: usize, token_bytes: usize, t: usize) -> u32 {
    let at = base + t * token_bytes;
    if token_bytes == 2 {
        u32::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
    } else {
        u32_at(bytes, at)
    }
}

/// Byte offsets of a token shard's sections.
pub(crate) struct TokenLayout {
    pub(crate) offsets: usize,
    pub(crate) labels: usize,
    pub(crate) tokens: usize,
    pub(crate) total: usize,
}

impl TokenLayout {
    pub(crate) fn new(docs: usize, tokens: usize, token_bytes: usize) -> Self {
        let offsets = HEADER_BYTES;
        let labels = offsets + 8 * (docs + 1);
        let tokens_at = labels + 4 * docs;
        Self {
            offsets,
            labels,
            tokens: tokens_at,
            total: tokens_at + tokens * token_bytes,
        }
    }
}

impl Dataset<TokenDoc> for TokenShards {
    fn get(&self, index: usize) -> Option<TokenDoc> {
        let (shard, layout, d, span) = self.doc_span(index)?;
        let label = shard.u32_at(layout.labels + 4 * d)?;
        Some(TokenDoc {
            ids: self.tokens(shard, &layout, span)?,
            label: (label != NO_LABEL).then_some(label as usize),
        })
    }

    fn len(&self) -> usize {
        self.manifest.items
    }
}

/// Writes shard files into a folder, each through a temporary name, recording them in the
/// manifest as they complete.
pub(crate) struct ShardWriter {
    pub(crate) dir: PathBuf,
    pub(crate) manifest: Manifest,
}

impl ShardWriter {
    /// Writes the next shard from its bytes (header included) and saves the manifest with
    /// `next_item` source items read.
    pub(crate) fn write_shard(
        &mut self,
        bytes: &[u8],
        items: usize,
        tokens: usize,
        text_bytes: usize,
        next_item: usize,
    ) -> Result<()> {
        let file = format!("shard-{:05}.bin", self.manifest.shards.len());
        let path = self.dir.join(&file);
        let tmp = self.dir.join(format!("{file}.tmp"));
        std::fs::write(&tmp, bytes).map_err(|e| DataError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| DataError::io(&path, e))?;
        self.manifest.shards.push(ShardEntry {
            file,
            items,
            tokens,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
            text_bytes,
        });
        self.manifest.items += items;
        self.manifest.tokens += tokens;
        self.manifest.next_item = next_item;
        self.manifest.write(&self.dir)
    }
}

/// An image shard's bytes under construction.
pub(crate) struct ImageShardBuffer {
    pub(crate) bytes: Vec<u8>,
    pub(crate) items: usize,
}

impl ImageShardBuffer {
    pub(crate) fn new(shape: [usize; 3]) -> Self {
        let mut bytes = Vec::with_capacity(HEADER_BYTES);
        bytes.extend_from_slice(IMAGE_MAGIC);
        bytes.extend_from_slice(&0u64.to_le_bytes());
        for side in shape {
            bytes.extend_from_slice(&(side as u32).to_le_bytes());
        }
        bytes.resize(HEADER_BYTES, 0);
        Self { bytes, items: 0 }
    }

    pub(crate) fn push(&mut self, item: &ImageItem) {
        let label = item.label.map_or(NO_LABEL, |l| l as u32);
        self.bytes.extend_from_slice(&label.to_le_bytes());
        self.bytes.extend_from_slice(&item.image.pixels);
        self.items += 1;
    }

    /// The finished shard's bytes (item count written into the header).
    pub(crate) fn finish(&mut self) -> &[u8] {
        self.bytes[8..16].copy_from_slice(&(self.items as u64).to_le_bytes());
        &self.bytes
    }
}

/// A token shard under construction.
pub(crate) struct TokenShardBuffer {
    token_bytes: usize,
    /// UTF-8 bytes of the documents' texts.
    pub(crate) text_bytes: usize,
    offsets: Vec<u64>,
    labels: Vec<u32>,
    tokens: Vec<u8>,
}

impl TokenShardBuffer {
    pub(crate) fn new(token_bytes: usize) -> Self {
        Self {
            token_bytes,
            text_bytes: 0,
            offsets: vec![0],
            labels: Vec::new(),
            tokens: Vec::new(),
        }
    }

    pub(crate) fn token_bytes(&self) -> usize {
        self.token_bytes
    }

    pub(crate) fn docs(&self) -> usize {
        self.labels.len()
    }

    pub(crate) fn num_tokens(&self) -> usize {
        self.tokens.len() / self.token_bytes
    }

    pub(crate) fn push(&mut self, ids: &[u32], label: Option<usize>) {
        for &id in ids {
            if self.token_bytes == 2 {
                self.tokens.extend_from_slice(&(id as u16).to_le_bytes());
            } else {
                self.tokens.extend_from_slice(&id.to_le_bytes());
            }
        }
        self.offsets.push(self.num_tokens() as u64);
        self.labels.push(label.map_or(NO_LABEL, |l| l as u32));
    }

    /// The shard's bytes.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let layout = TokenLayout::new(self.docs(), self.num_tokens(), self.token_bytes);
        let mut bytes = Vec::with_capacity(layout.total);
        bytes.extend_from_slice(TOKEN_MAGIC);
        bytes.extend_from_slice(&(self.docs() as u64).to_le_bytes());
        bytes.extend_from_slice(&(self.num_tokens() as u64).to_le_bytes());
        bytes.extend_from_slice(&(self.token_bytes as u32).to_le_bytes());
        bytes.resize(HEADER_BYTES, 0);
        self.offsets
            .iter()
            .for_each(|o| bytes.extend_from_slice(&o.to_le_bytes()));
        self.labels
            .iter()
            .for_each(|l| bytes.extend_from_slice(&l.to_le_bytes()));
        bytes.extend_from_slice(&self.tokens);
        bytes
    }
}

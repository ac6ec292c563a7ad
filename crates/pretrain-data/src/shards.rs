//! Sharded on-disk datasets: what `pretrain data prepare` writes and pre-training reads,
//! memory-mapped, so a data set may be far larger than memory.
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
//! shard keeps the reader a few lines over `memmap2`.

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

/// One verified, memory-mapped shard file.
struct MappedShard {
    map: Mmap,
    /// Index of its first item among all shards.
    first_item: usize,
    items: usize,
}

/// Opens the shards of `manifest`, each checked against its entry; `check` then validates the
/// mapped bytes (header, layout) of each.
fn map_shards(
    dir: &Path,
    manifest: &Manifest,
    mut check: impl FnMut(&Path, &ShardEntry, &[u8]) -> Result<()>,
) -> Result<Vec<MappedShard>> {
    if !manifest.complete {
        return Err(DataError::Shard {
            path: dir.join(MANIFEST_FILE),
            message: "preparation was interrupted; run `pretrain data prepare` again to finish it"
                .into(),
        });
    }
    let mut shards = Vec::with_capacity(manifest.shards.len());
    let mut first_item = 0;
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
        let file = std::fs::File::open(&path).map_err(|e| DataError::io(&path, e))?;
        // SAFETY: the map is read-only and the file was just verified. Should another process
        // truncate it while mapped, reads would fault (SIGBUS); shard folders are written once
        // by `prepare` and never modified in place, which the documentation states.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(&path, e))?;
        // Items are read in shuffled order: no read-ahead, and no mapping of neighbouring pages
        // on a fault (which would grow the resident set with pages no batch asked for).
        #[cfg(unix)]
        map.advise(memmap2::Advice::Random)
            .map_err(|e| DataError::io(&path, e))?;
        if map.len() < HEADER_BYTES {
            return Err(bad(format!("{} bytes, shorter than its header", map.len())));
        }
        check(&path, entry, &map)?;
        shards.push(MappedShard {
            map,
            first_item,
            items: entry.items,
        });
        first_item += entry.items;
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

/// The shard holding item `index`, and the item's index inside it.
fn locate(shards: &[MappedShard], index: usize) -> Option<(&MappedShard, usize)> {
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

/// Image shards, memory-mapped: a `Dataset<ImageItem>` whose items are copied out of the
/// mapped files on access.
pub struct ImageShards {
    manifest: Manifest,
    shape: [usize; 3],
    shards: Vec<MappedShard>,
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
        let shards = map_shards(dir, &manifest, |path, entry, bytes| {
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
                let item = self.get(i).expect("index below len");
                (format!("shard item {i}"), Ok(item))
            })),
        })
    }
}

impl Dataset<ImageItem> for ImageShards {
    fn get(&self, index: usize) -> Option<ImageItem> {
        let (shard, i) = locate(&self.shards, index)?;
        let [c, h, w] = self.shape;
        let record = 4 + c * h * w;
        let start = HEADER_BYTES + i * record;
        let label = u32_at(&shard.map, start);
        Some(ImageItem {
            image: Image8 {
                channels: c,
                height: h,
                width: w,
                pixels: shard.map[start + 4..start + record].to_vec(),
            },
            label: (label != NO_LABEL).then_some(label as usize),
        })
    }

    fn len(&self) -> usize {
        self.manifest.items
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

/// Token shards, memory-mapped: a `Dataset<TokenDoc>` (one item per document) and the
/// tokenizer they were made with.
pub struct TokenShards {
    manifest: Manifest,
    token_bytes: usize,
    tokenizer: TextTokenizer,
    shards: Vec<MappedShard>,
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
        let shards = map_shards(dir, &manifest, |path, entry, bytes| {
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
        let (shard, d) = locate(&self.shards, index)?;
        let bytes: &[u8] = &shard.map;
        let tokens = (u64_at(bytes, 16)) as usize;
        let layout = TokenLayout::new(shard.items, tokens, self.token_bytes);
        let start = u64_at(bytes, layout.offsets + 8 * d) as usize;
        let end = u64_at(bytes, layout.offsets + 8 * (d + 1)) as usize;
        let label = u32_at(bytes, layout.labels + 4 * d);
        Some(TokenDoc {
            ids: (start..end)
                .map(|t| token_at(bytes, layout.tokens, self.token_bytes, t))
                .collect(),
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
    offsets: Vec<u64>,
    labels: Vec<u32>,
    tokens: Vec<u8>,
}

impl TokenShardBuffer {
    pub(crate) fn new(token_bytes: usize) -> Self {
        Self {
            token_bytes,
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

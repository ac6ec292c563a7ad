//! A user's own data, named by kind and path (a recipe's `[data] source = { kind = ... }`):
//! image folders, IDX and CIFAR files, CSV tables of pixels or texts, text files, JSON-lines
//! files, and prepared shard folders ([`crate::shards`]).
//!
//! Small sources are read whole ([`DataSource::read_images`], [`DataSource::read_texts`]);
//! [`DataSource::image_stream`] and [`DataSource::text_stream`] decode one item at a time, so
//! that `pretrain data prepare` turns a source of any size into shards in bounded memory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::item::{Image8, ImageItem, TextItem};
use crate::readers::table::{Column, Table, TableOptions};
use crate::readers::text::split_units;
use crate::readers::{
    CifarLabels, ColorMode, FolderListing, ImageFolderOptions, TextUnit, read_cifar_batch,
    read_csv_features, read_idx, read_idx_unlabeled, read_image,
};
use crate::shards::{ImageShards, Manifest, ShardKind};
use crate::source::{TextEncoding, files_with_extension, read_text};

/// Whether a source holds images or texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Modality {
    /// Images (`ImageItem`).
    Images,
    /// Texts (`TextItem`), or tokens in token shards.
    Texts,
}

/// Whether an image folder's sub-folders are its classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FolderLabels {
    /// `root/<class>/**/<image>`: each first-level sub-folder is a class.
    Subfolders,
    /// Every image under `root`, recursively, without labels.
    #[default]
    None,
}

/// Where the items of a data set come from (a recipe's `data.source`, `evaluate.train`,
/// `evaluate.test`). Relative paths are relative to the recipe file ([`Self::resolve_paths`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DataSource {
    /// A folder of PNG/JPEG images.
    ImageFolder {
        /// The folder.
        path: PathBuf,
        /// `subfolders` (one class per sub-folder) or `none` (default).
        #[serde(default)]
        labels: FolderLabels,
        /// `gray` (default) or `rgb`.
        #[serde(default)]
        color: ColorMode,
        /// `[width, height]` every image must have (default: the first image's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<[usize; 2]>,
        /// Resize images of another size to `size` instead of refusing them.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resize: bool,
    },
    /// An IDX image file (MNIST family), with its label file when labeled.
    Idx {
        /// `[n, height, width]` bytes.
        images: PathBuf,
        /// `[n]` class bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        labels: Option<PathBuf>,
    },
    /// CIFAR binary batches (32x32 RGB).
    Cifar {
        /// Batch files, read in this order.
        files: Vec<PathBuf>,
        /// `cifar10` (default), `cifar100-coarse` or `cifar100-fine`.
        #[serde(default)]
        labels: CifarLabels,
    },
    /// A CSV table: texts (`text_column`) or images, one row of pixel values each.
    Csv {
        /// The table (with a header row).
        path: PathBuf,
        /// Column of the class (texts: any values, images: integers; classes are its distinct
        /// values, sorted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label_column: Option<String>,
        /// Column of the text; without it, every other column is a pixel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text_column: Option<String>,
        /// Images: `[channels, height, width]` (default: one channel, square).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shape: Option<[usize; 3]>,
        /// Images: the value of a white pixel (default 255).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_value: Option<f32>,
        /// `utf8` (default), `utf8-lossy` or `latin1` (`utf-8`, `utf-8-lossy` also read).
        #[serde(default)]
        encoding: TextEncoding,
    },
    /// Plain-text files, unlabeled: folders (every `.txt` under them), files or glob patterns.
    Text {
        /// Folders, files or patterns (`corpus/*.txt`), read in this order, each sorted.
        paths: Vec<String>,
        /// `line`, `paragraph` (default) or `file`: what one document is.
        #[serde(default)]
        unit: TextUnit,
        /// `utf8` (default), `utf8-lossy` or `latin1` (`utf-8`, `utf-8-lossy` also read).
        #[serde(default)]
        encoding: TextEncoding,
    },
    /// A JSON-lines file: one object per line.
    Jsonl {
        /// The file.
        path: PathBuf,
        /// Field holding the text.
        text_field: String,
        /// Field holding the class (string or number), when labeled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label_field: Option<String>,
    },
    /// A folder written by `pretrain data prepare` (read in place, never whole).
    Shards {
        /// The folder (holds `manifest.json`).
        path: PathBuf,
    },
}

/// Items read whole from a source, with the class names their labels index.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceItems<I> {
    /// The items, in the source's order.
    pub items: Vec<I>,
    /// Class names (empty when unlabeled).
    pub classes: Vec<String>,
}

/// Items decoded one at a time, each with the file (or file and record) it came from.
pub struct ItemStream<I> {
    /// Number of items, when known before reading them (images).
    pub len: Option<usize>,
    /// Class names (empty when unlabeled).
    pub classes: Vec<String>,
    /// `(where, item)` pairs.
    pub items: Box<dyn Iterator<Item = (String, Result<I>)> + Send>,
}

impl DataSource {
    /// Makes every relative path absolute against `base` (the recipe file's folder), so a
    /// recipe saved into a run directory still finds its data.
    pub fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        match self {
            Self::ImageFolder { path, .. }
            | Self::Csv { path, .. }
            | Self::Jsonl { path, .. }
            | Self::Shards { path } => join(path),
            Self::Idx { images, labels } => {
                join(images);
                labels.iter_mut().for_each(join);
            }
            Self::Cifar { files, .. } => files.iter_mut().for_each(join),
            Self::Text { paths, .. } => {
                for p in paths.iter_mut() {
                    if Path::new(p).is_relative() {
                        *p = base.join(&*p).to_string_lossy().into_owned();
                    }
                }
            }
        }
    }

    /// The kind's name, as written in recipes.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ImageFolder { .. } => "image-folder",
            Self::Idx { .. } => "idx",
            Self::Cifar { .. } => "cifar",
            Self::Csv { .. } => "csv",
            Self::Text { .. } => "text",
            Self::Jsonl { .. } => "jsonl",
            Self::Shards { .. } => "shards",
        }
    }

    /// Images or texts (shards: read from their manifest).
    pub fn modality(&self) -> Result<Modality> {
        Ok(match self {
            Self::ImageFolder { .. } | Self::Idx { .. } | Self::Cifar { .. } => Modality::Images,
            Self::Csv { text_column, .. } => match text_column {
                Some(_) => Modality::Texts,
                None => Modality::Images,
            },
            Self::Text { .. } | Self::Jsonl { .. } => Modality::Texts,
            Self::Shards { path } => match Manifest::read(path)?.kind {
                ShardKind::Images { .. } => Modality::Images,
                ShardKind::Tokens { .. } => Modality::Texts,
            },
        })
    }

    /// Whether the source carries labels (shards: whether they were prepared with them).
    pub fn is_labeled(&self) -> Result<bool> {
        Ok(match self {
            Self::ImageFolder { labels, .. } => *labels == FolderLabels::Subfolders,
            Self::Idx { labels, .. } => labels.is_some(),
            Self::Cifar { .. } => true,
            Self::Csv { label_column, .. } => label_column.is_some(),
            Self::Text { .. } => false,
            Self::Jsonl { label_field, .. } => label_field.is_some(),
            Self::Shards { path } => !Manifest::read(path)?.classes.is_empty(),
        })
    }

    /// Every image of the source, read whole (shards: copied out of their files).
    pub fn read_images(&self) -> Result<SourceItems<ImageItem>> {
        let stream = self.image_stream(0)?;
        let classes = stream.classes;
        let items = stream
            .items
            .map(|(_, item)| item)
            .collect::<Result<Vec<_>>>()?;
        Ok(SourceItems { items, classes })
    }

    /// The source's images from the `start`-th on, decoded one at a time (image folders and
    /// shards; IDX, CIFAR and CSV files are read whole first, as their formats are).
    pub fn image_stream(&self, start: usize) -> Result<ItemStream<ImageItem>> {
        let whole = |items: Vec<ImageItem>, classes: Vec<String>, name: String| {
            let len = items.len();
            ItemStream {
                len: Some(len),
                classes,
                items: Box::new(
                    items
                        .into_iter()
                        .enumerate()
                        .skip(start)
                        .map(move |(i, item)| (format!("{name} item {i}"), Ok(item))),
                ),
            }
        };
        match self {
            Self::ImageFolder {
                path,
                labels,
                color,
                size,
                resize,
            } => {
                let listing = match labels {
                    FolderLabels::Subfolders => FolderListing::labeled(path)?,
                    FolderLabels::None => FolderListing::unlabeled(path)?,
                };
                if *resize && size.is_none() {
                    return Err(DataError::config(
                        "source.resize",
                        "needs source.size = [width, height] to resize to",
                    ));
                }
                let options = ImageFolderOptions {
                    color: *color,
                    size: size.map(|[w, h]| (w, h)),
                    resize: *resize,
                };
                // Every image must have the first one's size (or the given one).
                let mut fixed = options.size;
                let entries: Vec<_> = listing
                    .paths
                    .into_iter()
                    .zip(listing.labels)
                    .skip(start)
                    .collect();
                Ok(ItemStream {
                    len: Some(start + entries.len()),
                    classes: listing.classes,
                    items: Box::new(entries.into_iter().map(move |(path, label)| {
                        let item = read_image(&path, &options, &mut fixed)
                            .map(|image| ImageItem { image, label });
                        (path.display().to_string(), item)
                    })),
                })
            }
            Self::Idx { images, labels } => {
                let mut items = read_idx_unlabeled(images)?;
                let classes = match labels {
                    Some(path) => {
                        let labels = read_idx(path, 1)?;
                        if labels.dims[0] != items.len() {
                            return Err(DataError::CountMismatch {
                                path: path.clone(),
                                what: format!("labels for the images of {}", images.display()),
                                expected: items.len(),
                                found: labels.dims[0],
                            });
                        }
                        let raw = labels.data.iter().map(|l| l.to_string()).collect();
                        assign_classes(&mut items, raw)
                    }
                    None => Vec::new(),
                };
                Ok(whole(items, classes, images.display().to_string()))
            }
            Self::Cifar { files, labels } => {
                if files.is_empty() {
                    return Err(DataError::config("source.files", "lists no CIFAR batch"));
                }
                let mut items = Vec::new();
                for file in files {
                    items.extend(read_cifar_batch(file, *labels)?);
                }
                let classes = (0..labels.num_classes()).map(|c| c.to_string()).collect();
                Ok(whole(items, classes, format!("{}", files[0].display())))
            }
            Self::Csv {
                path,
                label_column,
                text_column: None,
                shape,
                max_value,
                encoding,
            } => {
                let (items, classes) =
                    csv_images(path, label_column.as_deref(), *shape, *max_value, *encoding)?;
                Ok(whole(items, classes, path.display().to_string()))
            }
            Self::Shards { path } => ImageShards::open(path)?.image_stream(start),
            Self::Csv { .. } | Self::Text { .. } | Self::Jsonl { .. } => Err(DataError::config(
                "source.kind",
                format!("{} with texts, where images are needed", self.kind()),
            )),
        }
    }

    /// Every text of the source, read whole.
    pub fn read_texts(&self) -> Result<SourceItems<TextItem>> {
        let stream = self.text_stream()?;
        let classes = stream.classes;
        let items = stream
            .items
            .map(|(_, item)| item)
            .collect::<Result<Vec<_>>>()?;
        if items.is_empty() {
            return Err(DataError::Empty {
                path: self.first_path(),
                what: "text source",
            });
        }
        Ok(SourceItems { items, classes })
    }

    /// The source's texts, file by file (labeled tables are read whole: their classes are the
    /// distinct labels of all rows).
    pub fn text_stream(&self) -> Result<ItemStream<TextItem>> {
        let whole = |items: Vec<TextItem>, classes: Vec<String>, name: String| ItemStream {
            len: Some(items.len()),
            classes,
            items: Box::new(
                items
                    .into_iter()
                    .enumerate()
                    .map(move |(i, item)| (format!("{name} line {}", i + 1), Ok(item))),
            ),
        };
        match self {
            Self::Text {
                paths,
                unit,
                encoding,
            } => {
                let files = text_files(paths)?;
                let (unit, encoding) = (*unit, *encoding);
                let items = files.into_iter().flat_map(move |file| {
                    let name = file.display().to_string();
                    let docs = read_text(&file, encoding).map(|text| {
                        let mut docs = Vec::new();
                        split_units(&text, unit, &mut docs);
                        docs
                    });
                    let items: Vec<(String, Result<TextItem>)> = match docs {
                        Ok(docs) => docs
                            .into_iter()
                            .map(|text| (name.clone(), Ok(TextItem { text, label: None })))
                            .collect(),
                        Err(e) => vec![(name, Err(e))],
                    };
                    items
                });
                Ok(ItemStream {
                    len: None,
                    classes: Vec::new(),
                    items: Box::new(items),
                })
            }
            Self::Csv {
                path,
                label_column,
                text_column: Some(text),
                encoding,
                ..
            } => {
                let (items, classes) = csv_texts(path, label_column.as_deref(), text, *encoding)?;
                Ok(whole(items, classes, path.display().to_string()))
            }
            Self::Jsonl {
                path,
                text_field,
                label_field,
            } => {
                let (items, classes) = jsonl_texts(path, text_field, label_field.as_deref())?;
                Ok(whole(items, classes, path.display().to_string()))
            }
            Self::Shards { path } => Err(DataError::config(
                "source.kind",
                format!(
                    "{} holds tokens, not texts: give the texts it was prepared from",
                    path.display()
                ),
            )),
            _ => Err(DataError::config(
                "source.kind",
                format!("{} holds images, where texts are needed", self.kind()),
            )),
        }
    }

    /// The first path the source names (for messages).
    pub fn first_path(&self) -> PathBuf {
        match self {
            Self::ImageFolder { path, .. }
            | Self::Csv { path, .. }
            | Self::Jsonl { path, .. }
            | Self::Shards { path } => path.clone(),
            Self::Idx { images, .. } => images.clone(),
            Self::Cifar { files, .. } => files.first().cloned().unwrap_or_default(),
            Self::Text { paths, .. } => paths.first().map(PathBuf::from).unwrap_or_default(),
        }
    }
}

/// Labels items by `raw` class values: classes are the distinct values, sorted (numerically
/// when every value is an integer), so every run maps them alike.
fn assign_classes<I: SetLabel>(items: &mut [I], raw: Vec<String>) -> Vec<String> {
    let mut classes = raw.clone();
    classes.sort_by(|a, b| match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    });
    classes.dedup();
    for (item, value) in items.iter_mut().zip(&raw) {
        item.set_label(classes.iter().position(|c| c == value));
    }
    classes
}

trait SetLabel {
    fn set_label(&mut self, label: Option<usize>);
}

impl SetLabel for ImageItem {
    fn set_label(&mut self, label: Option<usize>) {
        self.label = label;
    }
}

impl SetLabel for TextItem {
    fn set_label(&mut self, label: Option<usize>) {
        self.label = label;
    }
}

/// The files of a text source's `paths`: a folder gives its `.txt` files (recursively), a
/// pattern its matches, a file itself; each entry must yield at least one file.
fn text_files(paths: &[String]) -> Result<Vec<PathBuf>> {
    if paths.is_empty() {
        return Err(DataError::config("source.paths", "lists no file or folder"));
    }
    let mut files = Vec::new();
    for entry in paths {
        let path = Path::new(entry);
        let found = if path.is_dir() {
            files_with_extension(path, &["txt"])?
        } else if entry.contains(['*', '?', '[']) {
            let matches = glob::glob(entry)
                .map_err(|e| DataError::config("source.paths", format!("{entry:?}: {e}")))?;
            let mut found: Vec<PathBuf> = matches
                .filter_map(|m| m.ok())
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            found
        } else if path.is_file() {
            vec![path.to_path_buf()]
        } else {
            return Err(DataError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            ));
        };
        if found.is_empty() {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
                what: "text source entry (no .txt file)",
            });
        }
        files.extend(found);
    }
    Ok(files)
}

fn table_options(encoding: TextEncoding) -> TableOptions {
    TableOptions {
        encoding,
        ..TableOptions::default()
    }
}

/// Images from a CSV table of pixel values (a row per image, every non-label column a pixel).
fn csv_images(
    path: &Path,
    label_column: Option<&str>,
    shape: Option<[usize; 3]>,
    max_value: Option<f32>,
    encoding: TextEncoding,
) -> Result<(Vec<ImageItem>, Vec<String>)> {
    let label = label_column.map(|c| Column::Name(c.to_string()));
    let rows = read_csv_features(path, &table_options(encoding), label.as_ref(), usize::MAX)?;
    let width = rows.first().map_or(0, |r| r.features.len());
    let shape = match shape {
        Some(shape) => shape,
        None => {
            let side = (width as f64).sqrt().round() as usize;
            if side * side != width || width == 0 {
                return Err(DataError::config(
                    "source.shape",
                    format!(
                        "{}: {width} pixel columns are not a square image; give \
                         shape = [channels, height, width]",
                        path.display()
                    ),
                ));
            }
            [1, side, side]
        }
    };
    if shape.iter().product::<usize>() != width {
        return Err(DataError::config(
            "source.shape",
            format!(
                "{}: {shape:?} needs {} pixel columns, the table has {width}",
                path.display(),
                shape.iter().product::<usize>()
            ),
        ));
    }
    let max_value = max_value.unwrap_or(255.0);
    if !(max_value.is_finite() && max_value > 0.0) {
        return Err(DataError::config(
            "source.max_value",
            format!("{max_value} is not a positive number"),
        ));
    }
    let mut raw_labels = Vec::new();
    let mut items = Vec::with_capacity(rows.len());
    for (row, features) in rows.into_iter().enumerate() {
        let pixels = features
            .features
            .iter()
            .map(|&v| {
                if (0.0..=max_value).contains(&v) {
                    Ok((v / max_value * 255.0).round() as u8)
                } else {
                    Err(DataError::BadField {
                        path: path.to_path_buf(),
                        line: row + 2,
                        column: "pixel".into(),
                        message: format!("{v} is outside [0, {max_value}]"),
                    })
                }
            })
            .collect::<Result<Vec<u8>>>()?;
        raw_labels.extend(features.label.map(|l| l.to_string()));
        items.push(ImageItem {
            image: Image8::new(shape[0], shape[1], shape[2], pixels)?,
            label: None,
        });
    }
    let classes = match label_column {
        Some(_) => assign_classes(&mut items, raw_labels),
        None => Vec::new(),
    };
    Ok((items, classes))
}

/// Texts (and classes) from a CSV table.
fn csv_texts(
    path: &Path,
    label_column: Option<&str>,
    text_column: &str,
    encoding: TextEncoding,
) -> Result<(Vec<TextItem>, Vec<String>)> {
    let table = Table::read(path, &table_options(encoding))?;
    let text = table.column_index(&Column::Name(text_column.into()), path)?;
    let label = label_column
        .map(|c| table.column_index(&Column::Name(c.into()), path))
        .transpose()?;
    let mut items = Vec::with_capacity(table.rows.len());
    let mut raw = Vec::new();
    for (line, row) in &table.rows {
        let field = |i: usize| {
            row.get(i).ok_or_else(|| DataError::CountMismatch {
                path: path.to_path_buf(),
                what: format!("fields on line {line}"),
                expected: i + 1,
                found: row.len(),
            })
        };
        items.push(TextItem {
            text: field(text)?.trim().to_string(),
            label: None,
        });
        if let Some(label) = label {
            raw.push(field(label)?.trim().to_string());
        }
    }
    let classes = match label {
        Some(_) => assign_classes(&mut items, raw),
        None => Vec::new(),
    };
    Ok((items, classes))
}

/// Texts (and classes) from a JSON-lines file; blank lines are skipped.
fn jsonl_texts(
    path: &Path,
    text_field: &str,
    label_field: Option<&str>,
) -> Result<(Vec<TextItem>, Vec<String>)> {
    let content = read_text(path, TextEncoding::Utf8)?;
    let mut items = Vec::new();
    let mut raw = Vec::new();
    for (i, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |column: &str, message: String| DataError::BadField {
            path: path.to_path_buf(),
            line: i + 1,
            column: column.to_string(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad("(line)", format!("not JSON: {e}")))?;
        let text = match value.get(text_field) {
            Some(serde_json::Value::String(text)) => text.clone(),
            Some(other) => return Err(bad(text_field, format!("{other} is not a string"))),
            None => return Err(bad(text_field, "missing".into())),
        };
        items.push(TextItem { text, label: None });
        if let Some(field) = label_field {
            raw.push(match value.get(field) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                    v.to_string()
                }
                Some(other) => return Err(bad(field, format!("{other} is not a class"))),
                None => return Err(bad(field, "missing".into())),
            });
        }
    }
    let classes = match label_field {
        Some(_) => assign_classes(&mut items, raw),
        None => Vec::new(),
    };
    Ok((items, classes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    fn parse(text: &str) -> std::result::Result<DataSource, String> {
        #[derive(Deserialize)]
        struct Wrapper {
            source: DataSource,
        }
        toml::from_str::<Wrapper>(text)
            .map(|w| w.source)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_kind_parses_from_toml_and_unknown_fields_are_refused() {
        let kinds = [
            r#"source = { kind = "image-folder", path = "p", labels = "subfolders", color = "rgb", size = [32, 32], resize = true }"#,
            r#"source = { kind = "idx", images = "i", labels = "l" }"#,
            r#"source = { kind = "cifar", files = ["a.bin"], labels = "cifar100-fine" }"#,
            r#"source = { kind = "csv", path = "t.csv", label_column = "y", text_column = "x" }"#,
            r#"source = { kind = "text", paths = ["dir/", "*.txt"], unit = "line" }"#,
            r#"source = { kind = "jsonl", path = "d.jsonl", text_field = "t", label_field = "l" }"#,
            r#"source = { kind = "shards", path = "s" }"#,
        ];
        for text in kinds {
            let source = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(text.contains(&format!("\"{}\"", source.kind())));
            // A source survives a round trip through TOML (run directories save recipes).
            #[derive(Serialize)]
            struct Wrapper<'a> {
                source: &'a DataSource,
            }
            let saved = toml::to_string(&Wrapper { source: &source }).unwrap();
            assert_eq!(parse(&saved).unwrap(), source);
        }
        let err = parse(r#"source = { kind = "idx", images = "i", lables = "l" }"#).unwrap_err();
        assert!(err.contains("lables"), "{err}");
        let err = parse(r#"source = { kind = "parquet", path = "p" }"#).unwrap_err();
        assert!(err.contains("parquet"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_the_recipe_folder() {
        let mut source =
            parse(r#"source = { kind = "text", paths = ["a/", "/abs/b.txt"] }"#).unwrap();
        source.resolve_paths(Path::new("/recipes"));
        let DataSource::Text { paths, .. } = &source else {
            unreachable!()
        };
        assert_eq!(paths, &["/recipes/a/", "/abs/b.txt"]);
        let mut idx = parse(r#"source = { kind = "idx", images = "i", labels = "l" }"#).unwrap();
        idx.resolve_paths(Path::new("/r"));
        assert_eq!(idx.first_path(), Path::new("/r/i"));
    }

    #[test]
    fn image_sources_read_the_shipped_samples() {
        let folder = DataSource::ImageFolder {
            path: testdata::image_folder(),
            labels: FolderLabels::Subfolders,
            color: ColorMode::Gray,
            size: None,
            resize: false,
        };
        assert_eq!(folder.modality().unwrap(), Modality::Images);
        let read = folder.read_images().unwrap();
        assert_eq!(read.items.len(), 20);
        assert_eq!(read.classes.len(), 10);
        // The stream from an offset decodes only the rest, in the same order.
        let rest: Vec<ImageItem> = folder
            .image_stream(15)
            .unwrap()
            .items
            .map(|(_, item)| item.unwrap())
            .collect();
        assert_eq!(rest, read.items[15..]);

        let paths = testdata::fashion_sample_paths();
        let idx = DataSource::Idx {
            images: paths.images.clone(),
            labels: Some(paths.labels.clone()),
        };
        let read = idx.read_images().unwrap();
        assert_eq!(read.items, testdata::fashion_sample());
        assert_eq!(
            read.classes,
            (0..10).map(|c| c.to_string()).collect::<Vec<_>>()
        );
        let unlabeled = DataSource::Idx {
            images: paths.images,
            labels: None,
        };
        assert!(!unlabeled.is_labeled().unwrap());
        assert!(
            unlabeled
                .read_images()
                .unwrap()
                .items
                .iter()
                .all(|i| i.label.is_none())
        );
    }

    #[test]
    fn csv_pixels_become_images_with_sorted_classes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pixels.csv");
        std::fs::write(&path, "label,a,b,c,d\n10,0,255,0,255\n2,255,0,0,0\n").unwrap();
        let source = DataSource::Csv {
            path: path.clone(),
            label_column: Some("label".into()),
            text_column: None,
            shape: None,
            max_value: None,
            encoding: TextEncoding::Utf8,
        };
        let read = source.read_images().unwrap();
        // Integer classes sort numerically: 2 before 10.
        assert_eq!(read.classes, ["2", "10"]);
        assert_eq!(read.items[0].label, Some(1));
        assert_eq!(read.items[0].image.pixels, [0, 255, 0, 255]);
        assert_eq!(
            (read.items[0].image.height, read.items[0].image.width),
            (2, 2)
        );
        std::fs::write(&path, "label,a,b,c\n1,0,0,0\n").unwrap();
        let err = source.read_images().unwrap_err().to_string();
        assert!(
            err.contains("not a square") && err.contains("pixels.csv"),
            "{err}"
        );
        std::fs::write(&path, "label,a,b,c,d\n1,0,0,0,300\n").unwrap();
        let err = source.read_images().unwrap_err().to_string();
        assert!(err.contains("300 is outside"), "{err}");
    }

    #[test]
    fn text_sources_read_folders_patterns_tables_and_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "one\ntwo\n\nthree").unwrap();
        std::fs::write(dir.path().join("b.txt"), "four").unwrap();
        std::fs::write(dir.path().join("c.md"), "not text").unwrap();
        let pattern = dir.path().join("*.txt").display().to_string();
        let source = DataSource::Text {
            paths: vec![pattern],
            unit: TextUnit::Paragraph,
            encoding: TextEncoding::Utf8,
        };
        let texts: Vec<String> = source
            .read_texts()
            .unwrap()
            .items
            .into_iter()
            .map(|i| i.text)
            .collect();
        assert_eq!(texts, ["one two", "three", "four"]);

        let jsonl = dir.path().join("d.jsonl");
        std::fs::write(
            &jsonl,
            "{\"t\": \"good\", \"y\": \"pos\"}\n\n{\"t\": \"bad\", \"y\": \"neg\"}\n",
        )
        .unwrap();
        let source = DataSource::Jsonl {
            path: jsonl.clone(),
            text_field: "t".into(),
            label_field: Some("y".into()),
        };
        let read = source.read_texts().unwrap();
        assert_eq!(read.classes, ["neg", "pos"]);
        assert_eq!(read.items[0].label, Some(1));
        std::fs::write(&jsonl, "{\"t\": 3}\n").unwrap();
        let err = source.read_texts().unwrap_err().to_string();
        assert!(
            err.contains("d.jsonl") && err.contains("line 1") && err.contains("\"t\""),
            "{err}"
        );

        let csv = dir.path().join("t.csv");
        std::fs::write(&csv, "y,x\nham,hello there\nspam,buy now\n").unwrap();
        let source = DataSource::Csv {
            path: csv,
            label_column: Some("y".into()),
            text_column: Some("x".into()),
            shape: None,
            max_value: None,
            encoding: TextEncoding::Utf8,
        };
        assert_eq!(source.modality().unwrap(), Modality::Texts);
        assert_eq!(source.read_texts().unwrap().items[1].text, "buy now");
    }

    #[test]
    fn missing_empty_and_undecodable_text_sources_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = DataSource::Text {
            paths: vec![dir.path().join("nope").display().to_string()],
            unit: TextUnit::Line,
            encoding: TextEncoding::Utf8,
        };
        let err = missing.read_texts().unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
        let empty = DataSource::Text {
            paths: vec![dir.path().display().to_string()],
            unit: TextUnit::Line,
            encoding: TextEncoding::Utf8,
        };
        assert!(matches!(empty.read_texts(), Err(DataError::Empty { .. })));
        std::fs::write(dir.path().join("bad.txt"), b"ok\n\xff\xfe\n").unwrap();
        let err = empty.read_texts().unwrap_err().to_string();
        assert!(err.contains("bad.txt") && err.contains("UTF-8"), "{err}");
        let images = DataSource::ImageFolder {
            path: dir.path().join("none"),
            labels: FolderLabels::None,
            color: ColorMode::Gray,
            size: None,
            resize: false,
        };
        assert!(
            images
                .read_images()
                .unwrap_err()
                .to_string()
                .contains("none")
        );
    }
}

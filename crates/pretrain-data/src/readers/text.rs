//! Plain-text corpora (unlabeled) and labeled text (tables or one folder per class).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::item::TextItem;
use crate::readers::table::{Column, Table, TableOptions};
use crate::source::{TextEncoding, files_with_extension, read_text, sorted_entries};

/// How a corpus is cut into training documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextUnit {
    /// Each non-empty line is one document.
    Line,
    /// Blank-line separated paragraphs (lines joined by a space).
    #[default]
    Paragraph,
    /// Each file is one document.
    File,
}

/// Reads an unlabeled corpus: one text file or a folder of `.txt` files (recursively, sorted),
/// cut into documents by `unit`. Whitespace-only documents are dropped.
pub fn read_text_corpus(
    path: &Path,
    unit: TextUnit,
    encoding: TextEncoding,
) -> Result<Vec<String>> {
    let files = if path.is_dir() {
        files_with_extension(path, &["txt"])?
    } else {
        vec![path.to_path_buf()]
    };
    let mut documents = Vec::new();
    for file in &files {
        split_units(&read_text(file, encoding)?, unit, &mut documents);
    }
    if documents.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            what: "text corpus",
        });
    }
    Ok(documents)
}

pub(crate) fn split_units(text: &str, unit: TextUnit, out: &mut Vec<String>) {
    match unit {
        TextUnit::Line => out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        ),
        TextUnit::Paragraph => {
            let mut current: Vec<&str> = Vec::new();
            for line in text.lines().map(str::trim).chain(std::iter::once("")) {
                if line.is_empty() {
                    if !current.is_empty() {
                        out.push(current.join(" "));
                        current.clear();
                    }
                } else {
                    current.push(line);
                }
            }
        }
        TextUnit::File => {
            let trimmed = text.trim();
            if !trimmed.is_empty() {
                out.push(trimmed.to_string());
            }
        }
    }
}

/// Labeled texts with the class names their labels index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledTexts {
    /// The texts.
    pub items: Vec<TextItem>,
    /// Class names; `items[i].label` indexes this list.
    pub classes: Vec<String>,
}

/// Reads a CSV/TSV table of labeled texts. Class names are the distinct values of the label
/// column, sorted, so the mapping is the same on every run.
pub fn read_labeled_text_table(
    path: &Path,
    options: &TableOptions,
    label: &Column,
    text: &Column,
) -> Result<LabeledTexts> {
    let table = Table::read(path, options)?;
    let label_index = table.column_index(label, path)?;
    let text_index = table.column_index(text, path)?;
    let needed = label_index.max(text_index) + 1;
    let mut raw = Vec::with_capacity(table.rows.len());
    for (line, row) in &table.rows {
        if row.len() < needed {
            return Err(DataError::CountMismatch {
                path: path.to_path_buf(),
                what: format!("fields on line {line}"),
                expected: needed,
                found: row.len(),
            });
        }
        let class = row[label_index].trim();
        if class.is_empty() {
            return Err(DataError::BadField {
                path: path.to_path_buf(),
                line: *line,
                column: format!("{label:?}"),
                message: "empty label".into(),
            });
        }
        raw.push((class.to_string(), row[text_index].trim().to_string()));
    }
    let mut classes: Vec<String> = raw.iter().map(|(c, _)| c.clone()).collect();
    classes.sort();
    classes.dedup();
    let items = raw
        .into_iter()
        .map(|(class, text)| TextItem {
            label: classes.binary_search(&class).ok(),
            text,
        })
        .collect();
    Ok(LabeledTexts { items, classes })
}

/// Reads `root/<class>/**/<file>`: every file is one text of the folder's class (any extension,
/// e.g. raw e-mails). Class indices follow the sorted folder names.
pub fn read_labeled_text_folders(root: &Path, encoding: TextEncoding) -> Result<LabeledTexts> {
    let mut out = LabeledTexts {
        items: Vec::new(),
        classes: Vec::new(),
    };
    for class_dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
        let label = out.classes.len();
        out.classes.push(
            class_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        for file in all_files(&class_dir)? {
            let text = read_text(&file, encoding)?;
            out.items.push(TextItem {
                text: text.trim().to_string(),
                label: Some(label),
            });
        }
    }
    if out.items.is_empty() {
        return Err(DataError::Empty {
            path: root.to_path_buf(),
            what: "labeled text folder (expected <root>/<class>/<file>)",
        });
    }
    Ok(out)
}

fn all_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in sorted_entries(dir)? {
        if entry.is_dir() {
            files.extend(all_files(&entry)?);
        } else {
            files.push(entry);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn reads_shipped_corpus_folder() {
        let docs = read_text_corpus(
            &testdata::moby_dick(),
            TextUnit::Paragraph,
            TextEncoding::Utf8,
        )
        .unwrap();
        assert!(docs.len() > 100, "{}", docs.len());
        // Files are sorted by name: chapter_1.txt comes first.
        assert_eq!(docs[0], "CHAPTER 1. Loomings.");
        assert!(docs[1].starts_with("Call me Ishmael."));
        let files =
            read_text_corpus(&testdata::moby_dick(), TextUnit::File, TextEncoding::Utf8).unwrap();
        assert_eq!(files.len(), 8);
        let lines = read_text_corpus(
            &testdata::moby_dick().join("chapter_1.txt"),
            TextUnit::Line,
            TextEncoding::Utf8,
        )
        .unwrap();
        assert_eq!(lines[0], "CHAPTER 1. Loomings.");
    }

    #[test]
    fn bad_utf8_and_empty_corpus() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.txt");
        std::fs::write(&path, b"fine text\nthen \xff\xfe bytes").unwrap();
        let err = read_text_corpus(&path, TextUnit::Line, TextEncoding::Utf8).unwrap_err();
        assert!(
            matches!(err, DataError::BadUtf8 { offset: 15, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("bad.txt"));
        let lossy = read_text_corpus(&path, TextUnit::Line, TextEncoding::Utf8Lossy).unwrap();
        assert_eq!(lossy.len(), 2);
        std::fs::write(&path, "  \n\n \t\n").unwrap();
        let err = read_text_corpus(&path, TextUnit::Paragraph, TextEncoding::Utf8).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err}");
    }

    #[test]
    fn reads_shipped_spam_folders() {
        let texts =
            read_labeled_text_folders(&testdata::spam_sample(), TextEncoding::Utf8Lossy).unwrap();
        assert_eq!(texts.classes, vec!["ham", "spam"]);
        assert_eq!(texts.items.len(), 40);
        assert_eq!(
            texts.items.iter().filter(|t| t.label == Some(1)).count(),
            20
        );
        assert!(texts.items.iter().all(|t| t.text.contains("Subject")));
        // One spam message is Latin-1: strict UTF-8 refuses it and names the file.
        let err = read_labeled_text_folders(&testdata::spam_sample(), TextEncoding::Utf8);
        assert!(matches!(err, Err(DataError::BadUtf8 { .. })));
    }

    #[test]
    fn reads_labeled_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tsv");
        std::fs::write(
            &path,
            "sentiment\ttext\npositive\tgreat day\nnegative\tawful\npositive\tnice \n",
        )
        .unwrap();
        let opts = TableOptions {
            delimiter: b'\t',
            ..Default::default()
        };
        let texts = read_labeled_text_table(
            &path,
            &opts,
            &Column::Name("sentiment".into()),
            &Column::Name("text".into()),
        )
        .unwrap();
        assert_eq!(texts.classes, vec!["negative", "positive"]);
        assert_eq!(
            texts.items[2],
            TextItem {
                text: "nice".into(),
                label: Some(1)
            }
        );
        let err = read_labeled_text_table(
            &path,
            &opts,
            &Column::Name("label".into()),
            &Column::Index(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("sentiment, text"), "{err}");
        std::fs::write(&path, "sentiment\ttext\n\tempty label\n").unwrap();
        let err = read_labeled_text_table(&path, &opts, &Column::Index(0), &Column::Index(1))
            .unwrap_err();
        assert!(err.to_string().contains("empty label"), "{err}");
    }
}

//! Shared handling of delimited text tables (CSV/TSV): options and column lookup.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::source::{TextEncoding, read_text};

/// Names one column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Column {
    /// The last column.
    Last,
    /// The column at this 0-based position.
    Index(usize),
    /// The column with this header name (requires a header row).
    Name(String),
}

/// How a delimited table is parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableOptions {
    /// Field separator, `b','` for CSV, `b'\t'` for TSV.
    pub delimiter: u8,
    /// Whether the first row names the columns.
    pub has_header: bool,
    /// Text encoding of the file.
    pub encoding: TextEncoding,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            delimiter: b',',
            has_header: true,
            encoding: TextEncoding::Utf8,
        }
    }
}

/// A parsed table: header (if any) and rows of fields, each with its 1-based line number.
pub(crate) struct Table {
    pub header: Option<Vec<String>>,
    pub rows: Vec<(usize, Vec<String>)>,
}

impl Table {
    pub fn read(path: &Path, options: &TableOptions) -> Result<Self> {
        let text = read_text(path, options.encoding)?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(options.delimiter)
            .has_headers(options.has_header)
            .flexible(true)
            .from_reader(text.as_bytes());
        let bad = |line: usize, e: csv::Error| DataError::BadField {
            path: path.to_path_buf(),
            line,
            column: "-".into(),
            message: e.to_string(),
        };
        let header = if options.has_header {
            Some(
                reader
                    .headers()
                    .map_err(|e| bad(1, e))?
                    .iter()
                    .map(|h| h.trim().to_string())
                    .collect(),
            )
        } else {
            None
        };
        let mut rows = Vec::new();
        for record in reader.records() {
            let line = record
                .as_ref()
                .ok()
                .and_then(|r| r.position())
                .map_or(rows.len() + 1, |p| p.line() as usize);
            let record = record.map_err(|e| bad(line, e))?;
            if record.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            rows.push((line, record.iter().map(str::to_string).collect()));
        }
        if rows.is_empty() {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
                what: "table (no data row)",
            });
        }
        Ok(Self { header, rows })
    }

    /// Resolves `column` to a 0-based index, given the width of the first row.
    pub fn column_index(&self, column: &Column, path: &Path) -> Result<usize> {
        let width = self.rows[0].1.len();
        let index = match column {
            Column::Last => width.checked_sub(1),
            Column::Index(i) => Some(*i).filter(|i| *i < width),
            Column::Name(name) => {
                let header = self.header.as_ref().ok_or_else(|| DataError::BadField {
                    path: path.to_path_buf(),
                    line: 1,
                    column: name.clone(),
                    message: "a column named by header needs has_header = true".into(),
                })?;
                header.iter().position(|h| h == name)
            }
        };
        index.ok_or_else(|| DataError::BadField {
            path: path.to_path_buf(),
            line: 1,
            column: format!("{column:?}"),
            message: format!(
                "no such column (the table has {width} columns{})",
                self.header
                    .as_ref()
                    .map(|h| format!(": {}", h.join(", ")))
                    .unwrap_or_default()
            ),
        })
    }

    /// Checks every row has the width of the header (or, without one, of the first row).
    pub fn check_width(&self, path: &Path) -> Result<()> {
        // The header, when there is one, sets the width: a wider row has fields no column
        // names.
        let width = match &self.header {
            Some(header) => header.len(),
            None => self.rows.first().map_or(0, |(_, row)| row.len()),
        };
        match self.rows.iter().find(|(_, r)| r.len() != width) {
            Some((line, row)) => Err(DataError::CountMismatch {
                path: path.to_path_buf(),
                what: format!("fields on line {line}"),
                expected: width,
                found: row.len(),
            }),
            None => Ok(()),
        }
    }
}

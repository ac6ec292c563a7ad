//! Reading raw bytes and text from files, transparently un-gzipping and decoding.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The most bytes a gzipped file may decompress to (4 GiB): a corrupt or hostile file (a
/// "gzip bomb") is refused instead of exhausting memory. Larger data belongs in shards.
pub const MAX_DECOMPRESSED_BYTES: u64 = 4 << 30;

/// Reads a whole file, decompressing it first when it is gzipped (detected by content, not
/// name), to at most [`MAX_DECOMPRESSED_BYTES`].
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    read_bytes_within(path, MAX_DECOMPRESSED_BYTES)
}

fn read_bytes_within(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity((raw.len() as u64 * 4).min(limit) as usize);
    flate2::read::MultiGzDecoder::new(raw.as_slice())
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| DataError::io(path, e))?;
    if out.len() as u64 > limit {
        return Err(DataError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("decompresses to more than {limit} bytes; refusing to read it whole"),
            ),
        ));
    }
    Ok(out)
}

/// How the bytes of a text file are turned into a `String`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextEncoding {
    /// UTF-8; invalid bytes are an error naming the file and offset. Spelled `utf8` (or
    /// `utf-8`) in a recipe.
    #[default]
    #[serde(alias = "utf-8")]
    Utf8,
    /// UTF-8 with invalid sequences replaced by U+FFFD (for scraped corpora such as e-mail).
    /// Spelled `utf8-lossy` (or `utf-8-lossy`).
    #[serde(alias = "utf-8-lossy")]
    Utf8Lossy,
    /// ISO-8859-1: every byte is one character (never fails).
    Latin1,
}

impl TextEncoding {
    /// Decodes `bytes` read from `path` (a leading UTF-8 byte order mark is dropped).
    pub fn decode(self, bytes: Vec<u8>, path: &Path) -> Result<String> {
        match self {
            TextEncoding::Utf8 => {
                let bytes = strip_bom(bytes);
                String::from_utf8(bytes).map_err(|e| DataError::BadUtf8 {
                    path: path.to_path_buf(),
                    offset: e.utf8_error().valid_up_to(),
                })
            }
            TextEncoding::Utf8Lossy => Ok(String::from_utf8_lossy(&strip_bom(bytes)).into_owned()),
            TextEncoding::Latin1 => Ok(bytes.into_iter().map(char::from).collect()),
        }
    }
}

fn strip_bom(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.starts_with(&[0xef, 0xbb, 0xbf]) {
        bytes.drain(..3);
    }
    bytes
}

/// Reads a text file (gzipped or not) in the given encoding.
pub fn read_text(path: &Path, encoding: TextEncoding) -> Result<String> {
    encoding.decode(read_bytes(path)?, path)
}

/// Lists the entries of a folder, sorted by name so every run sees the same order.
pub fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()).map_err(|e| DataError::io(dir, e)))
        .collect::<Result<Vec<_>>>()?;
    entries.sort();
    Ok(entries)
}

/// Lists, sorted, the files under `dir` (recursively) whose extension is one of `extensions`
/// (compared case-insensitively, without the dot).
pub fn files_with_extension(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in sorted_entries(dir)? {
        if entry.is_dir() {
            found.extend(files_with_extension(&entry, extensions)?);
        } else if has_extension(&entry, extensions) {
            found.push(entry);
        }
    }
    Ok(found)
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_is_detected_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.bin");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello").unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        assert_eq!(read_bytes(&path).unwrap(), b"hello");
    }

    #[test]
    fn gzip_beyond_the_bound_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let compressed = gz.finish().unwrap();
        assert!(compressed.len() < 4096);
        std::fs::write(&path, compressed).unwrap();
        assert_eq!(read_bytes_within(&path, 1 << 20).unwrap().len(), 1 << 20);
        let err = read_bytes_within(&path, (1 << 20) - 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bomb.gz") && err.contains("more than"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_gzip_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.gz");
        std::fs::write(&path, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
        let err = read_bytes(&path).unwrap_err();
        assert!(err.to_string().contains("broken.gz"), "{err}");
    }

    #[test]
    fn encodings() {
        let p = Path::new("x.txt");
        let bytes = vec![b'c', b'a', b'f', 0xe9];
        let err = TextEncoding::Utf8.decode(bytes.clone(), p).unwrap_err();
        assert!(matches!(err, DataError::BadUtf8 { offset: 3, .. }), "{err}");
        assert_eq!(
            TextEncoding::Latin1.decode(bytes.clone(), p).unwrap(),
            "café"
        );
        assert_eq!(
            TextEncoding::Utf8Lossy.decode(bytes, p).unwrap(),
            "caf\u{fffd}"
        );
        let bom = vec![0xef, 0xbb, 0xbf, b'a'];
        assert_eq!(TextEncoding::Utf8.decode(bom, p).unwrap(), "a");
        // The error's advice is spelled as a recipe takes it, and every spelling parses.
        let message = err.to_string();
        assert!(message.contains("encoding = \"latin1\""), "{message}");
        for (spelling, encoding) in [
            ("utf8", TextEncoding::Utf8),
            ("utf-8", TextEncoding::Utf8),
            ("utf8-lossy", TextEncoding::Utf8Lossy),
            ("utf-8-lossy", TextEncoding::Utf8Lossy),
            ("latin1", TextEncoding::Latin1),
        ] {
            let parsed: TextEncoding = serde_json::from_str(&format!("\"{spelling}\"")).unwrap();
            assert_eq!(parsed, encoding, "{spelling}");
        }
    }
}

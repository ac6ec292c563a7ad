//! Helpers of this crate's tests: the committed `transformers` fixtures and comparisons.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::checkpoint::{self, HfCheckpoint, HfTensor};
use crate::error::Result;

/// A checkpoint `tools/hf/*.py make` wrote with transformers.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A JSON file.
pub fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Nested JSON arrays of numbers, flattened.
pub fn flat(value: &Value) -> Vec<f32> {
    match value {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        v => vec![v.as_f64().unwrap() as f32],
    }
}

/// The largest absolute difference of two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `load` on a copy of fixture `name` whose config.json and tensors `edit` changed; its error
/// as text.
pub fn load_edited<T>(
    name: &str,
    edit: impl FnOnce(&mut Value, &mut BTreeMap<String, HfTensor>),
    load: impl FnOnce(&Path) -> Result<T>,
) -> std::result::Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let mut checkpoint = HfCheckpoint::read(&fixture(name)).unwrap();
    edit(&mut checkpoint.config, &mut checkpoint.tensors);
    checkpoint::write(dir.path(), &checkpoint.config, &checkpoint.tensors).unwrap();
    load(dir.path()).map(|_| ()).map_err(|e| e.to_string())
}

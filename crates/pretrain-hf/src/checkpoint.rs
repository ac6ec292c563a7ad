//! A checkpoint directory in the `transformers` layout: `config.json` and the weights in
//! `model.safetensors`, or in shards named by `model.safetensors.index.json`. Tensors are read
//! as `f32` (from `f32`, `f16`, `bf16` or `f64`) and written as `f32`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

use crate::error::{HfError, Result};

/// The model's configuration file.
pub const CONFIG_FILE: &str = "config.json";
/// The weights of an unsharded checkpoint.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The index of a sharded checkpoint (`weight_map`: tensor name -> shard file).
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";

/// One tensor, as `f32` values in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct HfTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, `shape.iter().product()` of them.
    pub values: Vec<f32>,
}

impl HfTensor {
    /// The transpose of a matrix: `[rows, cols] -> [cols, rows]` (the layouts of PyTorch's
    /// `nn.Linear`, `[out, in]`, and burn's, `[in, out]`). `None` unless 2-D.
    pub fn transposed(&self) -> Option<Self> {
        let [rows, cols] = self.shape[..] else {
            return None;
        };
        let mut values = vec![0.0; self.values.len()];
        for r in 0..rows {
            for c in 0..cols {
                values[c * rows + r] = self.values[r * cols + c];
            }
        }
        Some(Self {
            shape: vec![cols, rows],
            values,
        })
    }
}

/// A checkpoint directory read into memory.
#[derive(Debug, Clone)]
pub struct HfCheckpoint {
    /// The directory.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: serde_json::Value,
    /// Every tensor by name.
    pub tensors: BTreeMap<String, HfTensor>,
}

impl HfCheckpoint {
    /// Reads `dir`'s `config.json` and its weights (one file or the shards of the index).
    pub fn read(dir: &Path) -> Result<Self> {
        let config_path = dir.join(CONFIG_FILE);
        let config = read_json(&config_path)?;
        if !config.is_object() {
            return Err(HfError::file(&config_path, "is not a JSON object"));
        }
        let single = dir.join(WEIGHTS_FILE);
        let index = dir.join(WEIGHTS_INDEX_FILE);
        let mut tensors = BTreeMap::new();
        if single.is_file() {
            read_safetensors(&single, &mut tensors)?;
        } else if index.is_file() {
            let map = read_json(&index)?;
            let Some(weight_map) = map.get("weight_map").and_then(|m| m.as_object()) else {
                return Err(HfError::file(&index, "has no weight_map object"));
            };
            let mut shards: Vec<&str> = Vec::new();
            for (name, file) in weight_map {
                let file = file
                    .as_str()
                    .filter(|f| is_plain_file_name(f))
                    .ok_or_else(|| {
                        HfError::tensor(&index, name, "its shard is not a file name in the folder")
                    })?;
                if !shards.contains(&file) {
                    shards.push(file);
                }
            }
            for shard in shards {
                read_safetensors(&dir.join(shard), &mut tensors)?;
            }
            if let Some(name) = weight_map.keys().find(|n| !tensors.contains_key(*n)) {
                return Err(HfError::tensor(
                    &index,
                    name,
                    format!("listed in the index but not in {}", weight_map[name]),
                ));
            }
        } else {
            return Err(HfError::file(
                dir,
                format!(
                    "has neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE} (only safetensors \
                     checkpoints are read; transformers' save_pretrained writes them)"
                ),
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            tensors,
        })
    }
}

/// Writes `config` as `dir/config.json` and `tensors` as `dir/model.safetensors` (`f32`, with
/// the `format: pt` metadata `transformers` expects), creating `dir`.
pub fn write(
    dir: &Path,
    config: &serde_json::Value,
    tensors: &BTreeMap<String, HfTensor>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| HfError::file(dir, e))?;
    let path = dir.join(WEIGHTS_FILE);
    let metadata = [("format".to_string(), "pt".to_string())].into();
    let serialized = to_bytes(tensors, Some(metadata), &path)?;
    std::fs::write(&path, serialized).map_err(|e| HfError::file(&path, e))?;
    let config_path = dir.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(config).expect("JSON values serialize");
    std::fs::write(&config_path, text + "\n").map_err(|e| HfError::file(&config_path, e))
}

/// `tensors` as the bytes of a safetensors file (`f32`); `path` names it in messages.
pub(crate) fn to_bytes(
    tensors: &BTreeMap<String, HfTensor>,
    metadata: Option<std::collections::HashMap<String, String>>,
    path: &Path,
) -> Result<Vec<u8>> {
    let data: Vec<Vec<u8>> = tensors
        .values()
        .map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&data)
        .map(|((name, t), bytes)| {
            safetensors::tensor::TensorView::new(Dtype::F32, t.shape.clone(), bytes)
                .map(|view| (name.as_str(), view))
                .map_err(|e| HfError::tensor(path, name, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, metadata).map_err(|e| HfError::file(path, e))
}

/// The tensors of a safetensors file's `bytes` as `f32`; `path` names it in messages.
pub(crate) fn from_bytes(bytes: &[u8], path: &Path) -> Result<BTreeMap<String, HfTensor>> {
    let mut out = BTreeMap::new();
    add_tensors(bytes, path, &mut out)?;
    Ok(out)
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| HfError::file(path, e))?;
    serde_json::from_str(&text).map_err(|e| HfError::file(path, format!("is not JSON: {e}")))
}

/// A shard named in an index stays inside the checkpoint's folder.
fn is_plain_file_name(name: &str) -> bool {
    let path = Path::new(name);
    path.components().count() == 1 && path.file_name().is_some()
}

fn read_safetensors(path: &Path, out: &mut BTreeMap<String, HfTensor>) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| HfError::file(path, e))?;
    add_tensors(&bytes, path, out)
}

fn add_tensors(bytes: &[u8], path: &Path, out: &mut BTreeMap<String, HfTensor>) -> Result<()> {
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| HfError::file(path, format!("is not a safetensors file ({e})")))?;
    for (name, view) in file.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            other => {
                return Err(HfError::tensor(
                    path,
                    &name,
                    format!("holds {other:?}; model weights are floating point"),
                ));
            }
        };
        if out.contains_key(&name) {
            return Err(HfError::tensor(path, &name, "appears in two shards"));
        }
        let shape = view.shape().to_vec();
        out.insert(name, HfTensor { shape, values });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(shape: &[usize]) -> HfTensor {
        let n = shape.iter().product::<usize>();
        HfTensor {
            shape: shape.to_vec(),
            values: (0..n).map(|i| i as f32 * 0.5 - 1.0).collect(),
        }
    }

    #[test]
    fn transposes_matrices_only() {
        let t = tensor(&[2, 3]);
        let tt = t.transposed().unwrap();
        assert_eq!(tt.shape, [3, 2]);
        assert_eq!(tt.values, [-1.0, 0.5, -0.5, 1.0, 0.0, 1.5]);
        assert_eq!(tt.transposed().unwrap(), t);
        assert!(tensor(&[4]).transposed().is_none());
    }

    #[test]
    fn writes_and_reads_back_single_and_sharded_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let tensors: BTreeMap<String, HfTensor> = [
            ("a.weight".to_string(), tensor(&[2, 3])),
            ("b.bias".to_string(), tensor(&[5])),
        ]
        .into();
        let config = serde_json::json!({"model_type": "gpt2"});
        write(dir.path(), &config, &tensors).unwrap();
        let read = HfCheckpoint::read(dir.path()).unwrap();
        assert_eq!(
            (read.config, read.tensors),
            (config.clone(), tensors.clone())
        );

        // The same tensors in two shards with an index.
        let sharded = dir.path().join("sharded");
        for (i, (name, t)) in tensors.iter().enumerate() {
            let shard = sharded.join(format!("part-{i}"));
            write(&shard, &config, &[(name.clone(), t.clone())].into()).unwrap();
            std::fs::rename(
                shard.join(WEIGHTS_FILE),
                sharded.join(format!("model-{i}.safetensors")),
            )
            .unwrap();
        }
        std::fs::write(sharded.join(CONFIG_FILE), config.to_string()).unwrap();
        let index = serde_json::json!({"weight_map": {
            "a.weight": "model-0.safetensors", "b.bias": "model-1.safetensors"}});
        std::fs::write(sharded.join(WEIGHTS_INDEX_FILE), index.to_string()).unwrap();
        assert_eq!(HfCheckpoint::read(&sharded).unwrap().tensors, tensors);

        // An index naming a tensor no shard holds, or a path outside the folder.
        let index = serde_json::json!({"weight_map": {
            "a.weight": "model-0.safetensors", "c.weight": "model-1.safetensors"}});
        std::fs::write(sharded.join(WEIGHTS_INDEX_FILE), index.to_string()).unwrap();
        let err = HfCheckpoint::read(&sharded).unwrap_err().to_string();
        assert!(
            err.contains("tensor c.weight: listed in the index"),
            "{err}"
        );
        let index = serde_json::json!({"weight_map": {"a.weight": "../model-0.safetensors"}});
        std::fs::write(sharded.join(WEIGHTS_INDEX_FILE), index.to_string()).unwrap();
        let err = HfCheckpoint::read(&sharded).unwrap_err().to_string();
        assert!(err.contains("not a file name in the folder"), "{err}");
    }

    #[test]
    fn refuses_corrupt_or_missing_files_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let err = HfCheckpoint::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        std::fs::write(dir.path().join(CONFIG_FILE), "{}").unwrap();
        let err = HfCheckpoint::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("has neither model.safetensors"), "{err}");
        // A header that claims more bytes than the file has.
        let mut bytes = 200u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{\"a\":");
        std::fs::write(dir.path().join(WEIGHTS_FILE), bytes).unwrap();
        let err = HfCheckpoint::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("model.safetensors: is not a safetensors file"),
            "{err}"
        );
        // An integer tensor.
        let data = [0u8; 8];
        let view = safetensors::tensor::TensorView::new(Dtype::I64, vec![1], &data).unwrap();
        let bytes = safetensors::serialize([("ids", view)], None).unwrap();
        std::fs::write(dir.path().join(WEIGHTS_FILE), bytes).unwrap();
        let err = HfCheckpoint::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("tensor ids: holds I64"), "{err}");
    }
}

//! Applying a recipe's overrides to a preset configuration: the preset is serialized to JSON,
//! the override table merged in, and the result deserialized back. burn's `Config` types have
//! no serde defaults, so a recipe names only what it changes; a key the preset does not have is
//! refused with the valid keys listed (a typo never passes silently). Every number an override
//! sets is at most [`MAX_OVERRIDE_NUMBER`] in magnitude: widths, depths and sizes drive
//! allocations, and a mistyped 10^9 must be an error naming the field, not an allocation abort.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{RecipeError, Result};

/// `preset` with `overrides` (a JSON object) merged in; `field` names the recipe section for
/// messages.
pub fn apply<T: Serialize + DeserializeOwned>(
    preset: &T,
    overrides: &Value,
    field: &str,
) -> Result<T> {
    let mut value = serde_json::to_value(preset).expect("presets serialize");
    merge(&mut value, overrides, field)?;
    serde_json::from_value(value).map_err(|e| RecipeError::field(field, e.to_string()))
}

/// The largest magnitude a number in an override may have (2^20): above any width, depth,
/// vocabulary or size a model here is built with, below what a single layer could not allocate.
pub const MAX_OVERRIDE_NUMBER: f64 = (1u64 << 20) as f64;

/// Refuses numbers beyond [`MAX_OVERRIDE_NUMBER`] anywhere in `value`, naming their path.
fn check_numbers(value: &Value, path: &str) -> Result<()> {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.is_finite() && x.abs() <= MAX_OVERRIDE_NUMBER => Ok(()),
            _ => Err(RecipeError::field(
                path,
                format!("{n} is out of range (at most {MAX_OVERRIDE_NUMBER} in magnitude)"),
            )),
        },
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_numbers(item, &format!("{path}[{i}]"))),
        Value::Object(entries) => entries
            .iter()
            .try_for_each(|(key, item)| check_numbers(item, &format!("{path}.{key}"))),
        _ => Ok(()),
    }
}

fn merge(target: &mut Value, overrides: &Value, field: &str) -> Result<()> {
    let Some(entries) = overrides.as_object() else {
        if overrides.is_null() {
            return Ok(());
        }
        return Err(RecipeError::field(field, "must be a table"));
    };
    for (key, new) in entries {
        let path = format!("{field}.{key}");
        let Some(slot) = target.as_object_mut().and_then(|o| o.get_mut(key)) else {
            let valid: Vec<&String> = target
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            return Err(RecipeError::field(
                path,
                format!(
                    "unknown key; valid: {}",
                    valid
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        // Tables merge key by key (except tagged enums, replaced whole when the tag changes).
        let same_tag = slot.get("kind").is_none()
            || slot.get("kind") == new.get("kind")
            || new.get("kind").is_none();
        if slot.is_object() && new.is_object() && same_tag {
            merge(slot, new, &path)?;
        } else {
            check_numbers(new, &path)?;
            *slot = new.clone();
        }
    }
    Ok(())
}

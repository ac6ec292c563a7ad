//! Applying a recipe's overrides to a preset configuration: the preset is serialized to JSON,
//! the override table merged in, and the result deserialized back. burn's `Config` types have
//! no serde defaults, so a recipe names only what it changes; a key the preset does not have is
//! refused with the valid keys listed (a typo never passes silently).

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
            *slot = new.clone();
        }
    }
    Ok(())
}

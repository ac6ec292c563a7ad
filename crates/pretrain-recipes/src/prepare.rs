//! `pretrain data prepare`: what to prepare, from a recipe's `data.source` or a source table
//! given on the command line.

use pretrain::data::data_source::DataSource;
use pretrain::data::tokenizer::TokenizerTrainConfig;
use serde::Deserialize;

use crate::error::{RecipeError, Result};
use crate::recipe::Recipe;

/// A source to prepare, and how a text source's tokenizer is trained.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareRequest {
    /// The source (paths absolute).
    pub source: DataSource,
    /// Tokenizer training settings (the recipe's `data.tokenizer`, or the defaults).
    pub tokenizer: TokenizerTrainConfig,
}

/// The source named by `recipe_or_source`: an inline table (`{ kind = "text", paths =
/// ["corpus/"] }`, paths relative to the working folder), or a recipe (built-in name or file)
/// whose `data.source` is prepared.
pub fn prepare_request(recipe_or_source: &str) -> Result<PrepareRequest> {
    if recipe_or_source.trim_start().starts_with('{') {
        #[derive(Deserialize)]
        struct Inline {
            source: DataSource,
        }
        let inline: Inline =
            toml::from_str(&format!("source = {recipe_or_source}")).map_err(|e| {
                RecipeError::Parse {
                    source_name: "the source table".into(),
                    message: e.to_string(),
                }
            })?;
        let mut source = inline.source;
        let cwd = std::env::current_dir().map_err(|e| RecipeError::io(".".as_ref(), e))?;
        source.resolve_paths(&cwd);
        return Ok(PrepareRequest {
            source,
            tokenizer: TokenizerTrainConfig::default(),
        });
    }
    let recipe = Recipe::load(recipe_or_source)?;
    match recipe.data.source {
        Some(DataSource::Shards { .. }) => Err(RecipeError::field(
            "data.source",
            "is already shards; give the recipe of the source they come from",
        )),
        Some(source) => Ok(PrepareRequest {
            source,
            tokenizer: recipe.data.tokenizer.unwrap_or_default(),
        }),
        None => Err(RecipeError::field(
            "data.source",
            format!(
                "recipe {} names the built-in data set {}; prepare applies to a source table",
                recipe.name,
                recipe
                    .data
                    .dataset
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_tables_and_recipes_name_the_source() {
        let request = prepare_request(r#"{ kind = "text", paths = ["corpus/"] }"#).unwrap();
        let DataSource::Text { paths, .. } = &request.source else {
            panic!("{request:?}")
        };
        assert!(std::path::Path::new(&paths[0]).is_absolute(), "{paths:?}");
        let err = prepare_request("{ kind = \"text\" }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("paths"), "{err}");
        let err = prepare_request("mlm-text").unwrap_err().to_string();
        assert!(
            err.contains("data.source") && err.contains("tweets"),
            "{err}"
        );
    }
}

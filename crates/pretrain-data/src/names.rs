//! Names of the workspace's kebab-case enums (objective kinds, model presets, data sets,
//! strategies, backends, precisions): each is declared with [`named_enum!`](crate::named_enum),
//! which derives serde and strum (`Display`, `IntoStaticStr`, `VariantArray`) with the same
//! kebab-case spelling, and [`Named`] adds what the derives lack: parsing that lists the valid
//! names in its error. [`assert_serde_names`] checks, in each crate's tests, that serde spells
//! every variant as strum does (a variant renamed for one must be renamed for both).

/// Declares an enum named in kebab case everywhere it is written (recipes, command lines,
/// reports): `Debug, Clone, Copy, PartialEq, Eq, Hash`, serde and strum's `Display`,
/// `IntoStaticStr` and `VariantArray` derived, so it is [`Named`]. The calling crate depends on
/// `serde` and `strum`. A variant spelled otherwise carries both `#[serde(rename = "...")]`
/// and `#[strum(serialize = "...")]`.
///
/// An enum `Shape { Circle, RoundedSquare }` declared with it has the names `circle` and
/// `rounded-square` (this module's test).
#[macro_export]
macro_rules! named_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variants:tt)* }) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            serde::Serialize,
            serde::Deserialize,
            strum::Display,
            strum::IntoStaticStr,
            strum::VariantArray,
        )]
        #[serde(rename_all = "kebab-case")]
        #[strum(serialize_all = "kebab-case")]
        $vis enum $name { $($variants)* }
    };
}

/// A kebab-case enum: every variant has one name, in recipes, on the command line and in
/// reports. Implemented for every type with strum's `IntoStaticStr` and `VariantArray`.
pub trait Named: Copy + Eq + 'static + strum::VariantArray + Into<&'static str> {
    /// The variant's name.
    fn name(self) -> &'static str {
        self.into()
    }

    /// Every variant, in declaration order.
    fn all() -> &'static [Self] {
        Self::VARIANTS
    }

    /// Every name, in declaration order, joined by ", " (for messages).
    fn names() -> String {
        let names: Vec<&str> = Self::VARIANTS.iter().map(|v| v.name()).collect();
        names.join(", ")
    }

    /// The variant called `name`, or a message naming the valid ones.
    fn from_name(name: &str) -> Result<Self, String> {
        Self::VARIANTS
            .iter()
            .copied()
            .find(|v| v.name() == name)
            .ok_or_else(|| format!("unknown name {name:?}; valid: {}", Self::names()))
    }
}

impl<T: Copy + Eq + 'static + strum::VariantArray + Into<&'static str>> Named for T {}

/// Panics unless serde writes and reads every variant of `T` by its [`Named::name`] (a test
/// helper: the two derives must agree).
pub fn assert_serde_names<T>()
where
    T: Named + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    for &variant in T::VARIANTS {
        let json = serde_json::to_value(variant).expect("serializes");
        assert_eq!(json, serde_json::Value::from(variant.name()), "{variant:?}");
        let back: T = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, variant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::named_enum! {
        enum Shape {
            Circle,
            RoundedSquare,
        }
    }

    #[test]
    fn names_parse_and_list_the_valid_ones() {
        assert_eq!(Shape::RoundedSquare.name(), "rounded-square");
        assert_eq!(Shape::from_name("circle"), Ok(Shape::Circle));
        assert_eq!(
            Shape::from_name("square").unwrap_err(),
            "unknown name \"square\"; valid: circle, rounded-square"
        );
        assert_serde_names::<Shape>();
    }
}

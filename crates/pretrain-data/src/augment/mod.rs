//! Seeded, composable image augmentations for contrastive learning, and multi-view datasets.
//!
//! A [`Pipeline`] is a list of [`AugmentOp`]s (serde-friendly, so recipes can spell them out),
//! checked once against the input shape. [`MultiView`] turns one image into the two (or more)
//! views a contrastive objective compares; [`AugmentedDataset`] applies it inside burn's data
//! loader with per-item seeds, so results do not depend on the worker count.

mod geometric;
mod photometric;
mod views;

pub use geometric::{HorizontalFlip, RandomAffine, RandomResizedCrop, Resize, resize_region};
pub use photometric::{
    ColorJitter, Cutout, GaussianBlur, GaussianNoise, MaskingNoise, Normalize, RandomGrayscale,
    Solarize, blur,
};
pub use views::{AugmentedDataset, MultiView, ViewsItem};

use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::item::Image;

/// One augmentation step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AugmentOp {
    /// See [`RandomResizedCrop`].
    RandomResizedCrop(RandomResizedCrop),
    /// See [`Resize`].
    Resize(Resize),
    /// See [`HorizontalFlip`].
    HorizontalFlip(HorizontalFlip),
    /// See [`RandomAffine`].
    RandomAffine(RandomAffine),
    /// See [`ColorJitter`].
    ColorJitter(ColorJitter),
    /// See [`RandomGrayscale`].
    RandomGrayscale(RandomGrayscale),
    /// See [`GaussianBlur`].
    GaussianBlur(GaussianBlur),
    /// See [`GaussianNoise`].
    GaussianNoise(GaussianNoise),
    /// See [`Solarize`].
    Solarize(Solarize),
    /// See [`Cutout`].
    Cutout(Cutout),
    /// See [`MaskingNoise`].
    MaskingNoise(MaskingNoise),
    /// See [`Normalize`].
    Normalize(Normalize),
}

impl AugmentOp {
    /// Checks the parameters against an input of `[channels, height, width]` and returns the
    /// output shape.
    fn check(&self, [c, h, w]: [usize; 3]) -> Result<[usize; 3]> {
        let probability = |name: &'static str, p: f32| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(DataError::config(
                    name,
                    format!("probability {p} is not in [0, 1]"),
                ))
            }
        };
        match self {
            AugmentOp::RandomResizedCrop(op) => {
                op.check()?;
                return Ok([c, op.size.0, op.size.1]);
            }
            AugmentOp::Resize(op) => {
                if op.size.0 == 0 || op.size.1 == 0 {
                    return Err(DataError::config("resize.size", "sides must be > 0"));
                }
                return Ok([c, op.size.0, op.size.1]);
            }
            AugmentOp::HorizontalFlip(op) => probability("horizontal_flip.p", op.p)?,
            AugmentOp::RandomAffine(op) => op.check()?,
            AugmentOp::ColorJitter(op) => probability("color_jitter.p", op.p)?,
            AugmentOp::RandomGrayscale(op) => probability("random_grayscale.p", op.p)?,
            AugmentOp::GaussianBlur(op) => {
                probability("gaussian_blur.p", op.p)?;
                op.check()?;
            }
            AugmentOp::GaussianNoise(op) => probability("gaussian_noise.p", op.p)?,
            AugmentOp::Solarize(op) => probability("solarize.p", op.p)?,
            AugmentOp::Cutout(op) => probability("cutout.p", op.p)?,
            AugmentOp::MaskingNoise(op) => probability("masking_noise.drop", op.drop)?,
            AugmentOp::Normalize(op) => op.check(c)?,
        }
        Ok([c, h, w])
    }

    /// Applies the step.
    pub fn apply(&self, image: Image, rng: &mut StdRng) -> Image {
        match self {
            AugmentOp::RandomResizedCrop(op) => op.apply(image, rng),
            AugmentOp::Resize(op) => op.apply(image),
            AugmentOp::HorizontalFlip(op) => op.apply(image, rng),
            AugmentOp::RandomAffine(op) => op.apply(image, rng),
            AugmentOp::ColorJitter(op) => op.apply(image, rng),
            AugmentOp::RandomGrayscale(op) => op.apply(image, rng),
            AugmentOp::GaussianBlur(op) => op.apply(image, rng),
            AugmentOp::GaussianNoise(op) => op.apply(image, rng),
            AugmentOp::Solarize(op) => op.apply(image, rng),
            AugmentOp::Cutout(op) => op.apply(image, rng),
            AugmentOp::MaskingNoise(op) => op.apply(image, rng),
            AugmentOp::Normalize(op) => op.apply(image),
        }
    }
}

/// An ordered list of augmentation steps.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Pipeline {
    /// The steps, applied in order.
    pub steps: Vec<AugmentOp>,
}

impl Pipeline {
    /// A pipeline of `steps`.
    pub fn new(steps: Vec<AugmentOp>) -> Self {
        Self { steps }
    }

    /// Checks every step for an input of `shape` (`[channels, height, width]`) and returns the
    /// output shape.
    pub fn check(&self, shape: [usize; 3]) -> Result<[usize; 3]> {
        self.steps.iter().try_fold(shape, |s, op| op.check(s))
    }

    /// Runs the steps on `image`.
    pub fn apply(&self, image: Image, rng: &mut StdRng) -> Image {
        self.steps.iter().fold(image, |img, op| op.apply(img, rng))
    }

    /// SimCLR's augmentations scaled to small images: crop (scale 0.2..1), flip, strong colour
    /// jitter (p 0.8), grayscale (p 0.2), then `normalize`.
    pub fn simclr(size: usize, normalize: Normalize) -> Self {
        Self::byol_view(size, 0.5, 0.0, normalize)
    }

    /// One of BYOL's two asymmetric views: like SimCLR with blur probability `blur_p` and
    /// solarize probability `solarize_p` (BYOL uses (1.0, 0.0) and (0.1, 0.2)).
    pub fn byol_view(size: usize, blur_p: f32, solarize_p: f32, normalize: Normalize) -> Self {
        let sigma = (0.1, (size as f32 / 28.0).max(0.5) * 1.0);
        Self::new(vec![
            AugmentOp::RandomResizedCrop(RandomResizedCrop::new(size, size).with_scale(0.2, 1.0)),
            AugmentOp::HorizontalFlip(HorizontalFlip { p: 0.5 }),
            AugmentOp::ColorJitter(ColorJitter {
                brightness: 0.4,
                contrast: 0.4,
                saturation: 0.2,
                p: 0.8,
            }),
            AugmentOp::RandomGrayscale(RandomGrayscale { p: 0.2 }),
            AugmentOp::GaussianBlur(GaussianBlur { sigma, p: blur_p }),
            AugmentOp::Solarize(Solarize {
                threshold: 0.5,
                p: solarize_p,
            }),
            AugmentOp::Normalize(normalize),
        ])
    }

    /// Evaluation transform: normalization only.
    pub fn eval(normalize: Normalize) -> Self {
        Self::new(vec![AugmentOp::Normalize(normalize)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::item_rng;
    use crate::testdata;

    #[test]
    fn same_seed_same_output_and_shapes() {
        let img = testdata::fashion_sample()[0].image.to_f32();
        let p = Pipeline::simclr(24, Normalize::fashion_mnist());
        assert_eq!(p.check([1, 28, 28]).unwrap(), [1, 24, 24]);
        let a = p.apply(img.clone(), &mut item_rng(3, 0, 1));
        let b = p.apply(img.clone(), &mut item_rng(3, 0, 1));
        let c = p.apply(img, &mut item_rng(3, 0, 2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.shape(), [1, 24, 24]);
    }

    #[test]
    fn pipelines_round_trip_through_json_and_reject_bad_params() {
        let p = Pipeline::byol_view(28, 0.1, 0.2, Normalize::fashion_mnist());
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"op\":\"random_resized_crop\""), "{json}");
        assert_eq!(serde_json::from_str::<Pipeline>(&json).unwrap(), p);
        let bad = Pipeline::new(vec![AugmentOp::HorizontalFlip(HorizontalFlip { p: 1.5 })]);
        assert!(
            bad.check([1, 4, 4])
                .unwrap_err()
                .to_string()
                .contains("horizontal_flip.p")
        );
        let wrong_channels = Pipeline::eval(Normalize::cifar10());
        assert!(wrong_channels.check([1, 28, 28]).is_err());
    }
}

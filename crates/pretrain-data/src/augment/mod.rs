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

/// Largest output side of a resize or crop, and largest cutout (pixels).
pub const MAX_SIDE: usize = 4096;
/// Largest blur standard deviation (pixels): the kernel spans 6 sigma.
pub const MAX_BLUR_SIGMA: f32 = 32.0;
/// Largest colour-jitter strength and noise standard deviation.
pub const MAX_STRENGTH: f32 = 10.0;
/// Largest zoom of a random affine transform and aspect ratio of a crop.
pub const MAX_ZOOM: f32 = 100.0;
/// Largest magnitude of a fill value, threshold or normalization constant.
pub const MAX_VALUE: f32 = 1e6;

/// `value` must lie in `[lo, hi]` (so it is finite).
fn within(field: &'static str, value: f32, lo: f32, hi: f32) -> Result<()> {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(DataError::config(
            field,
            format!("{value} is not in [{lo}, {hi}]"),
        ))
    }
}

/// `(min, max)` must satisfy `lo <= min <= max <= hi`, with `min > lo` when `open_low`.
fn ordered(
    field: &'static str,
    (min, max): (f32, f32),
    lo: f32,
    hi: f32,
    open_low: bool,
) -> Result<()> {
    let low_ok = if open_low { min > lo } else { min >= lo };
    if low_ok && min <= max && max <= hi {
        Ok(())
    } else {
        let low = if open_low { "<" } else { "<=" };
        Err(DataError::config(
            field,
            format!("({min}, {max}) must satisfy {lo} {low} min <= max <= {hi}"),
        ))
    }
}

/// Output sides must be in `1..=MAX_SIDE`.
fn sides(field: &'static str, (h, w): (usize, usize)) -> Result<()> {
    if (1..=MAX_SIDE).contains(&h) && (1..=MAX_SIDE).contains(&w) {
        Ok(())
    } else {
        Err(DataError::config(
            field,
            format!("({h}, {w}): sides must be in 1..={MAX_SIDE}"),
        ))
    }
}

impl AugmentOp {
    /// Checks every parameter against its bounds (the constants above; probabilities in
    /// `[0, 1]`) and an input of `[channels, height, width]`, and returns the output shape.
    fn check(&self, [c, h, w]: [usize; 3]) -> Result<[usize; 3]> {
        let probability = |field, p| within(field, p, 0.0, 1.0);
        match self {
            AugmentOp::RandomResizedCrop(op) => {
                sides("random_resized_crop.size", op.size)?;
                ordered("random_resized_crop.scale", op.scale, 0.0, 1.0, true)?;
                ordered(
                    "random_resized_crop.ratio",
                    op.ratio,
                    1.0 / MAX_ZOOM,
                    MAX_ZOOM,
                    false,
                )?;
                return Ok([c, op.size.0, op.size.1]);
            }
            AugmentOp::Resize(op) => {
                sides("resize.size", op.size)?;
                return Ok([c, op.size.0, op.size.1]);
            }
            AugmentOp::HorizontalFlip(op) => probability("horizontal_flip.p", op.p)?,
            AugmentOp::RandomAffine(op) => {
                within("random_affine.degrees", op.degrees, 0.0, 180.0)?;
                within("random_affine.translate", op.translate.0, 0.0, 1.0)?;
                within("random_affine.translate", op.translate.1, 0.0, 1.0)?;
                ordered("random_affine.scale", op.scale, 0.0, MAX_ZOOM, true)?;
                within("random_affine.fill", op.fill, -MAX_VALUE, MAX_VALUE)?;
            }
            AugmentOp::ColorJitter(op) => {
                within("color_jitter.brightness", op.brightness, 0.0, MAX_STRENGTH)?;
                within("color_jitter.contrast", op.contrast, 0.0, MAX_STRENGTH)?;
                within("color_jitter.saturation", op.saturation, 0.0, MAX_STRENGTH)?;
                probability("color_jitter.p", op.p)?;
            }
            AugmentOp::RandomGrayscale(op) => probability("random_grayscale.p", op.p)?,
            AugmentOp::GaussianBlur(op) => {
                ordered("gaussian_blur.sigma", op.sigma, 0.0, MAX_BLUR_SIGMA, true)?;
                probability("gaussian_blur.p", op.p)?;
            }
            AugmentOp::GaussianNoise(op) => {
                within("gaussian_noise.std", op.std, 0.0, MAX_STRENGTH)?;
                probability("gaussian_noise.p", op.p)?;
            }
            AugmentOp::Solarize(op) => {
                within("solarize.threshold", op.threshold, -MAX_VALUE, MAX_VALUE)?;
                probability("solarize.p", op.p)?;
            }
            AugmentOp::Cutout(op) => {
                if op.size > MAX_SIDE {
                    return Err(DataError::config(
                        "cutout.size",
                        format!("{} is more than {MAX_SIDE}", op.size),
                    ));
                }
                within("cutout.fill", op.fill, -MAX_VALUE, MAX_VALUE)?;
                probability("cutout.p", op.p)?;
            }
            AugmentOp::MaskingNoise(op) => {
                probability("masking_noise.drop", op.drop)?;
                within("masking_noise.fill", op.fill, -MAX_VALUE, MAX_VALUE)?;
            }
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
        for (op, field) in [
            (
                AugmentOp::RandomAffine(RandomAffine::rotation(-10.0)),
                "random_affine.degrees",
            ),
            (
                AugmentOp::GaussianBlur(GaussianBlur {
                    sigma: (0.1, 1e9),
                    p: 0.5,
                }),
                "gaussian_blur.sigma",
            ),
            (
                AugmentOp::ColorJitter(ColorJitter {
                    brightness: -0.4,
                    contrast: 0.4,
                    saturation: 0.2,
                    p: 0.8,
                }),
                "color_jitter.brightness",
            ),
        ] {
            let err = Pipeline::new(vec![op])
                .check([1, 28, 28])
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    /// Any float a recipe could hold: ordinary values, negatives, huge ones, NaN, infinities.
    fn any_float() -> impl proptest::strategy::Strategy<Value = f32> {
        use proptest::prelude::*;
        prop_oneof![
            -2.0f32..2.0,
            -1e10f32..1e10,
            Just(f32::NAN),
            Just(f32::INFINITY),
            Just(-0.0),
        ]
    }

    fn any_side() -> impl proptest::strategy::Strategy<Value = usize> {
        use proptest::prelude::*;
        prop_oneof![0usize..40, Just(MAX_SIDE + 1), Just(usize::MAX)]
    }

    fn any_op() -> impl proptest::strategy::Strategy<Value = AugmentOp> {
        use proptest::prelude::*;
        let f = any_float;
        let pair = move || (f(), f());
        prop_oneof![
            ((any_side(), any_side()), pair(), pair()).prop_map(|(size, scale, ratio)| {
                AugmentOp::RandomResizedCrop(RandomResizedCrop { size, scale, ratio })
            }),
            (any_side(), any_side()).prop_map(|size| AugmentOp::Resize(Resize { size })),
            f().prop_map(|p| AugmentOp::HorizontalFlip(HorizontalFlip { p })),
            (f(), pair(), pair(), f()).prop_map(|(degrees, translate, scale, fill)| {
                AugmentOp::RandomAffine(RandomAffine {
                    degrees,
                    translate,
                    scale,
                    fill,
                })
            }),
            (f(), f(), f(), f()).prop_map(|(brightness, contrast, saturation, p)| {
                AugmentOp::ColorJitter(ColorJitter {
                    brightness,
                    contrast,
                    saturation,
                    p,
                })
            }),
            f().prop_map(|p| AugmentOp::RandomGrayscale(RandomGrayscale { p })),
            (pair(), f()).prop_map(|(sigma, p)| AugmentOp::GaussianBlur(GaussianBlur { sigma, p })),
            (f(), f()).prop_map(|(std, p)| AugmentOp::GaussianNoise(GaussianNoise { std, p })),
            (f(), f()).prop_map(|(threshold, p)| AugmentOp::Solarize(Solarize { threshold, p })),
            (any_side(), f(), f()).prop_map(|(size, fill, p)| AugmentOp::Cutout(Cutout {
                size,
                fill,
                p
            })),
            (f(), f())
                .prop_map(|(drop, fill)| AugmentOp::MaskingNoise(MaskingNoise { drop, fill })),
            (f(), f()).prop_map(|(m, s)| AugmentOp::Normalize(Normalize {
                mean: vec![m],
                std: vec![s]
            })),
        ]
    }

    proptest::proptest! {
        // A fixed seed: the same 2,000 cases in every run.
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2000,
            rng_seed: proptest::test_runner::RngSeed::Fixed(20261207),
            ..Default::default()
        })]

        /// Every step either is refused by its check with a named field, or runs without a
        /// panic and gives the shape its check promised.
        #[test]
        fn any_parameters_are_refused_or_run(op in any_op(), seed in proptest::prelude::any::<u64>()) {
            let image = testdata::fashion_sample()[0].image.to_f32();
            let pipeline = Pipeline::new(vec![op]);
            match pipeline.check([1, 28, 28]) {
                Err(e) => proptest::prop_assert!(e.to_string().contains('.') || e.to_string().contains("normalize"), "{e}"),
                Ok(shape) => {
                    let out = pipeline.apply(image, &mut item_rng(seed, 0, 0));
                    proptest::prop_assert_eq!(out.shape(), shape);
                }
            }
        }
    }
}

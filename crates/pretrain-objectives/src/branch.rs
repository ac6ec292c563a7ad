//! The encoder + projector branch every joint-embedding objective (SimCLR, MoCo, SimSiam, BYOL,
//! Barlow Twins, VICReg) trains, and the two-view batch handling they share.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use pretrain_data::batch::MultiViewBatch;
use pretrain_models::{FusedAutodiffBackend, FusedBackend};
use pretrain_models::{ImageEncoder, ImageEncoderConfig, MlpHead, MlpHeadConfig};

use crate::collective::Collective;
use crate::error::{ObjectiveError, Result, ensure};

/// Encoder followed by a projection head.
#[derive(Module, Debug)]
pub struct ProjectedEncoder<B: Backend> {
    /// The encoder being pre-trained.
    pub encoder: ImageEncoder<B>,
    /// Projection head (discarded after pre-training).
    pub projector: MlpHead<B>,
}

impl<B: FusedBackend> ProjectedEncoder<B> {
    /// Builds the branch.
    pub fn new(
        objective: &'static str,
        encoder: &ImageEncoderConfig,
        projector: &MlpHeadConfig,
        device: &B::Device,
    ) -> Result<Self> {
        let width = encoder.feature_dim();
        ensure(
            width > 0,
            ObjectiveError::config,
            objective,
            "encoder",
            || "has no feature width".into(),
        )?;
        ensure(
            projector.input == width,
            ObjectiveError::config,
            objective,
            "projector.input",
            || {
                format!(
                    "{} must be the encoder's feature width {width}",
                    projector.input
                )
            },
        )?;
        Ok(Self {
            encoder: encoder.init(device)?,
            projector: projector.init(device)?,
        })
    }

    /// Projections of both views in one pass (one batch of `2n`, so batch norm sees both, as in
    /// SimCLR): `[n, c, h, w] x 2 -> [n, output] x 2`.
    pub fn project_pair(&self, a: Tensor<B, 4>, b: Tensor<B, 4>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let n = a.dims()[0];
        let z = self
            .projector
            .forward(self.encoder.forward(Tensor::cat(vec![a, b], 0)));
        let d = z.dims()[1];
        (z.clone().slice([0..n, 0..d]), z.slice([n..2 * n, 0..d]))
    }
}

/// The projections `z1`, `z2` (`[n, d]` each) of `batch`'s first two views through `branch`;
/// with `collective`, every worker's rows in rank order (the global batch, see
/// [`Collective::gather_rows`]).
pub(crate) fn project_views<B: FusedAutodiffBackend>(
    branch: &ProjectedEncoder<B>,
    batch: MultiViewBatch<B>,
    objective: &'static str,
    collective: Option<&Collective>,
) -> Result<(Tensor<B, 2>, Tensor<B, 2>)> {
    let (a, b) = two_views(batch, objective)?;
    let (z1, z2) = branch.project_pair(a, b);
    match collective {
        Some(collective) => Ok((collective.gather_rows(z1)?, collective.gather_rows(z2)?)),
        None => Ok((z1, z2)),
    }
}

/// The first two views of `batch`, which must have at least two of equal shape and batch size
/// of at least 2 (the contrastive and variance terms need it).
pub(crate) fn two_views<B: FusedBackend>(
    batch: MultiViewBatch<B>,
    objective: &'static str,
) -> Result<(Tensor<B, 4>, Tensor<B, 4>)> {
    let mut views = batch.views.into_iter();
    let (Some(a), Some(b)) = (views.next(), views.next()) else {
        return Err(crate::error::ObjectiveError::Batch {
            objective,
            what: "views",
            message: "needs two views per image (use MultiView::two_views or asymmetric)".into(),
        });
    };
    ensure(
        a.dims() == b.dims(),
        ObjectiveError::batch,
        objective,
        "views",
        || format!("differ in shape: {:?} vs {:?}", a.dims(), b.dims()),
    )?;
    ensure(
        a.dims()[0] >= 2,
        ObjectiveError::batch,
        objective,
        "size",
        || format!("is {}; at least 2 images are needed", a.dims()[0]),
    )?;
    Ok((a, b))
}

/// Loss plus the monitors every joint-embedding objective reports on its two embeddings:
/// `embedding_std` (collapse: near 0 when collapsed, about `1/sqrt(dim)` when spread) and
/// `positive_similarity` (mean cosine of the two views).
pub(crate) fn pair_metrics<B: FusedBackend>(
    loss: &Tensor<B, 1>,
    z1: &Tensor<B, 2>,
    z2: &Tensor<B, 2>,
) -> crate::objective::Metrics {
    let mut metrics = crate::monitor::loss_and_collapse_metrics(loss, z1.clone());
    metrics.push_tensor(
        "positive_similarity",
        crate::ops::cosine_similarity(z1.clone().detach(), z2.clone().detach()).mean(),
    );
    metrics
}

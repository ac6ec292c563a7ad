//! The objective kinds a recipe may name (`[objective] kind`), and what each needs of the data
//! and model.

pretrain::data::named_enum! {
    /// A pre-training objective, named in kebab case in recipes (`barlow-twins`; [`Named`]).
    ///
    /// [`Named`]: pretrain::data::Named
    pub enum ObjectiveKind {
        /// SimCLR: NT-Xent between two augmented views.
        Simclr,
        /// MoCo v2: InfoNCE against a queue of momentum-encoded keys.
        Moco,
        /// BYOL: a predictor regresses an EMA target's projection.
        Byol,
        /// SimSiam: BYOL without the EMA target (stop-gradient).
        Simsiam,
        /// Barlow Twins: cross-correlation towards the identity.
        BarlowTwins,
        /// VICReg: variance, invariance and covariance terms.
        Vicreg,
        /// MAE: reconstruct masked ViT patches with a light decoder.
        Mae,
        /// SimMIM: reconstruct masked patches from the full token sequence.
        Simmim,
        /// Denoising autoencoder.
        Dae,
        /// Masked language modeling (BERT).
        Mlm,
        /// Causal language modeling (GPT).
        Clm,
    }
}

impl ObjectiveKind {
    /// Whether it trains on texts (`mlm`, `clm`); every other kind trains on images.
    pub fn is_text(self) -> bool {
        matches!(self, Self::Mlm | Self::Clm)
    }

    /// Whether it compares two augmented views (the ones `objective.augment` and
    /// `objective.views` configure).
    pub fn is_contrastive(self) -> bool {
        matches!(
            self,
            Self::Simclr
                | Self::Moco
                | Self::Byol
                | Self::Simsiam
                | Self::BarlowTwins
                | Self::Vicreg
        )
    }

    /// Whether it reconstructs masked ViT patches (`mae`, `simmim`): evaluations see the
    /// encoder without masking.
    pub fn masks_images(self) -> bool {
        matches!(self, Self::Mae | Self::Simmim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretrain::data::Named;

    #[test]
    fn kinds_are_named_in_kebab_case_and_grouped() {
        pretrain::data::names::assert_serde_names::<ObjectiveKind>();
        assert_eq!(ObjectiveKind::BarlowTwins.name(), "barlow-twins");
        let text: Vec<_> = <ObjectiveKind as strum::VariantArray>::VARIANTS
            .iter()
            .filter(|k| k.is_text())
            .map(|k| k.name())
            .collect();
        assert_eq!(text, ["mlm", "clm"]);
        assert!(ObjectiveKind::Vicreg.is_contrastive() && !ObjectiveKind::Mae.is_contrastive());
    }
}

//! Parameter counts computed from configurations, before anything is allocated. Every model and
//! head built here checks its count against [`MAX_PARAMETERS`] first, so a width of 10^6 in a
//! recipe or a program is an error naming the model, not an allocation abort (or an
//! out-of-memory kill) halfway through initialization. The counts are exact (each config's
//! `num_params` is tested against burn's count of the built module), so scaling sweeps can read
//! model sizes without building the models.

use crate::error::{ModelError, Result};

/// The most parameters a model built here may have: 2^32 (about 4.3 billion, 17 GB of `f32`
/// weights before gradients and optimizer state), above any model a single process here trains.
pub const MAX_PARAMETERS: u128 = 1 << 32;

/// `factors` multiplied without overflow (saturating at `u128::MAX`).
pub fn product(factors: &[usize]) -> u128 {
    factors
        .iter()
        .fold(1u128, |acc, &f| acc.saturating_mul(f as u128))
}

/// Parameters of a linear layer `d_in -> d_out`.
pub fn linear(d_in: usize, d_out: usize, bias: bool) -> u128 {
    product(&[d_in, d_out]).saturating_add(if bias { d_out as u128 } else { 0 })
}

/// Parameters of a layer norm over `d` features (scale and shift).
pub fn layer_norm(d: usize) -> u128 {
    product(&[2, d])
}

/// Values of a batch norm over `c` channels: scale, shift and the two running statistics
/// (burn counts those too, and they are allocated all the same).
pub fn batch_norm(c: usize) -> u128 {
    product(&[4, c])
}

/// Parameters of a `k x k` convolution (or transposed convolution) `c_in -> c_out`.
pub fn conv(c_in: usize, c_out: usize, k: usize, bias: bool) -> u128 {
    product(&[c_in, c_out, k, k]).saturating_add(if bias { c_out as u128 } else { 0 })
}

/// Sum of `counts` without overflow.
pub fn sum(counts: impl IntoIterator<Item = u128>) -> u128 {
    counts.into_iter().fold(0, u128::saturating_add)
}

/// Refuses `count` parameters for `model` when above [`MAX_PARAMETERS`].
pub fn check(model: &'static str, count: u128) -> Result<()> {
    if count <= MAX_PARAMETERS {
        return Ok(());
    }
    Err(ModelError::config(
        model,
        "size",
        format!(
            "of {count} parameters is above the bound of {MAX_PARAMETERS}; a width, depth or \
             vocabulary is far too large"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::num_params;
    use crate::testing::TestBackend as B;
    use crate::{
        AdapterConfig, BertConfig, ConvAutoencoderConfig, GptConfig, GptPositions, LinearHead,
        LoraConfig, MaeConfig, MlpAutoencoderConfig, MlpHeadConfig, PositionEmbedding,
        ResNetConfig, SmallCnnConfig, VitConfig,
    };

    /// Asserts that `counted` (from a config) equals burn's count of the module `built`.
    fn assert_count<M: burn::module::Module<B>>(name: &str, counted: u128, built: Result<M>) {
        let built = num_params(&built.unwrap_or_else(|e| panic!("{name}: {e}")));
        assert_eq!(counted, built as u128, "{name}");
    }

    #[test]
    fn config_counts_equal_the_built_modules() {
        let dev = Default::default();
        for (name, config) in [
            ("gpt-nano", GptConfig::gpt_nano(65)),
            (
                "gpt rope",
                GptConfig::gpt_nano(65).with_positions(GptPositions::Rope),
            ),
            (
                "gpt untied",
                GptConfig::gpt_nano(65).with_tie_embeddings(false),
            ),
            (
                "gpt no bias",
                GptConfig::new(30, 8, 2, 2, 16).with_bias(false),
            ),
            (
                "gpt n_inner 20",
                GptConfig::new(30, 8, 2, 2, 16).with_n_inner(Some(20)),
            ),
        ] {
            assert_count(name, config.num_params(), config.init::<B>(&dev));
        }
        for (name, config) in [
            ("bert-tiny", BertConfig::bert_tiny(100)),
            (
                "bert pre-norm",
                BertConfig::new(50, 32, 2, 4, 64).with_pre_norm(true),
            ),
            (
                "bert no segments",
                BertConfig::new(50, 32, 1, 4, 64).with_type_vocab(0),
            ),
        ] {
            assert_count(name, config.num_params(), config.init::<B>(&dev));
        }
        let learned = VitConfig::new(16, 4, 3, 32, 2, 4).with_position(PositionEmbedding::Learned);
        for (name, config) in [
            ("vit-tiny-28", VitConfig::vit_tiny_28()),
            ("vit learned", learned),
        ] {
            assert_count(name, config.num_params(), config.init::<B>(&dev));
        }
        let mae = MaeConfig::mae_vit_tiny_28();
        assert_count("mae", mae.num_params(), mae.init::<B>(&dev));
        let cnn = SmallCnnConfig::small_cnn_28();
        assert_count("small cnn", cnn.num_params(), cnn.init::<B>(&dev));
        for (name, config) in [
            ("resnet10-narrow", ResNetConfig::resnet10_narrow(3)),
            (
                "resnet equal widths",
                ResNetConfig::new(1, vec![2, 1, 3], vec![8, 8, 16]),
            ),
        ] {
            assert_count(name, config.num_params(), config.init::<B>(&dev));
        }
        let mlp_ae = MlpAutoencoderConfig::digits();
        assert_count("mlp ae", mlp_ae.num_params(), mlp_ae.init::<B>(&dev));
        let conv_ae = ConvAutoencoderConfig::conv_28();
        assert_count("conv ae", conv_ae.num_params(), conv_ae.init::<B>(&dev));
        for (name, config) in [
            ("simclr head", MlpHeadConfig::simclr(32)),
            ("vicreg head", MlpHeadConfig::vicreg(16, 24)),
            (
                "plain head",
                MlpHeadConfig::new(8, vec![12], 4).with_batch_norm(false),
            ),
            (
                "simsiam head",
                MlpHeadConfig::new(8, vec![12], 4).with_output_norm(true),
            ),
        ] {
            assert_count(name, config.num_params(), config.init::<B>(&dev));
        }
        let adapter = AdapterConfig::new().with_bottleneck(5);
        assert_count(
            "adapter",
            adapter.num_params(24),
            adapter.init::<B>(24, &dev),
        );
    }

    #[test]
    fn huge_configs_are_refused_naming_the_model_before_allocating() {
        let dev = Default::default();
        let wide = 1 << 20;
        let refused = |result: Result<()>, model: &str| {
            let message = result.expect_err(model).to_string();
            assert!(
                message.starts_with(&format!("invalid {model} config: size of ")),
                "{message}"
            );
        };
        refused(
            GptConfig::new(50_257, 1024, 12, 4, wide)
                .init::<B>(&dev)
                .map(drop),
            "GPT",
        );
        refused(
            GptConfig::new(usize::MAX, 8, 1, 1, 8)
                .init::<B>(&dev)
                .map(drop),
            "GPT",
        );
        refused(
            BertConfig::new(100, 64, usize::MAX, 2, 64)
                .init::<B>(&dev)
                .map(drop),
            "BERT",
        );
        let vit = VitConfig::vit_tiny_28().with_mlp_ratio(1e9);
        refused(vit.init::<B>(&dev).map(drop), "ViT");
        let mae = MaeConfig::mae_vit_tiny_28().with_decoder_dim(wide);
        refused(mae.init::<B>(&dev).map(drop), "MAE");
        refused(
            SmallCnnConfig::new(1, vec![wide, wide])
                .init::<B>(&dev)
                .map(drop),
            "small CNN",
        );
        let resnet = ResNetConfig::new(1, vec![usize::MAX], vec![64]);
        refused(resnet.init::<B>(&dev).map(drop), "ResNet");
        let mlp_ae = MlpAutoencoderConfig::new(64, vec![wide, wide], 8);
        refused(mlp_ae.init::<B>(&dev).map(drop), "MLP autoencoder");
        let conv_ae = ConvAutoencoderConfig::new(1, 1 << 22, vec![wide], 8);
        refused(conv_ae.init::<B>(&dev).map(drop), "conv autoencoder");
        let head = MlpHeadConfig::new(wide, vec![wide], 8);
        refused(head.init::<B>(&dev).map(drop), "MLP head");
        refused(
            LinearHead::<B>::new(wide, wide, &dev).map(drop),
            "linear head",
        );
        let adapter = AdapterConfig::new().with_bottleneck(usize::MAX);
        refused(adapter.init::<B>(wide, &dev).map(drop), "adapter");
        let lora = LoraConfig::new().with_rank(wide);
        refused(lora.init::<B>(wide, wide, &dev).map(drop), "LoRA");
        // 70 halvings do not fit a usize: refused by name, not an overflow panic.
        let deep = ConvAutoencoderConfig::new(1, 28, vec![1; 70], 8);
        let message = deep.init::<B>(&dev).map(drop).unwrap_err().to_string();
        assert!(
            message.contains("image_size 28 must be divisible by 2^70"),
            "{message}"
        );
    }

    #[test]
    fn counts_saturate_instead_of_overflowing() {
        assert_eq!(product(&[usize::MAX, usize::MAX, 9]), u128::MAX);
        assert_eq!(sum([u128::MAX, 1]), u128::MAX);
        assert_eq!(linear(3, 4, true), 16);
        assert_eq!(conv(2, 5, 3, false), 90);
    }

    #[test]
    fn the_bound_is_inclusive_and_the_error_names_the_size() {
        assert!(check("GPT", MAX_PARAMETERS).is_ok());
        let message = check("GPT", MAX_PARAMETERS + 1).unwrap_err().to_string();
        assert!(message.starts_with("invalid GPT config: size of 4294967297 parameters"));
    }
}

//! Parameter bookkeeping shared by the strategies: freezing by module path, trainable-parameter
//! counts, and the depth ("layer id") of every parameter for layer-wise learning-rate decay.
//!
//! Paths are the module tree's field names joined by dots (`blocks.3.attn.query.weight`), the
//! same names the safetensors checkpoints use.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Bool, Int, Tensor};
use pretrain_models::FusedBackend;
use pretrain_models::path::PathStack;
use serde::{Deserialize, Serialize};

/// Field names of the block lists that give a model its depth (ViT and ResNet `blocks`, BERT
/// `layers`, GPT `h` as in GPT-2).
const DEPTH_CONTAINERS: [&str; 3] = ["blocks", "layers", "h"];

struct Freezer<F> {
    path: PathStack,
    freeze: F,
}

impl<B: FusedBackend, F: Fn(&str) -> bool> ModuleMapper<B> for Freezer<F> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if (self.freeze)(&self.path.path()) {
            param.set_require_grad(false)
        } else {
            param
        }
    }
}

/// Stops gradients to every float parameter whose path satisfies `freeze`; the optimizer then
/// leaves them untouched.
pub fn freeze_where<B: FusedBackend, M: Module<B>>(module: M, freeze: impl Fn(&str) -> bool) -> M {
    module.map(&mut Freezer {
        path: PathStack::default(),
        freeze,
    })
}

/// Trainable and total parameter counts of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCount {
    /// Scalars that receive gradients.
    pub trainable: usize,
    /// All scalars (running statistics of batch norms included).
    pub total: usize,
}

impl ParamCount {
    /// Trainable share in `[0, 1]`.
    pub fn trainable_share(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.trainable as f64 / self.total as f64
        }
    }
}

struct Counter {
    count: ParamCount,
}

impl<B: FusedBackend> ModuleVisitor<B> for Counter {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let n = param.shape().num_elements();
        self.count.total += n;
        if param.is_require_grad() {
            self.count.trainable += n;
        }
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
        self.count.total += param.shape().num_elements();
    }

    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
        self.count.total += param.shape().num_elements();
    }
}

/// Counts the parameters of `module` (on an autodiff backend, where "trainable" is meaningful).
pub fn count_params<B: FusedBackend, M: Module<B>>(module: &M) -> ParamCount {
    let mut counter = Counter {
        count: ParamCount {
            trainable: 0,
            total: 0,
        },
    };
    module.visit(&mut counter);
    counter.count
}

/// Where a parameter sits in depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Depth {
    /// Before the first block (patch/token embeddings, CLS token, positions, CNN stem).
    Embedding,
    /// Inside block `i` (0-based).
    Block(usize),
    /// After the last block (final norm, pooler, heads).
    Top,
}

struct DepthVisitor {
    path: PathStack,
    seen_block: bool,
    depths: Vec<(ParamId, String, Depth)>,
}

impl DepthVisitor {
    fn depth(&mut self, path: &[String]) -> Depth {
        let block = path
            .windows(2)
            .find(|w| DEPTH_CONTAINERS.contains(&w[0].as_str()))
            .and_then(|w| w[1].parse::<usize>().ok());
        match block {
            Some(i) => {
                self.seen_block = true;
                Depth::Block(i)
            }
            None if self.seen_block => Depth::Top,
            None => Depth::Embedding,
        }
    }
}

impl<B: FusedBackend> ModuleVisitor<B> for DepthVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let segments = self.path.segments();
        let depth = self.depth(&segments);
        self.depths.push((param.id, segments.join("."), depth));
    }
}

/// Every float parameter with its path and [`Depth`], in module order. Parameters are visited
/// in field order, so anything before the first block is an embedding and anything after the
/// blocks (a wrapper's head included) is on top.
pub fn param_depths<B: FusedBackend, M: Module<B>>(module: &M) -> Vec<(ParamId, String, Depth)> {
    let mut visitor = DepthVisitor {
        path: PathStack::default(),
        seen_block: false,
        depths: Vec::new(),
    };
    module.visit(&mut visitor);
    visitor.depths
}

/// Number of blocks found by [`param_depths`].
pub fn num_blocks(depths: &[(ParamId, String, Depth)]) -> usize {
    depths
        .iter()
        .filter_map(|(_, _, d)| match d {
            Depth::Block(i) => Some(i + 1),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Layer-wise learning-rate decay (BEiT, MAE fine-tuning): with `n` blocks, layer ids run
/// from 0 (embeddings) through `1..=n` (blocks) to `n + 1` (top), and a parameter's learning
/// rate is multiplied by `decay^(n + 1 - layer_id)`.
pub fn layer_decay_scales(depths: &[(ParamId, String, Depth)], decay: f64) -> Vec<(ParamId, f64)> {
    let n = num_blocks(depths);
    depths
        .iter()
        .map(|(id, _, depth)| {
            let layer = match depth {
                Depth::Embedding => 0,
                Depth::Block(i) => i + 1,
                Depth::Top => n + 1,
            };
            (*id, decay.powi((n + 1 - layer) as i32))
        })
        .collect()
}

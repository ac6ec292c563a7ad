//! `Autodiff<B>` implements [`FusedBackend`] with hand-written backward passes that call the
//! inner backend's fused gradients.

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::Shape;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{ConvOptions, FloatTensor, IntTensor};

use super::{AttentionMasks, FusedBackend};

/// Backward pass of [`FusedBackend::fused_conv2d`]: the inner backend's fused input and weight
/// gradients.
#[derive(Debug)]
struct FusedConv2dBackward;

impl<B: FusedBackend> Backward<B, 2> for FusedConv2dBackward {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        if let Some(node) = node_x {
            let grad_x =
                B::fused_conv2d_x_grad(x.clone(), weight.clone(), grad.clone(), options.clone());
            grads.register::<B>(node.id, grad_x);
        }
        if let Some(node) = node_weight {
            grads.register::<B>(
                node.id,
                B::fused_conv2d_weight_grad(x, weight, grad, options),
            );
        }
    }
}

impl<B: FusedBackend, C: CheckpointStrategy> FusedBackend for Autodiff<B, C> {
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match FusedConv2dBackward
            .prepare::<C>([x.node.clone(), weight.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let output = B::fused_conv2d(x.primitive, weight.primitive, options.clone());
                prep.finish((x_state, weight_state, options), output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::fused_conv2d(x.primitive, weight.primitive, options))
            }
        }
    }

    fn fused_gelu(x: FloatTensor<Self>, tanh: bool) -> FloatTensor<Self> {
        match FusedGeluBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                prep.finish((x_state, tanh), B::fused_gelu(x.primitive, tanh))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_gelu(x.primitive, tanh)),
        }
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        match FusedLayerNormBackward
            .prepare::<C>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let output =
                    B::fused_layer_norm(x.primitive, gamma.primitive, beta.primitive, epsilon);
                prep.finish((x_state, gamma_state, epsilon), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_layer_norm(
                x.primitive,
                gamma.primitive,
                beta.primitive,
                epsilon,
            )),
        }
    }

    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        masks: AttentionMasks<Self>,
    ) -> FloatTensor<Self> {
        // The masks are constants: their inner tensors.
        let masks = AttentionMasks::<B> {
            padding: masks.padding,
            causal_offset: masks.causal_offset,
            dropout: masks.dropout.map(|keep| keep.primitive),
        };
        match FusedAttentionBackward
            .prepare::<C>([q.node.clone(), k.node.clone(), v.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let states = [&q, &k, &v].map(|t| prep.checkpoint(t));
                let output =
                    B::fused_attention(q.primitive, k.primitive, v.primitive, masks.clone());
                prep.finish((states, masks), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_attention(
                q.primitive,
                k.primitive,
                v.primitive,
                masks,
            )),
        }
    }

    /// The inner backend's factors, untracked (a constant of the graph).
    fn fused_dropout_keep(shape: Shape, prob: f64, device: &Self::Device) -> FloatTensor<Self> {
        Self::from_inner(B::fused_dropout_keep(shape, prob, device))
    }

    fn fused_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        match FusedCrossEntropyBackward
            .prepare::<C>([logits.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let logits_state = prep.checkpoint(&logits);
                let output = B::fused_cross_entropy(logits.primitive, targets.clone());
                prep.finish((logits_state, targets), output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::fused_cross_entropy(logits.primitive, targets))
            }
        }
    }
}

/// Backward pass of [`FusedBackend::fused_cross_entropy`]: the inner backend's fused gradient.
#[derive(Debug)]
struct FusedCrossEntropyBackward;

impl<B: FusedBackend> Backward<B, 1> for FusedCrossEntropyBackward {
    type State = (NodeId, IntTensor<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_logits] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (logits_state, targets) = ops.state;
        let logits = checkpointer.retrieve_node_output::<FloatTensor<B>>(logits_state);
        if let Some(node) = node_logits {
            grads.register::<B>(
                node.id,
                B::fused_cross_entropy_backward(logits, targets, grad),
            );
        }
    }
}

/// Backward pass of [`FusedBackend::fused_attention`]: the inner backend's fused gradients (the
/// attention weights are recomputed there, not kept from the forward pass).
#[derive(Debug)]
struct FusedAttentionBackward;

impl<B: FusedBackend> Backward<B, 3> for FusedAttentionBackward {
    type State = ([NodeId; 3], AttentionMasks<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (states, masks) = ops.state;
        let [q, k, v] =
            states.map(|state| checkpointer.retrieve_node_output::<FloatTensor<B>>(state));
        let qkv_grads = B::fused_attention_backward(q, k, v, masks, grad);
        for (node, grad) in ops.parents.into_iter().zip(qkv_grads) {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// Backward pass of [`FusedBackend::fused_gelu`]: the inner backend's fused derivative.
#[derive(Debug)]
struct FusedGeluBackward;

impl<B: FusedBackend> Backward<B, 1> for FusedGeluBackward {
    type State = (NodeId, bool);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, tanh) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::fused_gelu_backward(x, grad, tanh));
        }
    }
}

/// Backward pass of [`FusedBackend::fused_layer_norm`]: the inner backend's fused gradients.
#[derive(Debug)]
struct FusedLayerNormBackward;

impl<B: FusedBackend> Backward<B, 3> for FusedLayerNormBackward {
    type State = (NodeId, NodeId, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, epsilon) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
        let [grad_x, grad_gamma, grad_beta] = B::fused_layer_norm_backward(x, gamma, grad, epsilon);
        for (node, grad) in [
            (node_x, grad_x),
            (node_gamma, grad_gamma),
            (node_beta, grad_beta),
        ] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

//! Each backbone block written as ONNX nodes, computing what [`Block::forward`] computes.

use super::graph::{int, ints, GraphBuilder};
use crate::backbone::{Block, Pool, TokenEmbed, TransformerBlock, LAYER_NORM_EPS};
use crate::nn::{candle_error, Activation, ConvBn, ConvKind};
use exeml_core::Result;

/// Write `block`, whose input `x` has the shape `dims` (`n×c×h×w`, `n` any), and return its
/// output's name.
pub(crate) fn block(
    g: &mut GraphBuilder,
    block: &Block,
    x: &str,
    dims: &[usize],
) -> Result<String> {
    Ok(match block {
        Block::Conv(c) => conv(g, c, x)?,
        Block::Inverted(b) => {
            let hidden = match &b.expand {
                Some(expand) => conv(g, expand, x)?,
                None => x.to_string(),
            };
            let depthwise = conv(g, &b.depthwise, &hidden)?;
            let y = conv(g, &b.project, &depthwise)?;
            if b.residual {
                g.node("Add", &[&y, x], vec![])
            } else {
                y
            }
        }
        Block::Residual(b) => {
            let mut y = x.to_string();
            for c in &b.convs {
                y = conv(g, c, &y)?;
            }
            let shortcut = match &b.downsample {
                Some(downsample) => conv(g, downsample, x)?,
                None => x.to_string(),
            };
            let sum = g.node("Add", &[&y, &shortcut], vec![]);
            g.node("Relu", &[&sum], vec![])
        }
        &Block::MaxPool {
            kernel,
            stride,
            pad,
        } => {
            let (k, s, p) = (kernel as i64, stride as i64, pad as i64);
            g.node(
                "MaxPool",
                &[x],
                vec![
                    ints("kernel_shape", &[k, k]),
                    ints("strides", &[s, s]),
                    ints("pads", &[p, p, p, p]),
                ],
            )
        }
        Block::ConvNext(b) => {
            let depthwise = conv(g, &b.depthwise, x)?;
            let normed = channel_norm(g, &depthwise);
            let expanded = conv(g, &b.expand, &normed)?;
            let y = conv(g, &b.project, &expanded)?;
            g.node("Add", &[&y, x], vec![])
        }
        Block::ChannelNorm { affine, pool } => {
            let pooled = match pool {
                Pool::None => x.to_string(),
                Pool::Average => g.node(
                    "ReduceMean",
                    &[x],
                    vec![ints("axes", &[2, 3]), int("keepdims", 1)],
                ),
                Pool::ClassToken => {
                    let (starts, ends, axes) = (
                        g.ints("start", &[0]),
                        g.ints("end", &[1]),
                        g.ints("axis", &[3]),
                    );
                    g.node("Slice", &[x, &starts, &ends, &axes], vec![])
                }
            };
            let normed = channel_norm(g, &pooled);
            conv(g, affine, &normed)?
        }
        Block::NormConv(c) => {
            let normed = channel_norm(g, x);
            conv(g, c, &normed)?
        }
        Block::TokenEmbed(e) => token_embed(g, e, x, dims)?,
        Block::Transformer(b) => transformer(g, b, x, dims)?,
    })
}

/// The mean over the positions of `x` (`n×c×h×w` → `n×c`): the pooled features.
pub(crate) fn global_average(g: &mut GraphBuilder, x: &str) -> String {
    g.node(
        "ReduceMean",
        &[x],
        vec![ints("axes", &[2, 3]), int("keepdims", 0)],
    )
}

/// A convolution (or per-channel scale) with its bias, then its activation.
fn conv(g: &mut GraphBuilder, c: &ConvBn, x: &str) -> Result<String> {
    let out = c.weight.dim(0).map_err(candle_error)?;
    let bias = g.tensor("bias", &c.bias, Some(&[out]))?;
    let y = match c.kind {
        ConvKind::Scale => {
            let scale = g.tensor("scale", &c.weight, Some(&[1, out, 1, 1]))?;
            let shift = g.tensor("shift", &c.bias, Some(&[1, out, 1, 1]))?;
            let scaled = g.node("Mul", &[x, &scale], vec![]);
            g.node("Add", &[&scaled, &shift], vec![])
        }
        ConvKind::Pointwise => {
            let inputs = c.weight.dim(1).map_err(candle_error)?;
            let weight = g.weight("weight", &c.weight, Some(&[out, inputs, 1, 1]))?;
            g.node(
                "Conv",
                &[x, &weight, &bias],
                vec![ints("kernel_shape", &[1, 1])],
            )
        }
        ConvKind::Full { stride } | ConvKind::Depthwise { stride } => {
            let k = c.weight.dim(2).map_err(candle_error)? as i64;
            let (s, p) = (stride as i64, k / 2);
            let weight = g.weight("weight", &c.weight, None)?;
            let group = match c.kind {
                ConvKind::Depthwise { .. } => out as i64,
                _ => 1,
            };
            g.node(
                "Conv",
                &[x, &weight, &bias],
                vec![
                    ints("kernel_shape", &[k, k]),
                    ints("strides", &[s, s]),
                    ints("pads", &[p, p, p, p]),
                    int("group", group),
                ],
            )
        }
        ConvKind::Patchify => {
            let k = c.weight.dim(2).map_err(candle_error)? as i64;
            let weight = g.weight("weight", &c.weight, None)?;
            g.node(
                "Conv",
                &[x, &weight, &bias],
                vec![ints("kernel_shape", &[k, k]), ints("strides", &[k, k])],
            )
        }
    };
    Ok(activation(g, &y, c.activation))
}

/// `activation` applied to `x`.
fn activation(g: &mut GraphBuilder, x: &str, activation: Activation) -> String {
    match activation {
        Activation::Identity => x.to_string(),
        Activation::Relu => g.node("Relu", &[x], vec![]),
        Activation::Relu6 => {
            let (low, high) = (g.scalar("zero", 0.0), g.scalar("six", 6.0));
            g.node("Clip", &[x, &low, &high], vec![])
        }
        Activation::Gelu => {
            // x·Φ(x) = x · (1 + erf(x/√2)) / 2, as PyTorch exports the exact GELU before
            // opset 20.
            let root2 = g.scalar("sqrt2", std::f32::consts::SQRT_2);
            let (one, half) = (g.scalar("one", 1.0), g.scalar("half", 0.5));
            let scaled = g.node("Div", &[x, &root2], vec![]);
            let erf = g.node("Erf", &[&scaled], vec![]);
            let phi = g.node("Add", &[&erf, &one], vec![]);
            let y = g.node("Mul", &[x, &phi], vec![]);
            g.node("Mul", &[&y, &half], vec![])
        }
    }
}

/// Layer norm over the channels (dimension 1) at each position, without scale and shift:
/// `(x − mean) / √(var + ε)`, the variance biased.
fn channel_norm(g: &mut GraphBuilder, x: &str) -> String {
    let over_channels = || vec![ints("axes", &[1]), int("keepdims", 1)];
    let mean = g.node("ReduceMean", &[x], over_channels());
    let centred = g.node("Sub", &[x, &mean], vec![]);
    let squares = g.node("Mul", &[&centred, &centred], vec![]);
    let variance = g.node("ReduceMean", &[&squares], over_channels());
    let eps = g.scalar("eps", LAYER_NORM_EPS as f32);
    let shifted = g.node("Add", &[&variance, &eps], vec![]);
    let std = g.node("Sqrt", &[&shifted], vec![]);
    g.node("Div", &[&centred, &std], vec![])
}

/// ViT's patches (`n×c×h×w`) with their position embeddings as tokens after the class token
/// (`n×c×1×(1 + h·w)`).
fn token_embed(g: &mut GraphBuilder, e: &TokenEmbed, x: &str, dims: &[usize]) -> Result<String> {
    let &[_, c, h, w] = dims else {
        return Err(exeml_core::Error::invalid(
            "onnx export",
            format!("token embedding of a {dims:?} input"),
        ));
    };
    let positions = e.positions_for(h, w).map_err(candle_error)?;
    let positions = g.tensor("positions", &positions, Some(&[1, c, h, w]))?;
    let placed = g.node("Add", &[x, &positions], vec![]);
    let shape = g.ints("shape", &[0, c as i64, 1, (h * w) as i64]);
    let patches = g.node("Reshape", &[&placed, &shape], vec![]);
    // The class token, repeated over the batch: Expand to [n, c, 1, 1], n read from the input.
    let class = g.tensor("class", &e.class, Some(&[1, c, 1, 1]))?;
    let input_shape = g.node("Shape", &[x], vec![]);
    let first = g.ints("index", &[0]);
    let batch = g.node("Gather", &[&input_shape, &first], vec![int("axis", 0)]);
    let rest = g.ints("shape", &[c as i64, 1, 1]);
    let class_shape = g.node("Concat", &[&batch, &rest], vec![int("axis", 0)]);
    let classes = g.node("Expand", &[&class, &class_shape], vec![]);
    Ok(g.node("Concat", &[&classes, &patches], vec![int("axis", 3)]))
}

/// A pre-norm transformer block on tokens `x` (`n×c×1×t`).
fn transformer(
    g: &mut GraphBuilder,
    b: &TransformerBlock,
    x: &str,
    dims: &[usize],
) -> Result<String> {
    let &[_, c, 1, t] = dims else {
        return Err(exeml_core::Error::invalid(
            "onnx export",
            format!("transformer block on a {dims:?} input"),
        ));
    };
    let normed = channel_norm(g, x);
    let qkv = conv(g, &b.qkv, &normed)?;
    let attended = attention(g, &qkv, b.heads, c, t);
    let projected = conv(g, &b.proj, &attended)?;
    let y = g.node("Add", &[x, &projected], vec![]);
    let normed = channel_norm(g, &y);
    let hidden = conv(g, &b.fc1, &normed)?;
    let mlp = conv(g, &b.fc2, &hidden)?;
    Ok(g.node("Add", &[&y, &mlp], vec![]))
}

/// Multi-head self-attention of `qkv` (`n×3c×1×t`) → `n×c×1×t`, as the block's `attention`.
fn attention(g: &mut GraphBuilder, qkv: &str, heads: usize, c: usize, t: usize) -> String {
    let d = c / heads;
    let (heads_i, d_i, t_i) = (heads as i64, d as i64, t as i64);
    let shape = g.ints("shape", &[0, 3, heads_i, d_i, t_i]);
    let parts = g.node("Reshape", &[qkv, &shape], vec![]);
    let part = |g: &mut GraphBuilder, s: i64| {
        let index = g.int_scalar("part", s);
        g.node("Gather", &[&parts, &index], vec![int("axis", 1)]) // n×heads×d×t
    };
    let (queries, keys, values) = (part(g, 0), part(g, 1), part(g, 2));
    let swap_last = || vec![ints("perm", &[0, 1, 3, 2])];
    let queries = g.node("Transpose", &[&queries], swap_last()); // n×heads×t×d
    let scores = g.node("MatMul", &[&queries, &keys], vec![]); // n×heads×t(query)×t(key)
    let scale = g.scalar("scale", (1.0 / (d as f64).sqrt()) as f32);
    let scaled = g.node("Mul", &[&scores, &scale], vec![]);
    let weights = g.node("Softmax", &[&scaled], vec![int("axis", -1)]);
    let weights = g.node("Transpose", &[&weights], swap_last()); // n×heads×t(key)×t(query)
    let out = g.node("MatMul", &[&values, &weights], vec![]); // n×heads×d×t(query)
    let shape = g.ints("shape", &[0, c as i64, 1, t_i]);
    g.node("Reshape", &[&out, &shape], vec![])
}

//! A trained image model as one ONNX file (opset 17), for runtimes other than exeml
//! (onnxruntime, TensorRT, OpenVINO, a browser, a phone): the same backbone, fine-tuned blocks,
//! head, ensemble and calibration as [`ImageModel`]'s predictions, with the ImageNet
//! normalisation inside the graph.
//!
//! The graph takes `pixels` (`float32`, `batch×3×R×R`, RGB values in `[0, 1]`, channels first:
//! the centre square covering 7/8 of the image's shorter side, resized to `R×R`, as
//! [`crate::data::onnx_input`] computes) and returns `probabilities` (`batch×classes`, as
//! exeml's own predictions) and `embedding` (`batch×features`, as [`ImageModel::embed_image`]).
//! The class names and the rest of what a caller needs are in the file's metadata
//! (`exeml.classes`, …).

mod graph;
mod lower;
mod proto;

use crate::data::preprocess::{MEAN, STD};
use crate::head::LinearHead;
use crate::model::{decision_thresholds, ImageModel};
use crate::nn::{candle_error, on_workers};
use crate::Backbone;
use candle_core::Tensor;
use exeml_core::fsio::write_atomic;
use exeml_core::{ProblemType, Result};
use graph::{int, GraphBuilder};
use prost::Message;
use proto::{
    DataType, Dimension, DimensionValue, GraphProto, ModelProto, OperatorSetIdProto,
    StringStringEntryProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};
use std::path::Path;

/// The ONNX operator set the graph uses (every runtime of the last few years reads it).
pub const OPSET: i64 = 17;
/// The IR version that goes with [`OPSET`].
const IR_VERSION: i64 = 8;
/// The graph's input.
pub const INPUT: &str = "pixels";
/// The output of class probabilities.
pub const PROBABILITIES: &str = "probabilities";
/// The output of embeddings.
pub const EMBEDDING: &str = "embedding";
/// How the input is made from an image, for the file's metadata.
const INPUT_DOC: &str = "float32 batch x 3 x R x R, RGB values / 255 in [0, 1], channels first: \
the centre square covering 7/8 of the shorter side, resized to R x R (bilinear); the graph \
normalises with the ImageNet mean and standard deviation itself";

/// How a model is written as ONNX.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnnxOptions {
    /// Store the backbone's convolution and linear weights as 8-bit integers with one scale
    /// per output channel (about 30 % of the file, for downloads to phones and browsers; the
    /// small depthwise and stem filters and the head stay float32). Runtimes turn them back
    /// into floats when they load the file, so the speed is unchanged and the probabilities
    /// move a little (see docs/images.md).
    pub int8_weights: bool,
}

/// Write `model` as an ONNX file at `path` (atomically: a temporary file renamed into place).
pub fn export_onnx(model: &ImageModel, path: &Path, options: OnnxOptions) -> Result<()> {
    write_atomic(path, &onnx_bytes(model, options)?)
}

/// The [`exeml_core::Exporter`] of image models as ONNX: `model.onnx` in the given folder.
#[derive(Debug, Default, Clone, Copy)]
pub struct OnnxExporter {
    /// How the file is written.
    pub options: OnnxOptions,
}

impl exeml_core::Exporter for OnnxExporter {
    type Model = ImageModel;

    fn export(&self, model: &ImageModel, dir: &Path) -> Result<std::path::PathBuf> {
        let path = dir.join("model.onnx");
        export_onnx(model, &path, self.options)?;
        Ok(path)
    }
}

/// `model` as the bytes of an ONNX file.
pub fn onnx_bytes(model: &ImageModel, options: OnnxOptions) -> Result<Vec<u8>> {
    Ok(model_proto(model, options)?.encode_to_vec())
}

fn model_proto(model: &ImageModel, options: OnnxOptions) -> Result<ModelProto> {
    let manifest = &model.manifest;
    let side = manifest.resolution as usize;
    let mut g = GraphBuilder::new(options.int8_weights);
    let mean = g.floats("imagenet_mean", &[1, 3, 1, 1], &MEAN);
    let std = g.floats("imagenet_std", &[1, 3, 1, 1], &STD);
    let centred = g.node("Sub", &[INPUT, &mean], vec![]);
    let x = g.node("Div", &[&centred, &std], vec![]);

    let backbone = model.backbone();
    let dims = block_input_dims(backbone, side)?;
    let members = model.ensemble_members();
    // An ensemble's members share the blocks below the first tuned one: written once.
    let split = match (members.is_empty(), backbone.tuned_from()) {
        (false, Some(first)) => first,
        _ => backbone.blocks().len(),
    };
    let mut shared = x;
    for (block, dims) in backbone.blocks()[..split].iter().zip(&dims) {
        shared = lower::block(&mut g, block, &shared, dims)?;
    }
    let features = top_features(&mut g, backbone, split, &shared, &dims)?;
    g.node_into("Identity", &[&features], vec![], EMBEDDING);
    let mut proba = head(&mut g, model.head(), &features)?;
    if !members.is_empty() {
        let weights: Vec<f64> = manifest.ensemble.iter().map(|e| e.weight).collect();
        let mut weighted = vec![weigh(&mut g, &proba, weights[0])];
        for (member, &weight) in members.iter().zip(&weights[1..]) {
            let features = top_features(&mut g, &member.backbone, split, &shared, &dims)?;
            let p = head(&mut g, &member.head, &features)?;
            weighted.push(weigh(&mut g, &p, weight));
        }
        let parts: Vec<&str> = weighted.iter().map(String::as_str).collect();
        proba = g.node("Sum", &parts, vec![]);
    }
    if let Some(t) = manifest.temperature.filter(|&t| t != 1.0) {
        proba = calibrate(&mut g, &proba, t, model.multilabel());
    }
    g.node_into("Identity", &[&proba], vec![], PROBABILITIES);

    let classes = manifest.classes.len();
    let feature_dim = manifest.backbone.feature_dim();
    let graph = GraphProto {
        node: std::mem::take(&mut g.nodes),
        name: format!("exeml_{}", manifest.backbone),
        initializer: std::mem::take(&mut g.initializers),
        doc_string: model.summary(),
        input: vec![value_info(
            INPUT,
            &[None, Some(3), Some(side), Some(side)],
            INPUT_DOC,
        )],
        output: vec![
            value_info(
                PROBABILITIES,
                &[None, Some(classes)],
                "class probabilities, in the order of exeml.classes",
            ),
            value_info(
                EMBEDDING,
                &[None, Some(feature_dim)],
                "the pooled backbone features the head reads (an ensemble's first member's)",
            ),
        ],
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "exeml".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: "ai.exeml".into(),
        model_version: 1,
        doc_string: model.summary(),
        graph: Some(graph),
        metadata_props: metadata(model, options)?,
    })
}

/// The input shape of each block, from a dry run of one blank image at `side` pixels (the
/// token blocks of a ViT need their grid).
fn block_input_dims(backbone: &Backbone, side: usize) -> Result<Vec<Vec<usize>>> {
    on_workers(|| {
        let mut y = Tensor::zeros(
            (1, 3, side, side),
            candle_core::DType::F32,
            backbone.device(),
        )
        .map_err(candle_error)?;
        let mut dims = Vec::with_capacity(backbone.blocks().len());
        for block in backbone.blocks() {
            dims.push(y.dims().to_vec());
            y = block.forward(&y).map_err(candle_error)?;
        }
        Ok(dims)
    })
}

/// `backbone`'s blocks from `first` on applied to `x`, then pooled: the features.
fn top_features(
    g: &mut GraphBuilder,
    backbone: &Backbone,
    first: usize,
    x: &str,
    dims: &[Vec<usize>],
) -> Result<String> {
    let mut y = x.to_string();
    for (block, dims) in backbone.blocks().iter().zip(dims).skip(first) {
        y = lower::block(g, block, &y, dims)?;
    }
    Ok(lower::global_average(g, &y))
}

/// The head's probabilities of `features` (`n×d`): standardised, the linear layer, then softmax
/// (or a sigmoid per label).
fn head(g: &mut GraphBuilder, head: &LinearHead, features: &str) -> Result<String> {
    let d = head.mean.elem_count();
    let mean = g.tensor("head_mean", &head.mean, Some(&[1, d]))?;
    let inv_std = g.tensor("head_inv_std", &head.inv_std, Some(&[1, d]))?;
    let weight = g.tensor("head_weight", &head.weight, None)?;
    let bias = g.tensor("head_bias", &head.bias, None)?;
    let centred = g.node("Sub", &[features, &mean], vec![]);
    let z = g.node("Mul", &[&centred, &inv_std], vec![]);
    let logits = g.node("Gemm", &[&z, &weight, &bias], vec![int("transB", 1)]);
    Ok(if head.multilabel {
        g.node("Sigmoid", &[&logits], vec![])
    } else {
        g.node("Softmax", &[&logits], vec![int("axis", 1)])
    })
}

/// `p` times an ensemble member's weight.
fn weigh(g: &mut GraphBuilder, p: &str, weight: f64) -> String {
    let w = g.scalar("member_weight", weight as f32);
    g.node("Mul", &[p, &w], vec![])
}

/// Probabilities rescaled at `temperature`, as [`exeml_core::calibration`] does: a softmax of
/// `ln p / T`, or `sigmoid(logit(p) / T)` per label.
fn calibrate(g: &mut GraphBuilder, p: &str, temperature: f64, multilabel: bool) -> String {
    let inverse = g.scalar("inverse_temperature", (1.0 / temperature) as f32);
    if multilabel {
        // p kept inside (0, 1) so that both logarithms are finite: f64's epsilon (as the
        // calibration's floor) and the largest f32 below 1.
        let low = g.scalar("floor", f64::EPSILON as f32);
        let high = g.scalar("ceiling", 1.0 - f32::EPSILON / 2.0);
        let one = g.scalar("one", 1.0);
        let kept = g.node("Clip", &[p, &low, &high], vec![]);
        let rest = g.node("Sub", &[&one, &kept], vec![]);
        let (log_p, log_rest) = (
            g.node("Log", &[&kept], vec![]),
            g.node("Log", &[&rest], vec![]),
        );
        let logit = g.node("Sub", &[&log_p, &log_rest], vec![]);
        let scaled = g.node("Mul", &[&logit, &inverse], vec![]);
        g.node("Sigmoid", &[&scaled], vec![])
    } else {
        let floor = g.scalar("floor", f64::EPSILON as f32);
        let kept = g.node("Max", &[p, &floor], vec![]);
        let logs = g.node("Log", &[&kept], vec![]);
        let scaled = g.node("Mul", &[&logs, &inverse], vec![]);
        g.node("Softmax", &[&scaled], vec![int("axis", 1)])
    }
}

/// The metadata a caller needs besides the graph: classes, problem, resolution, backbone, input
/// and, for a multi-label model, the per-label thresholds on the probabilities.
fn metadata(model: &ImageModel, options: OnnxOptions) -> Result<Vec<StringStringEntryProto>> {
    let manifest = &model.manifest;
    let mut props = vec![
        ("exeml.classes", to_json(&manifest.classes)?),
        ("exeml.problem", manifest.problem.to_string()),
        ("exeml.resolution", manifest.resolution.to_string()),
        ("exeml.backbone", manifest.backbone.to_string()),
        ("exeml.input", INPUT_DOC.to_string()),
        (
            "exeml.weights",
            if options.int8_weights {
                "int8: convolution weights with at least 64 per output channel, one symmetric \
                 scale per channel; depthwise and stem filters and the head in float32"
            } else {
                "float32"
            }
            .to_string(),
        ),
    ];
    if manifest.problem == ProblemType::Multilabel {
        let thresholds = decision_thresholds(&manifest.thresholds, manifest.temperature);
        props.push(("exeml.thresholds", to_json(&thresholds)?));
    }
    Ok(props
        .into_iter()
        .map(|(key, value)| StringStringEntryProto {
            key: key.into(),
            value,
        })
        .collect())
}

fn to_json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| exeml_core::Error::invalid("onnx export", e.to_string()))
}

/// A graph input's or output's description: float32 of shape `dims` (`None`: the batch).
fn value_info(name: &str, dims: &[Option<usize>], doc: &str) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(size) => DimensionValue::DimValue(*size as i64),
                None => DimensionValue::DimParam("batch".into()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: doc.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackboneKind;
    use std::collections::HashSet;

    /// The operators the export may use: all in ONNX's default domain at opset 17.
    const OPERATORS: [&str; 27] = [
        "Add",
        "Clip",
        "Concat",
        "Conv",
        "DequantizeLinear",
        "Div",
        "Erf",
        "Expand",
        "Gather",
        "Gemm",
        "Identity",
        "Log",
        "MatMul",
        "Max",
        "MaxPool",
        "Mul",
        "ReduceMean",
        "Relu",
        "Reshape",
        "Shape",
        "Sigmoid",
        "Slice",
        "Softmax",
        "Sqrt",
        "Sub",
        "Sum",
        "Transpose",
    ];

    /// `kind` from its initialised checkpoint, written to a temporary file and loaded back.
    fn initialised(kind: BackboneKind) -> (tempfile::TempDir, Backbone) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("checkpoint.safetensors");
        let tensors = crate::initial_tensors(kind, 1).expect("init");
        candle_core::safetensors::save(&tensors, &path).expect("save");
        let backbone = Backbone::load(kind, Some(&path), &candle_core::Device::Cpu).expect("load");
        (dir, backbone)
    }

    /// Every node reads only values defined before it (graph inputs, constants, earlier
    /// outputs), defines each output once, and is an allowed operator; the outputs exist.
    fn assert_well_formed(graph: &GraphProto) {
        let mut defined: HashSet<&str> = graph.input.iter().map(|v| v.name.as_str()).collect();
        for constant in &graph.initializer {
            assert!(defined.insert(&constant.name), "{} twice", constant.name);
            let count: i64 = constant.dims.iter().product();
            let width = match constant.data_type {
                t if t == DataType::Int64 as i32 => 8,
                t if t == DataType::Int8 as i32 => 1,
                _ => 4,
            };
            assert_eq!(
                constant.raw_data.len() as i64,
                count * width,
                "{}",
                constant.name
            );
        }
        for node in &graph.node {
            assert!(
                OPERATORS.contains(&node.op_type.as_str()),
                "{}",
                node.op_type
            );
            for input in &node.input {
                assert!(
                    defined.contains(input.as_str()),
                    "{} reads {input}",
                    node.name
                );
            }
            for output in &node.output {
                assert!(defined.insert(output), "{output} defined twice");
            }
        }
        for output in &graph.output {
            assert!(defined.contains(output.name.as_str()), "{}", output.name);
        }
    }

    #[test]
    fn every_block_kind_lowers_to_a_well_formed_graph_that_round_trips() {
        // ResNet: convolutions, max pooling, residual blocks; ConvNeXt: patchify, depthwise,
        // norms, GELU, scale; ViT: token embedding (resampled positions) and attention.
        for ((kind, side), int8_weights) in [
            (BackboneKind::Resnet18, 32),
            (BackboneKind::ConvnextAtto, 32),
            (BackboneKind::VitTiny, 48),
        ]
        .into_iter()
        .flat_map(|k| [(k, false), (k, true)])
        {
            let (_dir, backbone) = initialised(kind);
            let dims = block_input_dims(&backbone, side).expect("dims");
            let mut g = GraphBuilder::new(int8_weights);
            let mut x = INPUT.to_string();
            for (block, dims) in backbone.blocks().iter().zip(&dims) {
                x = lower::block(&mut g, block, &x, dims).expect("lower");
            }
            let features = lower::global_average(&mut g, &x);
            g.node_into("Identity", &[&features], vec![], EMBEDDING);
            let graph = GraphProto {
                node: std::mem::take(&mut g.nodes),
                initializer: std::mem::take(&mut g.initializers),
                input: vec![value_info(
                    INPUT,
                    &[None, Some(3), Some(side), Some(side)],
                    "",
                )],
                output: vec![value_info(EMBEDDING, &[None, Some(kind.feature_dim())], "")],
                ..Default::default()
            };
            assert_well_formed(&graph);
            let bytes = graph.encode_to_vec();
            assert_eq!(GraphProto::decode(bytes.as_slice()).expect("decode"), graph);
            // The constants hold every parameter of the blocks (plus the few the lowering adds;
            // ViT's position embeddings are written resampled to the input's grid).
            let parameters: usize = backbone
                .blocks()
                .iter()
                .flat_map(|b| b.tensors())
                .filter(|(name, _)| name != "positions")
                .map(|(_, t)| t.elem_count())
                .sum();
            let written: usize = graph
                .initializer
                .iter()
                .map(|t| match t.data_type {
                    d if d == DataType::Int8 as i32 => t.raw_data.len(),
                    d if d == DataType::Float as i32 => t.raw_data.len() / 4,
                    _ => 0,
                })
                .sum();
            assert!(written >= parameters, "{kind}: {written} < {parameters}");
            // With int8 weights most parameters are 8-bit, and each dequantised tensor is a
            // convolution's weight.
            let int8: usize = graph
                .initializer
                .iter()
                .filter(|t| t.data_type == DataType::Int8 as i32)
                .map(|t| t.raw_data.len())
                .sum();
            let dequantised: Vec<&str> = graph
                .node
                .iter()
                .filter(|n| n.op_type == "DequantizeLinear")
                .map(|n| n.output[0].as_str())
                .collect();
            let conv_weights: HashSet<&str> = graph
                .node
                .iter()
                .filter(|n| n.op_type == "Conv")
                .map(|n| n.input[1].as_str())
                .collect();
            assert!(
                dequantised.iter().all(|d| conv_weights.contains(d)),
                "{kind}"
            );
            match int8_weights {
                true => assert!(
                    int8 * 10 >= parameters * 8,
                    "{kind}: {int8} of {parameters}"
                ),
                false => assert!(int8 == 0 && dequantised.is_empty(), "{kind}"),
            }
        }
    }

    #[test]
    fn int8_rows_keep_each_weight_within_half_a_step_of_its_row_scale() {
        let row = [0.5f32, -1.27, 0.003, 0.0, 1.0];
        let (q, scale) = graph::quantise_row(&row);
        assert!((scale - 0.01).abs() < 1e-7, "{scale}");
        assert_eq!(q, [50, -127, 0, 0, 100]);
        for (v, q) in row.iter().zip(&q) {
            assert!((v - f32::from(*q) * scale).abs() <= scale / 2.0 + 1e-7);
        }
        assert_eq!(graph::quantise_row(&[0.0, 0.0]), (vec![0, 0], 1.0));
    }
}

//! A small builder of ONNX graphs: constants from candle tensors or values, nodes with fresh
//! output names, attributes.

use super::proto::{AttributeProto, AttributeType, DataType, NodeProto, TensorProto};
use crate::nn::candle_error;
use candle_core::Tensor;
use exeml_core::Result;

/// Rows (output channels) shorter than this keep float weights under `int8_weights`: a
/// depthwise filter's 9 or 25 taps, a stem's 27 — a few percent of a network's weights, and
/// the ones whose rounding moved the predictions most.
const MIN_INT8_ROW: usize = 64;

/// Nodes and constants added so far, in order.
#[derive(Debug, Default)]
pub(crate) struct GraphBuilder {
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<TensorProto>,
    names: usize,
    /// Whether [`GraphBuilder::weight`] stores weights as 8-bit integers.
    int8_weights: bool,
}

impl GraphBuilder {
    /// An empty graph whose layer weights are written as 8-bit integers when `int8_weights`.
    pub(crate) fn new(int8_weights: bool) -> Self {
        GraphBuilder {
            int8_weights,
            ..Default::default()
        }
    }

    /// A layer's weight (`out×…`): a float constant, or with `int8_weights` 8-bit integers with
    /// one symmetric scale per output (row 0 of the shape) turned back into floats by a
    /// `DequantizeLinear` node (a quarter of the size; runtimes fold it into the weight once).
    pub(crate) fn weight(
        &mut self,
        hint: &str,
        tensor: &Tensor,
        dims: Option<&[usize]>,
    ) -> Result<String> {
        let shape = dims.unwrap_or(tensor.dims()).to_vec();
        let rows = shape.first().copied().unwrap_or(1).max(1);
        let per_row = tensor.elem_count() / rows;
        if !self.int8_weights || per_row < MIN_INT8_ROW {
            return self.tensor(hint, tensor, dims);
        }
        let values = shaped_values(hint, tensor, &shape)?;
        let dims = shape;
        let mut scales = Vec::with_capacity(rows);
        let mut quantised = Vec::with_capacity(values.len());
        for row in values.chunks(per_row.max(1)) {
            let (q, scale) = quantise_row(row);
            scales.push(scale);
            quantised.extend(q.into_iter().map(|v| v as u8));
        }
        let q = self.constant(&format!("{hint}_int8"), &dims, DataType::Int8, quantised);
        let scale = self.floats(&format!("{hint}_scale"), &[rows], &scales);
        let zero = self.constant(
            &format!("{hint}_zero"),
            &[rows],
            DataType::Int8,
            vec![0; rows],
        );
        Ok(self.node(
            "DequantizeLinear",
            &[&q, &scale, &zero],
            vec![int("axis", 0)],
        ))
    }

    /// A name no other value of the graph has: `hint` and a number.
    pub(crate) fn fresh(&mut self, hint: &str) -> String {
        self.names += 1;
        format!("{hint}_{}", self.names)
    }

    /// A float constant of shape `dims`.
    pub(crate) fn floats(&mut self, hint: &str, dims: &[usize], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(hint, dims, DataType::Float, raw_data)
    }

    /// A scalar float constant.
    pub(crate) fn scalar(&mut self, hint: &str, value: f32) -> String {
        self.floats(hint, &[], &[value])
    }

    /// A one-dimensional integer constant (a shape, indices, axes).
    pub(crate) fn ints(&mut self, hint: &str, values: &[i64]) -> String {
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(hint, &[values.len()], DataType::Int64, raw_data)
    }

    /// A scalar integer constant (an index that drops its axis).
    pub(crate) fn int_scalar(&mut self, hint: &str, value: i64) -> String {
        self.constant(hint, &[], DataType::Int64, value.to_le_bytes().to_vec())
    }

    /// The values of `tensor` (copied to the CPU as f32) as a constant of shape `dims` (its own
    /// shape when `None`).
    pub(crate) fn tensor(
        &mut self,
        hint: &str,
        tensor: &Tensor,
        dims: Option<&[usize]>,
    ) -> Result<String> {
        let dims = dims.unwrap_or(tensor.dims()).to_vec();
        let values = shaped_values(hint, tensor, &dims)?;
        Ok(self.floats(hint, &dims, &values))
    }

    fn constant(
        &mut self,
        hint: &str,
        dims: &[usize],
        data_type: DataType,
        raw: Vec<u8>,
    ) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type as i32,
            name: name.clone(),
            raw_data: raw,
        });
        name
    }

    /// Add a node `op` of `inputs` with `attributes`; returns its (single) output's name.
    pub(crate) fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> String {
        let output = self.fresh(&op.to_ascii_lowercase());
        self.node_into(op, inputs, attributes, &output);
        output
    }

    /// Add a node `op` whose output is named `output` (a graph output).
    pub(crate) fn node_into(
        &mut self,
        op: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        output: &str,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: output.to_string(),
            op_type: op.to_string(),
            attribute: attributes,
            domain: String::new(),
        });
    }
}

/// `tensor`'s values as f32 on the CPU, row-major, to be written with the shape `dims` (which
/// must hold as many values).
fn shaped_values(hint: &str, tensor: &Tensor, dims: &[usize]) -> Result<Vec<f32>> {
    let values = tensor
        .to_device(&candle_core::Device::Cpu)
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(candle_error)?;
    if dims.iter().product::<usize>() != values.len() {
        return Err(exeml_core::Error::invalid(
            "onnx export",
            format!(
                "tensor {hint} of shape {:?} cannot be written as {dims:?}",
                tensor.dims()
            ),
        ));
    }
    Ok(values)
}

/// `row` as integers in `-127..=127` and the scale that turns them back (`value ≈ q·scale`):
/// the largest magnitude maps to 127 (a row of zeros gets scale 1).
pub(crate) fn quantise_row(row: &[f32]) -> (Vec<i8>, f32) {
    let largest = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if largest > 0.0 && largest.is_finite() {
        largest / 127.0
    } else {
        1.0
    };
    let q = row
        .iter()
        .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scale)
}

/// An integer attribute.
pub(crate) fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

/// An attribute of integers.
pub(crate) fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

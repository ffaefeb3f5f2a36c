//! A small builder of ONNX graphs: constants from candle tensors or values, nodes with fresh
//! output names, attributes.

use super::proto::{AttributeProto, AttributeType, DataType, NodeProto, TensorProto};
use crate::nn::candle_error;
use candle_core::Tensor;
use exeml_core::Result;

/// Nodes and constants added so far, in order.
#[derive(Debug, Default)]
pub(crate) struct GraphBuilder {
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<TensorProto>,
    names: usize,
}

impl GraphBuilder {
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
        let values = tensor
            .to_device(&candle_core::Device::Cpu)
            .and_then(|t| t.to_dtype(candle_core::DType::F32))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(candle_error)?;
        let dims = dims.unwrap_or(tensor.dims()).to_vec();
        if dims.iter().product::<usize>() != values.len() {
            return Err(exeml_core::Error::invalid(
                "onnx export",
                format!(
                    "tensor {hint} of shape {:?} cannot be written as {dims:?}",
                    tensor.dims()
                ),
            ));
        }
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

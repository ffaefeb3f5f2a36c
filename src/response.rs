//! The SPEC JSON formats of predictions (service responses and `.jsonl` output).

use exeml_tabular::Predictions;
use serde_json::{json, Map, Value};

/// One table row's prediction: `{"predict": "no", "probabilities": {"no": "0.871", …}}`, with
/// `id` added when given. Regression rows carry the number only.
pub fn tabular_row(predictions: &Predictions, row: usize, id: Option<usize>) -> Value {
    let mut object = Map::new();
    if let Some(id) = id {
        object.insert("id".into(), json!(id));
    }
    object.insert("predict".into(), json!(predictions.label(row)));
    if !predictions.classes.is_empty() {
        let probabilities: Map<String, Value> = predictions
            .classes
            .iter()
            .zip(predictions.proba_row(row))
            .map(|(c, p)| (c.clone(), json!(format!("{p:.3}"))))
            .collect();
        object.insert("probabilities".into(), Value::Object(probabilities));
    }
    Value::Object(object)
}

/// The SPEC response for a batch of table rows: `{"data": {"resp_data": [{"predict": …}, …]}}`.
pub fn tabular_response(predictions: &Predictions) -> Value {
    let rows: Vec<Value> = (0..predictions.len())
        .map(|r| tabular_row(predictions, r, None))
        .collect();
    json!({ "data": { "resp_data": rows } })
}

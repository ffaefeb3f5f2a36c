//! Serving a tabular model: the SPEC request `{"data": {"req_data": [{…}, …]}}` is validated
//! field by field against the model's input columns, and answered with
//! `{"data": {"resp_data": [{"predict": …, "probabilities": {…}}, …]}}`.

use crate::features::ColumnTransform;
use crate::model::{Predictions, TabularModel};
use crate::schema::{check_text, ColumnKind};
use crate::table::Table;
use exeml_core::serving::{Answer, InputField, InputKind, Servable, ServeInfo, ServeInput};
use exeml_core::{Error, ProblemType, Result, TaskKind};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

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

/// Most category levels a column suggests on the test page (a target-encoded column keeps
/// thousands).
const MAX_CHOICES: usize = 256;

impl Servable for TabularModel {
    fn serve_info(&self) -> ServeInfo {
        let fields: Vec<InputField> = self
            .pipeline()
            .transforms
            .iter()
            .zip(&self.pipeline().kinds)
            .map(|(t, &kind)| InputField {
                name: t.column().to_string(),
                kind: kind_name(kind).to_string(),
                choices: match t {
                    // Suggestions for the test page, most frequent first.
                    ColumnTransform::Categorical { levels, .. } => {
                        levels.iter().take(MAX_CHOICES).cloned().collect()
                    }
                    _ => Vec::new(),
                },
            })
            .collect();
        let example_row: Map<String, Value> = fields
            .iter()
            .map(|f| (f.name.clone(), json!(example_value(f))))
            .collect();
        ServeInfo {
            task: TaskKind::Tabular,
            problem: self.problem(),
            input: InputKind::Json,
            labels: self.classes().to_vec(),
            fields,
            example: json!({ "data": { "req_data": [example_row] } }),
            embedding_dim: None,
        }
    }

    fn respond(&self, input: ServeInput<'_>) -> Result<Answer> {
        let ServeInput::Json(body) = input else {
            return Err(Error::invalid(
                "body",
                "a tabular model takes a JSON body {\"data\": {\"req_data\": [{…}]}}, not a file",
            ));
        };
        let records = request_records(body, self)?;
        let order: Vec<String> = self
            .pipeline()
            .transforms
            .iter()
            .map(|t| t.column().to_string())
            .collect();
        let table = Table::from_records(&records, &order)?;
        let predictions = self.predict(&table)?;
        let predicted = if predictions.problem == ProblemType::Regression {
            Vec::new()
        } else {
            predictions.labels()
        };
        Ok(Answer {
            body: tabular_response(&predictions),
            predicted,
        })
    }
}

fn kind_name(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Numeric => "number",
        ColumnKind::Categorical => "category",
        ColumnKind::Datetime => "datetime",
        ColumnKind::Text => "text",
    }
}

fn example_value(field: &InputField) -> String {
    match field.kind.as_str() {
        "number" => "0".into(),
        "datetime" => "2024-01-31".into(),
        _ => field.choices.first().cloned().unwrap_or_default(),
    }
}

/// Read and validate `data.req_data`: an array of objects, each carrying every input column as a
/// string, number, boolean or null (null = missing) of the column's kind. Extra fields (the label,
/// ids) are ignored.
fn request_records(body: &Value, model: &TabularModel) -> Result<Vec<BTreeMap<String, Value>>> {
    let rows = body
        .get("data")
        .and_then(|d| d.get("req_data"))
        .ok_or_else(|| {
            Error::invalid(
                "data.req_data",
                "missing: expected {\"data\": {\"req_data\": [{\"column\": \"value\", …}]}}",
            )
        })?;
    let rows = rows
        .as_array()
        .ok_or_else(|| Error::invalid("data.req_data", "expected an array of row objects"))?;
    if rows.is_empty() {
        return Err(Error::invalid(
            "data.req_data",
            "is empty: send at least one row",
        ));
    }
    let pipeline = model.pipeline();
    let mut records = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let object = row.as_object().ok_or_else(|| {
            Error::invalid(
                format!("data.req_data[{i}]"),
                "expected an object of column → value",
            )
        })?;
        let mut record = BTreeMap::new();
        for (transform, &kind) in pipeline.transforms.iter().zip(&pipeline.kinds) {
            let name = transform.column();
            let field = || format!("data.req_data[{i}].{name}");
            let value = object.get(name).ok_or_else(|| {
                Error::invalid(
                    field(),
                    "missing: every input column is required (send null for a missing value)",
                )
            })?;
            check_value(value, kind).map_err(|message| Error::invalid(field(), message))?;
            record.insert(name.to_string(), value.clone());
        }
        records.push(record);
    }
    Ok(records)
}

/// Whether `value` can stand for a value of a column of `kind`; the message says why not.
fn check_value(value: &Value, kind: ColumnKind) -> std::result::Result<(), String> {
    match (value, kind) {
        (Value::Null, _) => Ok(()),
        (Value::Array(_) | Value::Object(_), _) => {
            Err("expected a string, number or null, got a JSON array or object".into())
        }
        (Value::Number(_), ColumnKind::Numeric) => Ok(()),
        (Value::Bool(_), ColumnKind::Numeric) => Err("expected a number, got a boolean".into()),
        (Value::String(text), ColumnKind::Numeric | ColumnKind::Datetime) => check_text(text, kind),
        (Value::Number(_) | Value::Bool(_), ColumnKind::Datetime) => {
            Err("expected a date string such as 2024-01-31".into())
        }
        (_, ColumnKind::Categorical | ColumnKind::Text) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_columns_refuse_words_but_take_numbers_strings_and_missing() {
        assert!(check_value(&json!(3.5), ColumnKind::Numeric).is_ok());
        assert!(check_value(&json!(" 42 "), ColumnKind::Numeric).is_ok());
        assert!(check_value(&json!("NA"), ColumnKind::Numeric).is_ok());
        assert!(check_value(&Value::Null, ColumnKind::Numeric).is_ok());
        let err = check_value(&json!("blue"), ColumnKind::Numeric).expect_err("refused");
        assert!(err.contains("expected a number, got \"blue\""), "{err}");
        assert!(check_value(&json!(true), ColumnKind::Numeric).is_err());
        assert!(check_value(&json!([1]), ColumnKind::Categorical).is_err());
    }

    #[test]
    fn date_columns_take_dates_only() {
        assert!(check_value(&json!("2024-02-29"), ColumnKind::Datetime).is_ok());
        assert!(check_value(&json!("tomorrow"), ColumnKind::Datetime).is_err());
        assert!(check_value(&json!(20240229), ColumnKind::Datetime).is_err());
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "x".repeat(100);
        assert_eq!(crate::schema::quoted(&long).chars().count(), 43);
    }
}

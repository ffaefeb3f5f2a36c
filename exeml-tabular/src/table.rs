//! An in-memory table: named columns of numbers, text or timestamps, loaded from CSV or Parquet
//! with polars, or built from JSON records (the service's request format).

use crate::sniff::{sniff_and_validate, HeaderMode};
use exeml_core::{Error, Result};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The values of one column. Missing numbers are `NaN`; missing text and times are `None`.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Numbers (integers, floats, booleans as 0/1).
    Number(Vec<f64>),
    /// Text (categories, free text, or not-yet-parsed values).
    Text(Vec<Option<String>>),
    /// Milliseconds since the Unix epoch (dates and timestamps).
    Time(Vec<Option<i64>>),
}

impl Values {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::Number(v) => v.len(),
            Values::Text(v) => v.len(),
            Values::Time(v) => v.len(),
        }
    }

    /// True if there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if value `i` is missing.
    pub fn is_missing(&self, i: usize) -> bool {
        match self {
            Values::Number(v) => v[i].is_nan(),
            Values::Text(v) => v[i].is_none(),
            Values::Time(v) => v[i].is_none(),
        }
    }

    /// Value `i` as text, as the user wrote it (numbers in their shortest form).
    pub fn text_at(&self, i: usize) -> Option<String> {
        match self {
            Values::Number(v) => (!v[i].is_nan()).then(|| format_number(v[i])),
            Values::Text(v) => v[i].clone(),
            Values::Time(v) => v[i].map(format_time),
        }
    }

    /// The values at `rows`, in that order.
    pub fn take(&self, rows: &[usize]) -> Values {
        match self {
            Values::Number(v) => Values::Number(rows.iter().map(|&r| v[r]).collect()),
            Values::Text(v) => Values::Text(rows.iter().map(|&r| v[r].clone()).collect()),
            Values::Time(v) => Values::Time(rows.iter().map(|&r| v[r]).collect()),
        }
    }
}

/// One named column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The column's name (`attr_i` when the file has no header).
    pub name: String,
    /// Its values.
    pub values: Values,
}

/// A table of equally long columns, plus where it came from (for error messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The columns in file order.
    pub columns: Vec<Column>,
    /// The file it was read from, or a description such as `<request>`.
    pub source: PathBuf,
}

/// Options for reading a table file.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Whether the CSV has a header row.
    pub header: HeaderMode,
}

/// Tokens read as missing values, beside empty fields.
pub const MISSING_TOKENS: [&str; 10] = [
    "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "?", "-", "#N/A",
];

impl Table {
    /// Read a CSV or Parquet file (by extension; anything not `.parquet`/`.pq` is read as CSV).
    pub fn read(path: &Path, options: ReadOptions) -> Result<Table> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::data(
                path,
                "is a folder, expected a CSV or Parquet file",
            ));
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let frame = if ext == "parquet" || ext == "pq" {
            read_parquet(path)?
        } else {
            read_csv(path, options)?
        };
        let table = from_frame(path, &frame)?;
        if table.n_rows() == 0 {
            return Err(Error::data(path, "the table has no data rows"));
        }
        Ok(table)
    }

    /// Build a table from records of `column → value` (values as strings, numbers or null).
    /// Column order follows `order` where given, then first appearance.
    pub fn from_records(
        records: &[BTreeMap<String, serde_json::Value>],
        order: &[String],
    ) -> Result<Table> {
        let mut names: Vec<String> = order.to_vec();
        for record in records {
            for key in record.keys() {
                if !names.contains(key) {
                    names.push(key.clone());
                }
            }
        }
        let columns = names
            .into_iter()
            .map(|name| {
                let values = records
                    .iter()
                    .map(|r| match r.get(&name) {
                        None | Some(serde_json::Value::Null) => None,
                        Some(serde_json::Value::String(s)) => clean_text(s),
                        Some(other) => Some(other.to_string()),
                    })
                    .collect();
                Column {
                    name,
                    values: Values::Text(values),
                }
            })
            .collect();
        Ok(Table {
            columns,
            source: PathBuf::from("<request>"),
        })
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.values.len())
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Result<&Column> {
        self.position_from(name, 0)
            .map(|i| &self.columns[i])
            .ok_or_else(|| {
                let known: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
                Error::data(
                    &self.source,
                    format!("no column `{name}` (columns: {})", known.join(", ")),
                )
            })
    }

    /// The index of the column called `name`, searching from index `start` on and wrapping
    /// around. Looking columns up in the order they are stored, each starting after the one
    /// found last, costs one comparison each: a wide one-row request is then linear, not
    /// quadratic, in its columns.
    pub fn position_from(&self, name: &str, start: usize) -> Option<usize> {
        let n = self.columns.len();
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.columns[i].name == name)
    }

    /// This table's rows followed by `other`'s (e.g. training data plus separate tuning data).
    /// Columns are matched by name; a column whose kinds differ between the two becomes text.
    pub fn append(&self, other: &Table) -> Result<Table> {
        let mut columns = Vec::with_capacity(self.columns.len());
        for column in &self.columns {
            let theirs = other
                .columns
                .iter()
                .find(|c| c.name == column.name)
                .ok_or_else(|| {
                    Error::data(
                        &other.source,
                        format!(
                            "no column `{}`, which {} has",
                            column.name,
                            self.source.display()
                        ),
                    )
                })?;
            let values = match (&column.values, &theirs.values) {
                (Values::Number(a), Values::Number(b)) => Values::Number([&a[..], b].concat()),
                (Values::Time(a), Values::Time(b)) => Values::Time([&a[..], b].concat()),
                (a, b) => {
                    let texts = |v: &Values| (0..v.len()).map(|i| v.text_at(i)).collect::<Vec<_>>();
                    Values::Text([texts(a), texts(b)].concat())
                }
            };
            columns.push(Column {
                name: column.name.clone(),
                values,
            });
        }
        if let Some(extra) = other
            .columns
            .iter()
            .find(|c| !self.columns.iter().any(|mine| mine.name == c.name))
        {
            return Err(Error::data(
                &other.source,
                format!(
                    "column `{}` is not in {}",
                    extra.name,
                    self.source.display()
                ),
            ));
        }
        Ok(Table {
            columns,
            source: self.source.clone(),
        })
    }

    /// The rows at `rows`, in that order.
    pub fn take(&self, rows: &[usize]) -> Table {
        Table {
            columns: self
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    values: c.values.take(rows),
                })
                .collect(),
            source: self.source.clone(),
        }
    }
}

fn read_csv(path: &Path, options: ReadOptions) -> Result<DataFrame> {
    let dialect = sniff_and_validate(path, options.header)?;
    let nulls: Vec<PlSmallStr> = MISSING_TOKENS.iter().map(|t| (*t).into()).collect();
    let read = CsvReadOptions::default()
        .with_has_header(dialect.has_header)
        .with_infer_schema_length(None)
        .map_parse_options(|p| {
            p.with_separator(dialect.delimiter)
                .with_try_parse_dates(true)
                .with_missing_is_null(true)
                .with_null_values(Some(NullValues::AllColumns(nulls.clone())))
        });
    let mut frame = read
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
        .map_err(|e| Error::data(path, format!("cannot read CSV: {e}")))?;
    if !dialect.has_header {
        let names: Vec<String> = (1..=frame.width()).map(|i| format!("attr_{i}")).collect();
        frame
            .set_column_names(&names)
            .map_err(|e| Error::data(path, format!("cannot name columns: {e}")))?;
    }
    Ok(frame)
}

fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| Error::data(path, format!("cannot read Parquet: {e}")))
}

fn from_frame(path: &Path, frame: &DataFrame) -> Result<Table> {
    let polars_err = |e: PolarsError| Error::data(path, format!("cannot convert a column: {e}"));
    let mut columns = Vec::with_capacity(frame.width());
    let mut seen = std::collections::HashSet::new();
    for column in frame.columns() {
        let series = column.as_materialized_series();
        let name = series.name().to_string();
        if !seen.insert(name.clone()) {
            return Err(Error::data(
                path,
                format!("column name `{name}` appears twice"),
            ));
        }
        let values = match series.dtype() {
            DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64 => {
                let cast = series.cast(&DataType::Float64).map_err(polars_err)?;
                let ca = cast.f64().map_err(polars_err)?;
                Values::Number(ca.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
            }
            DataType::Date | DataType::Datetime(_, _) => {
                let cast = series
                    .cast(&DataType::Datetime(TimeUnit::Milliseconds, None))
                    .and_then(|s| s.cast(&DataType::Int64))
                    .map_err(polars_err)?;
                let ca = cast.i64().map_err(polars_err)?;
                Values::Time(ca.iter().collect())
            }
            DataType::String => {
                let ca = series.str().map_err(polars_err)?;
                Values::Text(ca.iter().map(|v| v.and_then(clean_text)).collect())
            }
            _ => {
                let cast = series.cast(&DataType::String).map_err(polars_err)?;
                let ca = cast.str().map_err(polars_err)?;
                Values::Text(ca.iter().map(|v| v.and_then(clean_text)).collect())
            }
        };
        columns.push(Column { name, values });
    }
    Ok(Table {
        columns,
        source: path.to_path_buf(),
    })
}

/// Trim a text value and turn the missing-value tokens into `None`.
pub fn clean_text(text: &str) -> Option<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || MISSING_TOKENS.contains(&trimmed) {
        None
    } else {
        Some(trimmed.to_string())
    }
}

/// A number in its shortest faithful form: `3` not `3.0`, `0.25` stays `0.25`.
pub fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn format_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.naive_utc().to_string())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn csv(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new()
            .suffix(".csv")
            .tempfile()
            .expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    fn table(columns: Vec<(&str, Values)>, source: &str) -> Table {
        Table {
            columns: columns
                .into_iter()
                .map(|(name, values)| Column {
                    name: name.into(),
                    values,
                })
                .collect(),
            source: PathBuf::from(source),
        }
    }

    #[test]
    fn append_matches_columns_by_name_and_falls_back_to_text() {
        let a = table(
            vec![
                ("x", Values::Number(vec![1.0, 2.5])),
                ("y", Values::Number(vec![3.0, f64::NAN])),
            ],
            "train",
        );
        let b = table(
            vec![
                ("y", Values::Text(vec![Some("red".into())])),
                ("x", Values::Number(vec![4.0])),
            ],
            "tuning",
        );
        let both = a.append(&b).expect("appends");
        assert_eq!(both.n_rows(), 3);
        assert_eq!(
            both.column("x").expect("x").values,
            Values::Number(vec![1.0, 2.5, 4.0])
        );
        assert_eq!(
            both.column("y").expect("y").values,
            Values::Text(vec![Some("3".into()), None, Some("red".into())])
        );
        let missing = table(vec![("x", Values::Number(vec![1.0]))], "tuning");
        let err = a.append(&missing).expect_err("y is missing").to_string();
        assert!(err.contains("tuning") && err.contains("`y`"), "{err}");
        let extra = table(
            vec![
                ("x", Values::Number(vec![1.0])),
                ("y", Values::Number(vec![1.0])),
                ("z", Values::Number(vec![1.0])),
            ],
            "tuning",
        );
        let err = a.append(&extra).expect_err("z is extra").to_string();
        assert!(err.contains("`z`"), "{err}");
    }

    #[test]
    fn reads_mixed_types_and_missing_values() {
        let f = csv(
            "age,colour,when,ok\n34,red,2024-01-05,true\n,NA,2024-02-01,false\n51,blue,,true\n",
        );
        let table = Table::read(f.path(), ReadOptions::default()).expect("reads");
        assert_eq!(table.n_rows(), 3);
        let age = table.column("age").expect("age");
        assert!(matches!(&age.values, Values::Number(v) if v[0] == 34.0 && v[1].is_nan()));
        let colour = table.column("colour").expect("colour");
        assert_eq!(colour.values.text_at(1), None);
        assert!(matches!(
            table.column("when").expect("when").values,
            Values::Time(_)
        ));
        assert!(matches!(
            table.column("ok").expect("ok").values,
            Values::Number(_)
        ));
    }

    #[test]
    fn names_headerless_columns_attr_i() {
        let f = csv("1,2.5,x\n3,4.5,y\n5,6.5,x\n");
        let table = Table::read(f.path(), ReadOptions::default()).expect("reads");
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["attr_1", "attr_2", "attr_3"]);
    }

    #[test]
    fn unknown_column_error_lists_columns() {
        let f = csv("a,b\n1,2\n");
        let table = Table::read(f.path(), ReadOptions::default()).expect("reads");
        let err = table.column("label").expect_err("absent").to_string();
        assert!(err.contains("label") && err.contains("a, b"), "{err}");
    }

    #[test]
    fn columns_are_found_from_a_start_and_around() {
        let number = || Values::Number(vec![1.0]);
        let t = table(vec![("a", number()), ("b", number()), ("c", number())], "t");
        assert_eq!(t.position_from("c", 0), Some(2));
        assert_eq!(t.position_from("c", 2), Some(2));
        assert_eq!(t.position_from("a", 2), Some(0), "wraps around");
        assert_eq!(t.position_from("a", 7), Some(0), "any start");
        assert_eq!(t.position_from("z", 1), None);
        assert_eq!(table(Vec::new(), "empty").position_from("a", 0), None);
    }

    #[test]
    fn reads_parquet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.parquet");
        let mut frame = df!(
            "x" => [1.5, 2.5, 3.5],
            "colour" => ["red", "blue", "red"],
            "label" => ["a", "b", "a"]
        )
        .expect("frame");
        let file = std::fs::File::create(&path).expect("create");
        ParquetWriter::new(file)
            .finish(&mut frame)
            .expect("write parquet");
        let table = Table::read(&path, ReadOptions::default()).expect("reads");
        assert_eq!(table.n_rows(), 3);
        assert_eq!(
            table
                .column("colour")
                .expect("colour")
                .values
                .text_at(1)
                .as_deref(),
            Some("blue")
        );
        assert!(matches!(
            table.column("x").expect("x").values,
            Values::Number(_)
        ));
    }

    #[test]
    fn corrupt_parquet_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.parquet");
        std::fs::write(&path, b"PAR1 this is not parquet").expect("write");
        let err = Table::read(&path, ReadOptions::default()).expect_err("corrupt");
        assert!(err.to_string().contains("bad.parquet"), "{err}");
    }

    #[test]
    fn missing_file_is_io_error_naming_it() {
        let err =
            Table::read(Path::new("/no/such.csv"), ReadOptions::default()).expect_err("missing");
        assert!(err.to_string().contains("/no/such.csv"));
    }
}

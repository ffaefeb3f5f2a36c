//! CSV dialect sniffing and validation before the real load: the delimiter, whether the first
//! row is a header, and ragged rows reported with their line number (polars' own error names
//! neither the line nor the counts).

use exeml_core::{Error, Result};
use std::path::Path;

/// How a CSV file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// The field separator.
    pub delimiter: u8,
    /// True if the first record names the columns.
    pub has_header: bool,
    /// Number of fields per record.
    pub n_fields: usize,
}

/// Whether the first row is a header: decided by the caller, or sniffed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderMode {
    /// Guess from the data (the default).
    #[default]
    Auto,
    /// The first row is a header.
    Present,
    /// There is no header: columns are named `attr_1 … attr_n` (SPEC).
    Absent,
}

const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];
const SNIFF_RECORDS: usize = 200;

/// Sniff the dialect of `path` and check that every record has the same number of fields.
pub fn sniff_and_validate(path: &Path, header: HeaderMode) -> Result<Dialect> {
    scan(path, header, Extent::WholeFile)
}

/// Sniff the dialect of `path` from its first records only (for streaming readers that report
/// ragged rows themselves): delimiter, header, and the first record's field count.
pub fn sniff_head(path: &Path, header: HeaderMode) -> Result<Dialect> {
    scan(path, header, Extent::Head)
}

/// How much of the file [`scan`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Extent {
    /// The first records, enough to sniff.
    Head,
    /// Every record, refusing a ragged one.
    WholeFile,
}

fn scan(path: &Path, header: HeaderMode, extent: Extent) -> Result<Dialect> {
    let delimiter = sniff_delimiter(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .map_err(|e| csv_error(path, e))?;
    let mut head: Vec<Vec<String>> = Vec::new();
    let mut n_fields = None;
    let mut record = csv::StringRecord::new();
    let mut index = 0usize;
    while extent == Extent::WholeFile || head.len() < SNIFF_RECORDS {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(path, e)),
        }
        index += 1;
        if record.len() == 1 && record.get(0).is_some_and(|f| f.trim().is_empty()) {
            continue; // a blank line
        }
        let line = record.position().map_or(index as u64, |p| p.line());
        match n_fields {
            None => n_fields = Some(record.len()),
            Some(n) if n != record.len() && extent == Extent::WholeFile => {
                return Err(Error::data(
                    path,
                    format!(
                    "line {line} has {} fields, expected {n} like the first line (a ragged row)",
                    record.len()
                ),
                ))
            }
            Some(_) => {}
        }
        if head.len() < SNIFF_RECORDS {
            head.push(record.iter().map(str::to_string).collect());
        }
    }
    let n_fields = n_fields.ok_or_else(|| Error::data(path, "the file is empty"))?;
    let has_header = match header {
        HeaderMode::Present => true,
        HeaderMode::Absent => false,
        HeaderMode::Auto => looks_like_header(&head),
    };
    Ok(Dialect {
        delimiter,
        has_header,
        n_fields,
    })
}

/// The candidate delimiter that splits the first lines into the most, and equally many, fields.
fn sniff_delimiter(path: &Path) -> Result<u8> {
    use std::io::{BufRead, BufReader};
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut lines = Vec::new();
    for line in BufReader::new(file).lines().take(20) {
        let line = line.map_err(|e| Error::data(path, format!("not UTF-8 text: {e}")))?;
        if !line.trim().is_empty() {
            lines.push(line);
        }
    }
    let mut best = (b',', 0usize);
    for &delim in &CANDIDATES {
        let counts: Vec<usize> = lines
            .iter()
            .map(|l| l.bytes().filter(|&b| b == delim).count())
            .collect();
        let Some(&first) = counts.first() else {
            continue;
        };
        if first > best.1 && counts.iter().all(|&c| c == first) {
            best = (delim, first);
        }
    }
    Ok(best.0)
}

/// Python's `csv.Sniffer.has_header` idea: a first row whose fields are text where the rest of
/// the column is numeric, or whose fields are all distinct non-numeric names never seen again
/// in their column, is a header.
fn looks_like_header(rows: &[Vec<String>]) -> bool {
    let Some((first, rest)) = rows.split_first() else {
        return false;
    };
    if rest.is_empty() {
        return first.iter().all(|f| !is_number(f) && !f.trim().is_empty());
    }
    let mut votes = 0i32;
    for (col, name) in first.iter().enumerate() {
        let values: Vec<&str> = rest
            .iter()
            .filter_map(|r| r.get(col).map(String::as_str))
            .filter(|v| !v.trim().is_empty())
            .collect();
        let numeric_rest = !values.is_empty() && values.iter().all(|v| is_number(v));
        if numeric_rest {
            votes += if is_number(name) { -1 } else { 1 };
        } else if !is_number(name) && !name.trim().is_empty() {
            votes += if values.contains(&name.as_str()) {
                -1
            } else {
                1
            };
        } else {
            votes -= 1;
        }
    }
    votes > 0
}

fn is_number(text: &str) -> bool {
    text.trim().parse::<f64>().is_ok()
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map(|p| p.line());
    match line {
        Some(line) => Error::data(path, format!("line {line}: {e}")),
        None => Error::data(path, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn detects_header_and_delimiter() {
        let f = file("age;colour;label\n34;red;yes\n50;blue;no\n");
        let d = sniff_and_validate(f.path(), HeaderMode::Auto).expect("valid");
        assert_eq!((d.delimiter, d.has_header, d.n_fields), (b';', true, 3));
    }

    #[test]
    fn detects_missing_header() {
        let f = file("34,red,yes\n50,blue,no\n41,red,no\n");
        let d = sniff_and_validate(f.path(), HeaderMode::Auto).expect("valid");
        assert!(!d.has_header);
    }

    #[test]
    fn rejects_ragged_row_with_line_number() {
        let f = file("a,b,c\n1,2,3\n4,5\n");
        let err = sniff_and_validate(f.path(), HeaderMode::Auto).expect_err("ragged");
        let text = err.to_string();
        assert!(
            text.contains("line 3") && text.contains("2 fields"),
            "{text}"
        );
    }

    #[test]
    fn rejects_empty_file() {
        let f = file("");
        assert!(sniff_and_validate(f.path(), HeaderMode::Auto).is_err());
    }
}

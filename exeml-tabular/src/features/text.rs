//! Free-text columns as numbers. Every text column gives its length and word count; its words
//! then become either a few hashed word frequencies (the default: cheap, enough for short
//! free-text fields) or TF-IDF over hashed words and word pairs (scikit-learn's
//! `HashingVectorizer(ngram_range=(1, 2))` + `TfidfTransformer`: for columns whose wording
//! carries the label, such as reviews or ticket texts). Hashing keeps the model small and needs
//! no vocabulary; the hash is fixed so saved models read new text the same way.

use serde::{Deserialize, Serialize};

/// Buckets of the default hashed word frequencies.
pub const HASHED_BUCKETS: usize = 16;
/// Buckets of the TF-IDF encoding.
pub const TFIDF_BUCKETS: usize = 256;
/// Most buckets a saved TF-IDF encoding may have.
const MAX_BUCKETS: usize = 1 << 16;

/// The words of a text: maximal runs of letters and digits (any script), lower-cased.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// FNV-1a: a fixed, portable hash (std's hasher may change between Rust versions, which would
/// silently change saved models' features).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn bucket(term: &str, buckets: usize) -> usize {
    (fnv1a(term.as_bytes()) % buckets as u64) as usize
}

/// Word frequencies (each word's share of the text) hashed into `buckets`, column-major.
pub fn hashed_frequencies(texts: &[Option<String>], buckets: usize) -> Vec<f64> {
    let rows = texts.len();
    let mut out = vec![0.0; rows * buckets];
    for (r, text) in texts.iter().enumerate() {
        let Some(text) = text else { continue };
        let words = words(text);
        let weight = 1.0 / words.len().max(1) as f64;
        for word in &words {
            out[bucket(word, buckets) * rows + r] += weight;
        }
    }
    out
}

/// Counts of words and adjacent word pairs per bucket, row-major (`rows × buckets`).
fn term_counts(texts: &[Option<String>], buckets: usize) -> Vec<f64> {
    let mut counts = vec![0.0; texts.len() * buckets];
    for (r, text) in texts.iter().enumerate() {
        let Some(text) = text else { continue };
        let words = words(text);
        let row = &mut counts[r * buckets..(r + 1) * buckets];
        for word in &words {
            row[bucket(word, buckets)] += 1.0;
        }
        for pair in words.windows(2) {
            row[bucket(&format!("{} {}", pair[0], pair[1]), buckets)] += 1.0;
        }
    }
    counts
}

/// A fitted TF-IDF encoding over hashed words and word pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TfIdf {
    /// Inverse document frequency of each bucket, `ln((1 + n) / (1 + df)) + 1` (smoothed, as
    /// scikit-learn's default).
    pub idf: Vec<f64>,
}

impl TfIdf {
    /// Fit the document frequencies on the training texts.
    pub fn fit(texts: &[Option<String>], buckets: usize) -> Self {
        let counts = term_counts(texts, buckets);
        let n = texts.len() as f64;
        let idf = (0..buckets)
            .map(|b| {
                let df = (0..texts.len())
                    .filter(|&r| counts[r * buckets + b] > 0.0)
                    .count() as f64;
                ((1.0 + n) / (1.0 + df)).ln() + 1.0
            })
            .collect();
        TfIdf { idf }
    }

    /// Number of features it adds.
    pub fn buckets(&self) -> usize {
        self.idf.len()
    }

    /// TF-IDF of each text, each row scaled to unit length, column-major.
    pub fn apply(&self, texts: &[Option<String>]) -> Vec<f64> {
        let (rows, buckets) = (texts.len(), self.buckets());
        let mut counts = term_counts(texts, buckets);
        let mut out = vec![0.0; rows * buckets];
        for r in 0..rows {
            let row = &mut counts[r * buckets..(r + 1) * buckets];
            for (v, idf) in row.iter_mut().zip(&self.idf) {
                *v *= idf;
            }
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm > 0.0 {
                for (b, v) in row.iter().enumerate() {
                    out[b * rows + r] = v / norm;
                }
            }
        }
        out
    }

    /// Whether a saved encoding can be used (checked when a pipeline is loaded).
    pub fn is_consistent(&self) -> bool {
        (1..=MAX_BUCKETS).contains(&self.idf.len()) && self.idf.iter().all(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(items: &[&str]) -> Vec<Option<String>> {
        items.iter().map(|t| Some((*t).to_string())).collect()
    }

    #[test]
    fn words_split_any_script_and_lower_case() {
        assert_eq!(
            words("Hello, 世界 and RUST-2"),
            vec!["hello", "世界", "and", "rust", "2"]
        );
    }

    #[test]
    fn rare_terms_weigh_more_and_rows_have_unit_length() {
        let train = texts(&["good movie", "good food", "terrible movie"]);
        let tfidf = TfIdf::fit(&train, TFIDF_BUCKETS);
        assert!(tfidf.is_consistent());
        let good = bucket("good", TFIDF_BUCKETS);
        let terrible = bucket("terrible", TFIDF_BUCKETS);
        assert!(tfidf.idf[terrible] > tfidf.idf[good], "seen in fewer texts");
        let out = tfidf.apply(&[Some("good terrible".into()), None]);
        let rows = 2;
        let norm: f64 = (0..TFIDF_BUCKETS).map(|b| out[b * rows].powi(2)).sum();
        assert!((norm - 1.0).abs() < 1e-12);
        assert!(out[terrible * rows] > out[good * rows]);
        assert!(
            (0..TFIDF_BUCKETS).all(|b| out[b * rows + 1] == 0.0),
            "missing text is zeros"
        );
    }

    #[test]
    fn word_pairs_tell_apart_texts_with_the_same_words() {
        let tfidf = TfIdf::fit(&texts(&["not good", "good not"]), TFIDF_BUCKETS);
        let out = tfidf.apply(&texts(&["not good", "good not"]));
        let (a, b): (Vec<f64>, Vec<f64>) = (0..TFIDF_BUCKETS)
            .map(|k| (out[2 * k], out[2 * k + 1]))
            .unzip();
        assert_ne!(a, b);
        assert!(!TfIdf { idf: vec![] }.is_consistent());
    }

    #[test]
    fn hashed_frequencies_are_shares_of_the_text() {
        let out = hashed_frequencies(&texts(&["a a b"]), HASHED_BUCKETS);
        assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}

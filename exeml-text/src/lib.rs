//! Text classification for exeml — **not built yet**.
//!
//! This crate will implement the core traits for text in any language, Chinese included (see
//! `docs/architecture.md`): TXT + `_result.txt` and CSV import, multilingual sentence encoders and
//! n-gram models, classification heads trained under a budget. It exposes no API yet.
#![deny(missing_docs)]

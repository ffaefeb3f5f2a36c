//! Image classification and object detection for exeml — **not built yet**.
//!
//! This crate will implement the core traits for images (see `docs/architecture.md`): import of
//! JPG/PNG/BMP with side-by-side label files, class folders, PASCAL VOC and COCO; transfer
//! learning from MobileNetV2 / EfficientNet-Lite0 with candle; architecture search under a budget.
//! Until then it exposes no API, so that nothing here pretends to work.
#![deny(missing_docs)]

//! Image classification for exeml: import labelled image folders (class folders, side-by-side
//! `.txt` label files, JSON-lines manifests), check them, and train a classifier by transfer
//! learning from pretrained backbones in candle: MobileNetV2 and EfficientNet-Lite0 (installable
//! weights), ResNet-18/34/50, ConvNeXt atto…tiny or ViT tiny/small/base (Hugging Face hub cache
//! or a local checkpoint).
//!
//! ```no_run
//! use exeml_vision::ImagePredictor;
//! # fn main() -> exeml_core::Result<()> {
//! let model = ImagePredictor::new().fit_folder("flowers/".as_ref())?;
//! println!("{}", model.summary());
//! let scores = model.predict_files(&["new.jpg".into()])?;
//! # Ok(()) }
//! ```
//!
//! Object detection (PASCAL VOC, COCO) will live here too; it is not built yet.
#![deny(missing_docs)]

pub mod backbone;
pub mod batch;
pub mod data;
pub mod ensemble;
pub mod evaluate;
pub mod features;
pub mod finetune;
pub mod first_fit;
pub mod footprint;
pub mod head;
pub mod model;
pub mod nn;
pub mod onnx;
pub mod optim;
pub mod predictor;
pub mod refit;
pub mod search;
pub mod serving;
pub mod tuning;
pub mod weights;

pub use backbone::{initial_tensors, Backbone, BackboneKind};
pub use batch::{embed_folder, predict_folder, ImageBatchOptions, ImageBatchReport};
pub use data::{ImageDataset, ImportFormat};
pub use evaluate::ImageEvaluation;
pub use model::ImageModel;
pub use predictor::ImagePredictor;

//! The image data layer: import labelled folders in every SPEC layout, decode images safely,
//! preprocess them for the network, and check the data before training.

mod checks;
mod decode;
mod import;
pub(crate) mod preprocess;

pub use checks::check;
pub use decode::{
    decode_bytes, decode_file, is_image_path, probe_file, unsupported_image_format, MAX_SIDE,
};
pub use import::{list_images, ImageDataset, ImageSample, ImportFormat, Skipped};
pub use preprocess::{onnx_input, preprocess, preprocess_augmented, MEAN, STD};

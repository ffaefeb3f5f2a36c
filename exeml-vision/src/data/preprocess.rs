//! From a decoded image to the network's input: crop, resize to a square, normalise with the
//! ImageNet statistics, channels first. The training variant adds random-resized crops, flips
//! and colour jitter.

use image::imageops::{self, FilterType};
use image::RgbImage;
use rand::Rng;

/// ImageNet channel means (RGB), the statistics the backbones were trained with.
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Crop `(x, y, w, h)` of `image`, resized to `size`×`size`.
fn crop_resize(image: &RgbImage, (x, y, w, h): (u32, u32, u32, u32), size: u32) -> RgbImage {
    let view = imageops::crop_imm(image, x, y, w.max(1), h.max(1)).to_image();
    if view.dimensions() == (size, size) {
        view
    } else {
        imageops::resize(&view, size, size, FilterType::Triangle)
    }
}

/// Channels-first floats, `(v/255 − mean) / std` per channel, with optional per-pixel colour
/// adjustment.
fn normalise(image: &RgbImage, adjust: impl Fn([f32; 3]) -> [f32; 3]) -> Vec<f32> {
    let (w, h) = image.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in image.pixels().enumerate() {
        let rgb = adjust([
            f32::from(p.0[0]) / 255.0,
            f32::from(p.0[1]) / 255.0,
            f32::from(p.0[2]) / 255.0,
        ]);
        for c in 0..3 {
            out[c * plane + i] = (rgb[c].clamp(0.0, 1.0) - MEAN[c]) / STD[c];
        }
    }
    out
}

/// The evaluation view: the centre square covering 224/256 of the shorter side, resized to
/// `size`×`size`, normalised, CHW.
pub fn preprocess(image: &RgbImage, size: u32) -> Vec<f32> {
    normalise(&evaluation_view(image, size), |v| v)
}

/// The input of an [exported ONNX model](crate::onnx): the evaluation view of [`preprocess`]
/// before normalisation, `value / 255` in `[0, 1]`, CHW (the graph normalises).
pub fn onnx_input(image: &RgbImage, size: u32) -> Vec<f32> {
    let view = evaluation_view(image, size);
    let plane = (size * size) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in view.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = f32::from(p.0[c]) / 255.0;
        }
    }
    out
}

/// The centre square covering 224/256 of the shorter side, resized to `size`×`size`.
fn evaluation_view(image: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let side = ((w.min(h) as u64 * 224 / 256) as u32).max(1);
    let crop = (
        (w - side.min(w)) / 2,
        (h - side.min(h)) / 2,
        side.min(w),
        side.min(h),
    );
    crop_resize(image, crop, size)
}

/// A training view: a random crop of 35–100 % of the area with aspect ratio 3/4–4/3, a
/// horizontal flip half of the time, brightness/contrast/saturation jitter of ±`strength`.
pub fn preprocess_augmented(
    image: &RgbImage,
    size: u32,
    strength: f32,
    rng: &mut impl Rng,
) -> Vec<f32> {
    let (w, h) = image.dimensions();
    let area = f64::from(w) * f64::from(h);
    let mut crop = None;
    for _ in 0..10 {
        let target = area * rng.random_range(0.35..=1.0);
        let ratio = rng.random_range((0.75f64).ln()..=(4.0f64 / 3.0).ln()).exp();
        let cw = (target * ratio).sqrt().round() as u32;
        let ch = (target / ratio).sqrt().round() as u32;
        if (1..=w).contains(&cw) && (1..=h).contains(&ch) {
            let x = rng.random_range(0..=w - cw);
            let y = rng.random_range(0..=h - ch);
            crop = Some((x, y, cw, ch));
            break;
        }
    }
    let side = w.min(h);
    let crop = crop.unwrap_or(((w - side) / 2, (h - side) / 2, side, side));
    let mut view = crop_resize(image, crop, size);
    if rng.random_bool(0.5) {
        imageops::flip_horizontal_in_place(&mut view);
    }
    let s = strength.clamp(0.0, 0.9);
    let mut jitter = || {
        if s > 0.0 {
            rng.random_range(1.0 - s..=1.0 + s)
        } else {
            1.0
        }
    };
    let (brightness, contrast, saturation) = (jitter(), jitter(), jitter());
    normalise(&view, |[r, g, b]| {
        let grey = 0.299 * r + 0.587 * g + 0.114 * b;
        let sat = |v: f32| grey + (v - grey) * saturation;
        let con = |v: f32| 0.5 + (v - 0.5) * contrast;
        [
            con(sat(r)) * brightness,
            con(sat(g)) * brightness,
            con(sat(b)) * brightness,
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn white_image_normalises_to_the_imagenet_extreme() {
        let img = RgbImage::from_pixel(50, 30, image::Rgb([255, 255, 255]));
        let v = preprocess(&img, 16);
        assert_eq!(v.len(), 3 * 16 * 16);
        for c in 0..3 {
            let want = (1.0 - MEAN[c]) / STD[c];
            assert!((v[c * 256 + 7] - want).abs() < 1e-5);
        }
    }

    #[test]
    fn augmentation_is_deterministic_for_a_seed_and_varies_across_seeds() {
        let img = RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, 90])
        });
        let view = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            preprocess_augmented(&img, 24, 0.3, &mut rng)
        };
        assert_eq!(view(1), view(1));
        assert_ne!(view(1), view(2));
        assert_eq!(view(3).len(), 3 * 24 * 24);
    }

    #[test]
    fn tiny_images_still_give_a_full_view() {
        let img = RgbImage::from_pixel(1, 1, image::Rgb([0, 0, 0]));
        assert_eq!(preprocess(&img, 8).len(), 3 * 64);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        assert_eq!(preprocess_augmented(&img, 8, 0.2, &mut rng).len(), 3 * 64);
    }
}

//! Decoding images safely: JPG/PNG/BMP recognised by content, decoder limits against image bombs,
//! EXIF orientation applied, every colour type converted to 8-bit RGB.

use exeml_core::{Error, Result};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};
use std::io::{BufRead, Cursor, Seek};
use std::path::Path;

/// Largest width or height accepted.
pub const MAX_SIDE: u32 = 16_384;
/// Most bytes a decoder may allocate for one image.
pub const MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// Whether `path` has an image extension exeml reads (jpg, jpeg, png, bmp; any case).
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["jpg", "jpeg", "png", "bmp"].contains(&e.to_ascii_lowercase().as_str()))
}

/// Extensions of image formats exeml does not read, so that such files are reported by name
/// instead of passing unnoticed among the label files and notes of a data folder.
const OTHER_IMAGE_EXTENSIONS: [&str; 14] = [
    "gif", "webp", "tif", "tiff", "heic", "heif", "avif", "svg", "ico", "jp2", "jxl", "pbm", "pgm",
    "ppm",
];

/// The format of an image file exeml cannot read (by extension, upper-cased: `GIF`, `WEBP`…),
/// or `None` for the formats it reads and for files that are not images.
pub fn unsupported_image_format(path: &Path) -> Option<String> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    OTHER_IMAGE_EXTENSIONS
        .contains(&extension.as_str())
        .then(|| extension.to_ascii_uppercase())
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    limits
}

fn reader<R: BufRead + Seek>(source: R, name: &Path) -> Result<ImageReader<R>> {
    let reader = ImageReader::new(source)
        .with_guessed_format()
        .map_err(|e| Error::io(name, e))?;
    match reader.format() {
        Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Bmp) => Ok(reader),
        _ => Err(Error::data(name, "not a JPG, PNG or BMP image")),
    }
}

/// Whether the JPEG in `bytes` runs from its start-of-image marker to an end-of-image marker,
/// walking its segments and the entropy-coded data of each scan. The `image` crate's decoder
/// pads a truncated JPEG with grey instead of failing, so a file cut short in a copy would
/// otherwise train as a half-grey picture. Data after the end-of-image marker (e.g. a motion
/// photo's video) is allowed. Written by hand: no crate checks this without decoding twice.
fn jpeg_is_complete(b: &[u8]) -> bool {
    if b.len() < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return false;
    }
    let mut i = 2;
    loop {
        // Stray bytes before a marker are skipped, as libjpeg does (with a warning).
        let Some(at) = b
            .get(i..)
            .and_then(|rest| rest.iter().position(|&x| x == 0xFF))
        else {
            return false;
        };
        i += at;
        while b.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = b.get(i) else {
            return false;
        };
        i += 1;
        match marker {
            0xD9 => return true,
            // Markers without a length: restart intervals and TEM.
            0xD0..=0xD7 | 0x01 => continue,
            _ => {}
        }
        let Some(len) = b
            .get(i..i + 2)
            .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
        else {
            return false;
        };
        if len < 2 || i + len > b.len() {
            return false;
        }
        i += len;
        if marker == 0xDA {
            // A scan's entropy-coded data: up to the first 0xFF that is not a stuffed zero, a
            // restart marker or a fill byte.
            loop {
                let Some(at) = b[i..].iter().position(|&x| x == 0xFF) else {
                    return false;
                };
                i += at;
                match b.get(i + 1) {
                    None => return false,
                    Some(0x00 | 0xD0..=0xD7) => i += 2,
                    Some(0xFF) => i += 1,
                    Some(_) => break,
                }
            }
        }
    }
}

fn decode(bytes: &[u8], name: &Path) -> Result<RgbImage> {
    let mut reader = reader(Cursor::new(bytes), name)?;
    if reader.format() == Some(ImageFormat::Jpeg) && !jpeg_is_complete(bytes) {
        return Err(Error::data(
            name,
            "truncated or damaged JPEG: the data ends before its end-of-image marker",
        ));
    }
    reader.limits(limits());
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| Error::data(name, format!("corrupt image: {e}")))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::data(name, "image has no pixels"));
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder)
        .map_err(|e| Error::data(name, format!("corrupt image: {e}")))?;
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
}

/// Decode an image file into 8-bit RGB, upright.
pub fn decode_file(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() {
        return Err(Error::data(path, "zero-byte file"));
    }
    decode(&bytes, path)
}

/// Decode image bytes received from a client; `name` is used in messages only.
pub fn decode_bytes(name: &str, bytes: &[u8]) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(Error::data(name, "empty file"));
    }
    decode(bytes, Path::new(name))
}

/// Check a file is a readable image of sane size from its header only (no pixel decoding).
pub fn probe_file(path: &Path) -> Result<(u32, u32)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
        return Err(Error::data(path, "zero-byte file"));
    }
    let (w, h) = reader(std::io::BufReader::new(file), path)?
        .into_dimensions()
        .map_err(|e| Error::data(path, format!("corrupt image: {e}")))?;
    if w == 0 || h == 0 {
        return Err(Error::data(path, "image has no pixels"));
    }
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(Error::data(
            path,
            format!("image of {w}×{h} pixels exceeds the {MAX_SIDE}×{MAX_SIDE} limit"),
        ));
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgba};

    fn png_bytes(img: &DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).expect("encode");
        out.into_inner()
    }

    /// A PNG whose header claims `w`×`h` pixels (with a valid CRC) and no pixel data.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let crc = crc32(&ihdr);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        out.extend_from_slice(&13u32.to_be_bytes());
        out.extend_from_slice(&ihdr);
        out.extend_from_slice(&crc.to_be_bytes());
        for chunk in [&b"IDAT"[..], b"IEND"] {
            out.extend_from_slice(&0u32.to_be_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(&crc32(chunk).to_be_bytes());
        }
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn grey_16_bit_and_rgba_become_8_bit_rgb() {
        let grey: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_pixel(3, 2, Luma([65535]));
        let rgb =
            decode_bytes("g.png", &png_bytes(&DynamicImage::ImageLuma16(grey))).expect("grey");
        assert_eq!(rgb.dimensions(), (3, 2));
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        let rgba = ImageBuffer::from_pixel(2, 2, Rgba([10u8, 20, 30, 0]));
        let rgb = decode_bytes("a.png", &png_bytes(&DynamicImage::ImageRgba8(rgba))).expect("rgba");
        assert_eq!(rgb.get_pixel(1, 1).0, [10, 20, 30]);
    }

    #[test]
    fn bombs_garbage_and_truncation_are_typed_errors() {
        let bomb = png_header(100_000, 100_000);
        let err = decode_bytes("bomb.png", &bomb)
            .expect_err("bomb")
            .to_string();
        assert!(err.contains("bomb.png"), "{err}");
        assert!(decode_bytes("text.png", b"hello, not an image").is_err());
        assert!(decode_bytes("empty.png", b"").is_err());
        let full = png_bytes(&DynamicImage::ImageRgb8(RgbImage::from_pixel(
            40,
            40,
            image::Rgb([1, 2, 3]),
        )));
        for cut in [8, 20, 33, full.len() / 2, full.len() - 13] {
            assert!(
                decode_bytes("cut.png", &full[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_truncated_jpeg_is_a_typed_error() {
        let noisy = RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 7 + y * 3) as u8, (x * y) as u8, (x ^ y) as u8 * 4])
        });
        let mut full = Vec::new();
        DynamicImage::ImageRgb8(noisy)
            .write_to(&mut Cursor::new(&mut full), ImageFormat::Jpeg)
            .expect("encode");
        assert!(decode_bytes("whole.jpg", &full).is_ok());
        for cut in [2, 100, full.len() / 2, full.len() - 40, full.len() - 2] {
            match decode_bytes("cut.jpg", &full[..cut]) {
                Ok(_) => panic!("a JPEG cut at {cut} of {} bytes decoded", full.len()),
                Err(e) => assert!(e.to_string().contains("cut.jpg"), "{e}"),
            }
        }
        // Data after the end-of-image marker (a motion photo's video) is not damage.
        let mut longer = full.clone();
        longer.extend_from_slice(b"ftypmp42 trailing video");
        assert!(decode_bytes("motion.jpg", &longer).is_ok());
        assert!(jpeg_is_complete(&full));
        // Stuffed zeros, restart markers and fill bytes inside a scan are not its end.
        let scan = [
            0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56, 0xFF,
            0xFF, 0xD9,
        ];
        assert!(jpeg_is_complete(&scan));
        assert!(!jpeg_is_complete(&scan[..scan.len() - 1]));
    }

    #[test]
    fn probe_reads_only_the_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bomb = dir.path().join("bomb.png");
        std::fs::write(&bomb, png_header(100_000, 100_000)).expect("write");
        let err = probe_file(&bomb).expect_err("too big").to_string();
        assert!(err.contains("exceeds"), "{err}");
        let ok = dir.path().join("ok.png");
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(30, 20, image::Rgb([1, 2, 3])));
        std::fs::write(&ok, png_bytes(&img)).expect("write");
        assert_eq!(probe_file(&ok).expect("header"), (30, 20));
        let empty = dir.path().join("empty.jpg");
        std::fs::write(&empty, b"").expect("write");
        assert!(probe_file(&empty)
            .expect_err("empty")
            .to_string()
            .contains("zero-byte"));
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 4×2 JPEG with an EXIF APP1 segment saying "rotate 90° clockwise" (orientation 6).
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(4, 2, image::Rgb([200, 10, 10])));
        let mut jpeg = Cursor::new(Vec::new());
        img.write_to(&mut jpeg, ImageFormat::Jpeg).expect("encode");
        let jpeg = jpeg.into_inner();
        let tiff: [u8; 26] = [
            b'M', b'M', 0, 42, 0, 0, 0, 8, // big-endian TIFF header, IFD at 8
            0, 1, // one entry
            0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, // Orientation, SHORT, 1, value 6
            0, 0, 0, 0, // no next IFD
        ];
        let mut app1 = vec![0xFF, 0xE1];
        let len = (2 + 6 + tiff.len()) as u16;
        app1.extend_from_slice(&len.to_be_bytes());
        app1.extend_from_slice(b"Exif\0\0");
        app1.extend_from_slice(&tiff);
        let mut with_exif = jpeg[..2].to_vec();
        with_exif.extend_from_slice(&app1);
        with_exif.extend_from_slice(&jpeg[2..]);
        let rgb = decode_bytes("rotated.jpg", &with_exif).expect("decode");
        assert_eq!(rgb.dimensions(), (2, 4));
    }
}

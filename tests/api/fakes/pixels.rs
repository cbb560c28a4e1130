//! Real images that say which media they are: the media id written in black and white blocks (32
//! across, 8 down, one bit each: a length byte, then the id's bytes). The blocks scale with the
//! image and survive JPEG, so the fake model can tell which image it was sent however fedialt
//! scaled, turned and re-encoded it.

#![allow(dead_code)]

use std::io::Cursor;

use image::{DynamicImage, GrayImage, ImageFormat, Luma};

const ACROSS: u32 = 32;
const DOWN: u32 = 8;

fn bits(id: &str) -> Vec<bool> {
    let mut bytes = vec![id.len().min(31) as u8];
    bytes.extend(id.bytes().take(31));
    bytes.resize(32, 0);
    bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1))
        .collect()
}

/// The id drawn on a `width` × `height` picture.
pub fn picture(id: &str, width: u32, height: u32) -> GrayImage {
    let bits = bits(id);
    GrayImage::from_fn(width, height, |x, y| {
        let i = (x * ACROSS / width).min(ACROSS - 1);
        let j = (y * DOWN / height).min(DOWN - 1);
        if bits[(j * ACROSS + i) as usize] {
            Luma([255])
        } else {
            Luma([0])
        }
    })
}

/// The id read back from an image (None when it carries none).
pub fn read(image: &DynamicImage) -> Option<String> {
    let gray = image.to_luma8();
    let (w, h) = gray.dimensions();
    if w < ACROSS || h < DOWN {
        return None;
    }
    let mut bytes = Vec::with_capacity(32);
    for byte in 0..32u32 {
        let mut value = 0u8;
        for bit in 0..8u32 {
            let k = byte * 8 + bit;
            let (i, j) = (k % ACROSS, k / ACROSS);
            let x = ((2 * i + 1) * w / (2 * ACROSS)).min(w - 1);
            let y = ((2 * j + 1) * h / (2 * DOWN)).min(h - 1);
            value = value << 1 | u8::from(gray.get_pixel(x, y)[0] > 127);
        }
        bytes.push(value);
    }
    let len = usize::from(bytes[0]);
    (1..=31)
        .contains(&len)
        .then(|| String::from_utf8(bytes[1..=len].to_vec()).ok())
        .flatten()
}

pub fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    match format {
        // The GIF encoder takes colour only.
        ImageFormat::Gif => DynamicImage::ImageRgba8(image.to_rgba8()).write_to(&mut out, format),
        _ => image.write_to(&mut out, format),
    }
    .unwrap();
    out.into_inner()
}

/// The usual media file of the fake instance: a 256 × 64 PNG.
pub fn png(id: &str) -> Vec<u8> {
    encode(
        &DynamicImage::ImageLuma8(picture(id, 256, 64)),
        ImageFormat::Png,
    )
}

#[test]
fn ids_survive_scaling_and_jpeg() {
    let big = DynamicImage::ImageLuma8(picture("m100a", 2048, 512));
    let jpeg = encode(
        &big.resize(1024, 256, image::imageops::FilterType::Lanczos3),
        ImageFormat::Jpeg,
    );
    let back = image::load_from_memory(&jpeg).unwrap();
    assert_eq!(read(&back).as_deref(), Some("m100a"));
}

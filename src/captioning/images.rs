//! What the model is shown: the image decoded (JPEG, PNG, WebP, the first frame of a GIF) from
//! what its bytes say it is (never the Content-Type), its size checked against
//! FEDIALT_MAX_IMAGE_PIXELS before any pixel is decoded (a decompression bomb costs a header
//! read), turned upright by its EXIF orientation, scaled to at most 1024 px on the long side
//! (SIMD Lanczos3), and re-encoded as JPEG. Runs on a blocking thread.

use std::io::Cursor;

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

/// The long side of what the model sees.
pub const LONG_SIDE: u32 = 1024;
const JPEG_QUALITY: u8 = 85;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("the file is not an image fedialt can read (JPEG, PNG, WebP or GIF)")]
    NotAnImage,
    #[error(
        "the image is {width}×{height} pixels, more than the {max} fedialt accepts \
         (FEDIALT_MAX_IMAGE_PIXELS)"
    )]
    TooManyPixels { width: u32, height: u32, max: u64 },
    #[error("the image could not be decoded: it is damaged or cut short")]
    Broken,
}

/// The image as the model gets it.
#[derive(Debug)]
pub struct Prepared {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// `prepare`, off the async threads.
pub async fn prepare_blocking(bytes: Vec<u8>, max_pixels: u64) -> Result<Prepared, ImageError> {
    tokio::task::spawn_blocking(move || prepare(&bytes, max_pixels))
        .await
        .unwrap_or(Err(ImageError::Broken))
}

pub fn prepare(bytes: &[u8], max_pixels: u64) -> Result<Prepared, ImageError> {
    let format = image::guess_format(bytes).map_err(|_| ImageError::NotAnImage)?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif
    ) {
        return Err(ImageError::NotAnImage);
    }
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(|_| ImageError::Broken)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ImageError::Broken);
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ImageError::TooManyPixels {
            width,
            height,
            max: max_pixels,
        });
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // The decoded pixels (at most 4 bytes each, 8 for 16-bit PNG) and the decoder's own buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    decoder
        .set_limits(limits)
        .map_err(|_| ImageError::TooManyPixels {
            width,
            height,
            max: max_pixels,
        })?;
    let orientation = decoder.orientation().ok();
    let (fit_w, fit_h) = fit(width, height);
    let scaled = match format {
        ImageFormat::Jpeg if (fit_w, fit_h) != (width, height) => {
            jpeg_at_scale(bytes, fit_w.max(fit_h), fit_w.min(fit_h), width >= height)
        }
        ImageFormat::WebP => webp_at_scale(bytes, fit_w, fit_h),
        _ => None,
    };
    let mut image = match scaled {
        Some(image) => image,
        None => DynamicImage::from_decoder(decoder).map_err(|_| ImageError::Broken)?,
    };
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    let rgb = flatten(image);
    let (width, height) = fit(rgb.width(), rgb.height());
    let scaled = if (width, height) == rgb.dimensions() {
        rgb
    } else {
        let mut scaled = RgbImage::new(width, height);
        Resizer::new()
            .resize(
                &rgb,
                &mut scaled,
                &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
            )
            .map_err(|_| ImageError::Broken)?;
        scaled
    };
    // jpeg-encoder uses AVX2 where the CPU has it (found at run time): at 1 MP the encode of the
    // output was most of the time.
    let mut jpeg = Vec::with_capacity(256 << 10);
    let (w, h) = (
        u16::try_from(width).map_err(|_| ImageError::Broken)?,
        u16::try_from(height).map_err(|_| ImageError::Broken)?,
    );
    jpeg_encoder::Encoder::new(&mut jpeg, JPEG_QUALITY)
        .encode(scaled.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|_| ImageError::Broken)?;
    Ok(Prepared {
        jpeg,
        width,
        height,
    })
}

/// A JPEG decoded at the smallest DCT scale (1/2, 1/4, 1/8) that still covers the target size, so a
/// 12 MP photo is decoded as 0.75 MP. None for what this decoder does not take (CMYK, 16-bit):
/// the full decoder then does it.
fn jpeg_at_scale(bytes: &[u8], long: u32, short: u32, landscape: bool) -> Option<DynamicImage> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().ok()?;
    let (w, h) = if landscape {
        (long, short)
    } else {
        (short, long)
    };
    let (sw, sh) = decoder
        .scale(u16::try_from(w).ok()?, u16::try_from(h).ok()?)
        .ok()?;
    let pixels = decoder.decode().ok()?;
    let info = decoder.info()?;
    let (sw, sh) = (u32::from(sw), u32::from(sh));
    match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => {
            RgbImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageRgb8)
        }
        jpeg_decoder::PixelFormat::L8 => {
            image::GrayImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageLuma8)
        }
        _ => None,
    }
}

/// A still WebP decoded by libwebp straight to the target size (its own scaler) into a buffer of
/// ours, as RGB when it has no alpha, so the full image is never held and nothing is copied; None
/// for what it does not take (an animation): the pure-Rust decoder then does it.
fn webp_at_scale(bytes: &[u8], width: u32, height: u32) -> Option<DynamicImage> {
    use libwebp_sys as webp;
    let (w, h) = (i32::try_from(width).ok()?, i32::try_from(height).ok()?);
    // SAFETY: the config is plain data that WebPInitDecoderConfig initialises; WebPGetFeatures and
    // WebPDecode read `bytes` within its length; the output is our own `pixels`, whose pointer,
    // stride and size are given exactly (is_external_memory), so libwebp writes only inside it
    // and allocates nothing that needs freeing.
    unsafe {
        let mut config: webp::WebPDecoderConfig = std::mem::zeroed();
        if !webp::WebPInitDecoderConfig(&mut config)
            || webp::WebPGetFeatures(bytes.as_ptr(), bytes.len(), &mut config.input)
                != webp::VP8StatusCode::VP8_STATUS_OK
            || config.input.has_animation != 0
        {
            return None;
        }
        let alpha = config.input.has_alpha != 0;
        let channels = if alpha { 4 } else { 3 };
        let stride = width as usize * channels;
        let mut pixels = vec![0u8; stride * height as usize];
        config.options.use_scaling = 1;
        config.options.scaled_width = w;
        config.options.scaled_height = h;
        config.output.colorspace = if alpha {
            webp::WEBP_CSP_MODE::MODE_RGBA
        } else {
            webp::WEBP_CSP_MODE::MODE_RGB
        };
        config.output.is_external_memory = 1;
        config.output.u.RGBA.rgba = pixels.as_mut_ptr();
        config.output.u.RGBA.stride = i32::try_from(stride).ok()?;
        config.output.u.RGBA.size = pixels.len();
        let status = webp::WebPDecode(bytes.as_ptr(), bytes.len(), &mut config);
        webp::WebPFreeDecBuffer(&mut config.output);
        if status != webp::VP8StatusCode::VP8_STATUS_OK
            || config.output.width != w
            || config.output.height != h
        {
            return None;
        }
        if alpha {
            image::RgbaImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgba8)
        } else {
            RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
        }
    }
}

/// RGB; transparent parts laid over white (as a page shows them), not turned black.
fn flatten(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let mut rgb = RgbImage::new(rgba.width(), rgba.height());
    for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
        let alpha = u32::from(px[3]);
        for c in 0..3 {
            out[c] = ((u32::from(px[c]) * alpha + 255 * (255 - alpha)) / 255) as u8;
        }
    }
    rgb
}

/// The size within LONG_SIDE on the long side, keeping the aspect ratio (never upscaled).
fn fit(width: u32, height: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= LONG_SIDE {
        return (width, height);
    }
    let scale = f64::from(LONG_SIDE) / f64::from(long);
    let w = ((f64::from(width) * scale).round() as u32).clamp(1, LONG_SIDE);
    let h = ((f64::from(height) * scale).round() as u32).clamp(1, LONG_SIDE);
    (w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the bytes each thread has live on the heap, and their peak, so a test can tell
    /// how much one call took.
    mod heap {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static LIVE: Cell<isize> = const { Cell::new(0) };
            static PEAK: Cell<isize> = const { Cell::new(0) };
        }

        fn note(change: isize) {
            let _ = LIVE.try_with(|live| {
                live.set(live.get() + change);
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
            });
        }

        pub struct Counting;

        // SAFETY: every call is passed to the system allocator unchanged; the counting touches
        // only thread-locals that need no allocation and have no destructor.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                note(layout.size() as isize);
                unsafe { System.alloc(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                note(-(layout.size() as isize));
                unsafe { System.dealloc(ptr, layout) }
            }
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                note(layout.size() as isize);
                unsafe { System.alloc_zeroed(layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                note(new_size as isize - layout.size() as isize);
                unsafe { System.realloc(ptr, layout, new_size) }
            }
        }

        /// The most this thread had on the heap, above what it had at the start, while `f` ran.
        pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
            let start = LIVE.with(Cell::get);
            PEAK.with(|peak| peak.set(start));
            let out = f();
            (out, (PEAK.with(Cell::get) - start).max(0) as usize)
        }
    }

    #[global_allocator]
    static HEAP: heap::Counting = heap::Counting;

    #[test]
    fn a_decompression_bomb_is_refused_before_its_pixels_are_decoded() {
        // 4000×4000 of one colour: a few KB on disk, 48 MB decoded.
        let flat =
            DynamicImage::ImageRgb8(RgbImage::from_pixel(4000, 4000, image::Rgb([200, 30, 30])));
        for format in [
            ImageFormat::Png,
            ImageFormat::Jpeg,
            ImageFormat::WebP,
            ImageFormat::Gif,
        ] {
            let bytes = encoded(&flat, format);
            let (refused, peak) = heap::peak_during(|| prepare(&bytes, 1_000_000));
            assert_eq!(
                refused.unwrap_err(),
                ImageError::TooManyPixels {
                    width: 4000,
                    height: 4000,
                    max: 1_000_000
                },
                "{format:?}"
            );
            assert!(
                peak < 2 << 20,
                "{format:?}: {peak} bytes on the heap to refuse it (decoded it would be 48 MB)"
            );
        }
        // The same file under a cap it fits: decoded, which shows the count sees the pixels.
        let small =
            DynamicImage::ImageRgb8(RgbImage::from_pixel(2000, 2000, image::Rgb([200, 30, 30])));
        let bytes = encoded(&small, ImageFormat::Png);
        let (prepared, peak) = heap::peak_during(|| prepare(&bytes, 50_000_000));
        assert_eq!(prepared.unwrap().width, 1024);
        assert!(
            peak > 12_000_000,
            "decoding 2000×2000 RGB took {peak} bytes"
        );
    }

    fn encoded(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn large_images_are_scaled_to_the_long_side() {
        let big =
            DynamicImage::ImageRgb8(RgbImage::from_pixel(3000, 1500, image::Rgb([9, 99, 199])));
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP] {
            let prepared = prepare(&encoded(&big, format), 50_000_000).unwrap();
            assert_eq!((prepared.width, prepared.height), (1024, 512));
            let back = image::load_from_memory(&prepared.jpeg).unwrap();
            assert_eq!(
                image::guess_format(&prepared.jpeg).unwrap(),
                ImageFormat::Jpeg
            );
            assert_eq!((back.width(), back.height()), (1024, 512));
        }
        let small = DynamicImage::ImageRgb8(RgbImage::new(300, 200));
        let prepared = prepare(&encoded(&small, ImageFormat::Png), 50_000_000).unwrap();
        assert_eq!(
            (prepared.width, prepared.height),
            (300, 200),
            "never upscaled"
        );
    }

    #[test]
    fn what_is_not_a_readable_image_is_refused_with_a_reason() {
        assert_eq!(
            prepare(b"<html>hello</html>", 1000).unwrap_err(),
            ImageError::NotAnImage
        );
        let png = encoded(
            &DynamicImage::ImageRgb8(RgbImage::new(64, 64)),
            ImageFormat::Png,
        );
        assert_eq!(
            prepare(&png[..png.len() / 2], 1_000_000).unwrap_err(),
            ImageError::Broken
        );
        let too_big = prepare(&png, 1000).unwrap_err();
        assert_eq!(
            too_big,
            ImageError::TooManyPixels {
                width: 64,
                height: 64,
                max: 1000
            }
        );
    }

    #[test]
    fn a_transparent_webp_comes_out_over_white() {
        let clear = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            2048,
            64,
            image::Rgba([0, 0, 0, 0]),
        ));
        let prepared = prepare(&encoded(&clear, ImageFormat::WebP), 50_000_000).unwrap();
        assert_eq!((prepared.width, prepared.height), (1024, 32));
        let back = image::load_from_memory(&prepared.jpeg).unwrap().to_rgb8();
        assert!(back.get_pixel(10, 10)[0] > 240, "white, not black");
    }

    #[test]
    fn transparency_is_laid_over_white() {
        let clear = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            4,
            4,
            image::Rgba([0, 0, 0, 0]),
        ));
        let rgb = flatten(clear);
        assert_eq!(rgb.get_pixel(0, 0), &image::Rgb([255, 255, 255]));
    }
}

//! What the model is shown: images decoded from what their bytes are, checked for size before
//! decoding, turned upright, scaled to 1024 px and sent as JPEG; a bad image fails alone.

use std::time::{Duration, Instant};

use image::{DynamicImage, ImageFormat};

use crate::fakes::instance::{FakePost, Flavor};
use crate::fakes::model::FakeModel;
use crate::fakes::pixels::{encode, picture};
use crate::helpers::*;

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// A PNG that says it is 100,000 × 100,000 pixels (40 GB decoded) in a few dozen bytes.
fn bomb() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", &[]));
    png
}

/// A JPEG stored turned a quarter to the left, with EXIF orientation 6 (turn right to view); big
/// enough to be decoded at a reduced scale.
fn turned_jpeg(id: &str) -> Vec<u8> {
    let upright = DynamicImage::ImageLuma8(picture(id, 2048, 512));
    let stored = encode(&upright.rotate270(), ImageFormat::Jpeg);
    // APP1 "Exif": a little-endian TIFF header and one IFD entry, Orientation (0x0112) = 6.
    let mut tiff = b"II*\x00\x08\x00\x00\x00".to_vec();
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&[6, 0, 0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend(tiff);
    let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe1];
    jpeg.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    jpeg.extend(app1);
    jpeg.extend_from_slice(&stored[2..]);
    jpeg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_prepared_and_bad_ones_fail_alone() {
    let model = FakeModel::start().await;
    let app = spawn_app_with(
        Backend::Sqlite,
        Options::default()
            .with("CAPTION_BASE_URL", &model.url)
            .with("CAPTION_CONCURRENCY", "1"),
    )
    .await;
    let user = app.create_user("alice", "user").await;
    app.login(&user).await;
    let (fake, platform_id) = app
        .connect_flavor_with(&app.client, "alice", Flavor::Mastodon)
        .await;
    let huge = encode(
        &DynamicImage::ImageLuma8(picture("huge", 4000, 1000)),
        ImageFormat::Png,
    );
    let liar = encode(
        &DynamicImage::ImageLuma8(picture("liar", 256, 64)),
        ImageFormat::Jpeg,
    );
    let gif = encode(
        &DynamicImage::ImageLuma8(picture("gif", 256, 64)),
        ImageFormat::Gif,
    );
    let webp = encode(
        &DynamicImage::ImageLuma8(picture("webp", 2048, 512)),
        ImageFormat::WebP,
    );
    let whole = crate::fakes::pixels::png("cut");
    let cut = whole[..whole.len() / 2].to_vec();
    fake.set(|f| {
        f.posts = vec![FakePost::images(
            1,
            &[
                "plain", "huge", "liar", "gif", "webp", "turned", "html", "bomb", "cut",
            ],
        )];
        let files = &mut f.media_files;
        files.insert("huge".into(), (huge, "image/png".into()));
        files.insert("liar".into(), (liar, "image/png".into()));
        files.insert("gif".into(), (gif, "image/gif".into()));
        files.insert("webp".into(), (webp, "image/webp".into()));
        files.insert(
            "turned".into(),
            (turned_jpeg("turned"), "image/jpeg".into()),
        );
        files.insert(
            "html".into(),
            (b"<!doctype html><p>Not found".to_vec(), "image/jpeg".into()),
        );
        files.insert("bomb".into(), (bomb(), "image/png".into()));
        files.insert("cut".into(), (cut, "image/png".into()));
    });
    app.set_run_settings(&app.client, 50, "0", false).await;
    let started = Instant::now();
    app.start_run_with(&app.client).await;
    let status = app
        .finished_run_with(&app.client, Duration::from_secs(30))
        .await;
    assert_eq!(status["state"], "completed", "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the bomb cost a header read"
    );
    assert_eq!(status["drafts_made"], 6, "{status}");
    assert_eq!(status["images_failed"], 3);

    let seen = model.state.lock().unwrap().seen.clone();
    let find = |id: &str| seen.iter().find(|s| s.media == id).cloned();
    for s in &seen {
        assert_eq!(s.format, "Jpeg", "{s:?}");
        assert!(s.width.max(s.height) <= 1024, "{s:?}");
    }
    let huge = find("huge").expect("the huge image reached the model, readable");
    assert_eq!((huge.width, huge.height), (1024, 256));
    let turned = find("turned").expect("the turned photo arrived upright");
    assert_eq!((turned.width, turned.height), (1024, 256));
    assert!(find("liar").is_some() && find("gif").is_some() && find("plain").is_some());
    let webp = find("webp").expect("the WebP reached the model, readable");
    assert_eq!((webp.width, webp.height), (1024, 256));
    assert_eq!(seen.len(), 6, "nothing unreadable was sent: {seen:?}");

    let drafts = app.drafts(platform_id).await;
    let reason = |id: &str| {
        drafts
            .iter()
            .find(|d| d.media_id == id)
            .and_then(|d| d.error.clone())
            .unwrap_or_default()
    };
    assert!(
        reason("html").contains("not an image fedialt can read"),
        "{}",
        reason("html")
    );
    assert!(
        reason("bomb").contains("100000×100000 pixels"),
        "{}",
        reason("bomb")
    );
    assert!(
        reason("cut").contains("damaged or cut short"),
        "{}",
        reason("cut")
    );
}

async fn one_run(
    options: Options,
    model: &FakeModel,
    posts: Vec<FakePost>,
) -> (TestApp, i64, serde_json::Value) {
    let app = spawn_app_with(Backend::Sqlite, options).await;
    let user = app.create_user("alice", "user").await;
    app.login(&user).await;
    let (fake, platform_id) = app
        .connect_flavor_with(&app.client, "alice", Flavor::Mastodon)
        .await;
    fake.set(|f| f.posts = posts);
    app.set_run_settings(&app.client, 50, "0", false).await;
    app.start_run_with(&app.client).await;
    let status = app
        .finished_run_with(&app.client, Duration::from_secs(30))
        .await;
    let _ = model.total_calls();
    drop(fake);
    (app, platform_id, status)
}

/// The OpenAI-compatible backend: /chat/completions, a data URL, the key as a bearer token;
/// Ollama gets no key. A chatty, long answer is cleaned and cut inside the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_and_the_clean_up() {
    let model = FakeModel::start().await;
    model.set(|m| {
        m.answer = format!(
            "Sure! Here is the alt text for the image:\n\n**{{id}}**: a harbour at dawn. {}",
            "Boats rest on still water. ".repeat(120)
        )
    });
    let openai = Options::default()
        .with("CAPTION_BACKEND", "openai")
        .with("CAPTION_BASE_URL", &format!("{}/v1", model.url))
        .with("CAPTION_API_KEY", "sk-test-key")
        .with("CAPTION_MODEL", "gpt-vision");
    let (app, platform_id, status) =
        one_run(openai, &model, vec![FakePost::images(1, &["o1"])]).await;
    assert_eq!(status["drafts_made"], 1, "{status}");
    let request = model.state.lock().unwrap().requests[0].clone();
    assert_eq!(request["model"], "gpt-vision");
    let url = request["messages"][0]["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap();
    assert!(url.starts_with("data:image/jpeg;base64,"));
    assert_eq!(
        model.state.lock().unwrap().authorization[0].as_deref(),
        Some("Bearer sk-test-key")
    );
    let draft = &app.drafts(platform_id).await[0];
    assert!(
        draft.alt_text.starts_with("o1: a harbour at dawn."),
        "{}",
        draft.alt_text
    );
    assert!(draft.alt_text.chars().count() <= 500 && draft.alt_text.ends_with('.'));
    assert_eq!(draft.model, "gpt-vision");
    assert_eq!(draft.prompt_version, fedialt::captioning::prompt::VERSION);

    let ollama = Options::default().with("CAPTION_BASE_URL", &model.url);
    let (_app, _, status) = one_run(ollama, &model, vec![FakePost::images(1, &["l1"])]).await;
    assert_eq!(status["drafts_made"], 1);
    assert_eq!(
        model.state.lock().unwrap().authorization[1],
        None,
        "Ollama gets no key"
    );
}

/// An empty answer, a 400 and a timeout: each image fails with its reason; a 400 is not retried,
/// a timeout is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_failures_keep_their_reasons() {
    let model = FakeModel::start().await;
    model.set(|m| m.answer = "   ".into());
    let options = || {
        Options::default()
            .with("CAPTION_BASE_URL", &model.url)
            .with("CAPTION_CONCURRENCY", "1")
    };
    let (app, platform_id, status) =
        one_run(options(), &model, vec![FakePost::images(1, &["e1"])]).await;
    assert_eq!(status["images_failed"], 1);
    let error = app.drafts(platform_id).await[0].error.clone().unwrap();
    assert!(error.contains("no description"), "{error}");

    model.set(|m| {
        m.answer = "A fine answer.".into();
        m.fail_with = Some((400, "invalid image input".into()));
    });
    let before = model.total_calls();
    let (app, platform_id, _) =
        one_run(options(), &model, vec![FakePost::images(1, &["b1"])]).await;
    assert_eq!(model.total_calls() - before, 1, "a 400 is not tried again");
    let error = app.drafts(platform_id).await[0].error.clone().unwrap();
    assert!(
        error.contains("HTTP 400") && error.contains("invalid image input"),
        "{error}"
    );

    model.set(|m| {
        m.fail_with = None;
        m.delay = Duration::from_secs(3);
    });
    let before = model.total_calls();
    let (app, platform_id, _) = one_run(
        options().with("CAPTION_TIMEOUT_SECS", "1"),
        &model,
        vec![FakePost::images(1, &["t1"])],
    )
    .await;
    assert_eq!(model.total_calls() - before, 3, "a timeout is tried again");
    let error = app.drafts(platform_id).await[0].error.clone().unwrap();
    assert!(error.contains("did not answer within 1 s"), "{error}");
}

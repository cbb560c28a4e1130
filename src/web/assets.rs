//! Static files (the stylesheet and the small scripts), embedded and served with a long cache.

use actix_web::{web, HttpResponse};
use include_dir::{include_dir, Dir};

static STATIC: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/static");

pub async fn serve(path: web::Path<String>) -> HttpResponse {
    match STATIC.get_file(path.as_str()) {
        Some(file) => HttpResponse::Ok()
            .content_type(
                mime_guess::from_path(path.as_str())
                    .first_or_octet_stream()
                    .essence_str(),
            )
            .insert_header(("Cache-Control", "public, max-age=3600"))
            .body(file.contents()),
        None => HttpResponse::NotFound().finish(),
    }
}

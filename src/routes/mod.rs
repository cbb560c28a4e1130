//! Thin handlers: extract, parse, call, respond.

use actix_web::web;

pub mod account;
pub mod admin;
pub mod auth;
pub mod caption;
pub mod error;
pub mod health;
pub mod home;
pub mod metrics;
pub mod platforms;
pub mod review;
pub mod runs;

/// Fixed paths first, then the ones with a parameter: the router tries routes in order, and a
/// parameterised one costs a pattern match, so the pages people load most never pay for those.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home::index))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/caption_generation", web::get().to(caption::page::show))
        .route(
            "/caption_generation/status",
            web::get().to(caption::run::status),
        )
        .route(
            "/caption_generation/start",
            web::post().to(caption::run::start),
        )
        .route(
            "/caption_generation/cancel",
            web::post().to(caption::run::cancel),
        )
        .route("/runs", web::get().to(runs::list))
        .route("/review", web::get().to(review::queue))
        .route("/review/status", web::get().to(review::status))
        .service(
            // Drafts' texts (typed ones too) for up to 200 drafts.
            web::resource("/review/bulk")
                .app_data(web::PayloadConfig::new(1 << 20))
                .route(web::post().to(review::bulk)),
        )
        .route("/history", web::get().to(review::history))
        .route("/caption_settings", web::get().to(caption::settings::form))
        .route("/caption_settings", web::post().to(caption::settings::save))
        .route(
            "/save_caption_settings",
            web::post().to(caption::settings::save),
        )
        .route(
            "/api/update_user_settings",
            web::post().to(caption::api::update),
        )
        .route("/login", web::get().to(auth::login::form))
        .route("/login", web::post().to(auth::login::submit))
        .route("/logout", web::post().to(auth::logout::submit))
        .route("/account", web::get().to(account::page::show))
        .route(
            "/account/password",
            web::post().to(account::password::change),
        )
        .route("/platforms", web::get().to(platforms::list::show))
        .route("/platforms", web::post().to(platforms::add::submit))
        .service(
            web::resource("/platforms/oauth/start")
                .route(web::post().to(platforms::oauth::start))
                .route(web::get().to(platforms::oauth::start_by_get)),
        )
        .route(
            "/platforms/oauth/callback",
            web::get().to(platforms::oauth::callback),
        )
        .route("/admin", web::get().to(admin::index))
        .route("/admin/users", web::get().to(admin::users::list))
        .route("/admin/users", web::post().to(admin::users::create))
        .route("/admin/audit", web::get().to(admin::users::audit))
        .route("/admin/runs", web::get().to(admin::runs::list))
        .route("/admin/settings", web::get().to(admin::settings::show))
        .route(
            "/admin/settings/defaults",
            web::post().to(admin::settings::save_defaults),
        )
        .route(
            "/admin/settings/model",
            web::post().to(admin::settings::save_model),
        )
        .route(
            "/admin/settings/model/test",
            web::post().to(admin::settings::test_model),
        )
        .route("/metrics", web::get().to(metrics::show))
        .route(
            "/account/sessions/{id}/end",
            web::post().to(account::sessions::end),
        )
        .route(
            "/platforms/{id}/switch",
            web::post().to(platforms::actions::switch),
        )
        .route(
            "/platforms/{id}/default",
            web::post().to(platforms::actions::make_default),
        )
        .route(
            "/platforms/{id}/rename",
            web::post().to(platforms::actions::rename),
        )
        .route(
            "/platforms/{id}/watch",
            web::post().to(platforms::actions::watch),
        )
        .service(
            web::resource("/platforms/{id}/delete")
                .route(web::get().to(platforms::delete::confirm))
                .route(web::post().to(platforms::delete::delete)),
        )
        .route("/runs/{id}", web::get().to(runs::show))
        .route("/admin/users/{id}", web::get().to(admin::users::show))
        .route(
            "/admin/users/{id}/{action}",
            web::post().to(admin::users::change),
        )
        .route(
            "/admin/runs/{id}/{action}",
            web::post().to(admin::runs::act),
        )
        // A description of 1,500 emoji is 18 KB as a form: above the default form limit.
        .service(
            web::resource("/review/{id}/{action}")
                .app_data(web::FormConfig::default().limit(64 << 10))
                .route(web::post().to(review::act)),
        )
        .route(
            "/static/{path:.*}",
            web::get().to(crate::web::assets::serve),
        )
        .default_service(web::to(error::not_found));
}

/// A same-site path to go to after signing in. Only a path that, resolved against the public URL,
/// stays on its origin, with no control character, whitespace or backslash anywhere (browsers strip
/// or reinterpret those, turning `/\t/evil.example` into another host); anything else means `/`.
/// What comes back is the resolved path and query, percent-encoded, so it is always a valid header.
pub fn safe_next(next: Option<&str>, public_url: &url::Url) -> String {
    let Some(next) = next else {
        return "/".to_owned();
    };
    let clean = next.starts_with('/')
        && !next.starts_with("//")
        && !next
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    if !clean {
        return "/".to_owned();
    }
    match public_url.join(next) {
        Ok(resolved) if resolved.origin() == public_url.origin() => {
            let path = &resolved[url::Position::BeforePath..url::Position::AfterQuery];
            if path.starts_with('/') && !path.starts_with("//") {
                path.to_owned()
            } else {
                "/".to_owned()
            }
        }
        _ => "/".to_owned(),
    }
}

pub fn see_other(location: &str) -> actix_web::HttpResponse {
    actix_web::HttpResponse::SeeOther()
        .insert_header(("Location", location))
        .finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn next_stays_on_site() {
        let public = url::Url::parse("http://127.0.0.1:8080").unwrap();
        let next = |n: &str| super::safe_next(Some(n), &public);
        assert_eq!(next("/account?x=1"), "/account?x=1");
        assert_eq!(next("/caption_generation"), "/caption_generation");
        assert_eq!(next("/a b"), "/");
        assert_eq!(next("/caf\u{e9}"), "/caf%C3%A9");
        for hostile in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\u{b}/evil.example",
            "/\u{0}",
            "/\r\nSet-Cookie: x=1",
            "/\n/evil.example",
            "/ /evil.example",
            "/\u{a0}/evil.example",
            "\\\\evil.example",
            "evil.example",
            "",
            "/..//evil.example",
        ] {
            assert_eq!(next(hostile), "/", "{hostile:?}");
        }
        assert_eq!(super::safe_next(None, &public), "/");
    }
}

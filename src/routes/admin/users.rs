//! /admin/users: the people with an account. Admins list and search them, create one, change a
//! role, deactivate or activate, and set a new password. Deactivating, demoting or a new
//! password ends that person's sessions at once (in the database, and in Redis or through the
//! outbox when Redis is away), so a demoted admin loses /admin in every open session. The last
//! active admin cannot be deactivated or demoted. Every change is in the audit log.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use actix_web_flash_messages::{FlashMessage, IncomingFlashMessages};
use serde::{Deserialize, Serialize};

use crate::auth::AdminUser;
use crate::domain::{Email, NewPassword, Username};
use crate::routes::error::AppError;
use crate::routes::see_other;
use crate::state::AppState;
use crate::store::users::{Access, AccessChange, UserRow};
use crate::store::{self, StoreError};
use crate::web::page::Page;
use crate::web::when;

const PAGE_SIZE: usize = 50;

#[derive(Serialize)]
struct UserLine {
    id: i64,
    username: String,
    email: String,
    role: String,
    active: bool,
    created: String,
    last_login: String,
}

fn line(u: &UserRow) -> UserLine {
    UserLine {
        id: u.id,
        username: u.username.clone(),
        email: u.email.clone(),
        role: u.role.clone(),
        active: u.active,
        created: when(u.created_at),
        last_login: u.last_login_at.map(when).unwrap_or_else(|| "never".into()),
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    page: Option<String>,
}

/// What the create form held, to show again (never the password).
#[derive(Serialize, Default)]
struct CreateValues {
    username: String,
    email: String,
    role: String,
}

async fn render_list(
    state: &AppState,
    admin: &AdminUser,
    flashes: Option<&IncomingFlashMessages>,
    (query, page): (&str, usize),
    values: &CreateValues,
    errors: &[(&str, String)],
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let mut conn = state.db.conn().await?;
    let everyone = store::users::list(&mut conn).await?;
    drop(conn);
    let needle = query.trim().to_lowercase();
    let found: Vec<&UserRow> = everyone
        .iter()
        .filter(|u| {
            needle.is_empty()
                || u.username.contains(&needle)
                || u.email.to_lowercase().contains(&needle)
        })
        .collect();
    let pages = found.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    let lines: Vec<UserLine> = found
        .iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|u| line(u))
        .collect();
    Page::new("People", Some(admin), flashes)
        .with("users", &lines)
        .with("total", &found.len())
        .with("q", &query.trim())
        .with(
            "q_encoded",
            &url::form_urlencoded::byte_serialize(query.trim().as_bytes()).collect::<String>(),
        )
        .with("page", &page)
        .with("pages", &pages)
        .with("values", values)
        .with("field_errors", &field_errors(errors))
        .with_errors(errors)
        .render_status(&state.templates, status, "admin/users.html")
}

pub async fn list(
    admin: AdminUser,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let page = query
        .page
        .as_deref()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    let values = CreateValues {
        role: "user".into(),
        ..CreateValues::default()
    };
    render_list(
        &state,
        &admin,
        Some(&flashes),
        (query.q.as_deref().unwrap_or(""), page),
        &values,
        &[],
        StatusCode::OK,
    )
    .await
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
}

fn parse_role(text: &str) -> Result<&'static str, String> {
    match text.trim() {
        "user" => Ok("user"),
        "admin" => Ok("admin"),
        _ => Err("Role: must be user or admin.".into()),
    }
}

pub async fn create(
    admin: AdminUser,
    state: web::Data<AppState>,
    form: web::Form<CreateForm>,
) -> Result<HttpResponse, AppError> {
    admin.check_csrf(&form.csrf_token)?;
    let mut errors: Vec<(&'static str, String)> = Vec::new();
    let username = Username::parse(&form.username)
        .map_err(|e| errors.push(("username", format!("Username: {e}."))))
        .ok();
    let email = Email::parse(&form.email)
        .map_err(|e| errors.push(("email", format!("E-mail: {e}."))))
        .ok();
    let password = NewPassword::parse(&form.password)
        .map_err(|e| errors.push(("password", format!("Password: {e}."))))
        .ok();
    let role = parse_role(&form.role)
        .map_err(|e| errors.push(("role", e)))
        .ok();
    let values = CreateValues {
        username: form.username.trim().to_owned(),
        email: form.email.trim().to_owned(),
        role: form.role.trim().to_owned(),
    };
    let refuse = |errors: Vec<(&'static str, String)>| {
        let state = state.clone();
        let values = &values;
        let admin = &admin;
        async move {
            render_list(
                &state,
                admin,
                None,
                ("", 1),
                values,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    let (Some(username), Some(email), Some(password), Some(role)) =
        (username, email, password, role)
    else {
        return refuse(errors).await;
    };
    let permit = state.passwords.try_permit()?;
    let hash = state.passwords.hash(permit, password.into_secret()).await?;
    let mut conn = state.db.conn().await?;
    let created: Result<i64, StoreError> = crate::write_tx!(conn, {
        let id = store::users::insert(
            &mut conn,
            &store::users::NewUser {
                username: username.as_str(),
                email: email.as_str(),
                password_hash: &hash,
                role,
                active: true,
                created_at: store::now(),
            },
        )
        .await?;
        store::audit::record(
            &mut conn,
            (admin.uid.get(), &admin.username),
            "user created",
            username.as_str(),
            &format!("role {role}"),
        )
        .await?;
        Ok(id)
    });
    drop(conn);
    match created {
        Ok(id) => {
            FlashMessage::success(format!(
                "{} can now sign in with the password you set.",
                username.as_str()
            ))
            .send();
            Ok(see_other(&format!("/admin/users/{id}")))
        }
        Err(e) if e.is_unique_violation() => {
            refuse(vec![(
                "username",
                format!("Username: {} is taken.", username.as_str()),
            )])
            .await
        }
        Err(e) => Err(e.into()),
    }
}

async fn target(state: &AppState, id: i64) -> Result<UserRow, AppError> {
    let mut conn = state.db.conn().await?;
    store::users::by_id(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound)
}

async fn render_one(
    state: &AppState,
    admin: &AdminUser,
    flashes: Option<&IncomingFlashMessages>,
    user: &UserRow,
    errors: &[(&str, String)],
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let mut conn = state.db.conn().await?;
    let sessions = store::sessions::ids_for_user_except(&mut conn, user.id, None)
        .await?
        .len();
    drop(conn);
    Page::new(&format!("{} · People", user.username), Some(admin), flashes)
        .with("person", &line(user))
        .with("sessions", &sessions)
        .with("is_self", &(user.id == admin.uid.get()))
        .with("field_errors", &field_errors(errors))
        .with_errors(errors)
        .render_status(&state.templates, status, "admin/user.html")
}

pub async fn show(
    admin: AdminUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let user = target(&state, path.into_inner()).await?;
    render_one(&state, &admin, Some(&flashes), &user, &[], StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    csrf_token: String,
    role: Option<String>,
    password: Option<String>,
}

/// Ends every session of the person (after the change that called for it is committed).
async fn sign_out_everywhere(state: &AppState, user_id: i64) -> Result<usize, AppError> {
    let mut conn = state.db.conn().await?;
    let ids = store::sessions::ids_for_user_except(&mut conn, user_id, None).await?;
    drop(conn);
    crate::sessions::end_sessions(&state.db, &state.cache, &ids).await?;
    Ok(ids.len())
}

/// POST /admin/users/{id}/{action}: role (field role), deactivate, activate, password (field
/// password).
pub async fn change(
    admin: AdminUser,
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
    form: web::Form<ChangeForm>,
) -> Result<HttpResponse, AppError> {
    admin.check_csrf(&form.csrf_token)?;
    let (id, action) = path.into_inner();
    let user = target(&state, id).await?;
    let actor = (admin.uid.get(), admin.username.as_str());
    let refuse = |field: &'static str, message: String| {
        let state = state.clone();
        let user = user.clone();
        let admin = &admin;
        async move {
            render_one(
                &state,
                admin,
                None,
                &user,
                &[(field, message)],
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    let access = match action.as_str() {
        "role" => match parse_role(form.role.as_deref().unwrap_or("")) {
            Ok(role) => Access::Role(role),
            Err(message) => return refuse("role", message).await,
        },
        "deactivate" => Access::Active(false),
        "activate" => Access::Active(true),
        "password" => {
            let password = match NewPassword::parse(form.password.as_deref().unwrap_or("")) {
                Ok(p) => p,
                Err(e) => return refuse("password", format!("New password: {e}.")).await,
            };
            let permit = state.passwords.try_permit()?;
            let hash = state.passwords.hash(permit, password.into_secret()).await?;
            let mut conn = state.db.conn().await?;
            let set: bool = crate::write_tx!(conn, {
                let set = store::users::set_password_by_admin(&mut conn, id, &hash).await?;
                if set {
                    store::audit::record(&mut conn, actor, "password set", &user.username, "")
                        .await?;
                }
                Ok(set)
            })?;
            drop(conn);
            if !set {
                return Err(AppError::NotFound);
            }
            let ended = sign_out_everywhere(&state, id).await?;
            FlashMessage::success(format!(
                "New password set for {}. {} signed out.",
                user.username,
                sessions_words(ended)
            ))
            .send();
            if id == admin.uid.get() {
                return Ok(see_other("/login"));
            }
            return Ok(see_other(&format!("/admin/users/{id}")));
        }
        _ => return Err(AppError::NotFound),
    };
    // The read, the last-admin check, the change and its audit row: one transaction.
    let mut conn = state.db.conn().await?;
    let changed: AccessChange = crate::write_tx!(conn, {
        let changed = store::users::change_access(&mut conn, id, access).await?;
        if let AccessChange::Done(before) = &changed {
            let (what, detail) = match access {
                Access::Role(role) => ("role changed", format!("{} → {role}", before.role)),
                Access::Active(false) => ("deactivated", String::new()),
                Access::Active(true) => ("activated", String::new()),
            };
            store::audit::record(&mut conn, actor, what, &before.username, &detail).await?;
        }
        Ok(changed)
    })?;
    drop(conn);
    let after = match &changed {
        AccessChange::Gone => return Err(AppError::NotFound),
        AccessChange::LastAdmin => {
            return refuse(
                if action == "role" { "role" } else { "access" },
                format!(
                    "{} is the last active admin: make someone else an admin first, so that \
                     someone can still run this fedialt.",
                    user.username
                ),
            )
            .await
        }
        AccessChange::Done(_) | AccessChange::Unchanged(_) => {
            let mut conn = state.db.conn().await?;
            store::users::by_id(&mut conn, id)
                .await?
                .ok_or(AppError::NotFound)?
        }
    };
    // Sessions end whenever the person is now without access or without the admin role they
    // may hold a session of: also on a repeat, so a retry finishes what a failed attempt left.
    let loses = matches!(access, Access::Active(false) | Access::Role("user"));
    let ended = if loses {
        sign_out_everywhere(&state, id).await?
    } else {
        0
    };
    // A deactivated person's runs stop too (their drafts stay).
    let mut stopped = 0;
    if matches!(access, Access::Active(false)) {
        let mut conn = state.db.conn().await?;
        let platforms = store::platforms::for_user(&mut conn, id).await?;
        drop(conn);
        for platform in platforms {
            if state
                .runs
                .cancel(
                    crate::domain::UserId(id),
                    crate::domain::PlatformId(platform.id),
                )
                .await?
                .is_some()
            {
                stopped += 1;
            }
        }
    }
    let what = match (&changed, access) {
        (AccessChange::Unchanged(_), _) => {
            format!("Nothing changed: {} was already so.", after.username)
        }
        (_, Access::Role(_)) => format!(
            "{} is now {}.{}",
            after.username,
            if after.role == "admin" {
                "an admin"
            } else {
                "a user"
            },
            if after.role == "admin" {
                " They have the admin pages at once."
            } else {
                ""
            }
        ),
        (_, Access::Active(false)) => format!(
            "{} is deactivated and can no longer sign in.{}",
            after.username,
            match stopped {
                0 => String::new(),
                1 => " Their run going was cancelled (its drafts are kept).".into(),
                n => format!(" Their {n} runs going were cancelled (their drafts are kept)."),
            }
        ),
        (_, Access::Active(true)) => format!("{} is active again and can sign in.", after.username),
    };
    let text = if loses && ended > 0 {
        format!("{what} {} signed out.", sessions_words(ended))
    } else {
        what
    };
    if matches!(changed, AccessChange::Unchanged(_)) {
        FlashMessage::info(text).send();
    } else {
        FlashMessage::success(text).send();
    }
    if id == admin.uid.get() && loses {
        return Ok(see_other("/login"));
    }
    Ok(see_other(&format!("/admin/users/{id}")))
}

/// Each field's message, for the field itself (the summary lists them all).
fn field_errors(errors: &[(&str, String)]) -> serde_json::Map<String, serde_json::Value> {
    errors
        .iter()
        .map(|(field, message)| ((*field).to_owned(), message.clone().into()))
        .collect()
}

fn sessions_words(n: usize) -> String {
    match n {
        0 => "No session was".into(),
        1 => "Their session was".into(),
        n => format!("Their {n} sessions were"),
    }
}

#[derive(Serialize)]
struct AuditLine {
    when: String,
    actor: String,
    action: String,
    target: String,
    detail: String,
}

/// GET /admin/audit: who did what, when, to whom or what; newest first, 50 a page.
pub async fn audit(
    admin: AdminUser,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let page: i64 = query
        .page
        .as_deref()
        .and_then(|p| p.parse().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    let mut conn = state.db.conn().await?;
    let total = store::audit::count(&mut conn).await?;
    let pages = ((total + PAGE_SIZE as i64 - 1) / PAGE_SIZE as i64).max(1);
    let page = page.min(pages);
    let rows =
        store::audit::page(&mut conn, PAGE_SIZE as i64, (page - 1) * PAGE_SIZE as i64).await?;
    drop(conn);
    let lines: Vec<AuditLine> = rows
        .into_iter()
        .map(|r| AuditLine {
            when: when(r.created_at),
            actor: r.actor,
            action: r.action,
            target: r.target,
            detail: r.detail,
        })
        .collect();
    Page::new("Audit log", Some(&admin), Some(&flashes))
        .with("entries", &lines)
        .with("page", &page)
        .with("pages", &pages)
        .render(&state.templates, "admin/audit.html")
}

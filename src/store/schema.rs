// @generated in spirit by diesel print-schema; kept by hand in step with migrations/postgres and
// migrations/sqlite, using only types both backends share.

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        email -> Text,
        password_hash -> Text,
        role -> Text,
        active -> Bool,
        created_at -> BigInt,
        last_login_at -> Nullable<BigInt>,
        platforms_version -> BigInt,
        credentials_version -> BigInt,
    }
}

diesel::table! {
    oauth_pending (state_hash) {
        state_hash -> Text,
        user_id -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    platform_connections (id) {
        id -> BigInt,
        user_id -> BigInt,
        name -> Text,
        instance_url -> Text,
        platform_type -> Text,
        account_id -> Text,
        account_username -> Text,
        display_name -> Text,
        access_token_enc -> Text,
        refresh_token_enc -> Nullable<Text>,
        description_limit -> Integer,
        is_default -> Bool,
        needs_reauth -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        token_seal -> Integer,
    }
}

diesel::table! {
    oauth_apps (id) {
        id -> BigInt,
        instance_url -> Text,
        redirect_uri -> Text,
        scopes -> Text,
        client_id -> Text,
        client_secret_enc -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Nullable<BigInt>,
        state -> Text,
        version -> BigInt,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        expires_at -> BigInt,
        user_agent -> Nullable<Text>,
        signed_in_from -> Nullable<Text>,
    }
}

diesel::table! {
    cache_outbox (id) {
        id -> BigInt,
        min_version -> BigInt,
        created_at -> BigInt,
        kind -> Text,
        ident -> Text,
    }
}

diesel::table! {
    login_throttle (scope_key) {
        scope_key -> Text,
        failures -> Integer,
        window_start -> BigInt,
    }
}

diesel::table! {
    cache_state (id) {
        id -> Integer,
        generation -> BigInt,
        redis_run_id -> Nullable<Text>,
    }
}

diesel::table! {
    caption_settings (platform_id) {
        platform_id -> BigInt,
        user_id -> BigInt,
        max_posts_per_run -> Integer,
        max_caption_length -> Integer,
        optimal_min_length -> Integer,
        optimal_max_length -> Integer,
        reprocess_existing -> Bool,
        processing_delay_ms -> Integer,
        version -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    caption_jobs (id) {
        id -> BigInt,
        user_id -> BigInt,
        platform_id -> BigInt,
        state -> Text,
        settings -> Text,
        posts_limit -> Integer,
        posts_scanned -> Integer,
        posts_seen -> Integer,
        images_found -> Integer,
        drafts_made -> Integer,
        media_skipped -> Integer,
        images_failed -> Integer,
        step -> Text,
        error -> Nullable<Text>,
        resume_after -> Nullable<Text>,
        attempts -> Integer,
        run_after -> BigInt,
        lease_owner -> Nullable<Text>,
        lease_until_ms -> Nullable<BigInt>,
        version -> BigInt,
        created_at -> BigInt,
        started_at -> Nullable<BigInt>,
        finished_at -> Nullable<BigInt>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    caption_drafts (id) {
        id -> BigInt,
        run_id -> Nullable<BigInt>,
        user_id -> BigInt,
        platform_id -> BigInt,
        status_id -> Text,
        status_url -> Text,
        media_id -> Text,
        preview_url -> Text,
        image_url -> Text,
        post_text -> Text,
        language -> Nullable<Text>,
        alt_text -> Text,
        model -> Text,
        state -> Text,
        edited -> Bool,
        error -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        prompt_version -> Integer,
        version -> BigInt,
        published_at -> Nullable<BigInt>,
        auto_published -> Bool,
    }
}

diesel::table! {
    publish_jobs (id) {
        id -> BigInt,
        user_id -> BigInt,
        platform_id -> BigInt,
        status_id -> Text,
        requested -> BigInt,
        handled -> BigInt,
        attempts -> Integer,
        run_after -> BigInt,
        lease_owner -> Nullable<Text>,
        lease_until_ms -> Nullable<BigInt>,
        error -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    admin_settings (name) {
        name -> Text,
        value -> Text,
        version -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        actor_id -> Nullable<BigInt>,
        actor -> Text,
        action -> Text,
        target -> Text,
        detail -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    scan_marks (platform_id) {
        platform_id -> BigInt,
        newest -> Text,
        oldest -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    watches (platform_id) {
        platform_id -> BigInt,
        user_id -> BigInt,
        enabled -> Bool,
        auto_publish -> Bool,
        enabled_at -> Nullable<BigInt>,
        last_status_id -> Nullable<Text>,
        last_status_url -> Nullable<Text>,
        last_post_at -> Nullable<BigInt>,
        mode -> Nullable<Text>,
        problem -> Nullable<Text>,
        lease_owner -> Nullable<Text>,
        lease_until_ms -> Nullable<BigInt>,
        version -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    post_jobs (id) {
        id -> BigInt,
        user_id -> BigInt,
        platform_id -> BigInt,
        status_id -> Text,
        status_json -> Text,
        state -> Text,
        attempts -> Integer,
        run_after -> BigInt,
        lease_owner -> Nullable<Text>,
        lease_until_ms -> Nullable<BigInt>,
        error -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(caption_settings -> platform_connections (platform_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    sessions,
    cache_outbox,
    login_throttle,
    cache_state,
    caption_jobs,
    caption_drafts,
    publish_jobs,
    watches,
    post_jobs,
    platform_connections
);

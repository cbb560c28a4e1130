//! Each migration's down.sql really reverts its up.sql, on both backends.

use diesel_async::RunQueryDsl;
use fedialt::store::migrate;

use crate::both_databases;
use crate::helpers::*;

#[derive(diesel::QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Line {
    #[diesel(sql_type = diesel::sql_types::Text)]
    line: String,
}

async fn schema(db: &TestDatabase) -> Vec<String> {
    let sql = match db.backend {
        Backend::Sqlite => "SELECT type || ' ' || name || ' ' || COALESCE(sql, '') AS line FROM sqlite_master \
             WHERE name NOT LIKE '__diesel%' AND name NOT LIKE 'sqlite_%'",
        Backend::Postgres => "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || COALESCE(column_default, '') AS line \
             FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations' \
             UNION ALL SELECT indexdef AS line FROM pg_indexes WHERE schemaname = 'public' AND tablename <> '__diesel_schema_migrations'",
    };
    let fedialt_db = fedialt::store::Db::connect(&db.url, 1, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let mut conn = fedialt_db.conn().await.unwrap();
    let mut lines: Vec<String> =
        fedialt::run!(&mut conn, |c| diesel::sql_query(sql).load::<Line>(c).await)
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
    lines.sort();
    lines
}

async fn each_down_reverts_its_up(b: Backend) {
    let db = TestDatabase::empty(b).await;
    if b == Backend::Sqlite {
        std::fs::File::create(&db.url).unwrap();
    }
    let mut steps = 0;
    loop {
        let before = schema(&db).await;
        let url = db.url.clone();
        let applied = tokio::task::spawn_blocking(move || migrate::step_up_blocking(&url))
            .await
            .unwrap()
            .unwrap();
        if !applied {
            break;
        }
        steps += 1;
        let after_up = schema(&db).await;
        assert_ne!(before, after_up, "migration {steps} changes the schema");
        let url = db.url.clone();
        tokio::task::spawn_blocking(move || migrate::step_down_blocking(&url))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            schema(&db).await,
            before,
            "migration {steps}'s down.sql reverts its up.sql"
        );
        let url = db.url.clone();
        tokio::task::spawn_blocking(move || migrate::step_up_blocking(&url))
            .await
            .unwrap()
            .unwrap();
    }
    assert!(steps >= 1);
    // And all the way down leaves nothing of ours.
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || migrate::revert_all_blocking(&url))
        .await
        .unwrap()
        .unwrap();
    assert!(schema(&db).await.is_empty());
}

both_databases!(each_down_reverts_its_up);

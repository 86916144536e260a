//! The `events` table of the schema before issue 10 (plain `MergeTree`, with the duplicates
//! its at-least-once inserts left) is migrated to the current schema without losing a row,
//! and every interrupted state of that migration is finished. Real clickhouse-server 18.16.

mod common;

use std::time::Duration;

use analytics_engine::clickhouse::{create_table_sql, legacy_create_table_sql, BACKUP_TABLE, MIGRATING_TABLE, TABLE};
use analytics_engine::pb::StatsRequest;
use common::*;
use serde_json::json;

/// `n` rows over three monthly partitions as JSONEachRow lines, sorted by id.
fn legacy_rows(prefix: &str, n: usize) -> Vec<String> {
    let months = [1_704_067_200_000u64, 1_706_745_600_000, 1_709_251_200_000]; // 2024-01/02/03
    let kinds = ["page_view", "click", "purchase"];
    let mut rows: Vec<String> = (0..n)
        .map(|i| {
            json!({
                "id": format!("{prefix}-{i:05}"),
                "kind": kinds[i % 3],
                "value": i as f64 * 1.25 - 100.0,
                "source": if i % 2 == 0 { "web" } else { "grpc" },
                "attributes": json!({"i": i.to_string(), "q": "it's \"quoted\"\n"}).to_string(),
                "ts_unix_ms": months[i % 3] + i as u64 * 1000,
            })
            .to_string()
        })
        .collect();
    rows.sort();
    rows
}

async fn insert(ch: &ClickHouse, db: &str, table: &str, rows: &[String]) {
    let sql = format!(
        "INSERT INTO {db}.{table} (id, kind, value, source, attributes, ts_unix_ms) FORMAT JSONEachRow\n{}\n",
        rows.join("\n")
    );
    ch.query(&sql).await.unwrap_or_else(|e| panic!("inserting into {db}.{table}: {e}"));
}

/// The distinct rows of `db.events` as JSONEachRow lines, sorted (the same shape as `legacy_rows`).
async fn rows_of(ch: &ClickHouse, db: &str) -> Vec<String> {
    let body = ch
        .query(&format!(
            "SELECT DISTINCT id, kind, value, source, attributes, ts_unix_ms FROM {db}.events ORDER BY id \
             FORMAT JSONEachRow"
        ))
        .await
        .unwrap();
    let mut rows: Vec<String> = body
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            // ClickHouse prints -100 as -100 (serde_json: -100.0) and quotes 64-bit integers:
            // normalise to the shape `legacy_rows` produces.
            let ts = &v["ts_unix_ms"];
            let ts: u64 = ts.as_u64().or_else(|| ts.as_str().and_then(|s| s.parse().ok())).unwrap();
            json!({
                "id": v["id"], "kind": v["kind"], "value": v["value"].as_f64().unwrap(), "source": v["source"],
                "attributes": v["attributes"], "ts_unix_ms": ts,
            })
            .to_string()
        })
        .collect();
    rows.sort();
    rows
}

async fn tables(ch: &ClickHouse, db: &str) -> Vec<(String, String)> {
    let body = ch
        .query(&format!(
            "SELECT name, engine FROM system.tables WHERE database = '{db}' ORDER BY name FORMAT TabSeparated"
        ))
        .await
        .unwrap();
    body.lines()
        .map(|l| {
            let (a, b) = l.split_once('\t').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect()
}

fn migrated() -> Vec<(String, String)> {
    vec![(TABLE.to_string(), "ReplacingMergeTree".to_string())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_mergetree_table_is_migrated_without_losing_a_row() {
    let nats = Nats::start();
    let ch = ClickHouse::start().await;
    ch.query("CREATE DATABASE v7").await.unwrap();
    ch.query(&legacy_create_table_sql("v7")).await.unwrap();
    let rows = legacy_rows("old", 3000);
    insert(&ch, "v7", "events", &rows).await;
    // What the old engine's retried inserts left behind: 200 rows stored twice.
    insert(&ch, "v7", "events", &rows[..200]).await;
    assert_eq!(ch.query("SELECT count() FROM v7.events").await.unwrap().trim(), "3200");

    let mut engine = EngineProcess::start(&nats.url(), &ch.url(), &[]);
    wait_until("the table migrated", Duration::from_secs(90), || async { tables(&ch, "v7").await == migrated() }).await;
    assert_eq!(rows_of(&ch, "v7").await, rows, "the same rows, every column");
    assert_eq!(ch.query("SELECT count() FROM v7.events FINAL").await.unwrap().trim(), "3000", "duplicates collapse");
    let log = engine.log_text();
    for needle in [
        "is a plain MergeTree (the schema before issue 10",
        "migration: swapped",
        "migration verified: all 3200 rows of `v7`.`events_mergetree_backup` are in `v7`.`events`",
    ] {
        assert!(log.contains(needle), "the log should say {needle:?}:\n{log}");
    }

    // The engine then works on the new table as usual.
    let js = Js::connect(&nats.url()).await;
    let now = now_ms();
    js.publish_events(
        &(0..10)
            .map(|i| json!({"id": format!("new-{i}"), "kind": "click", "value": 1.0, "ts_unix_ms": now}).to_string())
            .collect::<Vec<_>>(),
    )
    .await;
    wait_for_events(&ch, 3010, Duration::from_secs(60)).await;
    let mut client = analytics_engine::pb::analytics_client::AnalyticsClient::connect(format!(
        "http://127.0.0.1:{}",
        engine.grpc_port
    ))
    .await
    .unwrap();
    let stats = client
        .get_stats(StatsRequest { kind: String::new(), window_seconds: 0, series_minutes: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.total_events, 3010);
    assert!(engine.terminate(), "{}", engine.log_text());

    // A second start finds the current schema and changes nothing.
    let mut again = EngineProcess::start(&nats.url(), &ch.url(), &[]);
    wait_until("ready", Duration::from_secs(60), || async {
        again.get("/readyz").await.is_some_and(|(s, _)| s == 200)
    })
    .await;
    assert!(!again.log_text().contains("migrat"), "{}", again.log_text());
    assert_eq!(tables(&ch, "v7").await, migrated());
    assert!(again.terminate());
}

/// Runs an in-process engine on `db` until its schema is ready.
async fn settle(nats: &Nats, ch: &ClickHouse, db: &str) {
    let mut config = test_config(&nats.url(), &ch.url());
    config.clickhouse_database = db.to_string();
    let engine = Engine::start(config).await;
    let schema = engine.shared.schema.clone();
    wait_until(&format!("schema of {db} ready"), Duration::from_secs(90), || {
        let schema = schema.clone();
        async move { schema.is_ready() }
    })
    .await;
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_migrations_are_finished_without_losing_a_row() {
    let nats = Nats::start();
    let ch = ClickHouse::start().await;
    let rows = legacy_rows("r", 900);

    // Killed between the two renames: `events` gone, the verified copy and the backup left.
    ch.query("CREATE DATABASE mig_a").await.unwrap();
    ch.query(&legacy_create_table_sql("mig_a").replace("`events`", &format!("`{BACKUP_TABLE}`"))).await.unwrap();
    insert(&ch, "mig_a", BACKUP_TABLE, &rows).await;
    ch.query(&create_table_sql("mig_a", MIGRATING_TABLE)).await.unwrap();
    insert(&ch, "mig_a", MIGRATING_TABLE, &rows).await;
    settle(&nats, &ch, "mig_a").await;
    assert_eq!(tables(&ch, "mig_a").await, migrated());
    assert_eq!(rows_of(&ch, "mig_a").await, rows);

    // Swapped, but an old engine inserted into the old table after the copy: those rows are
    // caught up before the backup goes.
    ch.query("CREATE DATABASE mig_b").await.unwrap();
    ch.query(&legacy_create_table_sql("mig_b").replace("`events`", &format!("`{BACKUP_TABLE}`"))).await.unwrap();
    insert(&ch, "mig_b", BACKUP_TABLE, &rows).await;
    ch.query(&create_table_sql("mig_b", TABLE)).await.unwrap();
    insert(&ch, "mig_b", TABLE, &rows[..700]).await;
    settle(&nats, &ch, "mig_b").await;
    assert_eq!(tables(&ch, "mig_b").await, migrated());
    assert_eq!(rows_of(&ch, "mig_b").await, rows);

    // Killed while copying: the old table intact, a partial copy. The copy is redone (its
    // duplicates collapse) and the migration completes.
    ch.query("CREATE DATABASE mig_c").await.unwrap();
    ch.query(&legacy_create_table_sql("mig_c")).await.unwrap();
    insert(&ch, "mig_c", TABLE, &rows).await;
    ch.query(&create_table_sql("mig_c", MIGRATING_TABLE)).await.unwrap();
    insert(&ch, "mig_c", MIGRATING_TABLE, &rows[..300]).await;
    settle(&nats, &ch, "mig_c").await;
    assert_eq!(tables(&ch, "mig_c").await, migrated());
    assert_eq!(rows_of(&ch, "mig_c").await, rows);
    assert_eq!(ch.query("SELECT count() FROM mig_c.events FINAL").await.unwrap().trim(), "900");

    // A table the engine does not know is left alone, and the engine says why it is not ready.
    ch.query("CREATE DATABASE mig_d").await.unwrap();
    ch.query("CREATE TABLE mig_d.events (id String) ENGINE = Log").await.unwrap();
    ch.query("INSERT INTO mig_d.events VALUES ('keep')").await.unwrap();
    let mut config = test_config(&nats.url(), &ch.url());
    config.clickhouse_database = "mig_d".into();
    let engine = Engine::start(config).await;
    let schema = engine.shared.schema.clone();
    wait_until("the refusal recorded", Duration::from_secs(30), || {
        let schema = schema.clone();
        async move { schema.error().is_some_and(|e| e.contains("Refusing to touch it")) }
    })
    .await;
    let (status, body) = engine.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Refusing to touch it"), "{body}");
    engine.shutdown().await.unwrap();
    assert_eq!(ch.query("SELECT id FROM mig_d.events").await.unwrap().trim(), "keep");
}

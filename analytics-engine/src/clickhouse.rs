//! A small ClickHouse client over its HTTP interface, the `events` schema (one schema for
//! ClickHouse 18.16 and 24.8), its migration from the pre-issue-10 table, and the aggregate
//! queries behind `GetStats`.
//!
//! Credentials go in the `Authorization: Basic` header, never in URLs or logs.
//!
//! Schema: `events (id String, kind String, value Float64, source String, attributes String,
//! ts_unix_ms UInt64, ts DateTime MATERIALIZED toDateTime(intDiv(ts_unix_ms, 1000)))
//! ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (kind, id)`.
//! A message redelivered by JetStream, or an insert retried after its answer was lost, stores
//! the same event again; rows with the same `(kind, id)` are one event: background merges keep
//! one of them eventually and every read uses `FINAL`, so the duplicates are never counted.
//! Why `FINAL` and not `GROUP BY id` is measured in the README.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::event::{encode_json_each_row, Row};

pub const TABLE: &str = "events";
/// The new table while the old one's rows are copied into it (see [`ClickHouse::ensure_schema`]).
pub const MIGRATING_TABLE: &str = "events_migrating";
/// The pre-issue-10 table after the swap, kept until every one of its rows is verified in `events`.
pub const BACKUP_TABLE: &str = "events_mergetree_backup";
/// The columns an insert or a copy writes (`ts` is `MATERIALIZED`, never written).
pub const COLUMNS: &str = "id, kind, value, source, attributes, ts_unix_ms";
/// The engine of the current schema, as `system.tables` names it.
pub const ENGINE: &str = "ReplacingMergeTree";
/// How long one copy or verification statement of the migration may run (one partition of a
/// large table takes a while; the default 30 s request timeout is for inserts and queries).
const MIGRATION_STATEMENT_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct ClickHouse {
    http: reqwest::Client,
    url: String,
    database: String,
    user: String,
    password: String,
}

impl std::fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouse")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Quotes a string literal for ClickHouse SQL.
pub fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The column list of both schemas.
const COLUMN_DEFS: &str = "id String, kind String, value Float64, source String, attributes String, \
     ts_unix_ms UInt64, ts DateTime MATERIALIZED toDateTime(intDiv(ts_unix_ms, 1000))";

/// `CREATE TABLE` of the current schema for `database`.`table` (validated `[A-Za-z0-9_]` names).
///
/// The id is in the sorting key so that copies of one event collapse; `kind` comes first so a
/// kind filter still uses the primary index. Partitions stay monthly as before (old months can
/// be dropped whole); `FINAL` merges across partitions, so a retried event stamped in another
/// month is still counted once.
pub fn create_table_sql(database: &str, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS `{database}`.`{table}` ({COLUMN_DEFS}) \
         ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (kind, id)"
    )
}

/// The table the engine created before issue 10 (plain `MergeTree`, no deduplication): what
/// [`ClickHouse::ensure_schema`] migrates from. Kept for the migration tests and the README.
pub fn legacy_create_table_sql(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS `{database}`.`{TABLE}` ({COLUMN_DEFS}) \
         ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (kind, ts_unix_ms)"
    )
}

/// `WHERE` of the stats queries: optional kind, optional `since` (inclusive) and `until`
/// (exclusive) in ms. The `ts` bounds repeat the millisecond ones at second resolution so that
/// ClickHouse skips whole monthly partitions (its min/max index is on `ts`, not `ts_unix_ms`).
fn filter_sql(kind: Option<&str>, since_ms: Option<u64>, until_ms: Option<u64>) -> String {
    let mut conds = Vec::new();
    if let Some(kind) = kind {
        conds.push(format!("kind = {}", quote_str(kind)));
    }
    if let Some(since) = since_ms {
        conds.push(format!("ts_unix_ms >= {since}"));
        conds.push(format!("ts >= toDateTime({})", since / 1000));
    }
    if let Some(until) = until_ms {
        conds.push(format!("ts_unix_ms < {until}"));
        conds.push(format!("ts <= toDateTime({})", until / 1000));
    }
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

/// Per-kind aggregates over the de-duplicated events (`FINAL`).
///
/// - `stddevPopStable`, not `stddevPop`: 18.16's `stddevPop` is numerically unstable (values
///   around 1e9 that differ by 1-3 gave 1440 instead of 0.816; the stable one gives 0.816).
/// - `quantiles(0.5, 0.95)`: reservoir sampling over up to 8192 values per kind, interpolated
///   linearly at rank `q·(n−1)` (NumPy's default, the definition `v7stats` uses): exact while a
///   kind has at most 8192 events in range, an estimate from a uniform sample beyond, in bounded
///   memory. 18.16 has no exact interpolating quantile (`quantileExactInclusive` is 20.x+) and
///   `quantilesExact` keeps every value (nearest rank, unbounded memory).
pub fn aggregates_sql(database: &str, kind: Option<&str>, since_ms: Option<u64>) -> String {
    format!(
        "SELECT kind, count(), min(value), max(value), avg(value), stddevPopStable(value), \
         quantiles(0.5, 0.95)(value) FROM `{database}`.`{TABLE}` FINAL{} GROUP BY kind ORDER BY kind \
         FORMAT TabSeparated",
        filter_sql(kind, since_ms, None)
    )
}

/// Event counts per kind and minute (start of the minute in ms) in `[from_ms, until_ms)`.
pub fn minute_counts_sql(database: &str, kind: Option<&str>, from_ms: u64, until_ms: u64) -> String {
    format!(
        "SELECT kind, intDiv(ts_unix_ms, 60000) * 60000 AS minute, count() FROM `{database}`.`{TABLE}` FINAL{} \
         GROUP BY kind, minute ORDER BY kind, minute FORMAT TabSeparated",
        filter_sql(kind, Some(from_ms), Some(until_ms))
    )
}

/// One kind's aggregates, as ClickHouse computes them.
#[derive(Debug, Clone, PartialEq)]
pub struct KindAggregate {
    pub kind: String,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub stddev: f64,
    pub p50: f64,
    pub p95: f64,
}

/// One `(kind, minute, count)` row of [`minute_counts_sql`].
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteRow {
    pub kind: String,
    pub minute_unix_ms: u64,
    pub count: u64,
}

fn fields(line: &str, n: usize) -> Result<Vec<&str>> {
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() != n {
        bail!("unexpected ClickHouse row {line:?} (expected {n} columns)");
    }
    Ok(f)
}

fn float(s: &str, line: &str) -> Result<f64> {
    s.parse().with_context(|| format!("bad number {s:?} in ClickHouse row {line:?}"))
}

fn int(s: &str, line: &str) -> Result<u64> {
    s.parse().with_context(|| format!("bad integer {s:?} in ClickHouse row {line:?}"))
}

/// Parses [`aggregates_sql`] rows (`kind  count  min  max  avg  stddev  [p50,p95]`).
pub fn parse_aggregates(body: &str) -> Result<Vec<KindAggregate>> {
    body.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f = fields(line, 7)?;
            let q = f[6]
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .ok_or_else(|| anyhow!("bad quantiles {:?} in ClickHouse row {line:?}", f[6]))?;
            let q: Vec<f64> = q.split(',').map(|v| float(v, line)).collect::<Result<_>>()?;
            if q.len() != 2 {
                bail!("expected 2 quantiles in ClickHouse row {line:?}");
            }
            Ok(KindAggregate {
                kind: f[0].to_string(),
                count: int(f[1], line)?,
                min: float(f[2], line)?,
                max: float(f[3], line)?,
                mean: float(f[4], line)?,
                stddev: float(f[5], line)?,
                p50: q[0],
                p95: q[1],
            })
        })
        .collect()
}

/// Parses [`minute_counts_sql`] rows.
pub fn parse_minute_counts(body: &str) -> Result<Vec<MinuteRow>> {
    body.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f = fields(line, 3)?;
            Ok(MinuteRow { kind: f[0].to_string(), minute_unix_ms: int(f[1], line)?, count: int(f[2], line)? })
        })
        .collect()
}

/// The `events`-related tables found in the database (name -> engine).
#[derive(Debug, Default, Clone, PartialEq)]
struct Tables {
    events: Option<String>,
    migrating: Option<String>,
    backup: Option<String>,
}

/// What [`ClickHouse::ensure_schema`] found or did, for the log and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaOutcome {
    /// `events` already had the current schema.
    Ready,
    /// `events` did not exist and was created.
    Created,
    /// A pre-issue-10 table (or an interrupted migration) was migrated.
    Migrated,
}

impl ClickHouse {
    pub fn new(url: &str, database: &str, user: &str, password: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(ClickHouse {
            http,
            url: url.trim_end_matches('/').to_string(),
            database: database.to_string(),
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// Runs one statement (`body` is the query, possibly followed by data) and returns the body.
    pub async fn query(&self, body: String, timeout: Option<Duration>) -> Result<String> {
        let mut req = self.http.post(format!("{}/", self.url)).basic_auth(&self.user, Some(&self.password)).body(body);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|e| anyhow!("ClickHouse unreachable: {}", e.without_url()))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| anyhow!("reading ClickHouse answer: {}", e.without_url()))?;
        if !status.is_success() {
            bail!("ClickHouse answered {status}: {}", text.trim());
        }
        Ok(text)
    }

    async fn migration_statement(&self, sql: String) -> Result<String> {
        self.query(sql, Some(MIGRATION_STATEMENT_TIMEOUT)).await
    }

    /// `SELECT 1` within `timeout`, used by `/readyz` and the `Health` RPC.
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        let out = self.query("SELECT 1".into(), Some(timeout)).await?;
        if out.trim() != "1" {
            bail!("SELECT 1 returned {:?}", out.trim());
        }
        Ok(())
    }

    fn table(&self, name: &str) -> String {
        format!("`{}`.`{name}`", self.database)
    }

    async fn tables(&self) -> Result<Tables> {
        let body = self
            .query(
                format!(
                    "SELECT name, engine FROM system.tables WHERE database = {} AND name IN ({}, {}, {}) \
                     FORMAT TabSeparated",
                    quote_str(&self.database),
                    quote_str(TABLE),
                    quote_str(MIGRATING_TABLE),
                    quote_str(BACKUP_TABLE)
                ),
                None,
            )
            .await
            .context("listing the tables")?;
        let mut t = Tables::default();
        for line in body.lines().filter(|l| !l.is_empty()) {
            let f = fields(line, 2)?;
            let engine = Some(f[1].to_string());
            match f[0] {
                TABLE => t.events = engine,
                MIGRATING_TABLE => t.migrating = engine,
                BACKUP_TABLE => t.backup = engine,
                _ => {}
            }
        }
        Ok(t)
    }

    /// Creates the database and the `events` table when missing, and migrates a table of the
    /// schema before issue 10 (plain `MergeTree`, which stored a retried event twice) without
    /// losing a row. Safe to run again at any point, after a crash at any step, and by several
    /// engines at once:
    ///
    /// 1. `events` is a `MergeTree`: create `events_migrating` (current schema), copy every row
    ///    into it partition by partition, then `RENAME TABLE events TO events_mergetree_backup,
    ///    events_migrating TO events`. A copy repeated after a crash, or by a second engine,
    ///    only adds duplicates, which the new table collapses.
    /// 2. `events` is current and `events_mergetree_backup` exists: copy the backup's rows that
    ///    are not in `events` yet (an old engine may have inserted after the copy), verify that
    ///    every backup row is in `events`, and only then drop the backup.
    /// 3. `events` is missing after a swap was interrupted between its two renames: rename
    ///    `events_migrating` (complete: it was verified before the swap) or, without it, the
    ///    backup back to `events`.
    ///
    /// Nothing is dropped but a backup whose every row was found in `events`.
    pub async fn ensure_schema(&self) -> Result<SchemaOutcome> {
        self.query(format!("CREATE DATABASE IF NOT EXISTS `{}`", self.database), None)
            .await
            .context("creating the database")?;
        let mut outcome = SchemaOutcome::Ready;
        // Each step moves to a later state; a handful of rounds always suffices, the bound only
        // turns a concurrent tug-of-war into an error that is retried later.
        for _ in 0..8 {
            let t = self.tables().await?;
            match (&t.events, &t.migrating, &t.backup) {
                (None, None, None) => {
                    self.query(create_table_sql(&self.database, TABLE), None)
                        .await
                        .context("creating the events table")?;
                    tracing::info!(table = %self.table(TABLE), "created the events table ({ENGINE} ORDER BY (kind, id))");
                    if outcome == SchemaOutcome::Ready {
                        outcome = SchemaOutcome::Created;
                    }
                }
                (None, Some(_), _) => {
                    tracing::warn!(
                        "{} is missing but {} exists: an interrupted migration swap; renaming it to {}",
                        self.table(TABLE),
                        self.table(MIGRATING_TABLE),
                        TABLE
                    );
                    self.query(format!("RENAME TABLE {} TO {}", self.table(MIGRATING_TABLE), self.table(TABLE)), None)
                        .await
                        .context("finishing an interrupted swap")?;
                    outcome = SchemaOutcome::Migrated;
                }
                (None, None, Some(_)) => {
                    tracing::warn!(
                        "{} is missing but the backup {} exists: renaming it back to {} (it will be migrated again)",
                        self.table(TABLE),
                        self.table(BACKUP_TABLE),
                        TABLE
                    );
                    self.query(format!("RENAME TABLE {} TO {}", self.table(BACKUP_TABLE), self.table(TABLE)), None)
                        .await
                        .context("restoring the backup")?;
                }
                (Some(engine), _, None) if engine == "MergeTree" => {
                    self.migrate_legacy().await?;
                    outcome = SchemaOutcome::Migrated;
                }
                (Some(engine), _, Some(_)) if engine == "MergeTree" => {
                    bail!(
                        "{} is a plain MergeTree and {} exists as well: an operator's doing? Refusing to guess which \
                         holds the data; rename or drop one of them",
                        self.table(TABLE),
                        self.table(BACKUP_TABLE)
                    );
                }
                (Some(engine), migrating, backup) if engine == ENGINE => {
                    self.check_sorting_key().await?;
                    if backup.is_some() {
                        self.merge_into_events(BACKUP_TABLE).await?;
                        outcome = SchemaOutcome::Migrated;
                    } else if migrating.is_some() {
                        // Only left by two engines migrating at once (one swapped, the other
                        // created a second copy). Its rows came from `events`; merge and drop.
                        self.merge_into_events(MIGRATING_TABLE).await?;
                    } else {
                        return Ok(outcome);
                    }
                }
                (Some(engine), _, _) => bail!(
                    "{} has engine {engine}; expected {ENGINE} (or the MergeTree of the old schema, which is migrated). \
                     Refusing to touch it",
                    self.table(TABLE)
                ),
            }
        }
        bail!("the events schema did not settle (another engine migrating at the same time?); retrying later")
    }

    /// The id must be in the sorting key, or copies of an event would not collapse.
    async fn check_sorting_key(&self) -> Result<()> {
        let body = self
            .query(
                format!(
                    "SELECT is_in_sorting_key FROM system.columns WHERE database = {} AND table = {} AND name = 'id'",
                    quote_str(&self.database),
                    quote_str(TABLE)
                ),
                None,
            )
            .await?;
        if body.trim() != "1" {
            bail!("{} is a {ENGINE} without `id` in its sorting key; refusing to use it", self.table(TABLE));
        }
        Ok(())
    }

    /// The monthly partitions of `table` (`toYYYYMM(ts)`), oldest first.
    async fn partitions(&self, table: &str) -> Result<Vec<u32>> {
        let body = self
            .migration_statement(format!(
                "SELECT DISTINCT toYYYYMM(ts) AS p FROM {} ORDER BY p FORMAT TabSeparated",
                self.table(table)
            ))
            .await?;
        body.lines().filter(|l| !l.is_empty()).map(|l| int(l, l).map(|p| p as u32)).collect()
    }

    async fn count(&self, table: &str, final_: bool) -> Result<u64> {
        let body = self
            .migration_statement(format!(
                "SELECT count() FROM {}{}",
                self.table(table),
                if final_ { " FINAL" } else { "" }
            ))
            .await?;
        int(body.trim(), &body)
    }

    /// Step 1 of [`ensure_schema`](Self::ensure_schema).
    async fn migrate_legacy(&self) -> Result<()> {
        let rows = self.count(TABLE, false).await.context("counting the old table")?;
        tracing::warn!(
            table = %self.table(TABLE), rows,
            "{} is a plain MergeTree (the schema before issue 10, which stores a retried event twice): migrating it to \
             {ENGINE} ORDER BY (kind, id); copying into {} first, the old table is kept as {} until every row is verified",
            self.table(TABLE), self.table(MIGRATING_TABLE), self.table(BACKUP_TABLE)
        );
        self.query(create_table_sql(&self.database, MIGRATING_TABLE), None)
            .await
            .context("creating the migration table")?;
        for p in self.partitions(TABLE).await.context("listing the old table's partitions")? {
            self.migration_statement(format!(
                "INSERT INTO {} ({COLUMNS}) SELECT {COLUMNS} FROM {} WHERE toYYYYMM(ts) = {p}",
                self.table(MIGRATING_TABLE),
                self.table(TABLE)
            ))
            .await
            .with_context(|| format!("copying partition {p}"))?;
            tracing::info!(partition = p, "migration: copied partition {p}");
        }
        // Verified before the swap too: a complete copy is what makes finishing an interrupted
        // swap (`events` missing, `events_migrating` present) safe. Rows an old engine inserted
        // during the copy are caught up (a few rounds; it stops mattering after the swap, when
        // they land in the new table).
        let mut missing = self.missing_rows(TABLE, MIGRATING_TABLE).await?;
        for _ in 0..3 {
            if missing == 0 {
                break;
            }
            tracing::info!(missing, "migration: rows inserted into the old table during the copy; copying them too");
            self.copy_missing(TABLE, MIGRATING_TABLE).await?;
            missing = self.missing_rows(TABLE, MIGRATING_TABLE).await?;
        }
        if missing > 0 {
            bail!("migration: {missing} rows of {} are still not in the copy; retrying later", self.table(TABLE));
        }
        self.query(
            format!(
                "RENAME TABLE {} TO {}, {} TO {}",
                self.table(TABLE),
                self.table(BACKUP_TABLE),
                self.table(MIGRATING_TABLE),
                self.table(TABLE)
            ),
            None,
        )
        .await
        .context("swapping the tables")?;
        tracing::warn!(
            "migration: swapped: {} is now the {ENGINE} copy, the old table is {}",
            self.table(TABLE),
            self.table(BACKUP_TABLE)
        );
        Ok(())
    }

    /// Rows of `from` with no identical row (every column) in `into`, counted per partition so
    /// the hash set stays one month big.
    async fn missing_rows(&self, from: &str, into: &str) -> Result<u64> {
        let mut missing = 0;
        for p in self.partitions(from).await? {
            let body = self
                .migration_statement(format!(
                    "SELECT count() FROM {} WHERE toYYYYMM(ts) = {p} AND cityHash64({COLUMNS}) NOT IN \
                     (SELECT cityHash64({COLUMNS}) FROM {} WHERE toYYYYMM(ts) = {p})",
                    self.table(from),
                    self.table(into)
                ))
                .await
                .with_context(|| format!("verifying partition {p}"))?;
            missing += int(body.trim(), &body)?;
        }
        Ok(missing)
    }

    /// Copies the rows of `from` that have no identical row in `into`, partition by partition.
    async fn copy_missing(&self, from: &str, into: &str) -> Result<()> {
        for p in self.partitions(from).await? {
            self.migration_statement(format!(
                "INSERT INTO {} ({COLUMNS}) SELECT {COLUMNS} FROM {} WHERE toYYYYMM(ts) = {p} AND cityHash64({COLUMNS}) \
                 NOT IN (SELECT cityHash64({COLUMNS}) FROM {} WHERE toYYYYMM(ts) = {p})",
                self.table(into),
                self.table(from),
                self.table(into)
            ))
            .await
            .with_context(|| format!("copying the rows of {} missing in {}", self.table(from), self.table(into)))?;
        }
        Ok(())
    }

    /// Step 2 of [`ensure_schema`](Self::ensure_schema): copies what `events` lacks from
    /// `source`, verifies that every row of `source` is in `events`, then drops `source`.
    async fn merge_into_events(&self, source: &str) -> Result<()> {
        self.copy_missing(source, TABLE).await?;
        let missing = self.missing_rows(source, TABLE).await?;
        if missing > 0 {
            bail!(
                "migration: {missing} rows of {} are still not in {} after copying them; the backup is kept",
                self.table(source),
                self.table(TABLE)
            );
        }
        let rows = self.count(source, false).await?;
        let events = self.count(TABLE, true).await?;
        tracing::warn!(
            rows,
            events,
            "migration verified: all {rows} rows of {} are in {} ({events} distinct events there); dropping {}",
            self.table(source),
            self.table(TABLE),
            self.table(source)
        );
        self.query(format!("DROP TABLE IF EXISTS {}", self.table(source)), None)
            .await
            .with_context(|| format!("dropping the verified {}", self.table(source)))?;
        Ok(())
    }

    /// Inserts rows in one `INSERT ... FORMAT JSONEachRow` request. It returns only once
    /// ClickHouse stored them (a synchronous insert into a MergeTree writes its part first).
    pub async fn insert(&self, rows: &[Row]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut body = format!("INSERT INTO {} ({COLUMNS}) FORMAT JSONEachRow\n", self.table(TABLE));
        body.push_str(&encode_json_each_row(rows));
        self.query(body, None).await.map(|_| ())
    }

    /// Per-kind aggregates of the stored events matching the filters.
    pub async fn aggregates(&self, kind: Option<&str>, since_ms: Option<u64>) -> Result<Vec<KindAggregate>> {
        let body = self.query(aggregates_sql(&self.database, kind, since_ms), None).await?;
        parse_aggregates(&body)
    }

    /// Event counts per kind and minute in `[from_ms, until_ms)`.
    pub async fn minute_counts(&self, kind: Option<&str>, from_ms: u64, until_ms: u64) -> Result<Vec<MinuteRow>> {
        let body = self.query(minute_counts_sql(&self.database, kind, from_ms, until_ms), None).await?;
        parse_minute_counts(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_str("a'b\\c"), r"'a\'b\\c'");
        assert_eq!(quote_str("x\ny"), r"'x\ny'");
    }

    #[test]
    fn schema_sql() {
        let sql = create_table_sql("v7", TABLE);
        assert!(sql.starts_with("CREATE TABLE IF NOT EXISTS `v7`.`events` (id String, kind String"), "{sql}");
        assert!(sql.ends_with("ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (kind, id)"), "{sql}");
        assert!(legacy_create_table_sql("v7")
            .ends_with("ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (kind, ts_unix_ms)"));
    }

    #[test]
    fn aggregate_sql() {
        assert_eq!(
            aggregates_sql("v7", None, None),
            "SELECT kind, count(), min(value), max(value), avg(value), stddevPopStable(value), \
             quantiles(0.5, 0.95)(value) FROM `v7`.`events` FINAL GROUP BY kind ORDER BY kind FORMAT TabSeparated"
        );
        let sql = aggregates_sql("v7", Some("page_view"), Some(1_234_567));
        assert!(
            sql.contains(
                "FINAL WHERE kind = 'page_view' AND ts_unix_ms >= 1234567 AND ts >= toDateTime(1234) GROUP BY"
            ),
            "{sql}"
        );
        let sql = minute_counts_sql("v7", None, 120_000, 300_000);
        assert!(
            sql.contains(
                "FINAL WHERE ts_unix_ms >= 120000 AND ts >= toDateTime(120) AND ts_unix_ms < 300000 AND ts <= toDateTime(300) GROUP BY kind, minute"
            ),
            "{sql}"
        );
    }

    #[test]
    fn parses_aggregates() {
        let rows = parse_aggregates(
            "a\t10\t1\t10\t5.5\t2.8722813232690143\t[5.5,9.549999999999999]\nb\t1\t-2\t-2\t-2\t0\t[-2,-2]\n\n",
        )
        .unwrap();
        assert_eq!(
            rows[0],
            KindAggregate {
                kind: "a".into(),
                count: 10,
                min: 1.0,
                max: 10.0,
                mean: 5.5,
                stddev: 2.8722813232690143,
                p50: 5.5,
                p95: 9.549999999999999
            }
        );
        assert_eq!(rows[1].p95, -2.0);
        assert!(parse_aggregates("a\t1\t2\n").is_err());
        assert!(parse_aggregates("a\t1\t1\t1\t1\t0\t[1]\n").is_err());
        assert!(parse_aggregates("a\tx\t1\t1\t1\t0\t[1,1]\n").is_err());
    }

    #[test]
    fn parses_minute_counts() {
        let rows = parse_minute_counts("a\t60000\t3\nb\t120000\t1\n").unwrap();
        assert_eq!(rows[1], MinuteRow { kind: "b".into(), minute_unix_ms: 120_000, count: 1 });
        assert!(parse_minute_counts("a\t1\n").is_err());
    }

    #[test]
    fn debug_hides_password() {
        let ch = ClickHouse::new("http://x:1", "v7", "u", "hunter2").unwrap();
        assert!(!format!("{ch:?}").contains("hunter2"));
    }
}

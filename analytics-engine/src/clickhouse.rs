//! A small ClickHouse client over its HTTP interface (works with 18.16 and later).
//!
//! Credentials go in the `Authorization: Basic` header, never in URLs or logs.
//!
//! Schema (18.16 has no `DateTime64` and no query parameters, see README):
//! `events (id String, kind String, value Float64, source String, attributes String,
//! ts_unix_ms UInt64, ts DateTime MATERIALIZED toDateTime(intDiv(ts_unix_ms, 1000)))
//! ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (kind, ts_unix_ms)`.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::event::{encode_json_each_row, Row};

pub const TABLE: &str = "events";

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

/// The `CREATE TABLE` statement for `database` (a validated `[A-Za-z0-9_]` name).
pub fn create_table_sql(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS `{database}`.`{TABLE}` (\
         id String, kind String, value Float64, source String, attributes String, \
         ts_unix_ms UInt64, ts DateTime MATERIALIZED toDateTime(intDiv(ts_unix_ms, 1000))\
         ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (kind, ts_unix_ms)"
    )
}

/// The `SELECT kind, value` feeding `GetStats`: optional kind filter and lower time bound.
pub fn select_values_sql(database: &str, kind: Option<&str>, since_ms: Option<u64>) -> String {
    let mut conds = Vec::new();
    if let Some(kind) = kind {
        conds.push(format!("kind = {}", quote_str(kind)));
    }
    if let Some(since) = since_ms {
        conds.push(format!("ts_unix_ms >= {since}"));
    }
    let filter = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
    format!("SELECT kind, value FROM `{database}`.`{TABLE}`{filter} FORMAT TabSeparated")
}

/// Parses `kind<TAB>value` lines.
pub fn parse_kind_values(body: &str) -> Result<Vec<(String, f64)>> {
    body.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (kind, value) = line.split_once('\t').ok_or_else(|| anyhow!("unexpected ClickHouse row {line:?}"))?;
            let value: f64 = value.parse().with_context(|| format!("bad value in row {line:?}"))?;
            Ok((kind.to_string(), value))
        })
        .collect()
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

    /// `SELECT 1`, used by `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        let out = self.query("SELECT 1".into(), Some(Duration::from_secs(2))).await?;
        if out.trim() != "1" {
            bail!("SELECT 1 returned {:?}", out.trim());
        }
        Ok(())
    }

    /// Creates the database and the table when missing.
    pub async fn ensure_schema(&self) -> Result<()> {
        self.query(format!("CREATE DATABASE IF NOT EXISTS `{}`", self.database), None)
            .await
            .context("creating the database")?;
        self.query(create_table_sql(&self.database), None).await.context("creating the events table")?;
        Ok(())
    }

    /// Inserts rows in one `INSERT ... FORMAT JSONEachRow` request.
    pub async fn insert(&self, rows: &[Row]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut body = format!("INSERT INTO `{}`.`{TABLE}` FORMAT JSONEachRow\n", self.database);
        body.push_str(&encode_json_each_row(rows));
        self.query(body, None).await.map(|_| ())
    }

    /// `(kind, value)` of the stored events matching the filters.
    pub async fn kind_values(&self, kind: Option<&str>, since_ms: Option<u64>) -> Result<Vec<(String, f64)>> {
        let body = self.query(select_values_sql(&self.database, kind, since_ms), None).await?;
        parse_kind_values(&body)
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
    fn select_sql() {
        assert_eq!(select_values_sql("v7", None, None), "SELECT kind, value FROM `v7`.`events` FORMAT TabSeparated");
        assert_eq!(
            select_values_sql("v7", Some("page_view"), Some(1234)),
            "SELECT kind, value FROM `v7`.`events` WHERE kind = 'page_view' AND ts_unix_ms >= 1234 FORMAT TabSeparated"
        );
    }

    #[test]
    fn parses_tab_separated() {
        let rows = parse_kind_values("a\t1.5\nb\t-2\n\n").unwrap();
        assert_eq!(rows, vec![("a".to_string(), 1.5), ("b".to_string(), -2.0)]);
        assert!(parse_kind_values("oops\n").is_err());
    }

    #[test]
    fn debug_hides_password() {
        let ch = ClickHouse::new("http://x:1", "v7", "u", "hunter2").unwrap();
        assert!(!format!("{ch:?}").contains("hunter2"));
    }
}

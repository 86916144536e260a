//! Text for people: byte sizes, plain tables, plurals.

use std::fmt::Write as _;

/// `1234567` -> `1.2 MB` (decimal units, as podman prints them).
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// A plain text table, each column padded to its widest cell, the last one not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(c.chars().count());
                let _ = write!(out, "{c}{}  ", " ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(header);
    for r in rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

/// `1 request`, `3 requests`.
pub fn plural(n: u32, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_tables_plurals() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_061_888), "1.1 MB");
        assert_eq!(human_size(7_800_000), "7.8 MB");
        assert_eq!(human_size(2_500_000_000), "2.5 GB");
        assert_eq!(table(&["A", "B"], &[vec!["xx".into(), "y".into()]]), "A   B\nxx  y\n");
        assert_eq!(table(&["É", "B"], &[vec!["é".into(), "y".into()]]), "É  B\né  y\n", "width counts characters");
        assert_eq!(plural(1, "request"), "1 request");
        assert_eq!(plural(0, "request"), "0 requests");
    }
}

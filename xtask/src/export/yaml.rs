//! A YAML emitter for the exports, only what compose files and Kubernetes manifests need: a
//! small tree ([`Node`]) emitted in block style, every string through [`yaml_str`], which
//! quotes anything a YAML 1.1 or 1.2 reader could take for another type or for syntax. Written
//! here rather than taken from a crate: a YAML crate costs more cold-build time than this file
//! (docs/xtask.md), and the output is checked by real readers (PyYAML, the compose schema,
//! kubernetes-validate) in the tests.

/// A YAML value, emitted in block style by [`Node::emit`].
#[derive(Clone, Debug)]
pub enum Node {
    /// A string, quoted when needed ([`yaml_str`]).
    Str(String),
    /// Written as is: numbers and booleans.
    Raw(String),
    /// A file's text: a literal block (`key: |`) as a map value when [`literal_ok`], else
    /// quoted like [`Node::Str`].
    Text(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Clone, Debug)]
pub enum Entry {
    Kv(String, Node),
    Comment(String),
}

pub fn s(text: impl Into<String>) -> Node {
    Node::Str(text.into())
}
pub fn text_block(text: impl Into<String>) -> Node {
    Node::Text(text.into())
}

/// Whether `text` reads back from a plain literal block (`|`, clip) as itself: it ends with
/// one line break, has no control character but line breaks and tabs, its first line does not
/// start with a space (the block's indentation would be read from it), and no line is made of
/// spaces only (a reader takes those for empty lines).
pub fn literal_ok(text: &str) -> bool {
    text.ends_with('\n')
        && !text.ends_with("\n\n")
        && !text.starts_with([' ', '\n'])
        && text.chars().all(|c| {
            c == '\n' || c == '\t' || !(c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}')
        })
        && !text.lines().any(|l| !l.is_empty() && l.trim_matches(' ').is_empty())
}
pub fn num(n: impl std::fmt::Display) -> Node {
    Node::Raw(n.to_string())
}
pub fn strs<I: IntoIterator<Item = T>, T: Into<String>>(items: I) -> Node {
    Node::Seq(items.into_iter().map(|t| s(t)).collect())
}

/// A map under construction, in insertion order.
#[derive(Default)]
pub struct Map(pub Vec<Entry>);

impl Map {
    pub fn new() -> Map {
        Map(Vec::new())
    }
    pub fn kv(mut self, key: &str, value: Node) -> Map {
        self.0.push(Entry::Kv(key.to_string(), value));
        self
    }
    pub fn put(&mut self, key: &str, value: Node) {
        self.0.push(Entry::Kv(key.to_string(), value));
    }
    pub fn comment(&mut self, text: &str) {
        self.0.push(Entry::Comment(text.to_string()));
    }
    pub fn node(self) -> Node {
        Node::Map(self.0)
    }
}

pub fn comment_line(indent: usize, text: &str, out: &mut String) {
    // A comment ends at the line's end: fold any line break of the text into a space.
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    out.push_str(&" ".repeat(indent));
    out.push_str(&format!("# {}\n", text.trim()));
}

impl Node {
    fn is_block(&self) -> bool {
        matches!(self, Node::Seq(v) if !v.is_empty()) || matches!(self, Node::Map(v) if !v.is_empty())
    }

    fn scalar(&self) -> String {
        match self {
            Node::Str(t) | Node::Text(t) => yaml_str(t),
            Node::Raw(t) => t.clone(),
            Node::Seq(_) => "[]".into(),
            Node::Map(_) => "{}".into(),
        }
    }

    /// Writes a block node whose lines start at `indent` columns.
    fn emit(&self, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match self {
            Node::Map(entries) if !entries.is_empty() => {
                for e in entries {
                    match e {
                        Entry::Comment(c) => comment_line(indent, c, out),
                        Entry::Kv(k, Node::Text(text)) if literal_ok(text) => {
                            out.push_str(&format!("{pad}{}: |\n", yaml_str(k)));
                            for line in text.lines() {
                                if !line.is_empty() {
                                    out.push_str(&pad);
                                    out.push_str("  ");
                                    out.push_str(line);
                                }
                                out.push('\n');
                            }
                        }
                        Entry::Kv(k, v) if v.is_block() => {
                            out.push_str(&format!("{pad}{}:\n", yaml_str(k)));
                            v.emit(indent + 2, out);
                        }
                        Entry::Kv(k, v) => out.push_str(&format!("{pad}{}: {}\n", yaml_str(k), v.scalar())),
                    }
                }
            }
            Node::Seq(items) if !items.is_empty() => {
                for item in items {
                    if item.is_block() {
                        // The item's first line goes on the dash line: `- key: value`.
                        let mut sub = String::new();
                        item.emit(indent + 2, &mut sub);
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&sub[indent + 2..]);
                    } else {
                        out.push_str(&format!("{pad}- {}\n", item.scalar()));
                    }
                }
            }
            scalar => out.push_str(&format!("{pad}{}\n", scalar.scalar())),
        }
    }
}

/// Reading a tree back, for checks and tests: `get` a map's key, `at` a dotted path of keys
/// (`spec.template.spec`), `text` a scalar's text, `items` a sequence's items.
impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find_map(|e| match e {
                Entry::Kv(k, v) if k == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }
    /// Keys may hold dots themselves (`v7.project`): each key of the map that the path is, or
    /// starts with followed by `.`, is tried.
    pub fn at(&self, path: &str) -> Option<&Node> {
        let Node::Map(entries) = self else { return None };
        entries.iter().find_map(|e| match e {
            Entry::Kv(k, v) if k == path => Some(v),
            Entry::Kv(k, v) => path.strip_prefix(k.as_str())?.strip_prefix('.').and_then(|rest| v.at(rest)),
            Entry::Comment(_) => None,
        })
    }
    pub fn text(&self) -> Option<&str> {
        match self {
            Node::Str(t) | Node::Raw(t) | Node::Text(t) => Some(t),
            _ => None,
        }
    }
    pub fn items(&self) -> &[Node] {
        match self {
            Node::Seq(items) => items,
            _ => &[],
        }
    }
    /// The keys of a map, in order (none for other nodes).
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Node::Map(entries) => entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Kv(k, _) => Some(k.as_str()),
                    Entry::Comment(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// `text` as a YAML scalar that every YAML 1.1 and 1.2 reader reads back as that same string:
/// plain when it is obviously a string (`docker.io/library/nats:2.10-alpine`, `/data`, `256Mi`),
/// else double-quoted. Quoted: empty; anything starting with other than a letter, `/` or `_`
/// (numbers, `-x`, `*alias`, `&anchor`, `!tag`, `@`, quotes, `[`, `{`, `#`, `.inf`...), except
/// a number with a unit (`256Mi`, `10s`: a letter no number form has, and no `0x`/`0o`/`0b`);
/// anything with a character outside `A-Za-z0-9_./-+=:@` (spaces, `#`, `,`, quotes, non-ASCII);
/// a trailing `:`; and the words YAML 1.1 reads as booleans or null (`yes`, `No`, `on`, `OFF`,
/// `y`, `true`, `null`...), in any case.
pub fn yaml_str(text: &str) -> String {
    const SPECIAL: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let lower = text.to_ascii_lowercase();
    // `256Mi`, `10s`, `500m`: a digit first, then a letter no number form has (not e, x, o, b).
    let unit_like = text.starts_with(|c: char| c.is_ascii_digit())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        && text.chars().any(|c| c.is_ascii_alphabetic() && !"eExXoObB".contains(c))
        && !["0x", "0o", "0b"].iter().any(|p| lower.starts_with(p));
    let plain = unit_like
        || text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '_')
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "_./-+=:@".contains(c))
            && !text.ends_with(':')
            && !SPECIAL.contains(&lower.as_str());
    if plain {
        return text.to_string();
    }
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn document(header: &[String], body: Node) -> String {
    let mut out = String::new();
    for line in header {
        comment_line(0, line, &mut out);
    }
    body.emit(0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_strings_are_quoted_when_a_reader_would_take_them_for_something_else() {
        for plain in [
            "backend",
            "docker.io/library/nats:2.10-alpine",
            "/etc/nats/nats.conf",
            "nats://nats:4222",
            "V7_NATS_URL",
            "info",
            "v7.project",
            "500m",
            "256Mi",
            "10s",
            "1.5Gi",
            "Yesterday",
        ] {
            assert_eq!(yaml_str(plain), plain);
        }
        let cases = [
            ("", r#""""#),
            ("127.0.0.1:3000:3000", r#""127.0.0.1:3000:3000""#),
            ("a: b", r#""a: b""#),
            ("key:", r#""key:""#),
            ("say \"hi\"", r#""say \"hi\"""#),
            ("it's", r#""it's""#),
            ("*alias", r#""*alias""#),
            ("&anchor", r#""&anchor""#),
            ("!tag", r#""!tag""#),
            ("yes", r#""yes""#),
            ("No", r#""No""#),
            ("on", r#""on""#),
            ("OFF", r#""OFF""#),
            ("y", r#""y""#),
            ("true", r#""true""#),
            ("null", r#""null""#),
            ("~", r#""~""#),
            ("0.5", r#""0.5""#),
            ("1", r#""1""#),
            ("0x1F", r#""0x1F""#),
            ("1e3", r#""1e3""#),
            ("0xff", r#""0xff""#),
            ("0o17", r#""0o17""#),
            ("1_000", r#""1_000""#),
            ("2001-12-14", r#""2001-12-14""#),
            ("1:20", r#""1:20""#),
            (".inf", r#"".inf""#),
            ("--config", r#""--config""#),
            ("- item", r#""- item""#),
            ("a # b", r#""a # b""#),
            ("[x]", r#""[x]""#),
            ("{x}", r#""{x}""#),
            ("%TAG", r#""%TAG""#),
            ("@at", r#""@at""#),
            ("back\\slash", r#""back\\slash""#),
            ("two\nlines\ttab", r#""two\nlines\ttab""#),
            ("bell\u{7}", r#""bell\x07""#),
            ("Grafana has no Debian package", r#""Grafana has no Debian package""#),
            ("é", "\"é\""),
        ];
        for (input, want) in cases {
            assert_eq!(yaml_str(input), want, "yaml_str({input:?})");
        }
    }

    #[test]
    fn emitter_writes_block_style() {
        let mut m = Map::new().kv("a", strs(["x", "yes"]));
        m.comment("why");
        m.put("b", Node::Seq(vec![Map::new().kv("k", num(1)).kv("l", Map::new().kv("m", s("v")).node()).node()]));
        m.put("e", Node::Seq(vec![]));
        let got = document(&["head".to_string()], m.node());
        assert_eq!(got, "# head\na:\n  - x\n  - \"yes\"\n# why\nb:\n  - k: 1\n    l:\n      m: v\ne: []\n");
    }

    #[test]
    fn file_texts_are_literal_blocks_when_they_read_back_so() {
        let m =
            Map::new().kv("a.conf", text_block("port: 4222\n\n# x: \"y\"\n\tz\n")).kv("b", text_block("no newline"));
        let got = document(&[], Map::new().kv("data", m.node()).node());
        assert_eq!(got, "data:\n  a.conf: |\n    port: 4222\n\n    # x: \"y\"\n    \tz\n  b: \"no newline\"\n");
        for (text, ok) in
            [("x\n", true), ("x", false), ("x\n\n", false), (" x\n", false), ("x\n  \ny\n", false), ("a\rb\n", false)]
        {
            assert_eq!(literal_ok(text), ok, "literal_ok({text:?})");
        }
    }

    /// The quoting helper against a real YAML 1.1 reader (PyYAML, which kubernetes-validate
    /// installs): every string reads back as itself.
    #[cfg(feature = "e2e")]
    #[test]
    fn yaml_strings_read_back_with_pyyaml() {
        let inputs = [
            "",
            "yes",
            "No",
            "on",
            "OFF",
            "y",
            "n",
            "true",
            "null",
            "~",
            "0.5",
            "1",
            "0x1F",
            "1e3",
            "0xff",
            "0o17",
            "0b101",
            "1_000",
            "256Mi",
            "10s",
            "1.5Gi",
            ".inf",
            "1:20",
            "2001-12-14",
            "127.0.0.1:3000:3000",
            "a: b",
            "key:",
            "say \"hi\"",
            "it's",
            "*alias",
            "&anchor",
            "!tag",
            "--config",
            "- item",
            "a # b",
            "[x]",
            "{x}",
            "%TAG",
            "@at",
            "back\\slash",
            "two\nlines\ttab",
            "bell\u{7}",
            "é",
            "=",
            "<<",
            "?x",
            "|x",
            ">x",
            "nats://nats:4222",
            "docker.io/library/nats:2.10-alpine",
        ];
        let mut doc = String::new();
        for (i, t) in inputs.iter().enumerate() {
            doc.push_str(&format!("k{i}: {}\n", yaml_str(t)));
        }
        let dir = crate::util::fs::TempDir::create(&std::env::temp_dir(), "v7-xtask-pyyaml").unwrap();
        let file = dir.path().join("doc.yaml");
        std::fs::write(&file, &doc).unwrap();
        let script = "import sys, yaml, json; d = yaml.safe_load(open(sys.argv[1])); print(json.dumps([d['k%d' % i] for i in range(len(d))]))";
        let cmd = crate::process::Cmd::new("python3").args(["-c", script]).path_arg(&file);
        let out = crate::process::Runner::new(false).query(&cmd).expect("python3 with PyYAML (pip install pyyaml)");
        let read = crate::util::json::parse(&out).unwrap();
        let read: Vec<Option<&str>> =
            crate::util::json::Read::items(&read).iter().map(crate::util::json::Read::str).collect();
        let expected: Vec<Option<&str>> = inputs.iter().map(|t| Some(*t)).collect();
        assert_eq!(read, expected, "{doc}");
    }
}

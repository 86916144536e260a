//! Turns the text of `docker/stack.toml` into the [`Stack`] of `model.rs`.
//!
//! Written by hand over toml's span-keeping `DeTable` rather than derived with serde: serde's
//! derive (syn, serde_derive) was the longest stretch of the xtask's cold build, and walking the
//! document ourselves gives every error — unknown key, wrong type, missing key — the exact
//! line and column of the value at fault and the list of what is allowed there.

use std::collections::BTreeMap;
use std::ops::Range;

use anyhow::Result;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::model::*;

type Value<'a> = Spanned<DeValue<'a>>;

/// The document being read, for locating errors.
pub struct Reader<'t> {
    pub file: &'t str,
    pub text: &'t str,
}

impl Reader<'_> {
    /// An error at `span`, as `file:line:col: msg`.
    pub fn error(&self, span: Range<usize>, msg: String) -> anyhow::Error {
        let (line, col) = line_col(self.text, span.start);
        anyhow::anyhow!("{}:{line}:{col}: {msg}", self.file)
    }

    /// Fails on a key that is not in `allowed`, naming the allowed ones.
    fn only(&self, table: &DeTable, path: &str, allowed: &[&str]) -> Result<()> {
        for (key, _) in table.iter() {
            let name: &str = key.get_ref().as_ref();
            if !allowed.contains(&name) {
                if let Some((_, new)) = RENAMED.iter().find(|(old, new)| *old == name && allowed.contains(new)) {
                    return Err(self.error(
                        key.span(),
                        format!(
                            "`{name}` in {} is now called `{new}` (one name per concept: docs/xtask.md)",
                            where_(path)
                        ),
                    ));
                }
                let list: Vec<String> = allowed.iter().map(|k| format!("`{k}`")).collect();
                return Err(self.error(
                    key.span(),
                    format!("unknown key `{name}` in {}; allowed: {} (docs/stack.md)", where_(path), list.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn table<'a, 'b>(&self, v: &'a Value<'b>, path: &str) -> Result<&'a DeTable<'b>> {
        v.get_ref().as_table().ok_or_else(|| self.wrong(v, path, "a table"))
    }

    fn wrong(&self, v: &Value, path: &str, expected: &str) -> anyhow::Error {
        self.error(v.span(), format!("{path}: expected {expected}, found {}", v.get_ref().type_str()))
    }

    fn string(&self, v: &Value, path: &str) -> Result<Spanned<String>> {
        match v.get_ref().as_str() {
            Some(s) => Ok(Spanned::new(v.span(), s.to_string())),
            None => Err(self.wrong(v, path, "a string")),
        }
    }

    fn unsigned(&self, v: &Value, path: &str) -> Result<u64> {
        v.get_ref()
            .as_integer()
            .and_then(|i| u64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok())
            .ok_or_else(|| self.wrong(v, path, "a whole number, 0 or more"))
    }

    fn number(&self, v: &Value, path: &str) -> Result<f64> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok().map(|n| n as f64),
            DeValue::Float(f) => f.as_str().replace('_', "").parse().ok(),
            _ => None,
        };
        n.ok_or_else(|| self.wrong(v, path, "a number"))
    }

    fn boolean(&self, v: &Value, path: &str) -> Result<bool> {
        v.get_ref().as_bool().ok_or_else(|| self.wrong(v, path, "true or false"))
    }

    fn strings(&self, v: &Value, path: &str) -> Result<Vec<Spanned<String>>> {
        let array = v.get_ref().as_array().ok_or_else(|| self.wrong(v, path, "an array of strings"))?;
        array.iter().map(|item| self.string(item, path)).collect()
    }

    fn string_map(&self, v: &Value, path: &str) -> Result<BTreeMap<String, String>> {
        let table = self.table(v, path)?;
        let mut out = BTreeMap::new();
        for (k, item) in table.iter() {
            out.insert(k.get_ref().to_string(), self.string(item, &format!("{path}.{}", k.get_ref()))?.into_inner());
        }
        Ok(out)
    }
}

/// Keys that had another name, and their name now.
const RENAMED: &[(&str, &str)] = &[("mirrors", "package_mirrors"), ("offline", "registry_free")];

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

fn where_(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_string()
    } else {
        format!("[{path}]")
    }
}

/// `table[key]`, when present.
fn get<'a, 'b>(table: &'a DeTable<'b>, key: &str) -> Option<&'a Value<'b>> {
    table.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v)
}

fn required<'a, 'b>(
    r: &Reader,
    table: &'a DeTable<'b>,
    span: Range<usize>,
    path: &str,
    key: &str,
) -> Result<&'a Value<'b>> {
    get(table, key).ok_or_else(|| r.error(span, format!("{}: `{key}` is required (docs/stack.md)", where_(path))))
}

pub fn read_stack(r: &Reader) -> Result<Stack> {
    let doc = DeTable::parse(r.text).map_err(|e| {
        r.error(e.span().unwrap_or(0..0), format!("{} (the file is not valid TOML)", e.message().trim()))
    })?;
    let root = doc.get_ref();
    r.only(
        root,
        "",
        &["project", "pull", "package_mirrors", "networks", "volumes", "secrets", "services", "profiles"],
    )?;
    let project = required(r, root, 0..0, "", "project")?;
    let mut stack = Stack {
        project: read_project(r, project)?,
        pull: match get(root, "pull") {
            Some(v) => read_pull(r, v)?,
            None => PullSettings::default(),
        },
        package_mirrors: match get(root, "package_mirrors") {
            Some(v) => read_package_mirrors(r, v)?,
            None => PackageMirrorPresets::default(),
        },
        networks: read_named(r, get(root, "networks"), "networks", |r, v, path| {
            let t = r.table(v, path)?;
            r.only(t, path, &["internal"])?;
            Ok(Network {
                internal: get(t, "internal")
                    .map(|v| r.boolean(v, &format!("{path}.internal")))
                    .transpose()?
                    .unwrap_or(false),
            })
        })?,
        volumes: read_named(r, get(root, "volumes"), "volumes", |r, v, path| {
            r.only(r.table(v, path)?, path, &[])?;
            Ok(Volume {})
        })?,
        secrets: read_named(r, get(root, "secrets"), "secrets", |r, v, path| {
            let t = r.table(v, path)?;
            r.only(t, path, &["template"])?;
            Ok(Secret { template: get(t, "template").map(|v| r.string(v, &format!("{path}.template"))).transpose()? })
        })?,
        services: read_named(r, get(root, "services"), "services", read_service)?,
        profiles: BTreeMap::new(),
        profile: None,
    };
    stack.profiles = read_named(r, get(root, "profiles"), "profiles", |r, v, path| read_profile(r, v, path, &stack))?;
    Ok(stack)
}

/// `[profiles.NAME]`: `host_ip`, and `[profiles.NAME.services.SERVICE]` overlays of services
/// the stack has, each with the keys a profile may change (`ServiceOverlay`).
fn read_profile(r: &Reader, v: &Value, path: &str, stack: &Stack) -> Result<Profile> {
    let t = r.table(v, path)?;
    r.only(t, path, &["host_ip", "services"])?;
    let host_ip = get(t, "host_ip").map(|v| r.string(v, &format!("{path}.host_ip"))).transpose()?;
    if let Some(ip) = &host_ip {
        if ip.get_ref().parse::<std::net::Ipv4Addr>().is_err() {
            return Err(r.error(
                ip.span(),
                format!(
                    "{path}.host_ip: {:?} is not an IPv4 address; hint: \"127.0.0.1\" keeps every port on loopback",
                    ip.get_ref()
                ),
            ));
        }
    }
    let mut services = BTreeMap::new();
    if let Some(s) = get(t, "services") {
        let spath = format!("{path}.services");
        for (k, item) in r.table(s, &spath)?.iter() {
            let name: &str = k.get_ref().as_ref();
            let sub = format!("{spath}.{name}");
            if !stack.services.contains_key(name) {
                let known: Vec<&str> = stack.services.keys().map(String::as_str).collect();
                return Err(r.error(
                    k.span(),
                    format!("{sub}: the stack has no service {name:?}; services: {} (docs/stack.md)", known.join(", ")),
                ));
            }
            services.insert(name.to_string(), read_overlay(r, item, &sub)?);
        }
    }
    Ok(Profile { host_ip, services })
}

fn read_overlay(r: &Reader, v: &Value, path: &str) -> Result<ServiceOverlay> {
    let t = r.table(v, path)?;
    r.only(t, path, &["environment", "ports", "resources", "command"])?;
    let sub = |key: &str| format!("{path}.{key}");
    Ok(ServiceOverlay {
        environment: get(t, "environment")
            .map(|v| r.string_map(v, &sub("environment")))
            .transpose()?
            .unwrap_or_default(),
        ports: get(t, "ports").map(|v| r.strings(v, &sub("ports"))).transpose()?,
        resources: get(t, "resources").map(|v| read_resources(r, v, &sub("resources"))).transpose()?,
        command: get(t, "command")
            .map(|v| r.strings(v, &sub("command")))
            .transpose()?
            .map(|c| c.into_iter().map(Spanned::into_inner).collect()),
    })
}

fn read_resources(r: &Reader, v: &Value, path: &str) -> Result<Resources> {
    let t = r.table(v, path)?;
    r.only(t, path, &["cpus", "memory"])?;
    Ok(Resources {
        cpus: get(t, "cpus").map(|v| r.number(v, &format!("{path}.cpus"))).transpose()?,
        memory: get(t, "memory").map(|v| r.string(v, &format!("{path}.memory"))).transpose()?,
    })
}

/// A table of named sub-tables (`[services.NAME]`), read in name order.
fn read_named<T>(
    r: &Reader,
    v: Option<&Value>,
    path: &str,
    read: impl Fn(&Reader, &Value, &str) -> Result<T>,
) -> Result<BTreeMap<String, T>> {
    let mut out = BTreeMap::new();
    if let Some(v) = v {
        for (k, item) in r.table(v, path)?.iter() {
            out.insert(k.get_ref().to_string(), read(r, item, &format!("{path}.{}", k.get_ref()))?);
        }
    }
    Ok(out)
}

fn read_project(r: &Reader, v: &Value) -> Result<Project> {
    let path = "project";
    let t = r.table(v, path)?;
    r.only(t, path, &["name", "mode", "debian_mirror", "debian_suite"])?;
    let mode = match get(t, "mode") {
        None => ModeSetting::Auto,
        Some(m) => match r.string(m, "project.mode")?.get_ref().as_str() {
            "auto" => ModeSetting::Auto,
            "registry" => ModeSetting::Registry,
            "registry-free" => ModeSetting::RegistryFree,
            "offline" => {
                return Err(r.error(
                    m.span(),
                    "project.mode: \"offline\" is now called \"registry-free\" (docs/xtask.md)".into(),
                ))
            }
            other => {
                return Err(r.error(
                    m.span(),
                    format!(
                        "project.mode: {other:?} is not a mode; allowed: \"auto\", \"registry\", \"registry-free\""
                    ),
                ))
            }
        },
    };
    let opt = |key: &str, default: &str| -> Result<String> {
        Ok(get(t, key)
            .map(|v| r.string(v, &format!("project.{key}")))
            .transpose()?
            .map(Spanned::into_inner)
            .unwrap_or_else(|| default.to_string()))
    };
    Ok(Project {
        name: r.string(required(r, t, v.span(), path, "name")?, "project.name")?.into_inner(),
        mode,
        debian_mirror: opt("debian_mirror", "http://deb.debian.org/debian")?,
        debian_suite: opt("debian_suite", "bookworm")?,
    })
}

fn read_pull(r: &Reader, v: &Value) -> Result<PullSettings> {
    let path = "pull";
    let t = r.table(v, path)?;
    r.only(t, path, &["jobs", "timeout_secs", "deadline_secs", "attempts", "registry_mirrors", "build_args"])?;
    let d = PullSettings::default();
    let num = |key: &str, default: u64| -> Result<u64> {
        Ok(get(t, key).map(|v| r.unsigned(v, &format!("pull.{key}"))).transpose()?.unwrap_or(default))
    };
    Ok(PullSettings {
        jobs: num("jobs", d.jobs as u64)? as usize,
        timeout_secs: num("timeout_secs", d.timeout_secs)?,
        deadline_secs: num("deadline_secs", d.deadline_secs)?,
        attempts: num("attempts", d.attempts as u64)? as u32,
        registry_mirrors: get(t, "registry_mirrors")
            .map(|v| r.strings(v, "pull.registry_mirrors"))
            .transpose()?
            .unwrap_or_default(),
        build_args: get(t, "build_args").map(|v| r.string_map(v, "pull.build_args")).transpose()?.unwrap_or_default(),
    })
}

fn read_package_mirrors(r: &Reader, v: &Value) -> Result<PackageMirrorPresets> {
    let path = "package_mirrors";
    let t = r.table(v, path)?;
    r.only(t, path, &["default_preset", "presets"])?;
    Ok(PackageMirrorPresets {
        default_preset: get(t, "default_preset").map(|v| r.string(v, "package_mirrors.default_preset")).transpose()?,
        presets: read_named(r, get(t, "presets"), "package_mirrors.presets", |r, v, path| {
            let t = r.table(v, path)?;
            r.only(t, path, &["apk", "apt", "npm", "pip", "cargo"])?;
            let url = |key: &str| -> Result<Option<String>> {
                Ok(get(t, key).map(|v| r.string(v, &format!("{path}.{key}"))).transpose()?.map(Spanned::into_inner))
            };
            Ok(PackageMirrors {
                apk: url("apk")?,
                apt: url("apt")?,
                npm: url("npm")?,
                pip: url("pip")?,
                cargo: url("cargo")?,
            })
        })?,
    })
}

fn read_service(r: &Reader, v: &Value, path: &str) -> Result<Service> {
    let t = r.table(v, path)?;
    r.only(
        t,
        path,
        &[
            "image",
            "build",
            "registry_free",
            "ports",
            "environment",
            "networks",
            "volumes",
            "secrets",
            "depends_on",
            "command",
            "healthcheck",
            "resources",
        ],
    )?;
    let list = |key: &str| -> Result<Vec<Spanned<String>>> {
        Ok(get(t, key).map(|v| r.strings(v, &format!("{path}.{key}"))).transpose()?.unwrap_or_default())
    };
    let sub = |key: &str| format!("{path}.{key}");
    Ok(Service {
        image: r.string(required(r, t, v.span(), path, "image")?, &sub("image"))?,
        build: get(t, "build").map(|v| read_build(r, v, &sub("build"))).transpose()?,
        registry_free: get(t, "registry_free").map(|v| read_registry_free(r, v, &sub("registry_free"))).transpose()?,
        ports: list("ports")?,
        environment: get(t, "environment")
            .map(|v| r.string_map(v, &sub("environment")))
            .transpose()?
            .unwrap_or_default(),
        networks: list("networks")?,
        volumes: list("volumes")?,
        secrets: list("secrets")?,
        depends_on: list("depends_on")?,
        command: list("command")?.into_iter().map(Spanned::into_inner).collect(),
        healthcheck: get(t, "healthcheck").map(|v| read_healthcheck(r, v, &sub("healthcheck"))).transpose()?,
        resources: get(t, "resources")
            .map(|v| read_resources(r, v, &sub("resources")))
            .transpose()?
            .unwrap_or_default(),
    })
}

fn read_build(r: &Reader, v: &Value, path: &str) -> Result<Build> {
    let t = r.table(v, path)?;
    r.only(t, path, &["context", "dockerfile", "ignorefile", "args"])?;
    Ok(Build {
        context: r.string(required(r, t, v.span(), path, "context")?, &format!("{path}.context"))?.into_inner(),
        dockerfile: r
            .string(required(r, t, v.span(), path, "dockerfile")?, &format!("{path}.dockerfile"))?
            .into_inner(),
        ignorefile: get(t, "ignorefile")
            .map(|v| r.string(v, &format!("{path}.ignorefile")))
            .transpose()?
            .map(Spanned::into_inner),
        args: get(t, "args").map(|v| r.string_map(v, &format!("{path}.args"))).transpose()?.unwrap_or_default(),
    })
}

fn read_registry_free(r: &Reader, v: &Value, path: &str) -> Result<RegistryFreeRecipe> {
    let t = r.table(v, path)?;
    r.only(t, path, &["dockerfile", "context", "ignorefile", "unavailable"])?;
    let opt = |key: &str| -> Result<Option<String>> {
        Ok(get(t, key).map(|v| r.string(v, &format!("{path}.{key}"))).transpose()?.map(Spanned::into_inner))
    };
    Ok(RegistryFreeRecipe {
        dockerfile: opt("dockerfile")?,
        context: opt("context")?,
        ignorefile: opt("ignorefile")?,
        unavailable: opt("unavailable")?,
    })
}

fn read_healthcheck(r: &Reader, v: &Value, path: &str) -> Result<Healthcheck> {
    let t = r.table(v, path)?;
    r.only(t, path, &["test", "interval", "timeout", "retries", "start_period"])?;
    let duration = |key: &str, default: &str| -> Result<Spanned<String>> {
        Ok(get(t, key)
            .map(|v| r.string(v, &format!("{path}.{key}")))
            .transpose()?
            .unwrap_or_else(|| Spanned::new(0..0, default.to_string())))
    };
    Ok(Healthcheck {
        test: r
            .strings(required(r, t, v.span(), path, "test")?, &format!("{path}.test"))?
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
        interval: duration("interval", "10s")?,
        timeout: duration("timeout", "3s")?,
        retries: get(t, "retries").map(|v| r.unsigned(v, &format!("{path}.retries"))).transpose()?.unwrap_or(3) as u32,
        start_period: duration("start_period", "5s")?,
    })
}

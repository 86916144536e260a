//! The stack as a compose file (Compose Specification: `docker compose`, `podman-compose`),
//! checked in at the repository root as `compose.yaml` ([`compose`]), with `compose.offline.yaml`
//! ([`offline`]), an override that runs the same file with the registry-free images. `cargo
//! xtask export compose --write` writes both (`cli/export.rs`, which also makes the secret
//! files); a test there fails when the checked-in ones are stale. docs/compose.md is the guide.
//!
//! Decisions:
//! - **Paths relative to the file's own directory** (`to_root`: the way back to the checkout
//!   root, `.` for the checked-in file): bind mounts `./docker/nats/nats.conf`, build contexts
//!   `.` and `./web`, secret files. Compose resolves them against the first file's directory.
//! - **A project of its own**, `<project>_compose` (`v7_compose`; top-level `name:`, which
//!   podman-compose 1.0.3 ignores: it takes `-p`), and every name under it:
//!   `v7_compose-backend`, `v7_compose-frontend`, `v7_compose-nats-data`. `deploy` names
//!   everything `<project>-<name>` with a project name of lowercase letters, digits and `-`
//!   (`stack/validate.rs`), so no deploy name contains `_`: neither side can take the other's
//!   names. The labels are `v7.compose.project` and `v7.service`, never `v7.project`, which
//!   `down`, `status` and deploy's container listing filter by: they never see a compose object,
//!   and compose's `down` removes only the containers its file names (podman-compose) or that
//!   carry its own project label (docker compose). Tested in `cli/export.rs`.
//! - **build:** for the services the stack file builds: context as given, the Dockerfile
//!   relative to the context (the spec's rule; podman-compose 1.0.3 joins the two), args.
//!   Compose has no key for an ignore file that is not `<context>/.dockerignore`: podman
//!   (verified with 4.3.1) and BuildKit read `<Dockerfile>.dockerignore` beside the Dockerfile
//!   instead, so `backend/Dockerfile.dockerignore` must be a copy of, or a symlink to,
//!   `backend/.dockerignore` (a symlink works with podman 4.3.1); without it the whole checkout,
//!   `target/` included, is sent to the build. The file says so above each such `build:`.
//! - **Images that can be pulled**: the stack file's registry names (analytics-engine's too,
//!   `ghcr.io/hellocplusplus0/v7/analytics-engine:latest`); a built service whose image is a
//!   `localhost/...` name gets the registry repository the other built services share
//!   ([`pullable_image`]), so the file never names an image only this machine has.
//! - **Secrets** are file secrets under `.v7/stacks/<compose project>/secret-files/` (`.v7/` is
//!   git-ignored), made by `export compose --write` with deploy's generator for the compose
//!   project: passwords are never in the checked-in file. The files are 0644 in a 0700
//!   directory: compose bind-mounts them as they are, and the services run as non-root users.
//! - **Health**: each service's check as `healthcheck:`, and `depends_on` with `condition:
//!   service_healthy` (docker compose waits for them: `up -d --wait`). podman-compose 1.0.3
//!   ignores the conditions (it only orders the starts), and podman runs no health check
//!   without systemd: `cargo xtask verify --compose` runs each check until it passes first.
//! - `restart: always` (deploy's `--restart always`), `init`, a 10 s stop timeout, the stack
//!   file's limits. deploy's `--health-on-failure restart` has no compose setting.
//! - The same host ports as `deploy`: run the compose stack or the deployed one, not both.
//! - The override only replaces scalars (`image`, `pull_policy: never`) and scales a service
//!   left out of registry-free mode (Grafana) to `deploy.replicas: 0`: podman-compose 1.0.3
//!   appends lists of an override to the base file's, and neither tool can delete a service.

use super::yaml::{document, num, s, strs, Entry, Map, Node};
use super::{mounts, secret_mounts, used, with_profile, Mount};
use crate::stack::names::SERVICE_LABEL;
use crate::stack::placement::plan;
use crate::stack::{Mode, Port, Stack};

/// The checked-in compose file and its registry-free override, at the checkout root.
pub const COMPOSE_FILE: &str = "compose.yaml";
pub const OFFLINE_FILE: &str = "compose.offline.yaml";

/// On every object of the compose project: `v7.compose.project=<project>_compose`. Not
/// `v7.project`, so that `down` and `status` never take a compose object for a deployed one.
pub use crate::stack::names::COMPOSE_PROJECT_LABEL;

/// The compose project's name: `<project>_compose` (`v7_compose`).
pub fn project_name(stack: &Stack) -> String {
    format!("{}_compose", stack.project.name)
}

/// A container, network or volume of the compose project: `v7_compose-backend`. The same
/// scheme as `stack/names.rs` under the compose project's name, so a stack renamed to
/// [`project_name`] (what `verify --compose` does) finds them.
pub fn object_name(stack: &Stack, name: &str) -> String {
    format!("{}-{name}", project_name(stack))
}

/// A secret's file, relative to the checkout root: `.v7/stacks/v7_compose/secret-files/NAME`.
pub fn secret_file(stack: &Stack, secret: &str) -> String {
    format!(".v7/stacks/{}/secret-files/{secret}", project_name(stack))
}

/// `rel` (relative to the checkout root) as seen from a file whose way back to the root is
/// `to_root` (`.`, `../..`).
fn from_file(to_root: &str, rel: &str) -> String {
    match rel {
        "." | "" => to_root.to_string(),
        _ => format!("{to_root}/{rel}"),
    }
}

/// `path` relative to the directory `dir` (both relative to the checkout root).
fn relative_to(path: &str, dir: &str) -> String {
    let dir = dir.trim_start_matches("./").trim_end_matches('/');
    let path = path.trim_start_matches("./");
    if dir.is_empty() || dir == "." {
        return path.to_string();
    }
    match path.strip_prefix(&format!("{dir}/")) {
        Some(rest) => rest.to_string(),
        None => format!("{}{path}", "../".repeat(dir.split('/').count())),
    }
}

/// A built service's image as compose should name it: the stack file's, unless that is a
/// `localhost/` name no one can pull; then `<repository of the other built services>/<service>`
/// with the same tag. Without such a repository the name stays (compose builds it).
pub fn pullable_image(stack: &Stack, service: &str) -> String {
    let image = stack.services[service].image.get_ref();
    if !image.starts_with("localhost/") {
        return image.clone();
    }
    let tag = image.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or("latest", |(_, t)| t);
    let repository = stack.built_services().map(|(_, svc, _)| svc.image.get_ref()).find_map(|other| {
        let (repo, _) = other.rsplit_once('/')?;
        (!other.starts_with("localhost/") && repo.contains('/')).then(|| repo.to_string())
    });
    match repository {
        Some(repo) => format!("{repo}/{service}:{tag}"),
        None => image.clone(),
    }
}

fn labels(stack: &Stack, service: Option<&str>) -> Node {
    let mut m = Map::new().kv(COMPOSE_PROJECT_LABEL, s(project_name(stack)));
    if let Some(service) = service {
        m.put(SERVICE_LABEL, s(service));
    }
    m.node()
}

fn header(stack: &Stack) -> Vec<String> {
    let p = project_name(stack);
    let dir = format!(".v7/stacks/{p}/secret-files/");
    vec![
        "Generated by `cargo xtask export compose --write` from docker/stack.toml; regenerate, do not edit.".into(),
        format!("The V7 stack as compose project {p} (docs/compose.md), run from this directory."),
        format!("First `cargo xtask export compose --write`: it makes the secret files in {dir} (git-ignored)."),
        "Then, with the images from their registries or built from the `build:` sections:".into(),
        "  $ docker compose up -d --wait".into(),
        format!("  $ podman-compose -p {p} up -d && cargo xtask verify --compose"),
        format!(
            "With the registry-free images (`cargo xtask build --registry-free`): add `-f {COMPOSE_FILE} -f {OFFLINE_FILE}`."
        ),
        format!(
            "podman-compose 1.0.3 ignores `name:` (hence -p), the depends_on conditions (it only orders the starts; \
             `verify --compose` waits for every health check), and leaves the networks after `down`: \
             podman network rm {}.",
            stack.networks.keys().map(|n| object_name(stack, n)).collect::<Vec<_>>().join(" ")
        ),
        "restart: always brings back a container that exits; `cargo xtask deploy` also restarts one whose health check \
         fails (podman --health-on-failure restart), which compose has no setting for."
            .into(),
        "The host ports are the ones `cargo xtask deploy` publishes: run this stack or the deployed one, not both.".into(),
    ]
}

/// `compose.yaml`: the stack in registry mode, every path relative to `to_root`, the way from
/// the file's directory back to the checkout root (`.` for the checked-in file).
pub fn compose(stack: &Stack, to_root: &str) -> String {
    let plan = plan(stack, Mode::Registry);
    let mut services = Map::new();
    for (name, _) in &plan.run {
        services.put(name, compose_service(stack, to_root, name));
    }
    let running =
        |pred: &dyn Fn(&crate::stack::Service) -> bool| plan.run.iter().any(|(n, _)| pred(&stack.services[*n]));
    let mut networks = Map::new();
    for net in used(stack.networks.keys(), |n| running(&|svc| svc.networks.iter().any(|x| x.get_ref() == n))) {
        let mut m = Map::new().kv("name", s(object_name(stack, net)));
        if stack.networks[net].internal {
            m.put("internal", num(true));
        }
        m.put("labels", labels(stack, None));
        networks.put(net, m.node());
    }
    let mut volumes = Map::new();
    for vol in used(stack.volumes.keys(), |v| {
        running(&|svc| svc.volumes.iter().any(|x| x.get_ref().split(':').next() == Some(v)))
    }) {
        volumes.put(vol, Map::new().kv("name", s(object_name(stack, vol))).kv("labels", labels(stack, None)).node());
    }
    let mut body = Map::new()
        .kv("name", s(project_name(stack)))
        .kv("services", services.node())
        .kv("networks", networks.node())
        .kv("volumes", volumes.node());
    let secrets = used(stack.secrets.keys(), |x| {
        plan.run.iter().any(|(n, _)| secret_mounts(stack, n).iter().any(|(name, _)| name == x))
    });
    if !secrets.is_empty() {
        body.comment(&format!(
            "Files made by `cargo xtask export compose --write` (deploy's generator, for project {}): never checked in.",
            project_name(stack)
        ));
        let decl = secrets
            .into_iter()
            .map(|x| Entry::Kv(x.clone(), Map::new().kv("file", s(from_file(to_root, &secret_file(stack, x)))).node()));
        body.put("secrets", Node::Map(decl.collect()));
    }
    document(&with_profile(stack, header(stack), "cargo xtask export compose"), body.node())
}

fn compose_service(stack: &Stack, to_root: &str, name: &str) -> Node {
    let svc = &stack.services[name];
    let mut m = Map::new().kv("image", s(pullable_image(stack, name)));
    if let Some(build) = &svc.build {
        let default_ignore = format!("{}/.dockerignore", build.context.trim_end_matches('/'));
        if let Some(ignore) = build.ignorefile.as_ref().filter(|i| **i != default_ignore) {
            m.comment(&format!(
                "Compose has no key for the ignore file {ignore}: podman and BuildKit read {}.dockerignore beside the \
                 Dockerfile, which must be a copy of or a symlink to it (docs/compose.md).",
                build.dockerfile
            ));
        }
        let mut b = Map::new()
            .kv("context", s(from_file(to_root, &build.context)))
            .kv("dockerfile", s(relative_to(&build.dockerfile, &build.context)));
        if !build.args.is_empty() {
            b.put("args", Node::Map(build.args.iter().map(|(k, v)| Entry::Kv(k.clone(), s(v))).collect()));
        }
        m.put("build", b.node());
    }
    m.put("container_name", s(object_name(stack, name)));
    if !svc.command.is_empty() {
        m.put("command", strs(svc.command.iter().cloned()));
    }
    if !svc.environment.is_empty() {
        m.put("environment", Node::Map(svc.environment.iter().map(|(k, v)| Entry::Kv(k.clone(), s(v))).collect()));
    }
    if !svc.ports.is_empty() {
        m.put("ports", strs(svc.published().iter().map(Port::to_podman)));
    }
    if !svc.networks.is_empty() {
        // A list: podman-compose 1.0.3 reads no other form (a map with `aliases` fails with
        // "missing networks"). Both tools give the service's name as its alias on each.
        m.put("networks", strs(svc.networks.iter().map(|n| n.get_ref().clone())));
    }
    let mounts = mounts(stack, std::path::Path::new(to_root), name);
    if !mounts.is_empty() {
        let items = mounts.into_iter().map(|mount| {
            let (kind, source, target, ro) = match mount {
                Mount::Named { volume, target, read_only } => ("volume", volume, target, read_only),
                Mount::Bind { source, target, read_only } => ("bind", source, target, read_only),
            };
            let mut v = Map::new().kv("type", s(kind)).kv("source", s(source)).kv("target", s(target));
            if ro {
                v.put("read_only", num(true));
            }
            v.node()
        });
        m.put("volumes", Node::Seq(items.collect()));
    }
    let secrets = secret_mounts(stack, name);
    if !secrets.is_empty() {
        let items = secrets.into_iter().map(|(x, target)| Map::new().kv("source", s(x)).kv("target", s(target)).node());
        m.put("secrets", Node::Seq(items.collect()));
    }
    if !svc.depends_on.is_empty() {
        let deps = svc.depends_on.iter().map(|d| {
            let healthy = stack.services[d.get_ref()].healthcheck.is_some();
            let condition = if healthy { "service_healthy" } else { "service_started" };
            Entry::Kv(d.get_ref().clone(), Map::new().kv("condition", s(condition)).node())
        });
        m.comment("podman-compose 1.0.3 ignores these conditions (it only orders the starts)");
        m.put("depends_on", Node::Map(deps.collect()));
    }
    if let Some(hc) = &svc.healthcheck {
        let test = std::iter::once("CMD".to_string()).chain(hc.test.iter().cloned());
        m.put(
            "healthcheck",
            Map::new()
                .kv("test", strs(test))
                .kv("interval", s(hc.interval.get_ref()))
                .kv("timeout", s(hc.timeout.get_ref()))
                .kv("retries", num(hc.retries))
                .kv("start_period", s(hc.start_period.get_ref()))
                .node(),
        );
    }
    let mut limits = Map::new();
    if let Some(cpus) = svc.resources.cpus {
        limits.put("cpus", s(cpus.to_string()));
    }
    if let Some(mem) = &svc.resources.memory {
        limits.put("memory", s(mem.get_ref()));
    }
    if !limits.0.is_empty() {
        m.put("deploy", Map::new().kv("resources", Map::new().kv("limits", limits.node()).node()).node());
    }
    m.put("restart", s("always"));
    m.put("init", num(true));
    m.put("stop_grace_period", s("10s"));
    m.put("labels", labels(stack, Some(name)));
    m.node()
}

/// `compose.offline.yaml`: over [`compose`], each service's registry-free image, never pulled
/// (nor built: their recipes need what `cargo xtask build --registry-free` fetches on the host),
/// and the services registry-free mode leaves out scaled to no container, with the reason.
pub fn offline(stack: &Stack) -> String {
    let p = project_name(stack);
    let head = vec![
        "Generated by `cargo xtask export compose --write` from docker/stack.toml; regenerate, do not edit."
            .to_string(),
        format!(
            "Over {COMPOSE_FILE}: the registry-free images `cargo xtask build --registry-free` makes on this machine."
        ),
        format!("  $ podman-compose -p {p} -f {COMPOSE_FILE} -f {OFFLINE_FILE} up -d --no-build"),
        "  $ cargo xtask verify --compose".to_string(),
        format!("  $ podman-compose -p {p} -f {COMPOSE_FILE} -f {OFFLINE_FILE} down -v"),
        "Only the xtask builds these images (their recipes need the dependencies it fetches on the host): \
         pull_policy never, and --no-build, so a missing one is an error and not a build of the production recipe."
            .to_string(),
    ];
    let plan = plan(stack, Mode::RegistryFree);
    let mut services = Map::new();
    for name in stack.start_order().expect("validated") {
        if let Some((_, why)) = plan.skipped.iter().find(|(n, _)| *n == name) {
            services.comment(&format!("{name}: left out: {why}"));
            let none = Map::new().kv("replicas", num(0));
            services.put(name, Map::new().kv("deploy", none.node()).node());
            continue;
        }
        let image = &plan.run.iter().find(|(n, _)| *n == name).expect("run or skipped").1;
        if *image != pullable_image(stack, name) {
            services.put(name, Map::new().kv("image", s(image)).kv("pull_policy", s("never")).node());
        }
    }
    let head = with_profile(stack, head, "cargo xtask export compose --registry-free");
    document(&head, Map::new().kv("services", services.node()).node())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::{block, repo_stack};

    #[test]
    fn compose_backend_and_nats() {
        let stack = repo_stack();
        let out = compose(&stack, ".");
        assert!(out.contains("\nname: v7_compose\nservices:\n"), "the project line:\n{out}");
        let backend = block(&out, "  backend:");
        let want = r#"  backend:
    image: ghcr.io/hellocplusplus0/v7/backend:latest
    # Compose has no key for the ignore file backend/.dockerignore: podman and BuildKit read backend/Dockerfile.dockerignore beside the Dockerfile, which must be a copy of or a symlink to it (docs/compose.md).
    build:
      context: "."
      dockerfile: backend/Dockerfile
    container_name: v7_compose-backend
    environment:
      RUST_LOG: info
      V7_ANALYTICS_URL: http://analytics-engine:50051
      V7_NATS_STREAM: V7_EVENTS
      V7_NATS_URL: nats://nats:4222
      V7_PROMETHEUS_URL: http://prometheus:9090
      V7_STREAM_MAX_AGE_SECS: "604800"
      V7_STREAM_MAX_BYTES: "1073741824"
    ports:
      - "127.0.0.1:3000:3000"
      - "127.0.0.1:50053:50053"
    networks:
      - frontend
      - backend
    # podman-compose 1.0.3 ignores these conditions (it only orders the starts)
    depends_on:
      nats:
        condition: service_healthy
      analytics-engine:
        condition: service_healthy
    healthcheck:
      test:
        - CMD
        - /usr/local/bin/backend
        - healthcheck
      interval: 10s
      timeout: 3s
      retries: 3
      start_period: 5s
    deploy:
      resources:
        limits:
          cpus: "1"
          memory: 256m
    restart: always
    init: true
    stop_grace_period: 10s
    labels:
      v7.compose.project: v7_compose
      v7.service: backend"#;
        assert_eq!(backend, want, "backend's block");
        let nats = block(&out, "  nats:");
        for line in [
            "    image: docker.io/library/nats:2.10-alpine",
            "    container_name: v7_compose-nats",
            "    command:\n      - \"--config\"\n      - /etc/nats/nats.conf",
            "      - type: volume\n        source: nats-data\n        target: /data",
            "      - type: bind\n        source: \"./docker/nats/nats.conf\"\n        target: /etc/nats/nats.conf\n        read_only: true",
            "        - wget\n        - \"-q\"\n        - \"-O\"\n        - /dev/null\n        - http://127.0.0.1:8222/healthz",
            "          cpus: \"0.5\"\n          memory: 128m",
        ] {
            assert!(nats.contains(line), "{line:?} not in:\n{nats}");
        }
        assert!(
            !nats.contains("depends_on") && !nats.contains("build:"),
            "nats is pulled, depends on nothing:\n{nats}"
        );
        assert!(out.contains("\nnetworks:\n  backend:\n    name: v7_compose-backend\n"), "the networks' names:\n{out}");
        assert!(out.contains("\nvolumes:\n  clickhouse-data:\n    name: v7_compose-clickhouse-data\n"), "{out}");
        assert!(!out.contains("v7.project"), "deploy's label on a compose object:\n{out}");
        // The secrets: mounted where deploy mounts them, declared once, files of the compose project.
        assert!(
            block(&out, "  clickhouse:").contains(
                "\n    secrets:\n      - source: clickhouse-users\n        target: /etc/clickhouse-server/users.d/v7-password.xml\n    healthcheck:\n"
            ),
            "clickhouse's secrets lines:\n{out}"
        );
        let secrets = block(&out, "secrets:");
        assert_eq!(
            secrets,
            "secrets:\n  clickhouse-password:\n    file: \"./.v7/stacks/v7_compose/secret-files/clickhouse-password\"\n  clickhouse-users:\n    file: \"./.v7/stacks/v7_compose/secret-files/clickhouse-users\"\n  grafana-admin-password:\n    file: \"./.v7/stacks/v7_compose/secret-files/grafana-admin-password\"",
            "the top-level secrets section"
        );
        assert!(out.ends_with(&format!("{secrets}\n")), "the secrets section comes last:\n{out}");
        assert!(out.contains("      GF_AUTH_ANONYMOUS_ENABLED: \"false\"\n"), "Grafana's environment line:\n{out}");
    }

    #[test]
    fn builds_follow_the_stack_file_with_the_dockerfile_relative_to_the_context() {
        let stack = repo_stack();
        let out = compose(&stack, ".");
        let web = block(&out, "  web:");
        assert!(
            web.contains("\n    build:\n      context: \"./web\"\n      dockerfile: Dockerfile\n"),
            "web's build:\n{web}"
        );
        assert!(!web.contains("ignore file"), "web's ignore file is the context's .dockerignore:\n{web}");
        let engine = block(&out, "  analytics-engine:");
        assert!(
            engine.starts_with("  analytics-engine:\n    image: ghcr.io/hellocplusplus0/v7/analytics-engine:latest\n"),
            "analytics-engine's image line (pullable):\n{engine}"
        );
        assert!(engine.contains("      dockerfile: analytics-engine/Dockerfile\n"), "{engine}");
        assert_eq!(out.matches("\n    build:\n").count(), 3, "three services are built:\n{out}");
        // Written elsewhere, every path goes back to the root.
        let deep = compose(&stack, "../..");
        assert!(deep.contains("\n      context: \"../../web\"\n"), "{deep}");
        assert!(deep.contains("\n        source: \"../../docker/nats/nats.conf\"\n"), "{deep}");
        assert!(deep.contains("file: \"../../.v7/stacks/v7_compose/secret-files/clickhouse-password\""), "{deep}");
    }

    #[test]
    fn paths_and_images() {
        assert_eq!(relative_to("web/Dockerfile", "web"), "Dockerfile", "line: web");
        assert_eq!(relative_to("backend/Dockerfile", "."), "backend/Dockerfile", "line: root context");
        assert_eq!(relative_to("docker/x/Dockerfile", "web/sub"), "../../docker/x/Dockerfile", "line: outside");
        assert_eq!(from_file(".", "."), ".", "line: root from root");
        assert_eq!(from_file(".", "web"), "./web", "line: web from root");
        assert_eq!(from_file("../..", "web"), "../../web", "line: web from two down");
        let text = r#"
[project]
name = "v7"
[services.a]
image = "localhost/v7-a:1.2"
build = { context = ".", dockerfile = "a/Dockerfile" }
[services.b]
image = "registry.example/team/b:latest"
build = { context = ".", dockerfile = "b/Dockerfile" }
[services.c]
image = "docker.io/library/nginx:1"
"#;
        let stack = Stack::parse("docker/stack.toml", text).unwrap();
        assert_eq!(pullable_image(&stack, "a"), "registry.example/team/a:1.2", "line: localhost gets b's repository");
        assert_eq!(pullable_image(&stack, "b"), "registry.example/team/b:latest", "line: b as is");
        assert_eq!(pullable_image(&stack, "c"), "docker.io/library/nginx:1", "line: c as is");
    }

    #[test]
    fn offline_override_replaces_images_and_scales_grafana_to_nothing() {
        let stack = repo_stack();
        let out = offline(&stack);
        assert!(
            out.contains(
                "\n  backend:\n    image: localhost/v7-registry-free/backend:latest\n    pull_policy: never\n"
            ),
            "backend's override:\n{out}"
        );
        assert!(
            out.contains("\n  # grafana: left out: Grafana has no Debian package, so registry-free mode runs the stack without dashboards\n  grafana:\n    deploy:\n      replicas: 0\n"),
            "grafana's override:\n{out}"
        );
        assert_eq!(out.matches("pull_policy: never").count(), 6, "six registry-free images:\n{out}");
        // Scalars only: podman-compose 1.0.3 appends an override's lists to the base file's.
        assert!(!out.contains("\n      - ") && !out.contains("    - "), "a list in the override:\n{out}");
    }
}

//! Unit tests of the kube model: the documents by kind and name, their fields by path, every
//! Pod template against the restricted profile, and the podman target's shape.

use super::*;
use crate::export::tests::repo_stack;
use crate::util::workspace::Workspace;

fn root() -> std::path::PathBuf {
    Workspace::for_tests("kube").root
}

fn cluster_opts() -> Options {
    let mut o = Options::cluster("abc1234", "v7");
    o.storage_class = Some("fast".into());
    o
}

fn cluster(opts: &Options) -> Vec<Node> {
    let stack = repo_stack();
    let files = read_files(&stack, &root(), opts.mode).unwrap();
    model(&stack, &root(), opts, &files).unwrap().1
}

fn text<'a>(doc: &'a Node, path: &str) -> &'a str {
    doc.at(path).and_then(Node::text).unwrap_or_else(|| panic!("no {path} in {doc:?}"))
}

fn id(doc: &Node) -> String {
    format!("{}/{}", text(doc, "kind"), text(doc, "metadata.name"))
}

fn find<'a>(docs: &'a [Node], kind: &str, name: &str) -> &'a Node {
    let want = format!("{kind}/{name}");
    docs.iter()
        .find(|d| id(d) == want)
        .unwrap_or_else(|| panic!("no {want} among {:?}", docs.iter().map(id).collect::<Vec<_>>()))
}

fn container<'a>(docs: &'a [Node], kind: &str, name: &str) -> &'a Node {
    let w = find(docs, kind, name);
    let spec = if kind == "Pod" { w.get("spec") } else { w.at("spec.template.spec") };
    &spec.and_then(|s| s.get("containers")).map(Node::items).unwrap_or_default()[0]
}

#[test]
fn unit_conversions() {
    assert_eq!(objects::kube_cpu(0.5), "500m");
    assert_eq!(objects::kube_cpu(1.0), "1");
    assert_eq!(objects::kube_memory("256m"), "256Mi");
    assert_eq!(objects::kube_memory("2G"), "2Gi");
    assert_eq!(objects::kube_memory("4096b"), "4096");
    assert_eq!(objects::seconds("500ms", 1), 1);
    assert_eq!(objects::volume_label("secret", "Grafana_Admin--pw", &[]), "secret-grafana-admin-pw");
    assert_eq!(objects::config_key("datasources/prometheus.yml"), "datasources_prometheus.yml");
    assert_eq!(config_map_name("nats", "/r/docker/nats/nats.conf"), "nats-nats-conf");
    let stack = repo_stack();
    assert_eq!(objects::secret_object_name(&stack, "Admin_PW"), "v7-admin-pw");
    assert!(valid_tag("abc1234") && valid_tag("v1.2.3") && !valid_tag("-x") && !valid_tag("a/b"));
}

#[test]
fn cluster_documents_in_order() {
    let docs = cluster(&cluster_opts());
    let ids: Vec<String> = docs.iter().map(id).collect();
    let want = [
        "Namespace/v7",
        "Secret/v7-clickhouse-password",
        "Secret/v7-clickhouse-users",
        "Secret/v7-grafana-admin-password",
        "ConfigMap/clickhouse-listen-xml",
        "Service/clickhouse",
        "StatefulSet/clickhouse",
        "ConfigMap/nats-nats-conf",
        "Service/nats",
        "StatefulSet/nats",
        "Service/analytics-engine",
        "Deployment/analytics-engine",
    ];
    assert_eq!(ids[..want.len()], want, "{ids:?}");
    for (kind, names) in [
        ("StatefulSet", &["nats", "clickhouse", "prometheus", "grafana"][..]),
        ("Deployment", &["analytics-engine", "backend", "web"][..]),
        ("Service", &["nats", "clickhouse", "prometheus", "grafana", "analytics-engine", "backend", "web"][..]),
        (
            "ConfigMap",
            &["nats-nats-conf", "clickhouse-listen-xml", "prometheus-prometheus-yml", "grafana-provisioning"][..],
        ),
        ("NetworkPolicy", &["v7-deny-ingress", "v7-network-backend", "v7-network-frontend"][..]),
    ] {
        let got: Vec<&str> =
            docs.iter().filter(|d| text(d, "kind") == kind).map(|d| text(d, "metadata.name")).collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut want_sorted = names.to_vec();
        want_sorted.sort();
        assert_eq!(got_sorted, want_sorted, "{kind}s");
    }
    for d in docs.iter().filter(|d| text(d, "kind") != "Namespace") {
        assert_eq!(text(d, "metadata.namespace"), "v7", "{}: metadata.namespace", id(d));
    }
    let ns = find(&docs, "Namespace", "v7");
    assert_eq!(text(ns, "metadata.labels.pod-security.kubernetes.io/enforce"), "restricted");
    assert!(!docs.iter().any(|d| text(d, "kind") == "Pod"), "no bare Pods on a cluster");
    assert!(!docs.iter().any(|d| text(d, "kind") == "PersistentVolumeClaim"), "claims come from volumeClaimTemplates");
}

#[test]
fn backend_deployment_fields() {
    let docs = cluster(&cluster_opts());
    let d = find(&docs, "Deployment", "backend");
    assert_eq!(text(d, "apiVersion"), "apps/v1");
    assert_eq!(text(d, "spec.replicas"), "1");
    assert_eq!(text(d, "spec.selector.matchLabels.v7.service"), "backend", "Deployment/backend spec.selector");
    let labels = d.at("spec.template.metadata.labels").unwrap();
    assert_eq!(labels.keys(), ["v7.project", "v7.service", "v7.network/frontend", "v7.network/backend"]);
    let c = container(&docs, "Deployment", "backend");
    assert_eq!(text(c, "image"), "ghcr.io/hellocplusplus0/v7/backend:abc1234", "Deployment/backend image");
    assert_eq!(text(c, "readinessProbe.httpGet.path"), "/readyz");
    assert_eq!(text(c, "readinessProbe.httpGet.port"), "3000");
    assert_eq!(text(c, "livenessProbe.httpGet.path"), "/healthz");
    assert_eq!(text(c, "livenessProbe.periodSeconds"), "10");
    assert_eq!(text(c, "livenessProbe.failureThreshold"), "3");
    assert_eq!(text(c, "startupProbe.httpGet.path"), "/healthz");
    assert_eq!(text(c, "startupProbe.periodSeconds"), "2");
    assert_eq!(text(c, "startupProbe.failureThreshold"), "33", "a minute after the 5 s start period");
    assert_eq!(text(c, "resources.limits.cpu"), "1");
    assert_eq!(text(c, "resources.requests.cpu"), "500m");
    assert_eq!(text(c, "resources.limits.memory"), "256Mi");
    assert_eq!(text(c, "resources.requests.memory"), "256Mi");
    assert_eq!(text(c, "securityContext.readOnlyRootFilesystem"), "true");
    assert_eq!(text(c, "securityContext.allowPrivilegeEscalation"), "false");
    assert_eq!(c.at("securityContext.capabilities.drop").unwrap().items()[0].text(), Some("ALL"));
    let ports: Vec<&str> = c.get("ports").unwrap().items().iter().map(|p| text(p, "containerPort")).collect();
    assert_eq!(ports, ["3000", "50053"]);
    assert!(c.get("ports").unwrap().items().iter().all(|p| p.get("hostPort").is_none()), "no hostPort");
    let pod = d.at("spec.template.spec").unwrap();
    assert_eq!(text(pod, "securityContext.runAsUser"), "10001");
    assert_eq!(text(pod, "securityContext.runAsGroup"), "10001");
    assert_eq!(text(pod, "securityContext.seccompProfile.type"), "RuntimeDefault");
    assert_eq!(text(pod, "automountServiceAccountToken"), "false");
    let tmp = &pod.get("volumes").unwrap().items()[0];
    assert_eq!((text(tmp, "name"), tmp.get("emptyDir").is_some()), ("writable-tmp", true), "the writable /tmp");
    let engine = container(&docs, "Deployment", "analytics-engine");
    assert_eq!(text(engine, "readinessProbe.httpGet.port"), "9100");
    let web = container(&docs, "Deployment", "web");
    assert_eq!(text(web, "readinessProbe.httpGet.path"), "/healthz");
    let env = web.get("env").unwrap().items();
    assert!(env
        .iter()
        .any(|e| text(e, "name") == "V7_BACKEND_ADDR" && text(e, "value") == "backend.v7.svc.cluster.local:3000"));
    let prom = container(&docs, "StatefulSet", "prometheus");
    assert_eq!(text(prom, "livenessProbe.httpGet.path"), "/-/healthy");
    assert_eq!(text(prom, "readinessProbe.httpGet.path"), "/-/ready");
    let nats = container(&docs, "StatefulSet", "nats");
    assert_eq!(text(nats, "readinessProbe.httpGet.port"), "8222");
}

#[test]
fn statefulsets_claim_their_volumes_with_the_storage_class() {
    let docs = cluster(&cluster_opts());
    let ch = find(&docs, "StatefulSet", "clickhouse");
    assert_eq!(text(ch, "spec.serviceName"), "clickhouse");
    let claims = ch.at("spec.volumeClaimTemplates").unwrap().items();
    let names: Vec<&str> = claims.iter().map(|c| text(c, "metadata.name")).collect();
    assert_eq!(names, ["clickhouse-data", "clickhouse-logs"]);
    assert_eq!(text(&claims[0], "spec.storageClassName"), "fast");
    assert_eq!(text(&claims[0], "spec.resources.requests.storage"), "10Gi");
    let c = container(&docs, "StatefulSet", "clickhouse");
    let mounts = c.get("volumeMounts").unwrap().items();
    let m: Vec<(&str, &str)> = mounts.iter().map(|m| (text(m, "name"), text(m, "mountPath"))).collect();
    assert_eq!(
        m,
        [
            ("clickhouse-data", "/var/lib/clickhouse"),
            ("clickhouse-logs", "/var/log/clickhouse-server"),
            ("conf-listen-xml", "/etc/clickhouse-server/config.d/listen.xml"),
            ("secret-clickhouse-users", "/etc/clickhouse-server/users.d/v7-password.xml"),
            ("writable-tmp", "/tmp"),
        ]
    );
    assert_eq!(text(&mounts[2], "subPath"), "listen.xml");
    assert_eq!(text(&mounts[3], "subPath"), "value");
    let vols = ch.at("spec.template.spec.volumes").unwrap().items();
    assert_eq!(text(&vols[0], "configMap.name"), "clickhouse-listen-xml");
    assert_eq!(text(&vols[1], "secret.secretName"), "v7-clickhouse-users");
    let mut no_class = cluster_opts();
    no_class.storage_class = None;
    let docs = cluster(&no_class);
    let claim = &find(&docs, "StatefulSet", "nats").at("spec.volumeClaimTemplates").unwrap().items()[0];
    assert!(claim.at("spec.storageClassName").is_none(), "the cluster's default class");
}

#[test]
fn config_maps_hold_the_mounted_files() {
    let docs = cluster(&cluster_opts());
    let nats = find(&docs, "ConfigMap", "nats-nats-conf");
    let want = std::fs::read_to_string(root().join("docker/nats/nats.conf")).unwrap();
    assert_eq!(text(nats, "data.nats.conf"), want, "ConfigMap/nats-nats-conf data.nats.conf");
    let grafana = find(&docs, "ConfigMap", "grafana-provisioning");
    assert_eq!(grafana.get("data").unwrap().keys(), ["datasources_prometheus.yml"]);
    let vol = &find(&docs, "StatefulSet", "grafana").at("spec.template.spec.volumes").unwrap().items()[0];
    let item = &vol.at("configMap.items").unwrap().items()[0];
    assert_eq!((text(item, "key"), text(item, "path")), ("datasources_prometheus.yml", "datasources/prometheus.yml"));
}

#[test]
fn secrets_are_placeholders_or_left_to_exist() {
    let docs = cluster(&cluster_opts());
    let secret = find(&docs, "Secret", "v7-clickhouse-users");
    assert_eq!(text(secret, "stringData.value"), "REPLACE_ME");
    let out = render(&[], docs);
    assert!(out.contains("# kubectl -n v7 create secret generic v7-clickhouse-users --from-file=value=.v7/stacks/v7/secret-files/clickhouse-users"), "{out}");
    let mut existing = cluster_opts();
    existing.existing_secrets = true;
    let docs = cluster(&existing);
    assert!(!docs.iter().any(|d| text(d, "kind") == "Secret"));
    let engine = find(&docs, "Deployment", "analytics-engine");
    let vol =
        engine.at("spec.template.spec.volumes").unwrap().items().iter().find(|v| v.get("secret").is_some()).unwrap();
    assert_eq!(text(vol, "secret.secretName"), "v7-clickhouse-password", "still referenced");
}

#[test]
fn network_policies_keep_the_split() {
    let docs = cluster(&cluster_opts());
    let deny = find(&docs, "NetworkPolicy", "v7-deny-ingress");
    assert_eq!(text(deny, "spec.podSelector.matchLabels.v7.project"), "v7");
    assert!(deny.at("spec.ingress").is_none(), "NetworkPolicy/v7-deny-ingress allows nothing");
    let front = find(&docs, "NetworkPolicy", "v7-network-frontend");
    assert_eq!(text(front, "spec.podSelector.matchLabels.v7.network/frontend"), "true");
    let from = &front.at("spec.ingress").unwrap().items()[0].get("from").unwrap().items()[0];
    assert_eq!(text(from, "podSelector.matchLabels.v7.network/frontend"), "true");
    let web = find(&docs, "Deployment", "web").at("spec.template.metadata.labels").unwrap();
    assert!(
        web.get("v7.network/frontend").is_some() && web.get("v7.network/backend").is_none(),
        "web is frontend only"
    );
    let nats = find(&docs, "StatefulSet", "nats").at("spec.template.metadata.labels").unwrap();
    assert!(nats.get("v7.network/backend").is_some() && nats.get("v7.network/frontend").is_none());
}

#[test]
fn every_pod_template_meets_the_restricted_profile() {
    let docs = cluster(&cluster_opts());
    let mut checked = 0;
    for d in &docs {
        if let Some(spec) = d.at("spec.template.spec") {
            assert_eq!(restricted::violations(spec), Vec::<String>::new(), "{}", id(d));
            let c = &spec.get("containers").unwrap().items()[0];
            assert_eq!(text(c, "securityContext.runAsNonRoot"), "true", "{}", id(d));
            let uid: u32 = text(spec, "securityContext.runAsUser").parse().unwrap();
            assert!(uid > 0, "{}: numeric non-root UID", id(d));
            checked += 1;
        }
    }
    assert_eq!(checked, 7);
    let out = render(&[], docs);
    assert!(
        !out.contains("hostPath")
            && !out.contains("hostPort")
            && !out.contains(":latest")
            && !out.contains("localhost/"),
        "{out}"
    );
}

/// The checker itself, on Pod specs that break one control each.
#[test]
fn the_restricted_check_names_each_broken_control() {
    let good = || {
        let sc = Map::new()
            .kv("allowPrivilegeEscalation", num(false))
            .kv("capabilities", Map::new().kv("drop", strs(["ALL"])).node());
        let c = Map::new().kv("name", s("app")).kv("securityContext", sc.node());
        Map::new()
            .kv(
                "securityContext",
                Map::new()
                    .kv("runAsNonRoot", num(true))
                    .kv("seccompProfile", Map::new().kv("type", s("RuntimeDefault")).node())
                    .node(),
            )
            .kv("containers", Node::Seq(vec![c.node()]))
    };
    assert_eq!(restricted::violations(&good().node()), Vec::<String>::new());
    let with_container = |extra: Vec<(&str, Node)>| {
        let mut sc = Map::new()
            .kv("allowPrivilegeEscalation", num(false))
            .kv("capabilities", Map::new().kv("drop", strs(["ALL"])).node());
        let mut c = Map::new().kv("name", s("app"));
        for (k, v) in extra {
            if let Some(k) = k.strip_prefix("sc.") {
                sc.0.retain(|e| !matches!(e, crate::export::yaml::Entry::Kv(key, _) if key == k));
                sc.put(k, v);
            } else {
                c.put(k, v);
            }
        }
        c.put("securityContext", sc.node());
        let mut spec = good();
        spec.0.retain(|e| !matches!(e, crate::export::yaml::Entry::Kv(key, _) if key == "containers"));
        spec.put("containers", Node::Seq(vec![c.node()]));
        spec.node()
    };
    let cases: Vec<(Node, &str)> = vec![
        (
            with_container(vec![("sc.allowPrivilegeEscalation", num(true))]),
            "spec.containers[app].securityContext.allowPrivilegeEscalation: must be false",
        ),
        (
            with_container(vec![("sc.capabilities", Map::new().kv("drop", strs(["NET_RAW"])).node())]),
            "capabilities.drop: must contain ALL",
        ),
        (
            with_container(vec![(
                "sc.capabilities",
                Map::new().kv("drop", strs(["ALL"])).kv("add", strs(["SYS_ADMIN"])).node(),
            )]),
            "only NET_BIND_SERVICE may be added",
        ),
        (with_container(vec![("sc.privileged", num(true))]), "privileged: must be unset or false"),
        (with_container(vec![("sc.runAsUser", num(0))]), "runAsUser: must not be 0"),
        (with_container(vec![("sc.runAsNonRoot", num(false))]), "runAsNonRoot: must not be false"),
        (
            with_container(vec![("sc.seccompProfile", Map::new().kv("type", s("Unconfined")).node())]),
            "seccompProfile.type: must not be Unconfined",
        ),
        (
            with_container(vec![(
                "ports",
                Node::Seq(vec![Map::new().kv("containerPort", num(80)).kv("hostPort", num(80)).node()]),
            )]),
            "hostPort: must be unset or 0",
        ),
        (with_container(vec![("sc.procMount", s("Unmasked"))]), "procMount"),
    ];
    for (spec, want) in cases {
        let v = restricted::violations(&spec);
        assert!(v.iter().any(|x| x.contains(want)), "{want:?} not in {v:?}");
    }
    let mut host = good();
    host.put("hostNetwork", num(true));
    host.put(
        "volumes",
        Node::Seq(vec![Map::new().kv("name", s("h")).kv("hostPath", Map::new().kv("path", s("/")).node()).node()]),
    );
    let v = restricted::violations(&host.node());
    assert!(v.iter().any(|x| x.starts_with("spec.hostNetwork:")), "{v:?}");
    assert!(v.iter().any(|x| x.starts_with("spec.volumes[h].hostPath: volume type not allowed")), "{v:?}");
    let mut no_pod_sc = good();
    no_pod_sc.0.retain(|e| !matches!(e, crate::export::yaml::Entry::Kv(key, _) if key == "securityContext"));
    let v = restricted::violations(&no_pod_sc.node());
    assert!(v.iter().any(|x| x.contains("runAsNonRoot: must be true here or in spec.securityContext")), "{v:?}");
    assert!(v.iter().any(|x| x.contains("seccompProfile.type: must be RuntimeDefault or Localhost")), "{v:?}");
}

#[test]
fn images_need_a_registry_and_a_pinned_tag() {
    let stack = repo_stack();
    let mut o = cluster_opts();
    o.registry = Some("registry.example.com/team/".into());
    assert_eq!(image(&stack, "web", "x", &o).unwrap(), "registry.example.com/team/web:abc1234");
    assert_eq!(image(&stack, "nats", "x", &o).unwrap(), "docker.io/library/nats:2.10-alpine");
    o.tag = "latest".into();
    let err = image(&stack, "web", "x", &o).unwrap_err().to_string();
    assert!(err.starts_with("kube: --tag \"latest\":") && err.contains("hint:"), "{err}");
    o.tag = "abc".into();
    o.registry = Some("localhost/v7".into());
    assert!(image(&stack, "web", "x", &o).unwrap_err().to_string().contains("localhost"));
    let text = "[project]\nname = \"v7\"\n[services.cache]\nimage = \"docker.io/library/redis:latest\"\n";
    let s = Stack::parse("docker/stack.toml", text).unwrap();
    let err = image(&s, "cache", "x", &cluster_opts()).unwrap_err().to_string();
    assert!(
        err.contains("services.cache.image = \"docker.io/library/redis:latest\"") && err.contains("hint: pin"),
        "{err}"
    );
    let err = model(&s, &root(), &cluster_opts(), &Files::new()).unwrap_err().to_string();
    assert!(err.contains("services.cache.image"), "{err}");
    let mut bad = cluster_opts();
    bad.namespace = "V7_Prod".into();
    let err = model(&stack, &root(), &bad, &Files::new()).unwrap_err().to_string();
    assert!(err.starts_with("kube: --namespace \"V7_Prod\": not a DNS label") && err.contains("hint:"), "{err}");
    let mut bad = cluster_opts();
    bad.storage_class = Some("fast ssd".into());
    let err = model(&stack, &root(), &bad, &Files::new()).unwrap_err().to_string();
    assert!(err.starts_with("kube: --storage-class \"fast ssd\"") && err.contains("hint:"), "{err}");
    let mut free = cluster_opts();
    free.mode = Mode::RegistryFree;
    let err = model(&stack, &root(), &free, &Files::new()).unwrap_err().to_string();
    assert!(err.contains("--target podman --registry-free"), "{err}");
    let text = "[project]\nname = \"v7\"\n[services.cache]\nimage = \"docker.io/library/redis:7.2\"\n";
    let s = Stack::parse("docker/stack.toml", text).unwrap();
    let err = model(&s, &root(), &cluster_opts(), &Files::new()).unwrap_err().to_string();
    assert!(err.starts_with("kube: services.cache: no numeric UID known") && err.contains("hint:"), "{err}");
}

#[test]
fn podman_target_shape() {
    let stack = repo_stack();
    let opts = Options::podman(Mode::RegistryFree);
    let (head, docs) = model(&stack, Path::new("/repo"), &opts, &Files::new()).unwrap();
    assert!(head.iter().any(|l| l.contains("podman kube play --network v7-kube")), "{head:?}");
    let ids: Vec<String> = docs.iter().map(id).collect();
    assert_eq!(
        ids,
        [
            "PersistentVolumeClaim/v7-kube-clickhouse-data",
            "PersistentVolumeClaim/v7-kube-clickhouse-logs",
            "PersistentVolumeClaim/v7-kube-nats-data",
            "PersistentVolumeClaim/v7-kube-prometheus-data",
            "Pod/clickhouse",
            "Pod/nats",
            "Pod/analytics-engine",
            "Pod/backend",
            "Pod/prometheus",
            "Pod/web",
        ]
    );
    let web = find(&docs, "Pod", "web");
    assert_eq!(web.at("metadata.labels").unwrap().keys(), ["v7.kube.project", "v7.kube.service"], "Pod/web labels");
    let out = render(&[], docs.clone());
    assert!(
        !out.contains("v7.project"),
        "podman copies labels onto what it makes; deploy and down list by v7.project:\n{out}"
    );
    let c = container(&docs, "Pod", "web");
    assert_eq!(text(c, "image"), "localhost/v7-registry-free/web:latest");
    let probe: Vec<&str> = c.at("livenessProbe.exec.command").unwrap().items().iter().filter_map(Node::text).collect();
    assert_eq!(
        probe,
        ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:3000/healthz"],
        "Pod/web livenessProbe: exec"
    );
    assert!(c.at("readinessProbe.httpGet").is_none(), "podman turns httpGet into curl");
    let port = &c.get("ports").unwrap().items()[0];
    assert_eq!(
        (text(port, "hostPort"), text(port, "hostIP"), text(port, "containerPort")),
        ("5173", "127.0.0.1", "3000")
    );
    let pod = find(&docs, "Pod", "clickhouse").get("spec").unwrap();
    assert_eq!(text(pod, "securityContext.runAsUser"), "100", "the registry-free image's clickhouse user");
    let vols = pod.get("volumes").unwrap().items();
    let v: Vec<(&str, &str)> = vols
        .iter()
        .map(|v| {
            (
                text(v, "name"),
                v.at("persistentVolumeClaim.claimName")
                    .or(v.at("hostPath.path"))
                    .or(v.at("emptyDir"))
                    .and_then(Node::text)
                    .unwrap_or("{}"),
            )
        })
        .collect();
    assert_eq!(
        v,
        [
            ("clickhouse-data", "v7-kube-clickhouse-data"),
            ("clickhouse-logs", "v7-kube-clickhouse-logs"),
            ("conf-listen-xml", "/repo/docker/clickhouse/listen.xml"),
            ("secret-clickhouse-users", "/repo/.v7/stacks/v7/secret-files/clickhouse-users"),
            ("writable-tmp", "{}"),
        ]
    );
}

#[test]
fn bind_mounts_are_config_maps_on_a_cluster_and_host_paths_on_podman() {
    let dir = crate::util::fs::TempDir::create(&std::env::temp_dir(), "v7-xtask-kube").unwrap();
    std::fs::create_dir_all(dir.path().join("conf.d/sub")).unwrap();
    std::fs::write(dir.path().join("app.conf"), "listen 80;\n").unwrap();
    std::fs::write(dir.path().join("conf.d/b.conf"), "b\n").unwrap();
    std::fs::write(dir.path().join("conf.d/sub/a.conf"), "a\n").unwrap();
    let toml = r#"
[project]
name = "v7"
[services.web]
image = "docker.io/library/nginx:1.25"
volumes = ["./app.conf:/etc/app.conf:ro", "./conf.d:/etc/conf.d", "./absent:/absent"]
"#;
    let stack = Stack::parse("docker/stack.toml", toml).unwrap();
    let (_, docs) = model(&stack, dir.path(), &Options::podman(Mode::Registry), &Files::new()).unwrap();
    let vols = find(&docs, "Pod", "web").at("spec.volumes").unwrap().items();
    let root = dir.path().display();
    let host: Vec<(String, Option<&str>)> = vols[..3]
        .iter()
        .map(|v| (text(v, "hostPath.path").to_string(), v.at("hostPath.type").and_then(Node::text)))
        .collect();
    assert_eq!(
        host,
        [
            (format!("{root}/app.conf"), Some("File")),
            (format!("{root}/conf.d"), Some("Directory")),
            (format!("{root}/absent"), None),
        ],
        "Pod/web spec.volumes[].hostPath: no type for a path that is not there"
    );
    let err = read_files(&stack, dir.path(), Mode::Registry).unwrap_err().to_string();
    assert!(
        err.starts_with("kube: services.web.volumes: cannot read") && err.contains("absent") && err.contains("hint:"),
        "{err}"
    );
    let toml = toml.replace(", \"./absent:/absent\"", "");
    let stack = Stack::parse("docker/stack.toml", &toml).unwrap();
    let files = read_files(&stack, dir.path(), Mode::Registry).unwrap();
    assert_eq!(
        files[&format!("{root}/conf.d")],
        Source::Dir(vec![("b.conf".into(), "b\n".into()), ("sub/a.conf".into(), "a\n".into())]),
        "a directory's files, sorted, by path inside it"
    );
    let (_, docs) = model(&stack, dir.path(), &cluster_opts(), &files).unwrap();
    let cm = find(&docs, "ConfigMap", "web-conf-d");
    assert_eq!(cm.get("data").unwrap().keys(), ["b.conf", "sub_a.conf"]);
    assert_eq!(text(cm, "data.b.conf"), "b\n");
    let c = container(&docs, "Deployment", "web");
    let m = &c.get("volumeMounts").unwrap().items()[0];
    assert_eq!((text(m, "mountPath"), text(m, "subPath")), ("/etc/app.conf", "app.conf"), "a file by subPath");
    let items = find(&docs, "Deployment", "web").at("spec.template.spec.volumes").unwrap().items()[1]
        .at("configMap.items")
        .unwrap()
        .items();
    assert_eq!(text(&items[1], "path"), "sub/a.conf");
}

//! The Pod Security Standards' "restricted" profile (which includes "baseline"), checked field
//! by field on a Pod spec, as written in
//! <https://kubernetes.io/docs/concepts/security/pod-security-standards/> (policy version
//! latest, i.e. including the v1.23+ `runAsUser` control and the v1.25+ seccomp and capability
//! rules). The export refuses to print a cluster manifest whose Pod template breaks one; the
//! tests run it on every template. Each violation names the field and what the profile allows.

use crate::export::yaml::Node;

/// The volume types the restricted profile allows.
const VOLUME_TYPES: &[&str] =
    &["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

/// The sysctls baseline allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

fn is_true(node: Option<&Node>) -> bool {
    node.and_then(Node::text) == Some("true")
}

/// Every way `spec` (a Pod spec, or a Pod template's spec) breaks the restricted profile, as
/// `field: what is wrong`; empty when it meets it.
pub fn violations(spec: &Node) -> Vec<String> {
    let mut v = Vec::new();
    let mut bad = |field: &str, why: &str| v.push(format!("{field}: {why}"));
    // Baseline: host namespaces.
    for f in ["hostNetwork", "hostPID", "hostIPC"] {
        if is_true(spec.get(f)) {
            bad(&format!("spec.{f}"), "must be unset or false (Host Namespaces)");
        }
    }
    let pod_sc = spec.get("securityContext");
    let pod = |key: &str| pod_sc.and_then(|sc| sc.at(key));
    // Baseline: sysctls.
    for s in pod("sysctls").map(Node::items).unwrap_or_default() {
        let name = s.get("name").and_then(Node::text).unwrap_or("");
        if !SAFE_SYSCTLS.contains(&name) {
            bad("spec.securityContext.sysctls[].name", &format!("{name:?} is not a safe sysctl (Sysctls)"));
        }
    }
    // Restricted: volume types (baseline forbids hostPath, restricted allows only these).
    for vol in spec.get("volumes").map(Node::items).unwrap_or_default() {
        let name = vol.get("name").and_then(Node::text).unwrap_or("?");
        for key in vol.keys().into_iter().filter(|k| *k != "name") {
            if !VOLUME_TYPES.contains(&key) {
                bad(&format!("spec.volumes[{name}].{key}"), "volume type not allowed (Volume Types, HostPath Volumes)");
            }
        }
    }
    check_security_context(pod_sc, "spec.securityContext", &mut bad);
    let pod_non_root = is_true(pod("runAsNonRoot"));
    let pod_seccomp = pod("seccompProfile.type").and_then(Node::text);
    let mut containers = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec.get(list).map(Node::items).unwrap_or_default() {
            containers.push((list, c));
        }
    }
    if containers.is_empty() {
        bad("spec.containers", "no container");
    }
    for (list, c) in containers {
        let cname = c.get("name").and_then(Node::text).unwrap_or("?");
        let at = format!("spec.{list}[{cname}]");
        let sc = c.get("securityContext");
        let get = |key: &str| sc.and_then(|sc| sc.at(key));
        check_security_context(sc, &format!("{at}.securityContext"), &mut bad);
        for p in c.get("ports").map(Node::items).unwrap_or_default() {
            if p.get("hostPort").and_then(Node::text).is_some_and(|h| h != "0") {
                bad(&format!("{at}.ports[].hostPort"), "must be unset or 0 (Host Ports)");
            }
        }
        if is_true(get("privileged")) {
            bad(&format!("{at}.securityContext.privileged"), "must be unset or false (Privileged Containers)");
        }
        if get("allowPrivilegeEscalation").and_then(Node::text) != Some("false") {
            bad(&format!("{at}.securityContext.allowPrivilegeEscalation"), "must be false (Privilege Escalation)");
        }
        match get("runAsNonRoot").and_then(Node::text) {
            Some("false") => {
                bad(&format!("{at}.securityContext.runAsNonRoot"), "must not be false (Running as Non-root)")
            }
            None if !pod_non_root => bad(
                &format!("{at}.securityContext.runAsNonRoot"),
                "must be true here or in spec.securityContext (Running as Non-root)",
            ),
            _ => {}
        }
        let seccomp = get("seccompProfile.type").and_then(Node::text).or(pod_seccomp);
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            bad(
                &format!("{at}.securityContext.seccompProfile.type"),
                "must be RuntimeDefault or Localhost here or in spec.securityContext (Seccomp)",
            );
        }
        let drop = get("capabilities.drop").map(Node::items).unwrap_or_default();
        if !drop.iter().any(|d| d.text() == Some("ALL")) {
            bad(&format!("{at}.securityContext.capabilities.drop"), "must contain ALL (Capabilities)");
        }
        for add in get("capabilities.add").map(Node::items).unwrap_or_default() {
            if add.text() != Some("NET_BIND_SERVICE") {
                bad(
                    &format!("{at}.securityContext.capabilities.add"),
                    "only NET_BIND_SERVICE may be added (Capabilities)",
                );
            }
        }
        if get("procMount").and_then(Node::text).is_some_and(|p| p != "Default") {
            bad(&format!("{at}.securityContext.procMount"), "must be unset or Default (/proc Mount Type)");
        }
    }
    v
}

/// The controls a Pod's and a container's securityContext share: runAsUser not 0, seccomp not
/// Unconfined, Windows hostProcess, AppArmor and SELinux within baseline.
fn check_security_context(sc: Option<&Node>, at: &str, bad: &mut impl FnMut(&str, &str)) {
    let Some(sc) = sc else { return };
    if sc.at("runAsUser").and_then(Node::text) == Some("0") {
        bad(&format!("{at}.runAsUser"), "must not be 0 (Running as Non-root user)");
    }
    if sc.at("seccompProfile.type").and_then(Node::text) == Some("Unconfined") {
        bad(&format!("{at}.seccompProfile.type"), "must not be Unconfined (Seccomp)");
    }
    if is_true(sc.at("windowsOptions.hostProcess")) {
        bad(&format!("{at}.windowsOptions.hostProcess"), "must be unset or false (HostProcess)");
    }
    if sc.at("appArmorProfile.type").and_then(Node::text).is_some_and(|t| !["RuntimeDefault", "Localhost"].contains(&t))
    {
        bad(&format!("{at}.appArmorProfile.type"), "must be RuntimeDefault or Localhost (AppArmor)");
    }
    let se_type = sc.at("seLinuxOptions.type").and_then(Node::text);
    if se_type
        .is_some_and(|t| !["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"].contains(&t))
    {
        bad(&format!("{at}.seLinuxOptions.type"), "must be unset or a container_* type (SELinux)");
    }
    for key in ["user", "role"] {
        if sc.at(&format!("seLinuxOptions.{key}")).and_then(Node::text).is_some_and(|t| !t.is_empty()) {
            bad(&format!("{at}.seLinuxOptions.{key}"), "must be unset (SELinux)");
        }
    }
}

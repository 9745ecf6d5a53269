//! The record's `resource`: who produced it. The Downward API variables (in Kubernetes only),
//! the variables `[resource_env]` names, the host name, then the config's own `[resource]`.

use std::collections::BTreeMap;

/// Downward API variables read by default, and the resource key each one fills.
pub const DOWNWARD_API_ENV: &[(&str, &str)] = &[
    ("POD_NAME", "k8s.pod.name"),
    ("POD_NAMESPACE", "k8s.namespace.name"),
    ("POD_UID", "k8s.pod.uid"),
    ("NODE_NAME", "k8s.node.name"),
    ("CONTAINER_NAME", "k8s.container.name"),
];

/// The resource every record carries, from the config's `[resource_env]` and `[resource]`
/// and the environment `env`.
pub(super) fn resolve(
    resource_env_config: &BTreeMap<String, String>,
    resource_config: &BTreeMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut resource = BTreeMap::new();
    // The Downward API defaults only in Kubernetes: on a host, a POD_NAME or NODE_NAME in the
    // environment describes something else. Variables named in [resource_env] are always read.
    let set = |var: &str| env(var).is_some_and(|v| !v.is_empty());
    let in_kubernetes = set("KUBERNETES_SERVICE_HOST") || set("POD_NAME");
    let mut resource_env: BTreeMap<String, String> = DOWNWARD_API_ENV
        .iter()
        .filter(|_| in_kubernetes)
        .map(|(var, key)| ((*key).to_owned(), (*var).to_owned()))
        .collect();
    resource_env.extend(resource_env_config.clone());
    for (key, var) in &resource_env {
        if var.is_empty() {
            continue;
        }
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            resource.insert(key.clone(), v);
        }
    }
    // Shells set HOSTNAME without exporting it, and systemd does not set it: ask the kernel.
    if let Some(h) = env("HOSTNAME").filter(|v| !v.is_empty()).or_else(system_hostname) {
        resource.insert("host.name".to_owned(), h);
    }
    resource.extend(resource_config.clone());
    resource
}

/// The kernel's host name (what `gethostname(2)` returns), `None` if it is empty or not
/// UTF-8. Read from procfs rather than through libc: the crate forbids `unsafe`, and the
/// agent runs on Linux only (inotify).
pub fn system_hostname() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = text.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

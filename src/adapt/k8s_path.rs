//! Kubernetes metadata read off a log file's path, for the node-mode agent (a DaemonSet
//! tailing every container's log): the kubelet names the files so that the path alone says
//! whose log it is, and the agent needs no API server access to label records.
//!
//! - `/var/log/pods/<namespace>_<pod>_<pod-uid>/<container>/<restart>.log` (the kubelet's own
//!   layout, what `cri` files live in), and the names the kubelet rotates it to
//!   (`0.log.20250219-233547`, later gzipped);
//! - `/var/log/containers/<pod>_<namespace>_<container>-<container-id>.log` (the symlinks the
//!   kubelet keeps to them).
//!
//! Namespace and pod names are DNS labels/subdomains, which cannot hold `_`, so splitting on
//! `_` is unambiguous. Anything else is not a Kubernetes log path (`None`).
//!
//! Only those absolute paths: the kubelet writes there, and a pod cannot. A path that merely
//! ends the same way (`/var/log/app/pods/kube-system_…/…/0.log` in an app's own volume, or
//! the app's `emptyDir` mounted at the sidecar's `/var/log`) is something an app can create,
//! so whether to believe these paths at all is the config's `kubernetes_metadata`, on only in
//! node mode.

/// Who wrote a container log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLog<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    /// Only in the `/var/log/pods` layout.
    pub pod_uid: Option<&'a str>,
    pub container: &'a str,
    /// Only in the `/var/log/containers` layout.
    pub container_id: Option<&'a str>,
}

impl<'a> PodLog<'a> {
    /// As the record's `resource` attributes (OpenTelemetry names).
    pub fn attributes(&self) -> Vec<(&'static str, &'a str)> {
        let mut v = vec![
            ("k8s.namespace.name", self.namespace),
            ("k8s.pod.name", self.pod),
            ("k8s.container.name", self.container),
        ];
        if let Some(uid) = self.pod_uid {
            v.push(("k8s.pod.uid", uid));
        }
        if let Some(id) = self.container_id {
            v.push(("container.id", id));
        }
        v
    }
}

/// The pod and container `path` is the log of, if it has one of the kubelet's layouts.
pub fn parse(path: &str) -> Option<PodLog<'_>> {
    let rest = path.strip_prefix("/var/log/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return None;
    }
    let n = parts.len();
    // /var/log/pods/<ns>_<pod>_<uid>/<container>/<N>.log
    if n == 4 && parts[0] == "pods" && is_kubelet_log_name(parts[n - 1]) {
        let mut it = parts[n - 3].split('_');
        let (namespace, pod, uid) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || [namespace, pod, uid, parts[n - 2]].iter().any(|s| s.is_empty()) {
            return None;
        }
        return Some(PodLog {
            namespace,
            pod,
            pod_uid: Some(uid),
            container: parts[n - 2],
            container_id: None,
        });
    }
    // /var/log/containers/<pod>_<ns>_<container>-<id>.log
    if n == 2 && parts[0] == "containers" {
        let name = parts[n - 1].strip_suffix(".log")?;
        let mut it = name.split('_');
        let (pod, namespace, rest) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        let (container, id) = rest.rsplit_once('-')?;
        if [pod, namespace, container, id].iter().any(|s| s.is_empty()) {
            return None;
        }
        return Some(PodLog {
            namespace,
            pod,
            pod_uid: None,
            container,
            container_id: Some(id),
        });
    }
    None
}

/// `<N>.log`, or a file the kubelet rotated it to: `<N>.log.<YYYYMMDD-hhmmss>`, gzipped as
/// `….gz` from the second rotation on. Anything else in a container's directory is not its log.
fn is_kubelet_log_name(name: &str) -> bool {
    let Some((_, rotated)) = name.split_once(".log") else {
        return false;
    };
    if rotated.is_empty() {
        return true;
    }
    let Some(stamp) = rotated.strip_prefix('.') else {
        return false;
    };
    let stamp = stamp.strip_suffix(".gz").unwrap_or(stamp);
    !stamp.is_empty() && stamp.bytes().all(|c| c.is_ascii_digit() || c == b'-')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn pods_layout() {
        let p = parse("/var/log/pods/shop_web-7d9f8-abcde_0f1e2d3c-aaaa-bbbb-cccc-1234567890ab/nginx/0.log").unwrap();
        assert_eq!(p.namespace, "shop");
        assert_eq!(p.pod, "web-7d9f8-abcde");
        assert_eq!(p.pod_uid, Some("0f1e2d3c-aaaa-bbbb-cccc-1234567890ab"));
        assert_eq!(p.container, "nginx");
        assert_eq!(
            p.attributes(),
            vec![
                ("k8s.namespace.name", "shop"),
                ("k8s.pod.name", "web-7d9f8-abcde"),
                ("k8s.container.name", "nginx"),
                ("k8s.pod.uid", "0f1e2d3c-aaaa-bbbb-cccc-1234567890ab"),
            ]
        );
        // Files the kubelet rotated are the same container's.
        let rotated = parse("/var/log/pods/kube-system_coredns-668d6bf9bc-m8jv9_9f5b2bdd-3c4e-4c24-9c59-2b8e0f6f7c5a/coredns/0.log.20250219-233547").unwrap();
        assert_eq!(
            (rotated.namespace, rotated.pod, rotated.container),
            ("kube-system", "coredns-668d6bf9bc-m8jv9", "coredns")
        );
        assert!(parse("/var/log/pods/a_b_c/app/0.log.20261125-120000.gz").is_some());
        for name in ["0.log.tmp", "0.logx", "0.log.", "0.log.2026.bak", "0.txt"] {
            assert_eq!(parse(&format!("/var/log/pods/a_b_c/app/{name}")), None, "{name}");
        }
        assert_eq!(parse("/var/log/pods/a_b_c/app/3.log").unwrap().container, "app");
    }

    #[test]
    fn only_the_kubelets_absolute_paths() {
        for path in [
            "/host/var/log/pods/a_b_c/app/3.log",
            "/tmp/x/logs/pods/kube-system_kube-apiserver-node1_u1/kube-apiserver/0.log",
            "var/log/pods/a_b_c/app/0.log",
            "/var/log/app/pods/a_b_c/app/0.log",
            "/var/log/pods/a_b_c/app/x/0.log",
            "/var/log/pods/../pods/a_b_c/app/0.log",
            "/var/log//pods/a_b_c/app/0.log",
            "/var/log/pods/a_b_c/../0.log",
            "/srv/var/log/containers/web-1_shop_nginx-4f5e6d.log",
            "/var/log/containers/sub/web-1_shop_nginx-4f5e6d.log",
        ] {
            assert_eq!(parse(path), None, "{path}");
        }
    }

    #[test]
    fn containers_layout() {
        let p = parse("/var/log/containers/web-1_shop_nginx-4f5e6d.log").unwrap();
        assert_eq!((p.pod, p.namespace, p.container), ("web-1", "shop", "nginx"));
        assert_eq!(p.container_id, Some("4f5e6d"));
        assert_eq!(p.pod_uid, None);
    }

    #[test]
    fn other_paths_are_not_pods() {
        for path in [
            "/var/log/app.log",
            "/var/log/pods/a_b/app/0.log",
            "/var/log/pods/a_b_c_d/app/0.log",
            "/var/log/pods/__/app/0.log",
            "/var/log/containers/nounderscore.log",
            "/var/log/containers/a_b_c.log",
            "",
            "/",
        ] {
            assert_eq!(parse(path), None, "{path}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }
    }
}

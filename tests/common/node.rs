//! The test control plane's real node: containerd, kubelet, controller-manager and scheduler
//! started by `hack/envtest.sh start --node`, with the images `make image-tars` wrote imported.
//!
//! The kubelet will not publish a loopback node address, so the API server cannot reach it:
//! `kubectl logs` and `exec` do not work on this node. Tests read what the node itself holds
//! instead: the Pod's log file under /var/log/pods, the files the kubelet mounted for it, and
//! its process in /proc.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};

/// The images a node test runs; `make image-tars` writes them.
const IMAGES: [&str; 3] = ["pause", "keyward", "license-watcher"];

pub fn images_dir() -> PathBuf {
    std::env::var_os("KEYWARD_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::repo_root().join("target/images"))
}

/// Whether this machine can run the node, or the reason it cannot.
pub fn can_run() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("the node needs Linux (containerd, runc, cgroups)".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the node needs root (the kubelet mounts volumes, runc makes containers)".into());
    }
    for image in IMAGES {
        let tar = images_dir().join(format!("{image}.tar"));
        if !tar.exists() {
            return Err(format!(
                "no {}: run `make image-tars` (`make test` does)",
                tar.display()
            ));
        }
    }
    Ok(())
}

/// The node of this test binary's control plane.
pub struct Node {
    pub dir: PathBuf,
}

/// The node, or a recorded skip with the reason it cannot run here.
pub fn start(test: &str) -> Option<Node> {
    let env = super::env_with_node();
    match (&env.node, &env.dir) {
        (Ok(()), Some(dir)) => Some(Node { dir: dir.clone() }),
        (Err(reason), _) => {
            super::skip(test, reason);
            None
        }
        (Ok(()), None) => unreachable!("a node is only started with a private control plane"),
    }
}

/// The reference an image was tagged with (`target/images/NAME.ref`).
pub fn image_ref(name: &str) -> (String, String) {
    let path = images_dir().join(format!("{name}.ref"));
    let reference = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (repository, tag) = reference
        .trim()
        .rsplit_once(':')
        .expect("an image reference with a tag");
    (repository.to_string(), tag.to_string())
}

impl Node {
    pub fn apiserver_port(&self) -> String {
        std::fs::read_to_string(self.dir.join("apiserver.port"))
            .expect("apiserver.port")
            .trim()
            .to_string()
    }

    /// The messages a container of a Pod wrote, in order, from the kubelet's CRI log files.
    pub fn pod_log(&self, pod: &Pod, container: &str) -> String {
        let meta = &pod.metadata;
        let dir = Path::new("/var/log/pods")
            .join(format!(
                "{}_{}_{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
                meta.uid.as_deref().unwrap_or_default()
            ))
            .join(container);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|text| text.lines().map(cri_message).collect::<Vec<_>>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The file `key` of the Secret volume `volume` as the kubelet mounted it for the Pod.
    pub fn mounted_secret(&self, pod: &Pod, volume: &str, key: &str) -> Option<Vec<u8>> {
        let uid = pod.metadata.uid.as_deref()?;
        std::fs::read(
            self.dir
                .join("node/kubelet/pods")
                .join(uid)
                .join("volumes/kubernetes.io~secret")
                .join(volume)
                .join(key),
        )
        .ok()
    }

    /// The host pid of a running container (`status.containerStatuses[].containerID`).
    pub fn container_pid(&self, container_id: &str) -> Option<u32> {
        let id = container_id.strip_prefix("containerd://")?;
        let pid = self
            .dir
            .join("node/containerd/state/io.containerd.runtime.v2.task/k8s.io")
            .join(id)
            .join("init.pid");
        std::fs::read_to_string(pid).ok()?.trim().parse().ok()
    }
}

/// A CRI log line is `TIMESTAMP STREAM TAG MESSAGE`.
fn cri_message(line: &str) -> String {
    line.splitn(4, ' ').nth(3).unwrap_or_default().to_string()
}

/// The effective user id of a process.
pub fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether a process's root filesystem is mounted read-only, as it sees it.
pub fn root_is_read_only(pid: u32) -> Option<bool> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    let root = info.lines().find(|l| l.split(' ').nth(4) == Some("/"))?;
    Some(root.split(' ').nth(5)?.split(',').any(|o| o == "ro"))
}

/// The Running, Ready Pods matching `selector`, once there are `count` of them.
pub async fn ready_pods(client: &Client, namespace: &str, selector: &str, count: usize) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    super::eventually(
        &format!("{count} ready Pods {selector} in {namespace}"),
        Duration::from_secs(120),
        || async {
            let list = pods.list(&ListParams::default().labels(selector)).await.ok()?;
            let ready: Vec<Pod> = list.items.into_iter().filter(is_ready).collect();
            (ready.len() == count).then_some(ready)
        },
    )
    .await
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The sum of the restart counts of a Pod's containers.
pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|c| c.iter().map(|c| c.restart_count).sum())
        .unwrap_or_default()
}

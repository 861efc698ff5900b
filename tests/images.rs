//! The engine-free image tars (`make image-tars`) are the images the Dockerfile describes: same
//! user, entrypoint, arguments and binary path, nothing but the binary and the distroless basics,
//! and a binary that runs on its own.

mod common;

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::Value;

/// What a Dockerfile stage says about the image it makes.
#[derive(Debug, Default)]
struct Stage {
    user: Option<String>,
    entrypoint: Option<Value>,
    cmd: Option<Value>,
    copied_to: Vec<String>,
}

fn dockerfile_stages() -> BTreeMap<String, Stage> {
    let text = std::fs::read_to_string(common::repo_root().join("Dockerfile")).unwrap();
    let mut stages = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        match instruction {
            "FROM" => {
                let name = rest.rsplit_once(" AS ").map(|(_, n)| n.trim().to_string());
                current = name.clone();
                if let Some(name) = name {
                    stages.insert(name, Stage::default());
                }
            }
            "USER" | "ENTRYPOINT" | "CMD" | "COPY" => {
                let Some(stage) = current.as_ref().and_then(|c| stages.get_mut(c)) else {
                    continue;
                };
                match instruction {
                    "USER" => stage.user = Some(rest.to_string()),
                    "ENTRYPOINT" => stage.entrypoint = Some(serde_json::from_str(rest).unwrap()),
                    "CMD" => stage.cmd = Some(serde_json::from_str(rest).unwrap()),
                    _ => stage.copied_to.push(rest.rsplit(' ').next().unwrap().to_string()),
                }
            }
            _ => {}
        }
    }
    stages
}

/// An image tar's files by name.
fn tar_files(bytes: &[u8]) -> BTreeMap<String, (u32, u64, Vec<u8>)> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let (mode, uid) = (e.header().mode().unwrap(), e.header().uid().unwrap());
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (path.trim_end_matches('/').to_string(), (mode, uid, data))
        })
        .collect()
}

struct Image {
    config: Value,
    layer: BTreeMap<String, (u32, u64, Vec<u8>)>,
}

fn image(name: &str) -> Option<Image> {
    let path = common::node::images_dir().join(format!("{name}.tar"));
    let bytes = std::fs::read(&path).ok()?;
    let files = tar_files(&bytes);
    let manifest: Value = serde_json::from_slice(&files["manifest.json"].2).unwrap();
    let config: Value = serde_json::from_slice(&files[manifest[0]["Config"].as_str().unwrap()].2).unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one layer");
    let layer = tar_files(&files[layers[0].as_str().unwrap()].2);
    let index: Value = serde_json::from_slice(&files["index.json"].2).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"], manifest[0]["RepoTags"][0],
        "the OCI index and Docker's manifest name the same image"
    );
    Some(Image { config, layer })
}

fn check_against_dockerfile(name: &str, binary_args: &[&str]) {
    let Some(image) = image(name) else {
        common::skip(
            &format!("{name}_image_matches_the_dockerfile"),
            "no image tars: run `make image-tars`",
        );
        return;
    };
    let stages = dockerfile_stages();
    let stage = stages.get(name).unwrap_or_else(|| panic!("no Dockerfile stage {name}"));
    let config = &image.config["config"];
    assert_eq!(config["User"].as_str(), stage.user.as_deref(), "{name}: user");
    assert_eq!(
        Some(&config["Entrypoint"]),
        stage.entrypoint.as_ref(),
        "{name}: entrypoint"
    );
    assert_eq!(
        config.get("Cmd").filter(|c| !c.is_null()),
        stage.cmd.as_ref(),
        "{name}: arguments"
    );
    let binary = stage.copied_to[0].trim_start_matches('/');
    let (mode, owner, data) = image.layer.get(binary).unwrap_or_else(|| panic!("{name}: no {binary}"));
    assert_eq!(
        (mode & 0o111 != 0, *owner),
        (true, 0),
        "{name}: the binary is executable, owned by root"
    );
    assert!(!image.layer.contains_key("bin/sh"), "{name}: no shell");
    let passwd = String::from_utf8(image.layer["etc/passwd"].2.clone()).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{name}: the nonroot user");
    assert_eq!(image.layer["tmp"].0 & 0o7777, 0o1777, "{name}: /tmp like distroless");

    // The binary runs on its own: static, nothing from the host's libraries.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("binary");
    std::fs::write(&path, data).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&path)
        .args(binary_args)
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn keyward_image_matches_the_dockerfile() {
    check_against_dockerfile("keyward", &["--version"]);
}

#[test]
fn license_watcher_image_matches_the_dockerfile() {
    check_against_dockerfile("license-watcher", &["--help"]);
}

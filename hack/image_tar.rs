//! Writes a container image as a tar without a container engine or a registry: one layer holding a
//! static binary and the few files a distroless `nonroot` base brings (`/etc/passwd`, `/etc/group`,
//! `/tmp`, `/home/nonroot`). The tar is an OCI image layout that also carries Docker's
//! `manifest.json`, so `ctr images import`, `docker load` and `podman load` all read it.
//!
//!     cargo run --example image-tar -- --image keyward --binary target/.../keyward \
//!         --tag ghcr.io/keyward/keyward:0.1.0 --out keyward.tar
//!
//! The images it knows are the Dockerfile's stages (a test checks that both agree) and the node's
//! pause image.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, RootFsBuilder, Sha256Digest,
};
use sha2::{Digest, Sha256};

#[derive(Parser)]
struct Args {
    /// Which image to write.
    #[arg(long, value_enum)]
    image: Image,
    /// The static binary to put in it.
    #[arg(long)]
    binary: PathBuf,
    /// The image reference it is imported as.
    #[arg(long)]
    tag: String,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum Image {
    Keyward,
    LicenseWatcher,
    Pause,
}

/// What the image runs, as the Dockerfile's stage (or upstream's pause image) says it.
struct Spec {
    path: &'static str,
    user: &'static str,
    entrypoint: &'static [&'static str],
    cmd: &'static [&'static str],
    distroless_files: bool,
}

impl Image {
    fn spec(self) -> Spec {
        match self {
            Image::Keyward => Spec {
                path: "usr/local/bin/keyward",
                user: "65532:65532",
                entrypoint: &["/usr/local/bin/keyward"],
                cmd: &["controller", "--trusted-keys=/etc/keyward/trusted-keys"],
                distroless_files: true,
            },
            Image::LicenseWatcher => Spec {
                path: "usr/local/bin/license-watcher",
                user: "65532:65532",
                entrypoint: &["/usr/local/bin/license-watcher"],
                cmd: &[],
                distroless_files: true,
            },
            Image::Pause => Spec {
                path: "pause",
                user: "65535:65535",
                entrypoint: &["/pause"],
                cmd: &[],
                distroless_files: false,
            },
        }
    }
}

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n";

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("image-tar: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let binary =
        std::fs::read(&args.binary).with_context(|| format!("reading the binary {}", args.binary.display()))?;
    if !is_static_elf(&binary) {
        bail!(
            "{} is not a statically linked ELF executable; build it with RUSTFLAGS=\"-C target-feature=+crt-static\" and --target",
            args.binary.display()
        );
    }
    let spec = args.image.spec();
    let layer = layer(&spec, &binary)?;
    let tar = image_tar(&spec, &layer, &args.tag)?;
    let mut out = BufWriter::new(File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?);
    out.write_all(&tar)?;
    out.flush()?;
    Ok(())
}

/// A dynamically linked binary has a PT_INTERP program header naming its loader.
fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        bytes
            .get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) != PT_INTERP)
    })
}

fn layer(spec: &Spec, binary: &[u8]) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    if spec.distroless_files {
        for dir in ["etc/", "home/", "usr/", "usr/local/", "usr/local/bin/"] {
            append(&mut tar, dir, tar::EntryType::Directory, 0o755, 0, &[])?;
        }
        append(&mut tar, "tmp/", tar::EntryType::Directory, 0o1777, 0, &[])?;
        append(&mut tar, "home/nonroot/", tar::EntryType::Directory, 0o700, 65532, &[])?;
        append(
            &mut tar,
            "etc/passwd",
            tar::EntryType::Regular,
            0o644,
            0,
            PASSWD.as_bytes(),
        )?;
        append(
            &mut tar,
            "etc/group",
            tar::EntryType::Regular,
            0o644,
            0,
            GROUP.as_bytes(),
        )?;
    }
    append(&mut tar, spec.path, tar::EntryType::Regular, 0o755, 0, binary)?;
    Ok(tar.into_inner()?)
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    owner: u64,
    data: &[u8],
) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(owner);
    header.set_gid(owner);
    header.set_mtime(0);
    header.set_size(data.len() as u64);
    tar.append_data(&mut header, path, data)?;
    Ok(())
}

struct Blob {
    digest: Sha256Digest,
    bytes: Vec<u8>,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Result<Self> {
        let hex: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        Ok(Blob {
            digest: hex.parse()?,
            bytes,
        })
    }

    fn path(&self) -> String {
        format!("blobs/sha256/{}", self.digest.digest())
    }

    fn descriptor(&self, media_type: MediaType) -> Result<Descriptor> {
        Ok(DescriptorBuilder::default()
            .media_type(media_type)
            .digest(self.digest.clone())
            .size(self.bytes.len() as u64)
            .build()?)
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn image_tar(spec: &Spec, layer: &[u8], tag: &str) -> Result<Vec<u8>> {
    let layer = Blob::new(layer.to_vec())?;
    let mut config = ConfigBuilder::default()
        .user(spec.user)
        .env(vec!["PATH=/usr/local/bin:/usr/bin:/bin".to_string()])
        .entrypoint(strings(spec.entrypoint));
    if !spec.cmd.is_empty() {
        config = config.cmd(strings(spec.cmd));
    }
    let config = ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(config.build()?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![format!("sha256:{}", layer.digest.digest())])
                .build()?,
        )
        .build()?;
    let config = Blob::new(config.to_string()?.into_bytes())?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor(MediaType::ImageConfig)?)
        .layers(vec![layer.descriptor(MediaType::ImageLayer)?])
        .build()?;
    let manifest = Blob::new(manifest.to_string()?.into_bytes())?;
    let mut manifest_descriptor = manifest.descriptor(MediaType::ImageManifest)?;
    manifest_descriptor.set_annotations(Some(
        [
            ("io.containerd.image.name".to_string(), tag.to_string()),
            ("org.opencontainers.image.ref.name".to_string(), tag.to_string()),
        ]
        .into(),
    ));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_descriptor])
        .build()?;
    let docker_manifest = serde_json::json!([{
        "Config": config.path(),
        "RepoTags": [tag],
        "Layers": [layer.path()],
    }]);
    let layout = OciLayoutBuilder::default().image_layout_version("1.0.0").build()?;

    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "blobs/", tar::EntryType::Directory, 0o755, 0, &[])?;
    append(&mut tar, "blobs/sha256/", tar::EntryType::Directory, 0o755, 0, &[])?;
    for blob in [&layer, &config, &manifest] {
        append(&mut tar, &blob.path(), tar::EntryType::Regular, 0o644, 0, &blob.bytes)?;
    }
    let files = [
        ("oci-layout", layout.to_string()?),
        ("index.json", index.to_string()?),
        ("manifest.json", docker_manifest.to_string()),
    ];
    for (name, text) in files {
        append(&mut tar, name, tar::EntryType::Regular, 0o644, 0, text.as_bytes())?;
    }
    Ok(tar.into_inner()?)
}

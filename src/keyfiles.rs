//! Key material on disk: private keys written owner-only, public keys and trust directories read.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use crate::license::keys::{self, KeyError};
use crate::license::{KeySet, TrustedKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Key { path: PathBuf, source: KeyError },
    #[error("{path}: a trusted key file is at most 16 KiB")]
    TooLarge { path: PathBuf },
}

const MAX_KEY_FILE: u64 = 16 * 1024;

fn read_small(path: &Path) -> Result<String, KeyFileError> {
    let read_err = |source| KeyFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(read_err)?;
    if meta.len() > MAX_KEY_FILE {
        return Err(KeyFileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let bytes = fs::read(path).map_err(read_err)?;
    String::from_utf8(bytes).map_err(|_| KeyFileError::Key {
        path: path.to_path_buf(),
        source: KeyError::InvalidPublicKey("the file is not text".into()),
    })
}

pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let text = zeroize::Zeroizing::new(read_small(path)?);
    keys::signing_key_from_pem(&text).map_err(|source| KeyFileError::Key {
        path: path.to_path_buf(),
        source,
    })
}

pub fn read_public_key(path: &Path, id: Option<&str>) -> Result<TrustedKey, KeyFileError> {
    let key_err = |source| KeyFileError::Key {
        path: path.to_path_buf(),
        source,
    };
    let key = keys::parse_public_key(&read_small(path)?).map_err(key_err)?;
    TrustedKey::new(id, key).map_err(key_err)
}

/// Writes `contents` to a new file readable by its owner only (0600 on Unix). Refuses to replace
/// an existing file unless `overwrite`.
pub fn write_private(path: &Path, contents: &[u8], overwrite: bool) -> Result<(), KeyFileError> {
    let write_err = |source| KeyFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path).map_err(write_err)?;
        // An overwritten file keeps its old mode; tighten it before writing the key.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(write_err)?;
        file.write_all(contents).map_err(write_err)
    }
    #[cfg(not(unix))]
    {
        options
            .open(path)
            .map_err(write_err)?
            .write_all(contents)
            .map_err(write_err)
    }
}

pub fn write_public(path: &Path, contents: &[u8], overwrite: bool) -> Result<(), KeyFileError> {
    let write_err = |source| KeyFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    if !overwrite && path.exists() {
        return Err(write_err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "file exists (use --force)",
        )));
    }
    fs::write(path, contents).map_err(write_err)
}

/// Loads every public key in a directory: one key per file, the file name without its extension
/// being the key id (`vendor-2026.pem` → `vendor-2026`). Hidden entries are skipped, which also
/// skips the `..data` links of a mounted ConfigMap.
pub fn load_trust_dir(dir: &Path) -> Result<KeySet, KeyFileError> {
    let read_err = |source| KeyFileError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut set = KeySet::new();
    for path in paths {
        let id = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let key = read_public_key(&path, id.as_deref())?;
        set.insert(key).map_err(|source| KeyFileError::Key {
            path: path.clone(),
            source,
        })?;
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::license::keys::{public_key_to_pem, signing_key_from_seed, signing_key_to_pem};

    #[test]
    fn private_keys_are_owner_only_and_not_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let pem = signing_key_to_pem(&signing_key_from_seed(&[1; 32]));
        write_private(&path, pem.as_bytes(), false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(write_private(&path, b"x", false).is_err());
        assert_eq!(read_signing_key(&path).unwrap().to_bytes(), [1; 32]);
    }

    #[test]
    fn trust_dir_names_keys_by_file_and_skips_configmap_internals() {
        let dir = tempfile::tempdir().unwrap();
        let a = signing_key_from_seed(&[1; 32]).verifying_key();
        let b = signing_key_from_seed(&[2; 32]).verifying_key();
        fs::write(dir.path().join("vendor-2025.pem"), public_key_to_pem(&a)).unwrap();
        fs::write(dir.path().join("vendor-2026.pub"), public_key_to_pem(&b)).unwrap();
        fs::create_dir(dir.path().join("..2026_01_01")).unwrap();
        fs::write(dir.path().join("..data"), "ignored").unwrap();
        let set = load_trust_dir(dir.path()).unwrap();
        assert_eq!(set.ids(), ["vendor-2025", "vendor-2026"]);
    }

    #[test]
    #[cfg(unix)]
    fn trust_dir_reads_a_mounted_configmap_layout() {
        // The kubelet writes keys into a timestamped directory, points `..data` at it, and links
        // each key name through `..data`; an update swaps the `..data` link.
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let pem = |s: u8| public_key_to_pem(&signing_key_from_seed(&[s; 32]).verifying_key());
        let v1 = dir.path().join("..2026_11_23_01_00_00.1");
        fs::create_dir(&v1).unwrap();
        fs::write(v1.join("vendor-2026.pem"), pem(1)).unwrap();
        symlink("..2026_11_23_01_00_00.1", dir.path().join("..data")).unwrap();
        symlink("..data/vendor-2026.pem", dir.path().join("vendor-2026.pem")).unwrap();
        let set = load_trust_dir(dir.path()).unwrap();
        assert_eq!(set.ids(), ["vendor-2026"]);
        // An update: a new directory, the ..data link swapped.
        let v2 = dir.path().join("..2026_11_23_02_00_00.2");
        fs::create_dir(&v2).unwrap();
        fs::write(v2.join("vendor-2026.pem"), pem(2)).unwrap();
        fs::remove_file(dir.path().join("..data")).unwrap();
        symlink("..2026_11_23_02_00_00.2", dir.path().join("..data")).unwrap();
        let updated = load_trust_dir(dir.path()).unwrap();
        assert_ne!(updated, set, "the swapped key is read");
    }

    #[test]
    fn trust_dir_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("broken.pem"),
            "-----BEGIN PUBLIC KEY-----\nAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let err = load_trust_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("broken.pem"), "{err}");
        assert!(load_trust_dir(&dir.path().join("missing")).is_err());
    }
}

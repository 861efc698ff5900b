//! Key material on disk: private keys written owner-only, public keys and trust directories read.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use crate::license::keys::{self, KeyError};
use crate::license::{KeySet, TrustedKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    // The cause is part of the message and deliberately not a `source`: logged with `%e` the
    // message is complete, and printed as a chain (`{:#}`) it appears once.
    #[error("cannot read {}: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("cannot write {}: {cause}", path.display())]
    Write { path: PathBuf, cause: std::io::Error },
    #[error("{}: {cause}", path.display())]
    Key { path: PathBuf, cause: KeyError },
    #[error("{}: not a key file: it is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    #[error("{}: a key id names one key, but the file holds {found}", path.display())]
    OneKeyExpected { path: PathBuf, found: usize },
    #[error("{}: a key file is at most 16 KiB", path.display())]
    TooLarge { path: PathBuf },
}

const MAX_KEY_FILE: u64 = 16 * 1024;

fn read_small(path: &Path) -> Result<String, KeyFileError> {
    let read_err = |cause| KeyFileError::Read {
        path: path.to_path_buf(),
        cause,
    };
    let meta = fs::metadata(path).map_err(read_err)?;
    if meta.len() > MAX_KEY_FILE {
        return Err(KeyFileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let bytes = fs::read(path).map_err(read_err)?;
    String::from_utf8(bytes).map_err(|_| KeyFileError::NotText {
        path: path.to_path_buf(),
    })
}

pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let text = zeroize::Zeroizing::new(read_small(path)?);
    keys::signing_key_from_pem(&text).map_err(|cause| KeyFileError::Key {
        path: path.to_path_buf(),
        cause,
    })
}

/// How the keys of one file are named.
#[derive(Debug, Clone, Copy, Default)]
pub struct Naming<'a> {
    /// The id the user gave this file (`KID=PATH`): the file must then hold exactly one key.
    pub explicit: Option<&'a str>,
    /// The id of the file's only key when the key does not name itself (a trust directory's file
    /// name); a JWK's `kid` comes first.
    pub fallback: Option<&'a str>,
}

/// Reads the public keys of a file: one PEM or base64 key, a JWK, or a JWK Set.
pub fn read_public_keys(path: &Path, naming: Naming) -> Result<Vec<TrustedKey>, KeyFileError> {
    let key_err = |cause| KeyFileError::Key {
        path: path.to_path_buf(),
        cause,
    };
    let parsed = keys::parse_public_keys(&read_small(path)?).map_err(key_err)?;
    if naming.explicit.is_some() && parsed.len() != 1 {
        return Err(KeyFileError::OneKeyExpected {
            path: path.to_path_buf(),
            found: parsed.len(),
        });
    }
    let only = parsed.len() == 1;
    parsed
        .into_iter()
        .map(|k| {
            let id = naming
                .explicit
                .or(k.kid.as_deref())
                .or(naming.fallback.filter(|_| only));
            TrustedKey::new(id, k.key).map_err(key_err)
        })
        .collect()
}

/// Writes `contents` to a new file readable by its owner only (0600 on Unix). Refuses to replace
/// an existing file unless `overwrite`.
pub fn write_private(path: &Path, contents: &[u8], overwrite: bool) -> Result<(), KeyFileError> {
    let write_err = |cause| KeyFileError::Write {
        path: path.to_path_buf(),
        cause,
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
    let write_err = |cause| KeyFileError::Write {
        path: path.to_path_buf(),
        cause,
    };
    if !overwrite && path.exists() {
        return Err(write_err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "file exists (use --force)",
        )));
    }
    fs::write(path, contents).map_err(write_err)
}

/// Loads every public key in a directory: each file a PEM or base64 key, a JWK or a JWK Set. A key
/// is named by its JWK `kid`, else by the file name without its extension (`vendor-2026.pem` →
/// `vendor-2026`). Hidden entries are skipped, which also skips the `..data` links of a mounted
/// ConfigMap.
pub fn load_trust_dir(dir: &Path) -> Result<KeySet, KeyFileError> {
    let mut set = KeySet::new();
    for path in trust_dir_files(dir)? {
        for key in read_trust_file(&path)? {
            set.insert(key).map_err(|cause| KeyFileError::Key {
                path: path.clone(),
                cause,
            })?;
        }
    }
    Ok(set)
}

/// The key files of a trust directory, sorted; hidden entries (a ConfigMap's `..data`) skipped.
pub fn trust_dir_files(dir: &Path) -> Result<Vec<PathBuf>, KeyFileError> {
    let read_err = |cause| KeyFileError::Read {
        path: dir.to_path_buf(),
        cause,
    };
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

/// The keys of one trust directory file, named by their JWK `kid`, else by the file name.
pub fn read_trust_file(path: &Path) -> Result<Vec<TrustedKey>, KeyFileError> {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let naming = Naming {
        explicit: None,
        fallback: stem.as_deref(),
    };
    read_public_keys(path, naming)
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

//! What the inventory learns of the private keys it reads: whether a CA's key can sign
//! for its certificate, and whether a key file is open to group or others.
//!
//! A CA key is checked as a leaf's key is (`read.rs`): read through the gate (bounded,
//! a FIFO refused without blocking), parsed, and its public half compared with the
//! certificate. The full consistency check (`PrivateKey::check`) is left to the moment
//! it signs (`LocalCa::load`): reading stays cheap (docs/performance.md, "Reading is
//! cheap"). Nothing here changes a mode: the read-only commands only say it.

use std::fmt;
use std::fs::Metadata;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::InventoryError;
use crate::node::NodeRoot;
use crate::pki::{CertFacts, PrivateKey};

/// A private key file that group or others have any permission on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenKey {
    /// Node path of the file itself (symlinks resolved): the file whose mode it is.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

impl OpenKey {
    /// The key file at `path` (opened, `meta` from its descriptor), if its mode lets
    /// group or others at it.
    pub fn of(path: &Path, meta: &Metadata) -> Option<OpenKey> {
        Self::of_mode(path, meta.permissions().mode())
    }

    /// [`OpenKey::of`] from the file's mode bits.
    pub fn of_mode(path: &Path, mode: u32) -> Option<OpenKey> {
        let mode = mode & 0o7777;
        (mode & 0o077 != 0).then(|| OpenKey {
            path: path.to_path_buf(),
            mode,
        })
    }
}

impl fmt::Display for OpenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: private key file has mode {:04o}: group or others may read it (it should be 0600: chmod 600 {})",
            self.path.display(),
            self.mode,
            self.path.display()
        )
    }
}

/// What reading a CA's key found.
#[derive(Clone, Debug, Default)]
pub struct CaKey {
    /// Something is at the key's path (a dangling or refused symlink counts: reading it
    /// says what is wrong).
    pub present: bool,
    /// Present, but it cannot sign for the CA: unreadable, not a key, or not the key of
    /// the CA file's first certificate.
    pub error: Option<InventoryError>,
    /// Its file is open to group or others.
    pub open: Option<OpenKey>,
}

/// Reads the CA key at `key` and compares it with `cert` (the CA file's first
/// certificate at `cert_path`, when it could be read).
pub fn read_ca_key(
    root: &NodeRoot,
    key: &Path,
    cert: Option<&CertFacts>,
    cert_path: &Path,
) -> CaKey {
    if !root.exists(key) {
        return CaKey::default();
    }
    let file = match root.open_file(key) {
        Ok(f) => f,
        Err(e) => {
            return CaKey {
                present: true,
                error: Some(e.into()),
                open: None,
            }
        }
    };
    let open = OpenKey::of(&file.path, file.metadata());
    let error = match file.read_all() {
        Err(e) => Some(e.into()),
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            match PrivateKey::from_pem(&bytes) {
                Err(source) => Some(InventoryError::Pki {
                    path: key.to_path_buf(),
                    source,
                }),
                Ok(k) => cert
                    .filter(|c| !k.matches(c))
                    .map(|_| InventoryError::KeyMismatch {
                        key: key.to_path_buf(),
                        cert: cert_path.to_path_buf(),
                    }),
            }
        }
    };
    CaKey {
        present: true,
        error,
        open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn ca_cert(root: &NodeRoot) -> CertFacts {
        let (_, bytes) = root
            .read_file(Path::new("/etc/kubernetes/pki/ca.crt"))
            .unwrap();
        crate::pki::certificates(&crate::pki::parse_pem(&bytes).unwrap()).unwrap()[0].clone()
    }

    /// A FIFO, garbage or another CA's key at ca.key is an error naming the file; the
    /// right key is none; a missing key is absent, not an error.
    #[test]
    fn a_ca_key_must_be_readable_and_the_ca_certificates() {
        let (_d, root) = crate::fixture::temp_control_plane();
        let cert = ca_cert(&root);
        let key = Path::new("/etc/kubernetes/pki/ca.key");
        let crt = Path::new("/etc/kubernetes/pki/ca.crt");
        let read = || read_ca_key(&root, key, Some(&cert), crt);
        let good = read();
        assert!(good.present && good.error.is_none(), "{:?}", good.error);
        assert!(good.open.is_none());

        let host = root.host(key);
        let other = root.host(Path::new("/etc/kubernetes/pki/front-proxy-ca.key"));
        std::fs::copy(&other, &host).unwrap();
        let e = read().error.unwrap().to_string();
        assert_eq!(
            e,
            "/etc/kubernetes/pki/ca.key: private key does not match the certificate in /etc/kubernetes/pki/ca.crt"
        );

        std::fs::write(&host, "{x\n").unwrap();
        let e = read().error.unwrap().to_string();
        assert!(e.starts_with("/etc/kubernetes/pki/ca.key: "), "{e}");

        std::fs::remove_file(&host).unwrap();
        nix::unistd::mkfifo(&host, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read().error.unwrap().to_string();
        assert!(
            e.contains("/etc/kubernetes/pki/ca.key") && e.contains("FIFO"),
            "{e}"
        );

        std::fs::remove_file(&host).unwrap();
        let absent = read();
        assert!(!absent.present && absent.error.is_none());
    }

    #[test]
    fn a_key_file_open_to_group_or_others_is_named_with_its_mode() {
        let (_d, root) = crate::fixture::temp_control_plane();
        let key = Path::new("/etc/kubernetes/pki/ca.key");
        let host = root.host(key);
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cert = ca_cert(&root);
        let k = read_ca_key(
            &root,
            key,
            Some(&cert),
            Path::new("/etc/kubernetes/pki/ca.crt"),
        );
        assert!(k.error.is_none());
        let open = k.open.unwrap();
        assert_eq!(open.mode, 0o644);
        assert!(open
            .to_string()
            .starts_with("/etc/kubernetes/pki/ca.key: private key file has mode 0644"));
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o640)).unwrap();
        let meta = std::fs::metadata(&host).unwrap();
        assert_eq!(OpenKey::of(key, &meta).unwrap().mode, 0o640);
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o600)).unwrap();
        let meta = std::fs::metadata(&host).unwrap();
        assert!(OpenKey::of(key, &meta).is_none());
    }
}

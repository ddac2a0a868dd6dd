//! The cfssl auth key: a hex file only its owner may read, held as an HMAC-SHA256 key
//! (aws-lc-rs) and never printed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use super::RemoteError;
use crate::node::NodeRoot;

/// What is wrong with the auth key file.
#[derive(Debug, thiserror::Error)]
pub enum AuthKeyProblem {
    #[error("cannot read the cfssl auth key: {0}")]
    Unreadable(String),
    #[error("mode {mode:04o}: the cfssl auth key file must be mode 0600 or stricter (chmod 600)")]
    Mode { mode: u32 },
    #[error(
        "the cfssl auth key must be hex digits (as in cfssl's auth_keys), an even number of them"
    )]
    NotHex,
    #[error("the cfssl auth key is empty")]
    Empty,
}

/// Reads a hex auth key from a file that only its owner may read.
pub(super) fn read_auth_key(root: &NodeRoot, path: &Path) -> Result<hmac::Key, RemoteError> {
    let fail = |path: &Path, problem| RemoteError::AuthKey {
        path: path.to_path_buf(),
        problem,
    };
    // read_file refuses what is not a regular file; its reason says which.
    let unreadable = |e: crate::node::NodeError| {
        fail(&e.path, AuthKeyProblem::Unreadable(e.problem.to_string()))
    };
    let file = root.open_file(path).map_err(unreadable)?;
    let resolved = file.path.clone();
    // The mode of the very file being read, from its open descriptor.
    let mode = file.metadata().permissions().mode() & 0o777;
    let text = Zeroizing::new(file.read_all().map_err(unreadable)?);
    if mode & 0o077 != 0 {
        return Err(fail(&resolved, AuthKeyProblem::Mode { mode }));
    }
    let key =
        hex_decode(text.trim_ascii()).ok_or_else(|| fail(&resolved, AuthKeyProblem::NotHex))?;
    if key.is_empty() {
        return Err(fail(&resolved, AuthKeyProblem::Empty));
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &key))
}

pub(super) fn hex_decode(hex: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Zeroizing::new(Vec::with_capacity(hex.len() / 2));
    for pair in hex.chunks(2) {
        out.push((digit(pair[0])? << 4) | digit(pair[1])?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_key_files_that_are_not_keys_are_refused_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let root = NodeRoot::new(d.path());
        let key = |text: &str| {
            let f = d.path().join("key");
            std::fs::write(&f, text).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
            read_auth_key(&root, Path::new("/key")).err()
        };
        assert!(matches!(
            key("xyz0"),
            Some(RemoteError::AuthKey {
                problem: AuthKeyProblem::NotHex,
                ..
            })
        ));
        assert!(matches!(
            key("\n"),
            Some(RemoteError::AuthKey {
                problem: AuthKeyProblem::Empty,
                ..
            })
        ));
        assert!(key("00ff\n").is_none());
        let e = read_auth_key(&root, Path::new("/missing")).err().unwrap();
        assert!(
            e.to_string()
                .starts_with("/missing: cannot read the cfssl auth key: "),
            "{e}"
        );
        let e = read_auth_key(&root, Path::new("/")).err().unwrap();
        assert!(e.to_string().contains("expected a file"), "{e}");
    }
}

//! The local CA: a CA key on this node signs (a control plane's ca.key,
//! front-proxy-ca.key, etcd/ca.key).

use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::ca::{load_ca_bundle, CaError, CertificateAuthority, Signed, SigningRequest};
use crate::node::NodeRoot;
use crate::pki::x509::{resign, Issuer, Reissue};
use crate::pki::{CertFacts, PrivateKey};

/// A CA whose key is on this node.
pub struct LocalCa {
    name: String,
    cert_path: PathBuf,
    cert: CertFacts,
    /// Every certificate of the CA file, the issuing one first.
    bundle: Vec<CertFacts>,
    key: PrivateKey,
}

impl LocalCa {
    /// Loads and checks a CA: its certificate must be a CA, currently valid, and the key
    /// must belong to it. Paths are node paths under `root`.
    pub fn load(
        root: &NodeRoot,
        name: &str,
        cert_path: &Path,
        key_path: &Path,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let bundle = load_ca_bundle(root, cert_path, now)?;
        let cert = bundle[0].clone();
        let (_, key_bytes) = root.read_file(key_path).map_err(|e| CaError::ReadKey {
            path: key_path.to_path_buf(),
            reason: e.problem.to_string(),
        })?;
        let key_bytes = Zeroizing::new(key_bytes);
        let parse = |source| CaError::Parse {
            path: key_path.to_path_buf(),
            source,
        };
        // This key is loaded to sign: the full check now, so a bad key is refused
        // before anything is issued, under the same error as a key that does not parse.
        let key = PrivateKey::from_pem(&key_bytes).map_err(parse)?;
        key.check().map_err(parse)?;
        if !key.matches(&cert) {
            return Err(CaError::KeyMismatch {
                key: key_path.to_path_buf(),
                cert: cert_path.to_path_buf(),
            });
        }
        Ok(LocalCa {
            name: name.to_string(),
            cert_path: cert_path.to_path_buf(),
            cert,
            bundle,
            key,
        })
    }
}

impl LocalCa {
    /// The CA's certificate and key as a signature's issuer (the CSR signer issues
    /// from parts, not by re-issuing an old certificate).
    pub fn issuer(&self) -> Issuer<'_> {
        Issuer {
            cert: &self.cert,
            key: &self.key,
        }
    }
}

impl CertificateAuthority for LocalCa {
    fn describe(&self) -> String {
        format!("{} ({})", self.name, self.cert_path.display())
    }

    fn certificate(&self) -> Option<&CertFacts> {
        Some(&self.cert)
    }

    fn sign(&self, req: &SigningRequest<'_>) -> Result<Signed, CaError> {
        // Signed by any certificate of the CA file (the old CA during a rotation): the
        // issuing CA renews it. The signature decides, not the names.
        let ours = self.bundle.iter().any(|c| req.old.is_signed_by(c));
        if !req.switch_issuer && !ours {
            return Err(CaError::NotSignedBy {
                target: req.target.to_string(),
                ca: self.describe(),
                issuer: req.old.issuer.clone(),
            });
        }
        resign(
            &Reissue {
                old_der: &req.old.der,
                new_key: req.key,
                not_before: req.not_before,
                not_after: req.not_after,
            },
            Some(&Issuer {
                cert: &self.cert,
                key: &self.key,
            }),
        )
        .map(Signed::quiet)
        .map_err(|source| CaError::Signing {
            target: req.target.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::encode_pem;
    use crate::pki::x509::{CertTemplate, OID_CN};
    use crate::pki::{KeyAlgorithm, KeyEncoding};
    use time::Duration;

    #[test]
    fn the_key_must_belong_to_the_ca_and_the_old_certificate_to_the_ca() {
        let d = tempfile::tempdir().unwrap();
        let root = NodeRoot::new(d.path());
        let now = OffsetDateTime::now_utc();
        let ca_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let ca = CertTemplate {
            subject: vec![vec![(OID_CN, "kubernetes".into())]],
            is_ca: true,
            ..Default::default()
        }
        .issue(&ca_key, None)
        .unwrap();
        std::fs::write(d.path().join("ca.crt"), encode_pem("CERTIFICATE", &ca)).unwrap();
        std::fs::write(d.path().join("ca.key"), ca_key.to_pem().unwrap().as_bytes()).unwrap();
        std::fs::write(
            d.path().join("other.key"),
            other.to_pem().unwrap().as_bytes(),
        )
        .unwrap();
        let load = |k: &str| LocalCa::load(&root, "ca", Path::new("/ca.crt"), Path::new(k), now);
        let e = load("/other.key").err().unwrap();
        assert_eq!(
            e.to_string(),
            "/other.key: CA key does not match CA certificate /ca.crt"
        );
        assert!(load("/none.key")
            .err()
            .unwrap()
            .to_string()
            .starts_with("/none.key: cannot read CA key: "));
        let ca = load("/ca.key").unwrap();
        // A leaf of another CA of the same name is refused without a switch.
        let foreign = CertTemplate {
            subject: vec![vec![(OID_CN, "kubernetes".into())]],
            not_before: Some(now - Duration::days(1)),
            not_after: Some(now + Duration::days(30)),
            ..Default::default()
        }
        .issue(&other, None)
        .unwrap();
        let old = CertFacts::from_der(&foreign).unwrap();
        let mut req = SigningRequest {
            target: "apiserver",
            old: &old,
            key: &other,
            not_before: now,
            not_after: now + Duration::days(365),
            switch_issuer: false,
            now,
        };
        let e = ca.sign(&req).unwrap_err();
        assert!(matches!(e, CaError::NotSignedBy { .. }), "{e}");
        assert!(e.to_string().contains("break trust"), "{e}");
        req.switch_issuer = true;
        let signed = ca.sign(&req).unwrap();
        assert!(signed.warnings.is_empty());
        let new = CertFacts::from_der(&signed.der).unwrap();
        assert!(new.is_signed_by(ca.certificate().unwrap()));
    }
}

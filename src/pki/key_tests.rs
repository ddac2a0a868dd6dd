//! The public-half comparison a read does, against certificates OpenSSL made (so the
//! certificate's key is not ours to echo back), and the full check that a key about to
//! sign or to be installed gets.

use der::{Decode, Encode};

use super::*;
use crate::pki::{certificates, parse_pem};

fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    let mut input = child.stdin.take().expect("a stdin pipe");
    input
        .write_all(stdin.unwrap_or_default())
        .expect("openssl reads");
    drop(input);
    let out = child.wait_with_output().expect("openssl ends");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A key (PKCS#8, as `openssl req` writes it) and its self-signed certificate.
struct Pair {
    algorithm: KeyAlgorithm,
    key_pem: Vec<u8>,
    cert: CertFacts,
}

fn pair(newkey: &[&str], algorithm: KeyAlgorithm) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let cert = dir.path().join("c.pem");
    let mut args = vec!["req", "-x509", "-noenc", "-subj", "/CN=t", "-days", "1"];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&["-keyout", key.to_str().unwrap()]);
    args.extend_from_slice(&["-out", cert.to_str().unwrap()]);
    openssl(&args, None);
    let cert = std::fs::read(cert).unwrap();
    let cert = certificates(&parse_pem(&cert).unwrap()).unwrap().remove(0);
    Pair {
        algorithm,
        key_pem: std::fs::read(key).unwrap(),
        cert,
    }
}

fn rsa(bits: usize) -> Pair {
    let arg = format!("rsa:{bits}");
    pair(&["-newkey", &arg], KeyAlgorithm::Rsa { bits })
}

fn ec(curve: &str, algorithm: KeyAlgorithm) -> Pair {
    let opt = format!("ec_paramgen_curve:{curve}");
    pair(&["-newkey", "ec", "-pkeyopt", &opt], algorithm)
}

/// The key of `p` in each encoding kubeadm, the kubelet or OpenSSL write it in.
fn encodings(p: &Pair) -> Vec<(KeyEncoding, Vec<u8>)> {
    let traditional = openssl(&["pkey", "-traditional"], Some(&p.key_pem));
    let native = match p.algorithm {
        KeyAlgorithm::Rsa { .. } => KeyEncoding::Pkcs1,
        _ => KeyEncoding::Sec1,
    };
    vec![
        (KeyEncoding::Pkcs8, p.key_pem.clone()),
        (native, traditional),
    ]
}

#[test]
fn a_key_matches_its_certificate_and_no_other() {
    let pairs = [
        rsa(2048),
        rsa(3072),
        rsa(4096),
        ec("P-256", KeyAlgorithm::EcdsaP256),
        ec("P-384", KeyAlgorithm::EcdsaP384),
        // A second key of the commonest kinds: same algorithm and size, another key.
        rsa(2048),
        ec("P-256", KeyAlgorithm::EcdsaP256),
    ];
    for (i, p) in pairs.iter().enumerate() {
        for (encoding, pem) in encodings(p) {
            let k = PrivateKey::from_pem(&pem).unwrap();
            assert_eq!((k.algorithm, k.encoding), (p.algorithm, encoding));
            assert!(k.matches(&p.cert), "{} {encoding:?}", p.algorithm);
            // The half the file states is the one the private key gives.
            assert_eq!(k.derived_public_key().unwrap(), k.public_key());
            k.check().unwrap();
            for (j, other) in pairs.iter().enumerate() {
                if i != j {
                    assert!(
                        !k.matches(&other.cert),
                        "{} key {i} matched the {} certificate {j}",
                        p.algorithm,
                        other.algorithm
                    );
                }
            }
        }
    }
}

/// An RSA key whose private exponent was changed: modulus and exponent, hence the
/// public half, are still the certificate's.
fn rsa_with_wrong_private_exponent(pkcs1_pem: &[u8]) -> Vec<u8> {
    let blocks = parse_pem(pkcs1_pem).unwrap();
    let k = pkcs1::RsaPrivateKey::from_der(&blocks[0].der).unwrap();
    let mut d = k.private_exponent.as_bytes().to_vec();
    let last = d.len() - 1;
    d[last] ^= 0x02;
    let bad = pkcs1::RsaPrivateKey {
        private_exponent: pkcs1::UintRef::new(&d).unwrap(),
        ..k
    };
    encode_pem("RSA PRIVATE KEY", &bad.to_der().unwrap()).into_bytes()
}

/// An EC key with another key's private scalar and its own public point.
fn ec_with_wrong_scalar(sec1_pem: &[u8], other_sec1_pem: &[u8]) -> Vec<u8> {
    let own = parse_pem(sec1_pem).unwrap();
    let other = parse_pem(other_sec1_pem).unwrap();
    let k = sec1::EcPrivateKey::from_der(&own[0].der).unwrap();
    let o = sec1::EcPrivateKey::from_der(&other[0].der).unwrap();
    let bad = sec1::EcPrivateKey {
        private_key: o.private_key,
        ..k
    };
    encode_pem("EC PRIVATE KEY", &bad.to_der().unwrap()).into_bytes()
}

/// Reading compares only the public half; a key whose private half does not fit it is
/// refused when it would sign or be written, and never signs or is written.
#[test]
fn a_key_that_fails_the_full_check_is_read_but_never_used() {
    let r = rsa(2048);
    let p256 = ec("P-256", KeyAlgorithm::EcdsaP256);
    let other = ec("P-256", KeyAlgorithm::EcdsaP256);
    let rsa_pkcs1 = openssl(&["pkey", "-traditional"], Some(&r.key_pem));
    let ec_sec1 = openssl(&["pkey", "-traditional"], Some(&p256.key_pem));
    let other_sec1 = openssl(&["pkey", "-traditional"], Some(&other.key_pem));
    let bad_rsa = rsa_with_wrong_private_exponent(&rsa_pkcs1);
    let bad_ec = ec_with_wrong_scalar(&ec_sec1, &other_sec1);
    // The same keys wrapped in PKCS#8, as `openssl pkey` converts them.
    let bad_rsa8 = openssl(&["pkey"], Some(&bad_rsa));
    let cases = [
        (&bad_rsa, &r.cert),
        (&bad_rsa8, &r.cert),
        (&bad_ec, &p256.cert),
    ];
    for (pem, cert) in cases {
        let k = PrivateKey::from_pem(pem).unwrap();
        assert!(k.matches(cert), "{}", k.algorithm);
        let rejected = |e: PkiError| matches!(e, PkiError::KeyRejected { .. });
        assert!(rejected(k.check().unwrap_err()), "{}", k.algorithm);
        assert!(rejected(k.sign(b"tbs").unwrap_err()), "{}", k.algorithm);
        assert!(rejected(k.to_pem().unwrap_err()), "{}", k.algorithm);
        // Asked again, the same answer (the result of the load is kept).
        assert!(rejected(k.check().unwrap_err()), "{}", k.algorithm);
    }
}

#[test]
fn malformed_keys_are_refused_on_reading() {
    let r = rsa(2048);
    let p = ec("P-256", KeyAlgorithm::EcdsaP256);
    let err = |pem: &[u8]| PrivateKey::from_pem(pem).unwrap_err();
    let der_of = |pem: &[u8]| parse_pem(pem).unwrap().remove(0).der;

    // Cut short, in each encoding.
    for (tag, pem, encoding) in [
        ("PRIVATE KEY", r.key_pem.clone(), "PKCS#8"),
        (
            "RSA PRIVATE KEY",
            openssl(&["pkey", "-traditional"], Some(&r.key_pem)),
            "PKCS#1 RSA",
        ),
        (
            "EC PRIVATE KEY",
            openssl(&["pkey", "-traditional"], Some(&p.key_pem)),
            "SEC1 EC",
        ),
    ] {
        let der = der_of(&pem);
        let cut = encode_pem(tag, &der[..der.len() / 2]);
        match err(cut.as_bytes()) {
            PkiError::MalformedKey { encoding: e, .. } => assert_eq!(e, encoding),
            e => panic!("{tag}: {e}"),
        }
    }

    // Not base64 at all.
    let garbage = b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n";
    assert!(matches!(err(garbage), PkiError::PemBase64 { .. }));

    // An EC key without its public point: nothing to compare with a certificate.
    let sec1 = der_of(&openssl(&["pkey", "-traditional"], Some(&p.key_pem)));
    let k = sec1::EcPrivateKey::from_der(&sec1).unwrap();
    let bare = sec1::EcPrivateKey {
        public_key: None,
        ..k
    };
    let bare = encode_pem("EC PRIVATE KEY", &bare.to_der().unwrap());
    assert_eq!(err(bare.as_bytes()), PkiError::EcKeyWithoutPublicKey);

    // A curve kubeadm never uses, and an algorithm the renewal cannot sign with.
    let p521 = openssl(
        &["ecparam", "-name", "secp521r1", "-genkey", "-noout"],
        None,
    );
    assert!(matches!(err(&p521), PkiError::UnsupportedCurve(_)));
    let ed = openssl(&["genpkey", "-algorithm", "ed25519"], None);
    assert!(matches!(err(&ed), PkiError::UnsupportedKeyAlgorithm(_)));
}

//! Renewal through a real cfssl server (`cfssl serve`, Debian's golang-cfssl): the node
//! keeps its key, sends a CSR, checks what comes back with the real openssl. Its
//! refusals and transports are in tests/remote_ca_refused.rs, the server harness in
//! tests/common/cfssl.rs.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cert_rotator::pki::encode_pem;
use common::cfssl::*;
use common::*;

#[test]
fn a_worker_renews_its_kubelet_certificates_through_cfssl() {
    let (d, built) = build(&worker_spec());
    let r = d.path();
    assert!(!host(r, "/etc/kubernetes/pki/ca.key").exists());
    let tls = Tls::new();
    let server = Cfssl::start(&built.ca, &tls, Mode::Https);
    configure(r, &server.url(), &tls, AUTH_KEY, "");
    let client_before = identity(&kubelet_client_file(r));
    let crt_before = identity(&host(r, KUBELET_CRT));
    let old_client_file = kubelet_client_file(r);
    let old_key = std::fs::read(host(r, "/var/lib/kubelet/pki/kubelet.key")).unwrap();

    let out = agent(r, &["renew", KUBELET_CLIENT, KUBELET_CRT])
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert_eq!(all.matches("\trenewed\t").count(), 2, "{all}");

    let ca = host(r, "/etc/kubernetes/pki/ca.crt");
    // kubelet-client-current.pem: a new file behind the symlink, cert and new key.
    let client = kubelet_client_file(r);
    assert_ne!(client, old_client_file);
    verify(&ca, &client);
    same_key(&client, &client);
    assert_eq!(identity(&client), client_before);
    assert_eq!(
        std::fs::metadata(&client).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // kubelet.crt: now signed by the cluster CA, the throwaway CA gone from the file.
    let crt = host(r, KUBELET_CRT);
    verify(&ca, &crt);
    assert_eq!(certificates_in(&crt), 1);
    same_key(&crt, &host(r, "/var/lib/kubelet/pki/kubelet.key"));
    assert_ne!(
        old_key,
        std::fs::read(host(r, "/var/lib/kubelet/pki/kubelet.key")).unwrap(),
        "a new key, made on the node"
    );
    assert_eq!(identity(&crt), crt_before);
    // The kubelet profile's 91 days.
    assert_eq!(
        lifetime_seconds(r, "kubelet-client-current.pem"),
        91 * 86_400
    );
    assert_eq!(lifetime_seconds(r, "kubelet.crt"), 91 * 86_400);

    // renew-all on the worker: the CA key is absent and a remote is configured, so the
    // kubelet client goes to cfssl by default.
    let out = agent(r, &["renew-all"]).output().unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert_eq!(all.matches("\trenewed\t").count(), 2, "{all}");
    verify(&ca, &kubelet_client_file(r));
    assert_eq!(identity(&kubelet_client_file(r)), client_before);
}

#[test]
fn cert_renew_remote_renews_through_cfssl() {
    let (d, built) = build(&worker_spec());
    let r = d.path();
    let tls = Tls::new();
    let server = Cfssl::start(&built.ca, &tls, Mode::Https);
    let key_file = r.join("cfssl-auth.key");
    std::fs::write(&key_file, AUTH_KEY).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ca = host(r, "/etc/kubernetes/pki/ca.crt");
    let crt = host(r, KUBELET_CRT);
    let client = kubelet_client_file(r);
    let crt_before = identity(&crt);
    let client_before = identity(&client);
    let cert_renew = |extra: &[&str]| {
        let mut c = Command::new(renew_bin());
        c.args(["--remote", &server.url(), "--auth-key-file"])
            .arg(&key_file)
            .arg("--remote-ca")
            .arg(tls.file("ca.pem"))
            .args(["--profile", "kubelet", "--days", "91", "--state-dir"])
            .arg(r.join("var/lib/cert-rotator"))
            .args(extra);
        c
    };
    // With --ca-cert: kubelet.crt moves from its throwaway CA to the cluster CA.
    let out = cert_renew(&["--ca-cert", ca.to_str().unwrap(), crt.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    verify(&ca, &crt);
    assert_eq!(identity(&crt), crt_before);
    same_key(&crt, &host(r, "/var/lib/kubelet/pki/kubelet.key"));
    // Without --ca-cert: the old issuer and authority key id must be kept (the
    // certificate-and-key file of the kubelet client, renewed in place).
    let out = cert_renew(&[client.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    verify(&ca, &client);
    same_key(&client, &client);
    assert_eq!(identity(&client), client_before);
    // A server that signs with another CA is refused even then: the key id differs.
    let other = Cfssl::start(&make_ca("kubernetes"), &tls, Mode::Https);
    let mut c = Command::new(renew_bin());
    c.args(["--remote", &other.url(), "--auth-key-file"])
        .arg(&key_file)
        .arg("--remote-ca")
        .arg(tls.file("ca.pem"))
        .args(["--profile", "kubelet", "--days", "91", "--state-dir"])
        .arg(r.join("var/lib/cert-rotator"))
        .arg(&client);
    fails_and_changes_nothing(r, &mut c, &["FAILED", "authority key id"]);
    // Plain http is refused unless --insecure-http; --ca-key does not go with --remote.
    let mut c = Command::new(renew_bin());
    c.args(["--remote", "http://127.0.0.1:1", "--ca-cert"])
        .arg(&ca)
        .arg(&crt);
    let all = fails_and_changes_nothing(r, &mut c, &["plain http", "--insecure-http"]);
    assert!(!all.contains("renewed"));
    let mut c = Command::new(renew_bin());
    c.args(["--remote", &server.url(), "--ca-key", "/x", "--ca-cert"])
        .arg(&ca)
        .arg(&crt);
    fails_and_changes_nothing(r, &mut c, &["--ca-key"]);
    // Without --remote, --ca-key is still required.
    let mut c = Command::new(renew_bin());
    c.arg("--ca-cert").arg(&ca).arg(&crt);
    fails_and_changes_nothing(r, &mut c, &["--ca-key"]);
}

#[test]
fn a_control_plane_leaf_whose_ca_key_is_gone_renews_through_cfssl() {
    let mut spec = NodeSpec::control_plane(now()).with(
        "kubelet-client-current.pem",
        Validity::days(91, Duration::days(10)),
    );
    spec.admin_organizations = vec!["kubeadm:cluster-admins".into(), "system:masters".into()];
    let (d, built) = build(&spec);
    let r = d.path();
    std::fs::remove_file(host(r, "/etc/kubernetes/pki/ca.key")).unwrap();
    let tls = Tls::new();
    let server = Cfssl::start(&built.ca, &tls, Mode::Https);
    // kubelet.crt stays with its throwaway CA here.
    configure(r, &server.url(), &tls, AUTH_KEY, "");
    let toml = host(r, "/etc/cert-rotator/config.toml");
    let conf = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("[targets.\"kubelet.crt\"]\nca = \"remote\"\n", "");
    std::fs::write(&toml, conf).unwrap();
    let pki = host(r, "/etc/kubernetes/pki");
    let before: BTreeMap<&str, String> = [
        "apiserver",
        "apiserver-kubelet-client",
        "front-proxy-client",
    ]
    .into_iter()
    .map(|n| (n, identity(&pki.join(format!("{n}.crt")))))
    .collect();
    let admin_before = admin_identity(r);
    let out = agent(r, &["renew-all"]).output().unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    // Every leaf renewed: those of the external CA through cfssl, the others locally.
    assert_eq!(all.matches("\trenewed\t").count(), 14, "{all}");
    for (name, ca) in [
        ("apiserver", "ca.crt"),
        ("apiserver-kubelet-client", "ca.crt"),
        ("front-proxy-client", "front-proxy-ca.crt"),
    ] {
        let f = pki.join(format!("{name}.crt"));
        verify(&pki.join(ca), &f);
        same_key(&f, &pki.join(format!("{name}.key")));
        assert_eq!(identity(&f), before[name], "{name}");
    }
    // The two O values of admin.conf, one multi-valued RDN, came back as they were.
    assert_eq!(admin_identity(r), admin_before);
    assert!(
        admin_before.contains("kubeadm:cluster-admins") && admin_before.contains("system:masters")
    );
    assert_eq!(lifetime_seconds(r, "apiserver"), 365 * 86_400);
    // cfssl's certificates carry a subject key id; kubeadm's leaves had none.
    let t = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        pki.join("apiserver.crt").to_str().unwrap(),
    ]);
    assert!(t.contains("Subject Key Identifier"), "{t}");

    // A server with another CA: the external CA's leaves fail and stay as they are, the
    // pass goes on with the others; exit 1.
    let other = Cfssl::start(&make_ca("kubernetes"), &tls, Mode::Https);
    configure(r, &other.url(), &tls, AUTH_KEY, "");
    let conf = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("[targets.\"kubelet.crt\"]\nca = \"remote\"\n", "");
    std::fs::write(&toml, conf).unwrap();
    let apiserver = std::fs::read(pki.join("apiserver.crt")).unwrap();
    let admin = std::fs::read(host(r, "/etc/kubernetes/admin.conf")).unwrap();
    let out = agent(r, &["renew-all"]).output().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(
            "pki/apiserver.crt\tFAILED\tapiserver: the certificate is signed by another CA"
        ),
        "{all}"
    );
    assert!(all.contains("front-proxy-client.crt\trenewed"), "{all}");
    assert!(all.contains("etcd/server.crt\trenewed"), "{all}");
    assert_eq!(all.matches("\tFAILED\t").count(), 8, "{all}");
    assert_eq!(apiserver, std::fs::read(pki.join("apiserver.crt")).unwrap());
    assert_eq!(
        admin,
        std::fs::read(host(r, "/etc/kubernetes/admin.conf")).unwrap()
    );
}

#[test]
fn targets_are_routed_by_their_choice_and_the_ca_key() {
    use cert_rotator::ca::remote::RemoteSettings;
    use cert_rotator::config::{CaChoice, Settings, TargetOverride};
    use cert_rotator::inventory::Signer;
    use cert_rotator::plan::{ca_route, CaRoute};
    let present = |_: &str| Some((PathBuf::from("/etc/kubernetes/pki/ca.key"), true));
    let absent = |_: &str| Some((PathBuf::from("/etc/kubernetes/pki/ca.key"), false));
    let ca = Signer::Authority("ca".into());
    let remote = |a: Option<&str>, switch_issuer| CaRoute::Remote {
        authority: a.map(String::from),
        switch_issuer,
    };
    let not_renewable = |r: CaRoute, want: &str| match r {
        CaRoute::NotRenewable(w) => assert!(w.contains(want), "{w}"),
        other => panic!("{other:?}"),
    };
    let mut s = Settings::default();
    // No remote configured: today's behaviour.
    assert_eq!(
        ca_route(&s, "apiserver", &ca, &present),
        CaRoute::Local("ca".into())
    );
    not_renewable(ca_route(&s, "apiserver", &ca, &absent), "external CA");
    not_renewable(ca_route(&s, "apiserver", &ca, &absent), "[ca.remote]");
    assert_eq!(
        ca_route(&s, "kubelet.crt", &Signer::Bundled, &absent),
        CaRoute::SelfBundled
    );
    not_renewable(
        ca_route(&s, "x", &Signer::Unknown, &absent),
        "no CA on this node",
    );
    // A remote configured: used where the key is absent, only there.
    s.ca.remote = Some(RemoteSettings {
        url: "https://ca.example:8888".into(),
        ..Default::default()
    });
    assert_eq!(
        ca_route(&s, "apiserver", &ca, &absent),
        remote(Some("ca"), false)
    );
    assert_eq!(
        ca_route(&s, "apiserver", &ca, &present),
        CaRoute::Local("ca".into())
    );
    assert_eq!(
        ca_route(&s, "kubelet.crt", &Signer::Bundled, &absent),
        CaRoute::SelfBundled
    );
    // Per target.
    let choose = |s: &mut Settings, name: &str, c| {
        s.targets.insert(
            name.into(),
            TargetOverride {
                ca: Some(c),
                ..Default::default()
            },
        );
    };
    choose(&mut s, "apiserver", CaChoice::Remote);
    assert_eq!(
        ca_route(&s, "apiserver", &ca, &present),
        remote(Some("ca"), false)
    );
    choose(&mut s, "admin.conf", CaChoice::Local);
    not_renewable(ca_route(&s, "admin.conf", &ca, &absent), "ca = \"local\"");
    choose(&mut s, "kubelet.crt", CaChoice::Remote);
    assert_eq!(
        ca_route(&s, "kubelet.crt", &Signer::Bundled, &absent),
        remote(Some("ca"), true)
    );
    // [ca] default = "remote": everything, even with the key present.
    s.ca.default = CaChoice::Remote;
    assert_eq!(
        ca_route(&s, "scheduler.conf", &ca, &present),
        remote(Some("ca"), false)
    );
    assert_eq!(
        ca_route(&s, "x", &Signer::Unknown, &present),
        remote(None, false)
    );
}

fn subject_types(pem_file: &Path) -> String {
    openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-nameopt",
        "show_type",
        "-in",
        pem_file.to_str().unwrap(),
    ])
}

#[test]
fn a_certificate_openssl_made_renews_through_cfssl() {
    // OpenSSL writes subjects as UTF8String; cfssl (Go) answers with PrintableString.
    // The same name in another string type is no change of identity.
    let (d, built) = build(&worker_spec());
    let r = d.path();
    let tls = Tls::new();
    let server = Cfssl::start(&built.ca, &tls, Mode::Https);
    configure(r, &server.url(), &tls, AUTH_KEY, "");
    let work = tempfile::tempdir().unwrap();
    let w = |n: &str| work.path().join(n);
    std::fs::write(w("ca.pem"), encode_pem("CERTIFICATE", &built.ca.0.der)).unwrap();
    std::fs::write(w("ca-key.pem"), built.ca.1.to_pem().unwrap().as_bytes()).unwrap();
    std::fs::write(
        w("ext.cnf"),
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = clientAuth\n\
         subjectAltName = DNS:worker-1, IP:10.0.0.21\n",
    )
    .unwrap();
    let dir = host(r, "/etc/webhook");
    std::fs::create_dir_all(&dir).unwrap();
    let (crt, key) = (dir.join("openssl.crt"), dir.join("openssl.key"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/O=system:nodes/CN=system:node:worker-1",
        "-keyout",
        &s(&key),
        "-out",
        &s(&w("req.csr")),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&w("req.csr")),
        "-CA",
        &s(&w("ca.pem")),
        "-CAkey",
        &s(&w("ca-key.pem")),
        "-days",
        "365",
        "-extfile",
        &s(&w("ext.cnf")),
        "-out",
        &s(&crt),
    ]);
    let before = identity(&crt);
    assert!(
        subject_types(&crt).contains("UTF8STRING"),
        "{}",
        subject_types(&crt)
    );
    let out = agent(r, &["renew", "/etc/webhook/openssl.crt"])
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("openssl.crt\trenewed\t"), "{all}");
    // The same name, now in Go's encoding, signed by the cluster CA for the new key.
    assert_eq!(identity(&crt), before);
    let types = subject_types(&crt);
    assert!(
        types.contains("PRINTABLESTRING") && !types.contains("UTF8STRING"),
        "{types}"
    );
    verify(&host(r, "/etc/kubernetes/pki/ca.crt"), &crt);
    same_key(&crt, &key);
}

#[test]
fn a_profile_shorter_than_asked_is_accepted_loudly_only_when_it_ends_later() {
    // The kubelet client is a 365-day certificate; the server's kubelet profile gives 91
    // days and no `days` says so.
    let spec = |left| {
        NodeSpec::worker(now()).with("kubelet-client-current.pem", Validity::days(365, left))
    };
    let tls = Tls::new();

    // 10 days left: 91 days from now end later, so it is renewed, with a warning.
    let (d, built) = build(&spec(Duration::days(10)));
    let r = d.path();
    let server = Cfssl::start(&built.ca, &tls, Mode::Https);
    configure(r, &server.url(), &tls, AUTH_KEY, "");
    let out = agent(r, &["renew", KUBELET_CLIENT]).output().unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("\trenewed\t"), "{all}");
    assert!(
        all.contains("WARNING: kubelet-client-current.pem: the certificate lives 91 days but 365 days was asked for"),
        "{all}"
    );
    assert!(all.contains("later than the old certificate"), "{all}");
    assert_eq!(
        lifetime_seconds(r, "kubelet-client-current.pem"),
        91 * 86_400
    );
    verify(
        &host(r, "/etc/kubernetes/pki/ca.crt"),
        &kubelet_client_file(r),
    );

    // 100 days left: 91 days from now end sooner than the old certificate: refused.
    let (d, built) = build(&spec(Duration::days(100)));
    let r = d.path();
    let server = Cfssl::start(&built.ca, &tls, Mode::Https);
    configure(r, &server.url(), &tls, AUTH_KEY, "");
    fails_and_changes_nothing(
        r,
        &mut agent(r, &["renew", KUBELET_CLIENT]),
        &[
            "FAILED",
            "lives 91 days but 365 days was asked for",
            "no later than the old certificate",
        ],
    );
}

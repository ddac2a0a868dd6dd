//! The commands as a kubeadm user meets them, through the real binary: renew by the
//! names status and kubeadm print, the restart advice, --restart, the demo that never
//! overwrites a node, and kubeconfigs that are not ours.

mod common;

use common::*;

#[test]
fn renew_takes_status_and_kubeadm_names_and_says_what_must_restart() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let before = std::fs::read(host(r, "/etc/kubernetes/pki/etcd/server.crt")).unwrap();
    let out = run(r, &["renew", "apiserver", "etcd-server", "admin.conf"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("/etc/kubernetes/pki/apiserver.crt\trenewed")
            && all.contains("/etc/kubernetes/pki/etcd/server.crt\trenewed")
            && all.contains("/etc/kubernetes/admin.conf\trenewed"),
        "{all}"
    );
    assert_ne!(
        before,
        std::fs::read(host(r, "/etc/kubernetes/pki/etcd/server.crt")).unwrap()
    );
    // kubeadm says the same after `kubeadm certs renew`: restart what loads them.
    assert!(
        all.contains("Restart these to load the new certificates")
            && all.contains("kube-apiserver"),
        "{all}"
    );
    assert!(
        !all.contains("etcd (restart"),
        "etcd reloads by itself: {all}"
    );
}

#[test]
fn an_unknown_target_name_is_a_usage_error_listing_the_valid_ones() {
    let d = node(&NodeSpec::control_plane(now()));
    let before = snapshot(d.path());
    let out = run(d.path(), &["renew", "apiservr"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("apiservr") && all.contains("front-proxy-client") && all.contains("etcd-peer"),
        "{all}"
    );
    assert_eq!(before, snapshot(d.path()), "nothing changed");
}

#[test]
fn renew_all_with_restart_under_root_renews_and_says_restarts_were_not_performed() {
    let d = node(&NodeSpec::control_plane(now()));
    let out = run(d.path(), &["renew-all", "--restart"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("not performed (not the live node)"), "{all}");
    assert!(all.contains("kube-apiserver"), "{all}");
}

#[test]
fn demo_keep_refuses_a_directory_that_holds_a_node() {
    let d = node(&NodeSpec::control_plane(now()));
    let before = snapshot(d.path());
    let out = std::process::Command::new(bin())
        .args(["demo", "--keep"])
        .arg(d.path())
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("etc/kubernetes"), "{all}");
    assert_eq!(before, snapshot(d.path()), "the existing node is untouched");
    // Not empty, no node: refused too, unless --build-only lays a node into it.
    let e = tempfile::tempdir().unwrap();
    std::fs::write(e.path().join("notes.txt"), b"mine").unwrap();
    let out = std::process::Command::new(bin())
        .args(["demo", "--keep"])
        .arg(e.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn a_token_kubeconfig_is_listed_as_not_managed_and_fails_nothing() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    std::fs::create_dir_all(host(r, "/root/.kube")).unwrap();
    std::fs::write(
        host(r, "/root/.kube/config"),
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://10.0.0.1:6443\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: oidc\nusers:\n- name: oidc\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: kubelogin\n",
    )
    .unwrap();
    let (v, code) = status_json(r);
    assert_eq!(code, 0, "{v:#}");
    let c = v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/root/.kube/config")
        .expect("listed");
    assert!(
        c["not_managed"].as_str().unwrap_or("").contains("exec"),
        "{c:#}"
    );
    assert!(c["error"].is_null(), "{c:#}");
    let out = run(r, &["status"]);
    assert!(text(&out).contains("not managed"), "{}", text(&out));
    let out = run(r, &["run"]);
    assert!(out.status.success(), "{}", text(&out));
}

fn sh(cmd: &str) {
    let out = std::process::Command::new("sh")
        .args(["-ec", cmd])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes apiserver.crt a leaf signed by an intermediate CA (signed by the node's CA),
/// with the intermediate after the leaf in the file. Returns the intermediate's dir.
fn leaf_with_intermediate(r: &std::path::Path) -> std::path::PathBuf {
    let pki = host(r, "/etc/kubernetes/pki");
    let x = r.join("intermediate");
    std::fs::create_dir_all(&x).unwrap();
    sh(&format!(
        "cd {x}
         printf 'basicConstraints=critical,CA:TRUE\\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\\n' > ca.ext
         printf 'basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature,keyEncipherment\\nextendedKeyUsage=serverAuth\\nsubjectAltName=DNS:kubernetes\\n' > leaf.ext
         openssl req -new -newkey rsa:2048 -nodes -keyout int.key -subj /CN=intermediate-ca -out int.csr 2>/dev/null
         openssl x509 -req -in int.csr -CA {pki}/ca.crt -CAkey {pki}/ca.key -CAcreateserial -days 3650 -extfile ca.ext -out int.crt 2>/dev/null
         openssl req -new -key {pki}/apiserver.key -subj /CN=kube-apiserver -out leaf.csr
         openssl x509 -req -in leaf.csr -CA int.crt -CAkey int.key -CAcreateserial -days 20 -extfile leaf.ext -out leaf.crt 2>/dev/null
         cat leaf.crt int.crt > {pki}/apiserver.crt",
        x = x.display(),
        pki = pki.display()
    ));
    x
}

#[test]
fn a_leaf_of_an_external_intermediate_is_not_renewed_with_a_made_up_ca() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    leaf_with_intermediate(r);
    let crt = host(r, "/etc/kubernetes/pki/apiserver.crt");
    let before = std::fs::read(&crt).unwrap();
    let (v, _) = status_json(r);
    let signer = cert(&v, "apiserver")["signer"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(signer.contains("intermediate-ca"), "{signer}");
    let out = run(r, &["renew", "apiserver"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("apiserver.crt\tskipped"), "{all}");
    assert_eq!(before, std::fs::read(&crt).unwrap(), "left as it was");
}

#[test]
fn a_leaf_with_its_chain_renews_from_its_real_ca_and_keeps_the_chain() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let x = leaf_with_intermediate(r);
    let pki = host(r, "/etc/kubernetes/pki");
    // The intermediate's key is on this node: it is the node's CA (ca.crt + ca.key).
    let root_ca = r.join("root-ca.crt");
    std::fs::copy(pki.join("ca.crt"), &root_ca).unwrap();
    std::fs::copy(x.join("int.crt"), pki.join("ca.crt")).unwrap();
    std::fs::copy(x.join("int.key"), pki.join("ca.key")).unwrap();
    let out = run(r, &["renew", "apiserver"]);
    assert!(out.status.success(), "{}", text(&out));
    let crt = pki.join("apiserver.crt");
    let pem = std::fs::read_to_string(&crt).unwrap();
    assert_eq!(
        pem.matches("BEGIN CERTIFICATE").count(),
        2,
        "chain kept:\n{pem}"
    );
    // The renewed leaf verifies to the root through the intermediate it carries.
    sh(&format!(
        "cd {x}; awk 'n<2{{print}} /END CERTIFICATE/{{n++}}' {crt} > both.pem
         csplit -s -z -f part both.pem '/BEGIN CERTIFICATE/' '{{*}}'
         cmp part01 int.crt
         openssl verify -CAfile {root} -untrusted part01 part00",
        x = x.display(),
        crt = crt.display(),
        root = root_ca.display()
    ));
}

#[test]
fn run_on_a_host_that_is_not_a_node_says_so_and_fails() {
    let d = tempfile::tempdir().unwrap();
    let out = run(d.path(), &["run"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("not a Kubernetes node"), "{all}");
    let prom = std::fs::read_to_string(host(
        d.path(),
        "/var/lib/cert-rotator/metrics/cert-rotator.prom",
    ))
    .unwrap();
    assert!(prom.contains("cert_rotator_pass_success 0"), "{prom}");
}

#[test]
fn an_extra_directory_that_does_not_exist_is_an_error() {
    let d = node(&NodeSpec::control_plane(now()));
    let cfg = d.path().join("extra.toml");
    std::fs::write(
        &cfg,
        "[[extra]]\nname = \"webhook\"\nkind = \"directory\"\npath = \"/etc/webhook/tls\"\n",
    )
    .unwrap();
    let out = run(d.path(), &["--config", cfg.to_str().unwrap(), "status"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("/etc/webhook/tls"), "{all}");
}

#[test]
fn an_unknown_target_in_the_configuration_is_refused_listing_the_valid_names() {
    let d = node(&NodeSpec::control_plane(now()));
    let cfg = d.path().join("bad.toml");
    std::fs::write(&cfg, "[targets.\"apiservr\"]\nremaining_days = 60\n").unwrap();
    let out = run(
        d.path(),
        &["--config", cfg.to_str().unwrap(), "config", "check"],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("apiservr") && all.contains("kubelet-client-current.pem"),
        "{all}"
    );
}

#[test]
fn cert_renew_renews_a_kubeconfig_through_the_files_it_references() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let pki = host(r, "/etc/kubernetes/pki");
    // A kubeconfig whose user names certificate files (apiserver-kubelet-client's pair).
    let kc = r.join("files.conf");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n    client-certificate: {p}/apiserver-kubelet-client.crt\n    client-key: {p}/apiserver-kubelet-client.key\n",
            p = pki.display()
        ),
    )
    .unwrap();
    let kc_before = std::fs::read(&kc).unwrap();
    let crt_before = std::fs::read(pki.join("apiserver-kubelet-client.crt")).unwrap();
    let out = std::process::Command::new(renew_bin())
        .args(["--ca-cert", pki.join("ca.crt").to_str().unwrap()])
        .args(["--ca-key", pki.join("ca.key").to_str().unwrap()])
        .args(["--state-dir", r.join("state").to_str().unwrap()])
        .arg(&kc)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        kc_before,
        std::fs::read(&kc).unwrap(),
        "the kubeconfig itself is unchanged"
    );
    assert_ne!(
        crt_before,
        std::fs::read(pki.join("apiserver-kubelet-client.crt")).unwrap(),
        "the certificate file it names is renewed"
    );
}

/// During a manual CA rotation ca.crt holds the issuing CA and another one: a leaf
/// signed by the other is still the node CA's, found by its signature, and renews from
/// the issuing CA (the first certificate, whose key is ca.key).
#[test]
fn a_ca_file_with_several_certificates_is_used_whole_to_find_the_signer() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let pki = host(r, "/etc/kubernetes/pki");
    let x = r.join("other");
    std::fs::create_dir_all(&x).unwrap();
    sh(&format!(
        "cd {x}
         printf 'basicConstraints=critical,CA:TRUE\\nkeyUsage=critical,keyCertSign,digitalSignature\\n' > ca.ext
         printf 'basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature,keyEncipherment\\nextendedKeyUsage=serverAuth\\nsubjectAltName=DNS:kubernetes\\n' > leaf.ext
         openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -subj /CN=kubernetes -days 3650 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,digitalSignature -out other.crt 2>/dev/null
         openssl req -new -key {pki}/apiserver.key -subj /CN=kube-apiserver -out leaf.csr
         openssl x509 -req -in leaf.csr -CA other.crt -CAkey other.key -CAcreateserial -days 20 -extfile leaf.ext -out {pki}/apiserver.crt 2>/dev/null
         cat other.crt >> {pki}/ca.crt",
        x = x.display(),
        pki = pki.display()
    ));
    let (v, _) = status_json(r);
    assert_eq!(cert(&v, "apiserver")["signer"], "ca", "{v:#}");
    let out = run(r, &["renew", "apiserver"]);
    assert!(out.status.success(), "{}", text(&out));
    // Renewed from the issuing CA, the first certificate of ca.crt.
    sh(&format!(
        "cd {x}; awk '{{print}} /END CERTIFICATE/{{exit}}' {pki}/ca.crt > first.crt
         openssl verify -CAfile first.crt {pki}/apiserver.crt",
        x = x.display(),
        pki = pki.display()
    ));
}

/// Output to a reader that went away, or to a full disk, never panics a writing command:
/// the renewals are done and recorded; only the text is lost.
#[test]
fn renew_all_into_a_closed_pipe_or_a_full_disk_finishes_without_a_panic() {
    for target in ["pipe", "full"] {
        let d = node(&NodeSpec::control_plane(now()));
        let mut cmd = agent(d.path(), &["renew-all"]);
        let mut child = match target {
            "pipe" => {
                let mut c = cmd
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                drop(c.stdout.take());
                c
            }
            _ => cmd
                .stdout(std::fs::File::create("/dev/full").unwrap())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        };
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(!err.contains("panicked"), "{target}: {err}");
        assert_ne!(status.code(), Some(101), "{target}: {err}");
        assert!(status.success(), "{target}: {status:?} {err}");
        let (v, _) = status_json(d.path());
        assert!(
            v["certificates"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["lifetime_seconds"].is_null() || c["due"] == false),
            "{target}: renewed all the same"
        );
    }
}

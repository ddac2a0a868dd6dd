//! `ca renew`, `ca status`, `ca export`, `ca import` and `run` renewing a due CA, on
//! fixture nodes, checked with real openssl and kubectl (docs/ca.md).

mod common;

use std::collections::BTreeMap;

use common::ca::*;
use common::*;

#[test]
fn ca_renew_keeps_key_subject_and_ski_and_every_leaf_verifies() {
    let d = dying_node();
    let r = d.path();
    let before: BTreeMap<&str, CaFacts> = [CA, FRONT_PROXY_CA, ETCD_CA]
        .into_iter()
        .map(|p| (p, ca_facts(&host(r, p))))
        .collect();
    let confs: BTreeMap<&str, String> = KUBECONFIGS.iter().map(|k| (*k, read(r, k))).collect();
    let leaves_before = snapshot(&host(r, "/etc/kubernetes/pki"));
    let out = run(r, &["ca", "renew", "ca", "front-proxy-ca", "etcd-ca"]);
    let t = ok(&out);
    for name in ["ca\trenewed", "front-proxy-ca\trenewed", "etcd/ca\trenewed"] {
        assert!(t.contains(name), "{t}");
    }
    // Under --root nothing is restarted; what would be is said, etcd first.
    let etcd = t.find("etcd: restart static pod etcd").expect(&t);
    let apiserver = t.find("kube-apiserver: restart static pod").expect(&t);
    assert!(etcd < apiserver, "{t}");
    assert!(t.contains("kubelet: restart kubelet.service"), "{t}");
    for (p, old) in &before {
        let new = ca_facts(&host(r, p));
        assert_eq!(new.subject, old.subject, "{p}");
        assert_eq!(new.pubkey, old.pubkey, "{p}");
        assert_eq!(new.ski, old.ski, "{p}");
        assert_ne!(new.serial, old.serial, "{p}");
        assert_ne!(new.not_after, old.not_after, "{p}");
    }
    // The old lifetime from now: ten years.
    let (v, code) = ca_status(r);
    assert_eq!(code, 0, "{v:#}");
    for a in v["authorities"].as_array().unwrap() {
        assert_eq!(a["due"], false, "{a:#}");
        let left = a["residual_seconds"].as_i64().unwrap();
        assert!(left > 3649 * 86_400 && left <= 3650 * 86_400, "{a:#}");
    }
    // No leaf was touched, and every one verifies against the renewed CA alone.
    let leaves_after = snapshot(&host(r, "/etc/kubernetes/pki"));
    let changed: Vec<_> = leaves_after
        .iter()
        .filter(|(p, s)| leaves_before.get(*p) != Some(s))
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert_eq!(
        changed,
        ["ca.crt", "etcd/ca.crt", "front-proxy-ca.crt"],
        "only the CA files change"
    );
    let pki = |n: &str| host(r, &format!("/etc/kubernetes/pki/{n}"));
    for leaf in ["apiserver.crt", "apiserver-kubelet-client.crt"] {
        verifies(&pki("ca.crt"), &pki(leaf));
    }
    verifies(&pki("front-proxy-ca.crt"), &pki("front-proxy-client.crt"));
    for leaf in [
        "apiserver-etcd-client.crt",
        "etcd/server.crt",
        "etcd/peer.crt",
        "etcd/healthcheck-client.crt",
    ] {
        verifies(&pki("etcd/ca.crt"), &pki(leaf));
    }
    verifies(&pki("ca.crt"), &kubelet_client_file(r));
    let new_ca = std::fs::read(pki("ca.crt")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for k in KUBECONFIGS {
        let after = read(r, k);
        only_ca_data_changed(&confs[k], &after, k);
        assert_eq!(kubectl_ca(&host(r, k)), new_ca, "{k} holds the new CA");
        if after.contains("client-certificate-data") {
            let pem = tmp.path().join("client.pem");
            write_embedded_client_cert(&after, &pem);
            verifies(&pki("ca.crt"), &pem);
        }
    }
    // The state dir holds the backup of every file written.
    let backups = snapshot(&host(r, "/var/lib/cert-rotator/backup"));
    assert!(
        backups
            .keys()
            .any(|p| p.ends_with("etc/kubernetes/admin.conf")),
        "{backups:?}"
    );
}

#[test]
fn ca_status_json_is_the_contract() {
    let d = dying_node();
    let r = d.path();
    let (v, code) = ca_status(r);
    assert_eq!(code, 0, "{v:#}");
    let names: Vec<&str> = v["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ca", "front-proxy-ca", "etcd/ca"]);
    for (name, path) in [
        ("ca", CA),
        ("front-proxy-ca", FRONT_PROXY_CA),
        ("etcd/ca", ETCD_CA),
    ] {
        let a = authority(&v, name);
        assert_eq!(a["path"], path);
        assert_eq!(a["has_key"], true);
        assert_eq!(a["due"], true, "{a:#}");
        assert_eq!(a["due_reason"], "under-20-percent");
        assert_eq!(a["phase"], "none");
        assert!(a["not_after"].as_str().unwrap().ends_with('Z'));
        let bundle = a["bundle"].as_array().unwrap();
        assert_eq!(bundle.len(), 1);
        let b = &bundle[0];
        let fp = openssl(&[
            "x509",
            "-in",
            host(r, path).to_str().unwrap(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ]);
        let fp = fp
            .trim()
            .rsplit('=')
            .next()
            .unwrap()
            .replace(':', "")
            .to_lowercase();
        assert_eq!(b["sha256"], fp.as_str());
        let serial = openssl(&[
            "x509",
            "-in",
            host(r, path).to_str().unwrap(),
            "-noout",
            "-serial",
        ]);
        let serial = serial
            .trim()
            .trim_start_matches("serial=")
            .trim_start_matches('0')
            .to_lowercase();
        assert_eq!(b["serial"], serial.as_str());
        assert!(b["subject"].as_str().unwrap().starts_with("CN="));
        assert_eq!(b["not_after"], a["not_after"]);
    }
    let copies: Vec<&str> = authority(&v, "ca")["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(copies[0], CA);
    for k in KUBECONFIGS {
        assert!(copies.contains(&k), "{k} in {copies:?}");
    }
    // `status` shows the due CAs too, its other fields unchanged.
    let (s, code) = status_json(r);
    assert_eq!(code, 0);
    let a = &s["authorities"][0];
    assert_eq!(a["due"], true, "{s:#}");
    assert_eq!(a["due_reason"], "under-20-percent");
    assert!(a["warning"].is_null() && a["has_key"] == true);
    let table = text(&run(r, &["status"]));
    assert!(
        table.contains("yes (under-20-percent): cert-rotator ca renew ca"),
        "{table}"
    );
    let table = ok(&run(r, &["ca", "status"]));
    assert!(
        table.contains("yes (under-20-percent)") && table.contains("none"),
        "{table}"
    );
    // Read-only: nothing written, not even the state directory.
    assert!(!host(r, "/var/lib/cert-rotator").exists());
}

#[test]
fn bad_input_changes_nothing() {
    let d = dying_node();
    let r = d.path();
    let out = run(r, &["ca", "renew", "kubernetes-ca"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("\"kubernetes-ca\" is not a CA name")
            && t.contains("ca, front-proxy-ca, etcd/ca"),
        "{t}"
    );
    let out = run(r, &["ca", "export", "nope", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A CA without its key.
    std::fs::remove_file(host(r, "/etc/kubernetes/pki/front-proxy-ca.key")).unwrap();
    fails_and_changes_nothing(
        r,
        &mut agent(r, &["ca", "renew", "ca", "front-proxy-ca"]),
        &["CA front-proxy-ca: no key at /etc/kubernetes/pki/front-proxy-ca.key"],
    );
    // A truncated CA file.
    let full = read(r, ETCD_CA);
    std::fs::write(host(r, ETCD_CA), &full[..full.len() - 40]).unwrap();
    fails_and_changes_nothing(
        r,
        &mut agent(r, &["ca", "renew", "etcd/ca"]),
        &["/etc/kubernetes/pki/etcd/ca.crt", "truncated PEM"],
    );
    let out = run(r, &["ca", "status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // A kubeconfig that cannot be parsed: its CA copy could not be updated.
    std::fs::write(host(r, ETCD_CA), &full).unwrap();
    std::fs::write(host(r, "/etc/kubernetes/scheduler.conf"), "{{{ not yaml").unwrap();
    fails_and_changes_nothing(
        r,
        &mut agent(r, &["ca", "renew", "ca"]),
        &["/etc/kubernetes/scheduler.conf", "YAML"],
    );
    // etcd/ca on a node with external etcd is no CA of this node.
    let mut spec = NodeSpec::control_plane(now());
    spec.stacked_etcd = false;
    let ext = node(&spec);
    let out = run(ext.path(), &["ca", "renew", "etcd/ca"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("CA etcd/ca is not on this node (it has: ca, front-proxy-ca)"));
    // Nothing due, nothing named: nothing done.
    let fresh = node(&NodeSpec::control_plane(now()));
    let before = snapshot(fresh.path());
    let t = ok(&run(fresh.path(), &["ca", "renew"]));
    assert!(t.contains("no CA is due"), "{t}");
    assert_eq!(before, snapshot(fresh.path()));
}

#[test]
fn run_renews_a_due_ca_first_and_says_so() {
    let d = dying_node();
    let r = d.path();
    let before = ca_facts(&host(r, ETCD_CA));
    // plan and run --dry-run show it and change nothing.
    let snap = snapshot(r);
    for args in [&["plan"][..], &["run", "--dry-run"]] {
        let t = ok(&run(r, args));
        assert!(
            t.contains("CA etcd/ca: renew with its own key first (under-20-percent"),
            "{t}"
        );
        assert!(t.contains("then restart etcd, kube-apiserver"), "{t}");
    }
    let plan: serde_json::Value =
        serde_json::from_slice(&run(r, &["plan", "--json"]).stdout).unwrap();
    assert_eq!(
        plan["authorities_due"].as_array().unwrap().len(),
        3,
        "{plan:#}"
    );
    assert_eq!(snap, snapshot(r));
    let out = run(r, &["run"]);
    let t = ok(&out);
    assert!(t.contains("CA renewed with its own key (3):"), "{t}");
    assert!(
        t.contains("WARNINGS") && t.contains("renewed CA etcd/ca with its own key"),
        "{t}"
    );
    assert!(t.contains("ca import FILE"), "{t}");
    let after = ca_facts(&host(r, ETCD_CA));
    assert_eq!(after.pubkey, before.pubkey);
    assert_ne!(after.serial, before.serial);
    let (v, _) = ca_status(r);
    assert!(v["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["due"] == false));
    verifies(
        &host(r, ETCD_CA),
        &host(r, "/etc/kubernetes/pki/etcd/server.crt"),
    );
    // The next pass has nothing to do with the CAs.
    let t = ok(&run(r, &["run"]));
    assert!(!t.contains("CA renewed"), "{t}");
}

#[test]
fn authorities_renew_false_stops_run_and_warns() {
    let d = dying_node();
    let r = d.path();
    let conf = r.join("cert-rotator.toml");
    std::fs::write(&conf, "[authorities]\nrenew = false\n").unwrap();
    let c = conf.to_str().unwrap();
    let before = std::fs::read(host(r, CA)).unwrap();
    let t = ok(&run(r, &["--config", c, "plan"]));
    assert!(
        t.contains("CA ca is due (under-20-percent") && t.contains("[authorities] renew = false"),
        "{t}"
    );
    let t = ok(&run(r, &["--config", c, "run"]));
    assert!(
        t.contains("not renewed automatically ([authorities] renew = false)"),
        "{t}"
    );
    assert!(!t.contains("CA renewed with its own key"), "{t}");
    assert_eq!(std::fs::read(host(r, CA)).unwrap(), before);
    // A narrower window: not due at all.
    std::fs::write(&conf, "[authorities]\nremaining_fraction = 0.1\n").unwrap();
    let (v, _) = {
        let out = run(r, &["--config", c, "ca", "status", "--json"]);
        (
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
            0,
        )
    };
    assert_eq!(authority(&v, "ca")["due"], false, "{v:#}");
    std::fs::write(&conf, "[authorities]\nremaining_fraction = 1.5\n").unwrap();
    let out = run(r, &["--config", c, "ca", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("authorities.remaining_fraction"),
        "{}",
        text(&out)
    );
}

/// The live path through the library, with the pass's test doubles for systemd, the TLS
/// probe and the clock (the booted-systemd test runs it for real): what holds the CAs
/// restarts once each, etcd first, one at a time, each verified; a failed restart stops
/// the rest and is reported, the new files staying.
#[test]
fn on_the_live_node_what_holds_the_ca_restarts_in_order_each_verified() {
    use cert_rotator::authority::{self, renew::read_key, NodeCopies};
    use cert_rotator::config::Settings;
    use cert_rotator::node::NodeRoot;
    use cert_rotator::write::StateDir;
    use common::fakes::{FakeClock, FakeProber, RecordingServiceManager};

    for fail_kubelet in [false, true] {
        let d = dying_node();
        let r = d.path();
        let root = NodeRoot::new(r);
        let s = Settings::default();
        let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
        let services = RecordingServiceManager::new();
        if fail_kubelet {
            services.fail_unit("kubelet.service", "failed");
        }
        let prober = FakeProber::new(r, &[]);
        let clock = FakeClock::at(now());
        let pass = TestPass::new(&root, &s, &state).live(&services, &prober, &clock);
        let node = NodeCopies::read(&root, &s);
        let renewals: Vec<_> = ["ca", "etcd/ca"]
            .iter()
            .map(|n| {
                let ca = node.authority(n).unwrap();
                let key = read_key(&root, ca).unwrap();
                authority::plan_renewal(ca, node.role, &key, now(), None).unwrap()
            })
            .collect();
        let changes: Vec<_> = renewals.iter().flat_map(|x| x.changes.clone()).collect();
        let restarts = authority::merge_restarts(renewals.iter().map(|x| x.restarts.as_slice()));
        let serials: Vec<String> = renewals.iter().map(|x| x.new.serial.clone()).collect();
        let done = pass.with(|p| {
            authority::install(p, "renew CA ca, etcd/ca", &changes, &restarts, &serials).unwrap()
        });
        let restarted = done.restarted();
        let order: Vec<&str> = restarted
            .iter()
            .map(|l| l.split(':').next().unwrap())
            .collect();
        let mut want = vec![
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ];
        if !fail_kubelet {
            want.push("kubelet.service");
        }
        assert_eq!(order, want, "{done:?}");
        for pod in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            let m = read(r, &format!("/etc/kubernetes/manifests/{pod}.yaml"));
            assert!(m.contains("cert-rotator.k8s.io/certs-hash"), "{pod}: {m}");
        }
        assert_eq!(services.restarted(), ["kubelet.service"]);
        // Control-plane restarts are paced: the clock was slept on between them.
        assert!(clock.slept().len() >= 3, "{:?}", clock.slept());
        assert_eq!(
            std::fs::read(host(r, CA)).unwrap(),
            authority::renew::pem(&renewals[0].new).into_bytes()
        );
        if fail_kubelet {
            let f = done.failed().expect("the kubelet's restart failed");
            assert!(f.starts_with("kubelet:"), "{f}");
            assert!(
                !done.verified().iter().any(|v| v.starts_with("kubelet")),
                "{done:?}"
            );
        } else {
            assert!(done.failed().is_none(), "{done:?}");
            assert!(
                done.verified()
                    .iter()
                    .any(|v| v.starts_with("etcd serves serial")),
                "{done:?}"
            );
            assert!(
                done.verified().iter().any(|v| v.starts_with("kubelet")),
                "{done:?}"
            );
        }
    }
}

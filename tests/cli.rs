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

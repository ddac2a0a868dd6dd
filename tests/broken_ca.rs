//! A CA file that cannot be used is named as the cause (issue 18, item 6b), and a
//! certificate whose notAfter is before its notBefore is an error in `status` (6c).

mod common;

use common::*;

#[test]
fn renew_all_names_a_truncated_or_non_ca_file_instead_of_an_unknown_signer() {
    let spec = NodeSpec::control_plane(now());
    for (what, break_it) in [
        (
            "truncated",
            Box::new(|ca: &std::path::Path| {
                let b = std::fs::read(ca).unwrap();
                std::fs::write(ca, &b[..b.len() / 2]).unwrap();
            }) as Box<dyn Fn(&std::path::Path)>,
        ),
        (
            "not a CA",
            Box::new(|ca: &std::path::Path| {
                let leaf = ca.with_file_name("apiserver.crt");
                std::fs::copy(leaf, ca).unwrap();
            }),
        ),
    ] {
        let d = node(&spec);
        let r = d.path();
        break_it(&host(r, "/etc/kubernetes/pki/ca.crt"));
        let out = run(r, &["renew-all"]);
        let all = text(&out);
        let line = all
            .lines()
            .find(|l| l.contains("apiserver-kubelet-client"))
            .unwrap_or_else(|| panic!("{what}: {all}"))
            .to_string();
        assert!(
            line.contains("/etc/kubernetes/pki/ca.crt:"),
            "{what}: the broken CA file is not named: {line}\n{all}"
        );
        if what == "not a CA" {
            assert!(line.contains("is not a CA certificate"), "{line}");
        }
    }
}

#[test]
fn a_certificate_that_ends_before_it_begins_is_an_error_in_status() {
    // notBefore 10 days after notAfter.
    let spec =
        NodeSpec::control_plane(now()).with("apiserver", Validity::days(-10, Duration::days(100)));
    let d = node(&spec);
    let r = d.path();
    let (v, code) = status_json(r);
    assert_eq!(code, 1, "{v:#}");
    let e = cert(&v, "apiserver")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        e.contains("/etc/kubernetes/pki/apiserver.crt: notAfter")
            && e.contains("is not after notBefore")
            && e.contains("cert-rotator renew apiserver --days N"),
        "{v:#}"
    );
    let out = run(r, &["status"]);
    assert!(
        text(&out).contains("Errors:\n  apiserver: /etc/kubernetes/pki/apiserver.crt: notAfter"),
        "{}",
        text(&out)
    );
}

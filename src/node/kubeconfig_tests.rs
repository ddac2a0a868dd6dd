//! Tests of [`super`]: reading a kubeconfig's credential and cluster entries, and
//! editing their base64 values in place.

use super::*;

const KC: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://10.0.0.10:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
- context:
    cluster: kubernetes
    user: other
  name: other@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {}
users:
- name: other
  user:
    client-certificate: other.crt
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
";

#[test]
fn finds_the_current_users_embedded_data_and_its_bytes() {
    let k = parse(KC.as_bytes(), Path::new("/etc/kubernetes/admin.conf")).unwrap();
    assert_eq!(k.user, "kubernetes-admin");
    let ClientCredential::Embedded {
        cert_pem,
        key_pem,
        cert_span,
        key_span,
    } = k.credential
    else {
        panic!("not embedded")
    };
    assert_eq!(cert_pem, b"CERT");
    assert_eq!(key_pem.unwrap(), b"KEY");
    let c = cert_span.unwrap();
    assert_eq!(&KC[c.start..c.start + c.len], "Q0VSVA==");
    let k = key_span.unwrap();
    assert_eq!(&KC[k.start..k.start + k.len], "S0VZ");
}

#[test]
fn replacing_embedded_data_changes_only_those_bytes() {
    let out = replace_embedded(KC.as_bytes(), Path::new("/a"), b"NEWCERT", b"NEWKEY").unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out,
        KC.replace("Q0VSVA==", "TkVXQ0VSVA==")
            .replace("S0VZ", "TkVXS0VZ")
    );
    let quoted = KC.replace("client-key-data: S0VZ", "client-key-data: \"S0VZ\"");
    let out = replace_embedded(quoted.as_bytes(), Path::new("/a"), b"C", b"NEWKEY").unwrap();
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("client-key-data: \"TkVXS0VZ\"\n"));
}

#[test]
fn cluster_ca_data_is_found_and_replaced_in_place() {
    let e = clusters(KC.as_bytes(), Path::new("/a")).unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].name, "kubernetes");
    let ClusterTrust::Embedded { pem, .. } = &e[0].trust else {
        panic!("not embedded")
    };
    assert_eq!(pem, b"CA");
    let out =
        replace_cluster_ca(KC.as_bytes(), Path::new("/a"), &[("kubernetes", b"NEWCA")]).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        KC.replace(
            "certificate-authority-data: Q0E=",
            "certificate-authority-data: TkVXQ0E="
        )
    );
    let err = replace_cluster_ca(KC.as_bytes(), Path::new("/a"), &[("gone", b"X")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no cluster \"gone\""), "{err}");
    let file = KC.replace(
        "certificate-authority-data: Q0E=",
        "certificate-authority: pki/ca.crt",
    );
    let e = clusters(file.as_bytes(), Path::new("/etc/kubernetes/x.conf")).unwrap();
    assert!(
        matches!(&e[0].trust, ClusterTrust::File(p) if p == Path::new("/etc/kubernetes/pki/ca.crt"))
    );
    let err = replace_cluster_ca(file.as_bytes(), Path::new("/a"), &[("kubernetes", b"X")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no certificate-authority-data"), "{err}");
}

/// One parse gives what the two give alone, also when one part is broken.
#[test]
fn both_readings_from_one_parse_are_each_as_alone() {
    let p = Path::new("/etc/kubernetes/admin.conf");
    let no_list = KC.replace("users:\n- name: other", "users: 5\nx:\n- name: other");
    let no_context = KC.replace("current-context: kubernetes-admin@kubernetes\n", "");
    for text in [KC.to_string(), no_list, no_context, "{{{ no".to_string()] {
        let both = parse_both(text.as_bytes(), p);
        let alone = (parse(text.as_bytes(), p), clusters(text.as_bytes(), p));
        assert_eq!(
            format!("{:?}", both.kubeconfig),
            format!("{:?}", alone.0),
            "{text}"
        );
        assert_eq!(format!("{:?}", both.clusters), format!("{:?}", alone.1));
    }
    let broken = parse_both(KC.replace("users:\n", "users: 5\nx:\n").as_bytes(), p);
    assert!(broken.kubeconfig.is_err() && broken.clusters.is_ok());
}

#[test]
fn file_references_resolve_from_the_kubeconfig_dir() {
    let kc = KC.replace(
        "current-context: kubernetes-admin@kubernetes",
        "current-context: other@kubernetes",
    );
    let k = parse(kc.as_bytes(), Path::new("/etc/kubernetes/x.conf")).unwrap();
    match k.credential {
        ClientCredential::Files { cert, key } => {
            assert_eq!(cert, Path::new("/etc/kubernetes/other.crt"));
            assert_eq!(key, None);
        }
        _ => panic!("not files"),
    }
}

#[test]
fn broken_kubeconfigs_say_what_is_wrong() {
    let nowhere = KC.replace(
        "current-context: kubernetes-admin@kubernetes",
        "current-context: gone",
    );
    let e = parse(nowhere.as_bytes(), Path::new("/a"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"gone\" names no context"), "{e}");
    let e = parse(b"{{{ not: yaml", Path::new("/a"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("YAML"), "{e}");
    let e = parse(b"kind: Config\n", Path::new("/a"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no current-context"), "{e}");
}

/// KC with these users (name, what follows `user:`), in this order: YAML anchors come
/// before their aliases.
fn with_users(users: &[(&str, &str)]) -> String {
    let head = &KC[..KC.find("users:\n").unwrap()];
    let mut out = format!("{head}users:\n");
    for (name, user) in users {
        out += &format!("- name: {name}\n  user:{user}\n");
    }
    out
}

/// KC whose user `other` (first) has embedded data that YAML may tie to kubernetes-admin's.
fn tied(other: &str, admin: &str) -> String {
    with_users(&[("other", other), ("kubernetes-admin", admin)])
}

fn refused(kc: &str) -> String {
    replace_embedded(kc.as_bytes(), Path::new("/a"), b"NEW", b"NEWKEY")
        .unwrap_err()
        .to_string()
}

/// A value reached through a YAML alias sits where its anchor is, in another entry:
/// replacing those bytes would renew that entry, not this one. Refused, naming the field.
#[test]
fn a_value_that_is_an_alias_of_another_users_is_not_replaced() {
    let other = "\n    client-certificate-data: &c T1RIRVI=\n    client-key-data: &k T0s=";
    let admin = "\n    client-certificate-data: *c\n    client-key-data: *k";
    let kc = tied(other, admin);
    // Read as kubectl reads it.
    let k = parse(kc.as_bytes(), Path::new("/a")).unwrap();
    assert!(
        matches!(k.credential, ClientCredential::Embedded { cert_pem, .. } if cert_pem == b"OTHER")
    );
    let e = refused(&kc);
    assert!(
        e.contains("user \"kubernetes-admin\": client-certificate-data is a YAML alias (*c)")
            && e.contains("edit it by hand"),
        "{e}"
    );
    // The key alone aliased: refused as well, naming it.
    let admin = "\n    client-certificate-data: Q0VSVA==\n    client-key-data: *k";
    let e = refused(&tied(other, admin));
    assert!(e.contains("client-key-data is a YAML alias (*k)"), "{e}");
    // The whole user mapping an alias of another's.
    let e = refused(&tied(&format!(" &u{other}"), " *u"));
    assert!(
        e.contains("client-certificate-data is a YAML alias (*u)"),
        "{e}"
    );
}

/// An anchor on this user's value that another user's value is an alias of: replacing it
/// would renew the other user too. Refused; an anchor nobody refers to is no tie.
#[test]
fn a_value_another_user_is_an_alias_of_is_not_replaced() {
    let admin = "\n    client-certificate-data: &c Q0VSVA==\n    client-key-data: &k S0VZ";
    let after =
        |other: &str, admin: &str| with_users(&[("kubernetes-admin", admin), ("other", other)]);
    let e = refused(&after(
        "\n    client-certificate-data: *c\n    client-key-data: T0s=",
        admin,
    ));
    assert!(
        e.contains("user \"kubernetes-admin\": client-certificate-data carries a YAML anchor that user \"other\"'s client-certificate-data is an alias of"),
        "{e}"
    );
    let e = refused(&after(" *u", &format!(" &u{admin}")));
    assert!(
        e.contains("that user \"other\"'s client-certificate-data is an alias of"),
        "{e}"
    );
    // Anchors without aliases, and aliases between other entries: this user's own.
    let kc = tied(
        "\n    client-certificate-data: &x T1RIRVI=\n    client-key-data: *x",
        admin,
    );
    assert!(kc.contains("*x") && kc.contains("&c Q0VSVA=="));
    let out = replace_embedded(kc.as_bytes(), Path::new("/a"), b"NEW", b"NEWKEY").unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        kc.replace("&c Q0VSVA==", "&c TkVX")
            .replace("&k S0VZ", "&k TkVXS0VZ")
    );
}

/// The same for a cluster's certificate-authority-data (a CA rotation's edit).
#[test]
fn a_cluster_ca_tied_to_another_by_yaml_anchors_is_not_replaced() {
    let refused = |kc: &str, cluster: &str| {
        replace_cluster_ca(kc.as_bytes(), Path::new("/a"), &[(cluster, b"NEWCA")])
            .unwrap_err()
            .to_string()
    };
    let anchored = KC.replace("authority-data: Q0E=", "authority-data: &ca Q0E=");
    let b =
        "- cluster:\n    certificate-authority-data: *ca\n    server: https://b:6443\n  name: b\n";
    let kc = anchored.replace("contexts:\n", &format!("{b}contexts:\n"));
    let e = refused(&kc, "b");
    let alias = "cluster \"b\": certificate-authority-data is a YAML alias (*ca)";
    assert!(e.contains(alias), "{e}");
    let e = refused(&kc, "kubernetes");
    let anchor = "cluster \"kubernetes\": certificate-authority-data carries a YAML anchor that cluster \"b\"'s certificate-authority-data is an alias of";
    assert!(e.contains(anchor), "{e}");
    // A user's client certificate an alias of the cluster's CA data ties them too.
    let kc = anchored.replace(
        "client-certificate-data: Q0VSVA==",
        "client-certificate-data: *ca",
    );
    let e = refused(&kc, "kubernetes");
    let user = "user \"kubernetes-admin\"'s client-certificate-data is an alias of";
    assert!(e.contains(user), "{e}");
}

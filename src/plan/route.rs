//! Who signs each target: the local CA, the remote CA, kubelet.crt's own throwaway CA,
//! or nobody on this node. Decided once, in the plan.

use std::path::PathBuf;

use crate::config::serving::ServingMode;
use crate::config::{CaChoice, Settings};
use crate::inventory::serving::ServingPlan;
use crate::inventory::{Reading, Signer};

/// The CA an operator named on the command line (`--ca-cert`/`--ca-key`, node paths),
/// or the new CA a rotation staged (`ca rotate NAME issue`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaOverride {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// It replaces the CA that signed the targets (a rotation's new CA): it signs
    /// leaves another CA signed. Otherwise only a kubelet.crt's throwaway CA is left.
    pub replaces_issuer: bool,
}

/// Who signs a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaRoute {
    /// The CA named on the command line signs every selected target; a kubelet.crt
    /// signed by its own throwaway CA moves to it (the operator's explicit choice).
    Given(CaOverride),
    /// The node's CA of that name, whose key is on the node.
    Local(String),
    /// kubelet.crt with its throwaway CA: renewed the same way, no CA needed.
    SelfBundled,
    /// `[ca.remote]`. Results verify against its `ca_cert`, else the certificate of the
    /// node authority named here, else they must keep the old issuer and key id.
    Remote {
        authority: Option<String>,
        /// kubelet.crt leaves its throwaway CA for the cluster CA.
        switch_issuer: bool,
    },
    /// kubelet.crt through the certificates API (`[kubelet] serving = "csr"`): signer
    /// `kubernetes.io/kubelet-serving`, requested with the kubelet's credentials.
    KubeletCsr,
    /// Why nothing on or for this node can renew it.
    NotRenewable(String),
}

impl CaRoute {
    /// A kubelet.crt leaves its throwaway CA for the CA that signs it now.
    pub fn switches_issuer(&self, signer: &Signer) -> bool {
        match self {
            CaRoute::Given(given) => given.replaces_issuer || *signer == Signer::Bundled,
            CaRoute::Remote { switch_issuer, .. } => *switch_issuer,
            _ => false,
        }
    }
}

/// The route of kubelet.crt under `[kubelet] serving` (`None`: self-signed, routed as
/// any target): `csr` through the certificates API; `cluster-ca` by the cluster CA's key
/// on the node, else `[ca.remote]`, else not renewable, said why. Pure.
pub fn serving_route(
    settings: &Settings,
    mode: ServingMode,
    key_of: &dyn Fn(&str) -> Option<(PathBuf, bool)>,
) -> Option<CaRoute> {
    match mode {
        ServingMode::SelfSigned => None,
        ServingMode::Csr => Some(CaRoute::KubeletCsr),
        ServingMode::ClusterCa => Some(match key_of("ca") {
            Some((_, true)) => CaRoute::Local("ca".into()),
            _ if settings.ca.remote.is_some() => CaRoute::Remote {
                authority: Some("ca".into()),
                switch_issuer: true,
            },
            key => CaRoute::NotRenewable(format!(
                "[kubelet] serving = \"cluster-ca\" but the cluster CA key {} is not on this node and no [ca.remote] is configured (serving = \"csr\" asks the API server instead)",
                key.map(|(k, _)| k.display().to_string())
                    .unwrap_or_else(|| "ca.key".into())
            )),
        }),
    }
}

/// Whether kubelet.crt must be issued again now because `[kubelet] serving` wants the
/// cluster CA's signature and it has another (its own throwaway CA, at first). Pure.
pub fn serving_issuer_due(mode: ServingMode, signer: &Signer) -> bool {
    mode != ServingMode::SelfSigned && *signer != Signer::Authority("ca".into())
}

/// Whether kubelet.crt must be issued again now because it lacks a name the node's files
/// want (`serving.wanted`: the Node's name, the kubelet's host name, `--node-ip`), such
/// as after an address change. Only under `cluster-ca`, where we issue it and can always
/// include them (self-signed is the kubelet's business; under `csr` an approver allows
/// only what the Node lists, so a name beyond it would be denied at every pass), and
/// where its names were read. Pure.
pub fn serving_sans_due(serving: &ServingPlan, reading: &Reading) -> bool {
    serving.mode == ServingMode::ClusterCa
        && reading
            .alt_names
            .as_ref()
            .is_some_and(|have| !have.missing(&serving.wanted).is_empty())
}

/// Routes a target by its `[targets."NAME"] ca` (else `[ca] default`) and its signer:
/// `auto` is the local CA when its key is on the node, `[ca.remote]` when it is absent
/// and a remote is configured, else not renewable (external CA). "remote" sends every
/// kind of target to the remote CA (a self-signed kubelet.crt then becomes CA-signed);
/// "local" never does. `key_of(name)` gives a node authority's key path and whether it
/// exists. Pure: `plan` can route with it too.
pub fn ca_route(
    settings: &Settings,
    target: &str,
    signer: &Signer,
    key_of: &dyn Fn(&str) -> Option<(PathBuf, bool)>,
) -> CaRoute {
    let choice = settings
        .targets
        .get(target)
        .and_then(|o| o.ca)
        .unwrap_or(settings.ca.default);
    let remote_configured = settings.ca.remote.is_some();
    match (signer, choice) {
        (Signer::Authority(name), CaChoice::Remote) => CaRoute::Remote {
            authority: Some(name.clone()),
            switch_issuer: false,
        },
        (Signer::Authority(name), choice) => match key_of(name) {
            Some((key, false)) => {
                if choice == CaChoice::Auto && remote_configured {
                    CaRoute::Remote {
                        authority: Some(name.clone()),
                        switch_issuer: false,
                    }
                } else {
                    CaRoute::NotRenewable(format!(
                        "CA key {} absent (external CA): not renewable locally{}",
                        key.display(),
                        if remote_configured {
                            " (ca = \"local\" for this target)"
                        } else {
                            " (configure [ca.remote] to renew through a cfssl server)"
                        }
                    ))
                }
            }
            // Present, or not an authority of the layout (loading the CA says so).
            _ => CaRoute::Local(name.clone()),
        },
        (Signer::Bundled, CaChoice::Remote) => CaRoute::Remote {
            authority: Some("ca".into()),
            switch_issuer: true,
        },
        (Signer::Bundled, _) => CaRoute::SelfBundled,
        (_, CaChoice::Remote) => CaRoute::Remote {
            authority: None,
            switch_issuer: false,
        },
        (s, _) => CaRoute::NotRenewable(format!(
            "signed by {} : no CA on this node to renew it with",
            s.label()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CaSettings, TargetOverride};

    fn with(default: CaChoice, remote: bool) -> Settings {
        Settings {
            ca: CaSettings {
                default,
                remote: remote.then(crate::config::remote::RemoteSettings::default),
            },
            ..Default::default()
        }
    }

    fn key(present: bool) -> impl Fn(&str) -> Option<(PathBuf, bool)> {
        move |name: &str| Some((PathBuf::from(format!("/pki/{name}.key")), present))
    }

    fn route(s: &Settings, signer: Signer, key_present: bool) -> CaRoute {
        ca_route(s, "apiserver", &signer, &key(key_present))
    }

    #[test]
    fn a_local_key_signs_unless_the_target_says_remote() {
        let ca = || Signer::Authority("ca".into());
        assert_eq!(
            route(&with(CaChoice::Auto, false), ca(), true),
            CaRoute::Local("ca".into())
        );
        assert_eq!(
            route(&with(CaChoice::Auto, true), ca(), true),
            CaRoute::Local("ca".into())
        );
        let remote = CaRoute::Remote {
            authority: Some("ca".into()),
            switch_issuer: false,
        };
        assert_eq!(route(&with(CaChoice::Remote, true), ca(), true), remote);
        let mut s = with(CaChoice::Auto, true);
        s.targets.insert(
            "apiserver".into(),
            TargetOverride {
                ca: Some(CaChoice::Remote),
                ..Default::default()
            },
        );
        assert_eq!(route(&s, ca(), true), remote);
    }

    #[test]
    fn an_absent_key_goes_remote_only_when_allowed() {
        let ca = || Signer::Authority("ca".into());
        assert_eq!(
            route(&with(CaChoice::Auto, true), ca(), false),
            CaRoute::Remote {
                authority: Some("ca".into()),
                switch_issuer: false
            }
        );
        let CaRoute::NotRenewable(why) = route(&with(CaChoice::Auto, false), ca(), false) else {
            panic!("an external CA without a remote is not renewable");
        };
        assert!(
            why.contains("/pki/ca.key") && why.contains("[ca.remote]"),
            "{why}"
        );
        let CaRoute::NotRenewable(why) = route(&with(CaChoice::Local, true), ca(), false) else {
            panic!("ca = local never goes remote");
        };
        assert!(why.contains("ca = \"local\""), "{why}");
    }

    #[test]
    fn kubelet_crt_keeps_its_throwaway_ca_unless_sent_remote() {
        assert_eq!(
            route(&with(CaChoice::Auto, true), Signer::Bundled, false),
            CaRoute::SelfBundled
        );
        let r = route(&with(CaChoice::Remote, true), Signer::Bundled, false);
        assert_eq!(
            r,
            CaRoute::Remote {
                authority: Some("ca".into()),
                switch_issuer: true
            }
        );
        assert!(r.switches_issuer(&Signer::Bundled));
        let given = CaRoute::Given(CaOverride {
            cert: "/c".into(),
            key: "/k".into(),
            replaces_issuer: false,
        });
        assert!(given.switches_issuer(&Signer::Bundled));
        assert!(!given.switches_issuer(&Signer::Authority("ca".into())));
        // A rotation's new CA signs what the old one signed.
        let rotation = CaRoute::Given(CaOverride {
            cert: "/c".into(),
            key: "/k".into(),
            replaces_issuer: true,
        });
        assert!(rotation.switches_issuer(&Signer::Authority("ca".into())));
    }

    #[test]
    fn serving_modes_route_kubelet_crt_and_make_it_due_until_the_cluster_ca_signed_it() {
        let s = with(CaChoice::Auto, false);
        assert_eq!(serving_route(&s, ServingMode::SelfSigned, &key(true)), None);
        assert_eq!(
            serving_route(&s, ServingMode::Csr, &key(true)),
            Some(CaRoute::KubeletCsr)
        );
        assert_eq!(
            serving_route(&s, ServingMode::ClusterCa, &key(true)),
            Some(CaRoute::Local("ca".into()))
        );
        let Some(CaRoute::NotRenewable(why)) =
            serving_route(&s, ServingMode::ClusterCa, &key(false))
        else {
            panic!("cluster-ca without the key nor a remote");
        };
        assert!(
            why.contains("/pki/ca.key") && why.contains("\"csr\""),
            "{why}"
        );
        let remote = with(CaChoice::Auto, true);
        assert_eq!(
            serving_route(&remote, ServingMode::ClusterCa, &key(false)),
            Some(CaRoute::Remote {
                authority: Some("ca".into()),
                switch_issuer: true
            })
        );
        let ca = Signer::Authority("ca".into());
        for mode in [ServingMode::ClusterCa, ServingMode::Csr] {
            assert!(serving_issuer_due(mode, &Signer::Bundled));
            assert!(serving_issuer_due(mode, &Signer::Unknown));
            assert!(!serving_issuer_due(mode, &ca));
        }
        assert!(!serving_issuer_due(
            ServingMode::SelfSigned,
            &Signer::Bundled
        ));
    }

    #[test]
    fn unknown_and_intermediate_signers_are_not_renewable_locally() {
        for signer in [
            Signer::Unknown,
            Signer::SelfSigned,
            Signer::Intermediate("CN=intermediate".into()),
        ] {
            assert!(
                matches!(
                    route(&with(CaChoice::Auto, true), signer.clone(), true),
                    CaRoute::NotRenewable(_)
                ),
                "{signer:?}"
            );
            assert_eq!(
                route(&with(CaChoice::Remote, true), signer, true),
                CaRoute::Remote {
                    authority: None,
                    switch_issuer: false
                }
            );
        }
    }
}

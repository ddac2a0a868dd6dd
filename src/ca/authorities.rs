//! The CAs a command signs with, loaded once each from the route the plan decided: the
//! node's CA of a name, the CA named on the command line, or the remote cfssl server
//! (one HTTP client for the whole command).

use std::collections::BTreeMap;
use std::sync::Arc;

use time::OffsetDateTime;

use super::local::LocalCa;
use super::remote::{RemoteCa, RemoteClient, RemoteError};
use super::{load_ca_certificate, CaError, CertificateAuthority};
use crate::config::Settings;
use crate::inventory::AuthorityDef;
use crate::node::NodeRoot;
use crate::plan::CaRoute;

/// Which loaded CA a route needs: a typed key, no string sentinels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum CaKey {
    Given,
    Local(String),
    /// The remote CA, with the node authority its answers must verify against.
    Remote(Option<String>),
}

/// Why no CA signs along a route. Cloneable: a CA that failed to load fails every
/// target that needs it with the same error, and is loaded once.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    NotRenewable(String),
    #[error("CA {name} is not part of this node's layout")]
    NotInLayout { name: String },
    #[error("ca = \"remote\" but no [ca.remote] is configured")]
    NoRemote,
    #[error("{0}")]
    Ca(Arc<CaError>),
    #[error("remote CA: {0}")]
    Remote(Arc<RemoteError>),
}

type Loaded = Result<Box<dyn CertificateAuthority>, LoadError>;

/// The signers of one command, loaded on first use and kept for its other targets.
pub struct Authorities<'a> {
    root: &'a NodeRoot,
    settings: &'a Settings,
    defs: &'a [AuthorityDef],
    now: OffsetDateTime,
    loaded: BTreeMap<CaKey, Loaded>,
    client: Option<Result<Arc<RemoteClient>, Arc<RemoteError>>>,
}

impl<'a> Authorities<'a> {
    pub fn new(
        root: &'a NodeRoot,
        settings: &'a Settings,
        defs: &'a [AuthorityDef],
        now: OffsetDateTime,
    ) -> Self {
        Authorities {
            root,
            settings,
            defs,
            now,
            loaded: BTreeMap::new(),
            client: None,
        }
    }

    /// The node the CAs' files are read from (and other edges of issuing read through).
    pub fn root(&self) -> &'a NodeRoot {
        self.root
    }

    /// The CA that signs along `route`; `Ok(None)` for kubelet.crt's own throwaway CA.
    pub fn signer(
        &mut self,
        route: &CaRoute,
    ) -> Result<Option<&dyn CertificateAuthority>, LoadError> {
        let key = match route {
            CaRoute::SelfBundled => return Ok(None),
            CaRoute::NotRenewable(why) => return Err(LoadError::NotRenewable(why.clone())),
            // The certificates API: issue.rs opens it with the kubelet's credentials.
            CaRoute::KubeletCsr => {
                return Err(LoadError::NotRenewable(
                    "kubelet.crt through the certificates API is not a CA of this node".into(),
                ))
            }
            CaRoute::Given(_) => CaKey::Given,
            CaRoute::Local(name) => CaKey::Local(name.clone()),
            CaRoute::Remote { authority, .. } => CaKey::Remote(authority.clone()),
        };
        if !self.loaded.contains_key(&key) {
            let ca = self.load(route);
            self.loaded.insert(key.clone(), ca);
        }
        match &self.loaded[&key] {
            Ok(ca) => Ok(Some(&**ca)),
            Err(e) => Err(e.clone()),
        }
    }

    fn load(&mut self, route: &CaRoute) -> Loaded {
        let local = |ca: Result<LocalCa, CaError>| -> Loaded {
            ca.map(|c| Box::new(c) as Box<dyn CertificateAuthority>)
                .map_err(|e| LoadError::Ca(Arc::new(e)))
        };
        match route {
            CaRoute::Given(given) => local(LocalCa::load(
                self.root,
                "given CA",
                &given.cert,
                &given.key,
                self.now,
            )),
            CaRoute::Local(name) => {
                let def = self
                    .defs
                    .iter()
                    .find(|a| &a.name == name)
                    .ok_or_else(|| LoadError::NotInLayout { name: name.clone() })?;
                local(LocalCa::load(
                    self.root, &def.name, &def.cert, &def.key, self.now,
                ))
            }
            CaRoute::Remote { authority, .. } => self.load_remote(authority.as_deref()),
            CaRoute::SelfBundled | CaRoute::NotRenewable(_) | CaRoute::KubeletCsr => Err(
                LoadError::NotRenewable("no CA signs along this route".into()),
            ),
        }
    }

    /// A remote CA whose results must verify against `[ca.remote] ca_cert`, else the
    /// certificate of the node authority `authority`, else nothing known.
    fn load_remote(&mut self, authority: Option<&str>) -> Loaded {
        let settings = self
            .settings
            .ca
            .remote
            .as_ref()
            .ok_or(LoadError::NoRemote)?;
        let root = self.root;
        let client = self
            .client
            .get_or_insert_with(|| {
                RemoteClient::new(root, settings)
                    .map(Arc::new)
                    .map_err(Arc::new)
            })
            .clone()
            .map_err(LoadError::Remote)?;
        let ca_path = match &settings.ca_cert {
            Some(p) => Some(p.clone()),
            None => authority.and_then(|name| {
                self.defs
                    .iter()
                    .find(|a| a.name == name)
                    .map(|a| a.cert.clone())
            }),
        };
        let ca = match ca_path {
            Some(p) => {
                let c = load_ca_certificate(self.root, &p, self.now)
                    .map_err(|e| LoadError::Ca(Arc::new(e)))?;
                Some((p, c))
            }
            None => None,
        };
        Ok(Box::new(RemoteCa::new(client, ca)))
    }
}

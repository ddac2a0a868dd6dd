//! The CAs a command signs with, loaded once each from the route the plan decided: the
//! node's CA of a name, the CA named on the command line, or the remote cfssl server
//! (one HTTP client for the whole command).

use std::collections::BTreeMap;
use std::sync::Arc;

use time::OffsetDateTime;

use super::local::LocalCa;
use super::remote::{load_ca_certificate, RemoteCa, RemoteClient};
use super::{CaError, CertificateAuthority};
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

/// The signers of one command, loaded on first use and kept for its other targets.
pub struct Authorities<'a> {
    root: &'a NodeRoot,
    settings: &'a Settings,
    defs: &'a [AuthorityDef],
    now: OffsetDateTime,
    loaded: BTreeMap<CaKey, Result<Box<dyn CertificateAuthority>, String>>,
    client: Option<Result<Arc<RemoteClient>, String>>,
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

    /// The CA that signs along `route`; `Ok(None)` for kubelet.crt's own throwaway CA.
    /// A CA that cannot be loaded fails every target that needs it, with the same error.
    pub fn signer(
        &mut self,
        route: &CaRoute,
    ) -> Result<Option<&dyn CertificateAuthority>, CaError> {
        let key = match route {
            CaRoute::SelfBundled => return Ok(None),
            CaRoute::NotRenewable(why) => return Err(CaError::Refused(why.clone())),
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
            Err(e) => Err(CaError::Refused(e.clone())),
        }
    }

    fn load(&mut self, route: &CaRoute) -> Result<Box<dyn CertificateAuthority>, String> {
        match route {
            CaRoute::Given(given) => {
                LocalCa::load(self.root, "given CA", &given.cert, &given.key, self.now)
                    .map(|c| Box::new(c) as Box<dyn CertificateAuthority>)
                    .map_err(|e| e.to_string())
            }
            CaRoute::Local(name) => {
                let def = self
                    .defs
                    .iter()
                    .find(|a| &a.name == name)
                    .ok_or_else(|| format!("CA {name} is not part of this node's layout"))?;
                LocalCa::load(self.root, &def.name, &def.cert, &def.key, self.now)
                    .map(|c| Box::new(c) as Box<dyn CertificateAuthority>)
                    .map_err(|e| e.to_string())
            }
            CaRoute::Remote { authority, .. } => self
                .load_remote(authority.as_deref())
                .map_err(|e| format!("remote CA: {e}")),
            CaRoute::SelfBundled | CaRoute::NotRenewable(_) => {
                Err("no CA signs along this route".into())
            }
        }
    }

    /// A remote CA whose results must verify against `[ca.remote] ca_cert`, else the
    /// certificate of the node authority `authority`, else nothing known.
    fn load_remote(
        &mut self,
        authority: Option<&str>,
    ) -> Result<Box<dyn CertificateAuthority>, String> {
        let settings = self
            .settings
            .ca
            .remote
            .as_ref()
            .ok_or("ca = \"remote\" but no [ca.remote] is configured")?;
        let root = self.root;
        let client = self
            .client
            .get_or_insert_with(|| RemoteClient::new(root, settings).map(Arc::new))
            .clone()?;
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
                let c = load_ca_certificate(self.root, &p, self.now)?;
                Some((p, c))
            }
            None => None,
        };
        Ok(Box::new(RemoteCa::new(client, ca)))
    }
}

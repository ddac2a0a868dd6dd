//! Renewals on request: `renew`, `renew-all` and `cert-renew`. Each target is renewed
//! unconditionally (no window), written crash-safely, and reported on one line; a target
//! that fails is left untouched and the others go on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::OffsetDateTime;

use crate::ca::remote::{RemoteCa, RemoteClient};
use crate::ca::{CertificateAuthority, LocalCa};
use crate::config::Settings;
use crate::inventory::{self, Layout, Observed, Signer, Target, TargetState};
use crate::issue::{self, RenewOptions};
use crate::model::TargetKind;
use crate::node::NodeRoot;
use crate::plan::route::{ca_route, CaRoute};
use crate::write::StateDir;

/// The CA an operator named on the command line (node paths).
#[derive(Clone, Debug)]
pub struct GivenCa {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug)]
pub enum Outcome {
    Renewed {
        serial: String,
        not_after: OffsetDateTime,
        warnings: Vec<String>,
        backup_dir: PathBuf,
        /// Node paths written, for a rollback from `backup_dir`.
        files: Vec<PathBuf>,
    },
    Skipped(String),
    Failed(String),
}

#[derive(Debug)]
pub struct TargetOutcome {
    pub name: String,
    pub path: PathBuf,
    pub outcome: Outcome,
}

impl TargetOutcome {
    pub fn line(&self) -> String {
        match &self.outcome {
            Outcome::Renewed {
                serial, not_after, ..
            } => format!(
                "{}\trenewed\tnot_after={}\tserial={serial}",
                self.path.display(),
                crate::timefmt::rfc3339(*not_after)
            ),
            Outcome::Skipped(why) => format!("{}\tskipped\t{why}", self.path.display()),
            Outcome::Failed(why) => format!("{}\tFAILED\t{why}", self.path.display()),
        }
    }
}

/// What to renew.
pub enum Selection {
    /// Every target of the node (renew-all).
    All,
    /// These node paths (certificate files, kubeconfigs, the kubelet's files).
    Paths(Vec<PathBuf>),
}

pub struct Renewer<'a> {
    pub root: &'a NodeRoot,
    pub settings: &'a Settings,
    pub state: &'a StateDir,
    pub ca: Option<GivenCa>,
    pub opts: RenewOptions,
}

impl Renewer<'_> {
    pub fn run(&self, selection: Selection) -> Vec<TargetOutcome> {
        let layout = inventory::layout(self.settings, self.root);
        let targets: Vec<Result<Target, (PathBuf, String)>> = match selection {
            Selection::All => layout.targets.iter().cloned().map(Ok).collect(),
            Selection::Paths(paths) => paths
                .iter()
                .map(|p| find_or_detect(self.root, &layout, p))
                .collect(),
        };
        let mut cas = CaCache::default();
        let mut out = Vec::new();
        for t in targets {
            let t = match t {
                Ok(t) => t,
                Err((path, why)) => {
                    out.push(TargetOutcome {
                        name: path.display().to_string(),
                        path,
                        outcome: Outcome::Failed(why),
                    });
                    continue;
                }
            };
            // Logging is the caller's: the pass logs with MESSAGE_IDs, manual commands
            // print a line per target.
            let outcome = self.renew_one(&layout, &t, &mut cas);
            out.push(TargetOutcome {
                name: t.name.clone(),
                path: t.path.clone(),
                outcome,
            });
        }
        out
    }

    fn renew_one(&self, layout: &Layout, t: &Target, cas: &mut CaCache) -> Outcome {
        let observed = inventory::read(
            &Layout {
                targets: vec![t.clone()],
                ..layout.clone()
            },
            self.root,
        );
        let Some(Observed { state, .. }) = observed.certificates.into_iter().next() else {
            return Outcome::Failed("not read".into());
        };
        let reading = match state {
            TargetState::Read(r) => r,
            TargetState::Missing => return Outcome::Skipped("absent (optional)".into()),
            TargetState::Error(e) => return Outcome::Failed(e),
        };
        let mut opts = self.opts.clone();
        // Which CA: the one given, else as the configuration routes the target.
        let key = match &self.ca {
            Some(g) => {
                if reading.signer == Signer::Bundled {
                    // The operator asked for this CA: kubelet.crt leaves its throwaway CA.
                    opts.switch_issuer = true;
                }
                format!("given:{}:{}", g.cert.display(), g.key.display())
            }
            None => {
                let key_of = |name: &str| {
                    layout
                        .authorities
                        .iter()
                        .find(|a| a.name == name)
                        .map(|a| (a.key.clone(), self.root.exists(&a.key)))
                };
                match ca_route(self.settings, &t.name, &reading.signer, &key_of) {
                    CaRoute::Local(name) => name,
                    CaRoute::SelfBundled => String::new(),
                    CaRoute::Remote {
                        authority,
                        switch_issuer,
                    } => {
                        opts.switch_issuer |= switch_issuer;
                        format!("{REMOTE}{}", authority.unwrap_or_default())
                    }
                    CaRoute::NotRenewable(why) => return Outcome::Skipped(why),
                }
            }
        };
        if let Some(authority) = key.strip_prefix(REMOTE) {
            let Some(remote) = &self.settings.ca.remote else {
                return Outcome::Failed(format!(
                    "{}: ca = \"remote\" but no [ca.remote] is configured",
                    t.name
                ));
            };
            // cfssl's profile sets the lifetime: expect what the target's profile gives.
            if opts.days.is_none() {
                opts.days = remote.days_for(&t.name);
            }
            if !cas.cas.contains_key(&key) {
                let loaded = self.load_remote(layout, authority, &mut cas.remote);
                cas.cas.insert(key.clone(), loaded);
            }
        }
        let ca: Option<&dyn CertificateAuthority> = if key.is_empty() {
            None
        } else {
            let entry = cas.cas.entry(key.clone()).or_insert_with(|| {
                self.load_ca(layout, &key)
                    .map(|c| Box::new(c) as Box<dyn CertificateAuthority>)
            });
            match entry {
                Ok(ca) => Some(&**ca),
                Err(e) if e.starts_with("external:") => {
                    return Outcome::Skipped(e["external:".len()..].to_string())
                }
                Err(e) if key.starts_with(REMOTE) => {
                    return Outcome::Failed(format!("{}: remote CA: {e}", t.name))
                }
                Err(e) => return Outcome::Failed(e.clone()),
            }
        };
        let prepared = match issue::prepare(self.root, t, &reading, ca, &opts) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        match self
            .state
            .apply(&format!("renew {}", t.name), &prepared.changes)
        {
            Ok(applied) => Outcome::Renewed {
                serial: prepared.new_cert.serial.clone(),
                not_after: prepared.new_cert.not_after,
                warnings: prepared.warnings,
                files: applied.entries.iter().map(|e| e.path.clone()).collect(),
                backup_dir: applied.backup_dir,
            },
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    fn load_ca(&self, layout: &Layout, key: &str) -> Result<LocalCa, String> {
        if let Some(given) = &self.ca {
            return LocalCa::load(
                self.root,
                "given CA",
                &given.cert,
                &given.key,
                self.opts.now,
            )
            .map_err(|e| e.to_string());
        }
        let def = layout
            .authorities
            .iter()
            .find(|a| a.name == key)
            .ok_or_else(|| format!("CA {key} is not part of this node's layout"))?;
        if !self.root.exists(&def.key) {
            return Err(format!(
                "external:CA key {} absent (external CA): not renewable locally{}",
                def.key.display(),
                if self.settings.ca.remote.is_some() {
                    ""
                } else {
                    " (configure [ca.remote] to renew through a cfssl server)"
                }
            ));
        }
        LocalCa::load(self.root, &def.name, &def.cert, &def.key, self.opts.now)
            .map_err(|e| e.to_string())
    }
}

/// Cache key prefix of a remote CA: `remote:` + the node authority whose certificate
/// the results must verify against (empty: none known).
const REMOTE: &str = "remote:";

/// The CAs a run has loaded, by key, and the remote client, made once.
#[derive(Default)]
struct CaCache {
    cas: BTreeMap<String, Result<Box<dyn CertificateAuthority>, String>>,
    remote: Option<Result<Arc<RemoteClient>, String>>,
}

impl Renewer<'_> {
    /// A remote CA whose results must verify against `[ca.remote] ca_cert`, else the
    /// certificate of the node authority `authority`, else nothing known.
    fn load_remote(
        &self,
        layout: &Layout,
        authority: &str,
        client: &mut Option<Result<Arc<RemoteClient>, String>>,
    ) -> Result<Box<dyn CertificateAuthority>, String> {
        let settings = self
            .settings
            .ca
            .remote
            .as_ref()
            .ok_or("no [ca.remote] is configured")?;
        let client = client
            .get_or_insert_with(|| {
                RemoteClient::new(self.root, settings)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()?;
        let ca_path = match &settings.ca_cert {
            Some(p) => Some(p.clone()),
            None => layout
                .authorities
                .iter()
                .find(|a| a.name == authority)
                .map(|a| a.cert.clone()),
        };
        let ca = match ca_path {
            Some(p) => {
                let c = crate::ca::load_ca_certificate(self.root, &p, self.opts.now)
                    .map_err(|e| e.to_string())?;
                Some((p, c))
            }
            None => None,
        };
        Ok(Box::new(RemoteCa::new(client, ca)))
    }
}

/// The node's target at `path` (its certificate, kubeconfig, key or the file behind the
/// kubelet's symlink), or a target detected from the file's content.
fn find_or_detect(
    root: &NodeRoot,
    layout: &Layout,
    path: &Path,
) -> Result<Target, (PathBuf, String)> {
    let resolved = root.resolve(path).unwrap_or_else(|_| path.to_path_buf());
    for t in &layout.targets {
        let t_resolved = root.resolve(&t.path).ok();
        if t.path == path
            || t.key.as_deref() == Some(path)
            || t_resolved.as_deref() == Some(resolved.as_path())
        {
            return Ok(t.clone());
        }
    }
    let fail = |m: String| (path.to_path_buf(), format!("{}: {m}", path.display()));
    let (_, bytes) = root
        .read_file(path)
        .map_err(|e| (path.to_path_buf(), e.to_string()))?;
    let base = |kind, key| Target {
        name: path.display().to_string(),
        kind,
        path: path.to_path_buf(),
        key,
        component: None,
        optional: false,
        window: Default::default(),
    };
    if bytes.starts_with(b"-----BEGIN")
        || bytes
            .windows(27)
            .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        let text = String::from_utf8_lossy(&bytes);
        if text.contains("PRIVATE KEY-----") {
            // Certificate and key in one file.
            let is_link = std::fs::symlink_metadata(root.host(path))
                .is_ok_and(|m| m.file_type().is_symlink());
            return Ok(if is_link {
                base(TargetKind::KubeletClient, None)
            } else {
                base(TargetKind::Certificate, Some(path.to_path_buf()))
            });
        }
        let key = path.with_extension("key");
        if !root.exists(&key) {
            return Err(fail(format!(
                "no private key in the file and no {} beside it",
                key.display()
            )));
        }
        return Ok(base(TargetKind::Certificate, Some(key)));
    }
    Ok(base(TargetKind::Kubeconfig, None))
}

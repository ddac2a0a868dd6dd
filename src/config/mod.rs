//! Configuration: /etc/cert-rotator/config.toml plus config.d/*.toml drop-ins.
//!
//! Every key has a default that fits a kubeadm node, so a node without a config file is
//! fully served. Unknown keys and wrong types are errors that name the file, the key and
//! the line (toml's own messages carry line, column and the offending key).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::node::{normalize, NodeError, NodeRoot};

pub mod coordination;
pub mod events;
mod paths;
pub mod remote;
pub mod san_rules;
pub mod serving;
pub mod signer;

pub const DEFAULT_CONFIG: &str = "/etc/cert-rotator/config.toml";
pub const DEFAULT_DROPIN_DIR: &str = "/etc/cert-rotator/config.d";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read configuration: {}", read_detail(path, source))]
    Read {
        path: PathBuf,
        #[source]
        source: NodeError,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The gate's message without its path when it is the file already named.
fn read_detail(path: &Path, e: &NodeError) -> String {
    if e.path == path {
        e.problem.to_string()
    } else {
        e.to_string()
    }
}

/// A value serde accepts but the agent cannot use: `<key> = <value>: <problem>`.
#[derive(Debug, thiserror::Error)]
#[error("{key} = {value}: {problem}")]
pub struct InvalidValue {
    pub key: String,
    /// The value as written in TOML.
    pub value: String,
    pub problem: String,
}

impl InvalidValue {
    fn new(
        key: impl Into<String>,
        value: impl std::fmt::Debug,
        problem: impl Into<String>,
    ) -> Self {
        InvalidValue {
            key: key.into(),
            value: format!("{value:?}"),
            problem: problem.into(),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Write-ahead records, backups, pass history and the lock live here.
    pub state_dir: PathBuf,
    /// How many backup generations (one per renewal) to keep under state_dir/backup.
    pub keep_backups: usize,
    /// When a certificate becomes due, for every target without its own window.
    pub window: WindowSettings,
    /// Where the kubeadm layout lives on this node.
    pub kubeadm: KubeadmPaths,
    /// Who signs: the local CA key or a remote cfssl server (`[ca.remote]`).
    pub ca: CaSettings,
    /// Per built-in target (by name: "apiserver", "admin.conf", ...): switch off or
    /// give it its own window.
    pub targets: BTreeMap<String, TargetOverride>,
    /// Targets beyond kubeadm's.
    pub extra: Vec<ExtraTarget>,
    /// How a pass paces its restarts.
    pub run: RunSettings,
    /// Who renews the certificates the kubelet rotates itself.
    pub kubelet: KubeletSettings,
    /// When the node's CAs (ca, front-proxy-ca, etcd/ca) are due, and whether `run`
    /// renews them with their own key.
    pub authorities: AuthoritySettings,
    /// Prometheus textfile (node path) written by every run and status; empty: none.
    /// Point node_exporter's --collector.textfile.directory at its directory.
    pub metrics_file: PathBuf,
    /// The cross-node restart lock.
    pub coordination: coordination::CoordinationSettings,
    /// `cert-rotator signer`: the API server and the Lease (docs/csr.md).
    pub csr: signer::CsrSettings,
    /// `[[signer]]`: the signerNames `cert-rotator signer` signs for; none by default.
    pub signer: Vec<signer::SignerSettings>,
    /// Events on the Node for what a pass did; off by default.
    pub events: events::EventSettings,
}

/// The rotation queue's pacing. A control plane restarts one component at a time; a
/// pass restarts at most `max_restarts_per_pass` components (the rest wait for the next
/// daily pass) unless a certificate is within `urgent_days` of expiry or expired.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RunSettings {
    pub max_restarts_per_pass: usize,
    /// Seconds between two control-plane restarts, within a pass and across passes.
    pub min_restart_gap_seconds: u64,
    pub urgent_days: f64,
    /// How long a restart may take before it counts as failed.
    pub restart_timeout_seconds: u64,
    /// How long a component may take to serve its new certificate before rollback.
    pub verify_timeout_seconds: u64,
    /// Verify what components serve after a restart (per component: `[components.NAME]`).
    pub verify: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            max_restarts_per_pass: 2,
            min_restart_gap_seconds: 30,
            urgent_days: 14.0,
            restart_timeout_seconds: 120,
            verify_timeout_seconds: 180,
            verify: true,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            state_dir: PathBuf::from("/var/lib/cert-rotator"),
            keep_backups: 100,
            window: WindowSettings::default(),
            kubeadm: KubeadmPaths::default(),
            ca: CaSettings::default(),
            targets: BTreeMap::new(),
            extra: Vec::new(),
            run: RunSettings::default(),
            kubelet: KubeletSettings::default(),
            authorities: AuthoritySettings::default(),
            metrics_file: PathBuf::from("/var/lib/cert-rotator/metrics/cert-rotator.prom"),
            coordination: coordination::CoordinationSettings::default(),
            csr: signer::CsrSettings::default(),
            signer: Vec::new(),
            events: events::EventSettings::default(),
        }
    }
}

/// `[kubelet]`: where the kubelet rotates a certificate itself through the CSR API
/// (`rotateCertificates: true` in /var/lib/kubelet/config.yaml, kubeadm's default, for
/// kubelet-client-current.pem; `serverTLSBootstrap: true` for
/// kubelet-server-current.pem), the agent renews it only as a safety net: once
/// `safety_net_fraction` of its lifetime has passed (client-go's certificate manager
/// rotates at a jittered 70-90%, so 0.9 is the kubelet's own latest deadline), or when
/// it has expired; never earlier by a days rule (docs). `"agent"` renews it by the
/// window like any other certificate.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KubeletSettings {
    pub client_rotation: KubeletRotation,
    pub server_rotation: KubeletRotation,
    pub safety_net_fraction: f64,
    /// Who issues kubelet.crt (docs/csr.md, "kubelet.crt a client can verify").
    pub serving: serving::ServingMode,
    /// The kubelet's own credentials: the Node lookup and the CSR of `serving = "csr"`.
    pub serving_kubeconfig: PathBuf,
    /// `serving = "csr"`: the most the CSR exchange (create, wait, fetch) takes.
    pub serving_timeout_seconds: u64,
}

impl Default for KubeletSettings {
    fn default() -> Self {
        KubeletSettings {
            client_rotation: KubeletRotation::SafetyNet,
            server_rotation: KubeletRotation::SafetyNet,
            safety_net_fraction: 0.9,
            serving: serving::ServingMode::SelfSigned,
            serving_kubeconfig: PathBuf::from("/etc/kubernetes/kubelet.conf"),
            serving_timeout_seconds: 60,
        }
    }
}

/// The CAs' own window, apart from the leaves': a CA is due when less than
/// `remaining_fraction` of its lifetime remains (2 years of kubeadm's 10). `renew`
/// false: `run` only reports a due CA, and `ca renew` is the operator's.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthoritySettings {
    pub remaining_fraction: f64,
    pub renew: bool,
}

impl Default for AuthoritySettings {
    fn default() -> Self {
        AuthoritySettings {
            remaining_fraction: 0.2,
            renew: true,
        }
    }
}

/// Who renews a certificate the kubelet can rotate itself.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum KubeletRotation {
    /// The kubelet, while it can; the agent after its deadline or when urgent.
    #[default]
    SafetyNet,
    /// The agent, by the window (the kubelet's own rotation is not waited for).
    Agent,
}

/// Due when less than `remaining_fraction` of the lifetime or less than
/// `remaining_days` remain. The defaults give the schedules kubeadm users know: a 91-day
/// kubelet certificate renews at day 61, a 365-day control-plane certificate at day 292.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WindowSettings {
    pub remaining_fraction: f64,
    pub remaining_days: f64,
}

impl Default for WindowSettings {
    fn default() -> Self {
        WindowSettings {
            remaining_fraction: 0.2,
            remaining_days: 30.0,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KubeadmPaths {
    pub pki_dir: PathBuf,
    pub kubeconfig_dir: PathBuf,
    pub kubelet_pki_dir: PathBuf,
    pub manifests_dir: PathBuf,
    /// Operator kubeconfigs that are copies of admin.conf.
    pub user_kubeconfigs: Vec<PathBuf>,
}

impl Default for KubeadmPaths {
    fn default() -> Self {
        KubeadmPaths {
            pki_dir: "/etc/kubernetes/pki".into(),
            kubeconfig_dir: "/etc/kubernetes".into(),
            kubelet_pki_dir: "/var/lib/kubelet/pki".into(),
            manifests_dir: "/etc/kubernetes/manifests".into(),
            user_kubeconfigs: vec!["/root/.kube/config".into()],
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TargetOverride {
    pub enabled: Option<bool>,
    pub remaining_fraction: Option<f64>,
    pub remaining_days: Option<f64>,
    /// Who signs this target: "local" or "remote" (default: `[ca] default`).
    pub ca: Option<CaChoice>,
}

/// Which CA signs a target.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CaChoice {
    /// The local CA where its key is on the node, else `[ca.remote]` when configured,
    /// else the target is not renewable (external CA).
    #[default]
    Auto,
    Local,
    Remote,
}

/// `[ca]`: the default choice and the remote signer (see docs/remote-ca.md).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaSettings {
    pub default: CaChoice,
    pub remote: Option<remote::RemoteSettings>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ExtraKind {
    /// A PEM certificate with its key in `key` (default: the path with `.key`).
    Certificate,
    /// A kubeconfig whose current user's client certificate is the target.
    Kubeconfig,
    /// Every `*.crt` / `*.pem` certificate directly in a directory.
    Directory,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExtraTarget {
    pub name: String,
    pub kind: ExtraKind,
    pub path: PathBuf,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// What must reload it: kube-apiserver, etcd, kube-controller-manager,
    /// kube-scheduler, kubelet, none, a systemd unit (`foo.service`) or a static pod
    /// (`static-pod:NAME`, the manifest /etc/kubernetes/manifests/NAME.yaml).
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub remaining_fraction: Option<f64>,
    #[serde(default)]
    pub remaining_days: Option<f64>,
}

/// The configuration and the files it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub settings: Settings,
    /// Node or host paths of the files read, in order (empty: built-in defaults).
    pub sources: Vec<PathBuf>,
}

/// Loads the configuration. `explicit` is a host path given with `--config` (as a
/// command-line file it is taken as given, not under the root) and must exist; without
/// it the default file and its drop-ins are read under the root, and a missing default
/// file means built-in defaults. Every file is read through the node gate: a regular
/// file of bounded size, never a FIFO or device.
pub fn load(root: &NodeRoot, explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let files = read_files(root, explicit)?;
    let mut merged = toml::Table::new();
    let mut tables = Vec::new();
    for (shown, bytes) in &files {
        let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::Invalid {
            path: shown.clone(),
            message: format!("not UTF-8 text: {e}"),
        })?;
        let table = parse_file(shown, text)?;
        tables.push((shown.clone(), table.clone()));
        merge(&mut merged, table);
    }
    let last_file = || {
        files
            .last()
            .map(|f| f.0.clone())
            .unwrap_or_else(|| DEFAULT_CONFIG.into())
    };
    let settings: Settings =
        toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid {
                path: last_file(),
                message: e.message().to_string(),
            })?;
    // [ca.remote] may be spread over drop-ins: it is checked once merged.
    if let Some(r) = &settings.ca.remote {
        r.validate().map_err(|m| ConfigError::Invalid {
            path: last_file(),
            message: format!("[ca.remote] {m}"),
        })?;
    }
    // Paths may be spread over drop-ins too, and links on the node may join them: the
    // state and metrics paths are checked once merged, as written and as resolved.
    let resolved = |p: &Path| root.resolve(p).unwrap_or_else(|_| normalize(p));
    validate(&settings)
        .and_then(|()| settings.coordination.validate_merged())
        .and_then(|()| paths::check(&settings, &resolved))
        .map_err(|e| ConfigError::Invalid {
            // The file that set the key, when one did.
            path: tables
                .iter()
                .rev()
                .find(|(_, t)| t.contains_key(&e.key))
                .map(|(f, _)| f.clone())
                .unwrap_or_else(last_file),
            message: e.to_string(),
        })?;
    Ok(Loaded {
        settings,
        sources: files.into_iter().map(|f| f.0).collect(),
    })
}

/// The configuration files' shown paths and bytes, in the order they apply.
fn read_files(
    root: &NodeRoot,
    explicit: Option<&Path>,
) -> Result<Vec<(PathBuf, Vec<u8>)>, ConfigError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigError::Read { path, source }
    };
    if let Some(p) = explicit {
        // A host path, relative to the working directory: read with the live root's
        // checks.
        let abs = std::env::current_dir()
            .map(|cwd| cwd.join(p))
            .unwrap_or_else(|_| p.to_path_buf());
        let (_, bytes) = NodeRoot::new("/").read_file(&abs).map_err(read_err(p))?;
        return Ok(vec![(p.to_path_buf(), bytes)]);
    }
    let mut files = Vec::new();
    let main = Path::new(DEFAULT_CONFIG);
    match root.read_file(main) {
        Ok((_, bytes)) => files.push((main.to_path_buf(), bytes)),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(read_err(main)(e)),
    }
    let dir = Path::new(DEFAULT_DROPIN_DIR);
    let entries = match root.read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(read_err(dir)(e)),
    };
    for (name, _) in entries {
        let n = name.to_string_lossy();
        if !n.ends_with(".toml") || n.starts_with('.') {
            continue;
        }
        let shown = dir.join(&name);
        let (_, bytes) = root.read_file(&shown).map_err(read_err(&shown))?;
        files.push((shown, bytes));
    }
    Ok(files)
}

/// Parses one file and checks it on its own, so errors carry its line numbers.
fn parse_file(shown: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: shown.to_path_buf(),
        message,
    };
    let settings: Settings = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    validate(&settings).map_err(|e| invalid(e.to_string()))?;
    toml::from_str(text).map_err(|e: toml::de::Error| invalid(e.to_string()))
}

/// Checks the values serde cannot: ranges, component names, and that the state
/// directory and the metrics file stay clear of what the agent and the kubelet manage.
fn validate(s: &Settings) -> Result<(), InvalidValue> {
    let frac = |key: &str, v: f64| {
        if (0.0..1.0).contains(&v) {
            Ok(())
        } else {
            Err(InvalidValue {
                key: key.to_string(),
                value: v.to_string(),
                problem: "must be at least 0 and below 1".into(),
            })
        }
    };
    let days = |key: &str, v: f64| {
        if v >= 0.0 && v.is_finite() {
            Ok(())
        } else {
            Err(InvalidValue {
                key: key.to_string(),
                value: v.to_string(),
                problem: "must be a number of days, 0 or more".into(),
            })
        }
    };
    frac("window.remaining_fraction", s.window.remaining_fraction)?;
    let f = s.kubelet.safety_net_fraction;
    if !(f > 0.0 && f <= 1.0) {
        return Err(InvalidValue {
            key: "kubelet.safety_net_fraction".into(),
            value: f.to_string(),
            problem: "must be above 0 and at most 1 (the share of the lifetime after which the agent renews what the kubelet rotates itself)".into(),
        });
    }
    days("window.remaining_days", s.window.remaining_days)?;
    frac(
        "authorities.remaining_fraction",
        s.authorities.remaining_fraction,
    )?;
    for name in s.targets.keys() {
        let known = crate::model::KUBEADM_TARGET_NAMES.contains(&name.as_str())
            || s.kubeadm
                .user_kubeconfigs
                .iter()
                .any(|u| u.as_os_str() == name.as_str())
            || s.extra.iter().any(|x| &x.name == name);
        if !known {
            let mut valid: Vec<String> = crate::model::KUBEADM_TARGET_NAMES
                .iter()
                .map(|n| n.to_string())
                .collect();
            valid.extend(
                s.kubeadm
                    .user_kubeconfigs
                    .iter()
                    .map(|u| u.display().to_string()),
            );
            valid.extend(s.extra.iter().map(|x| x.name.clone()));
            return Err(InvalidValue {
                key: format!("targets.{name:?}"),
                value: name.clone(),
                problem: format!("names no target; valid names: {}", valid.join(", ")),
            });
        }
    }
    for (name, o) in &s.targets {
        if let Some(v) = o.remaining_fraction {
            frac(&format!("targets.{name}.remaining_fraction"), v)?;
        }
        if let Some(v) = o.remaining_days {
            days(&format!("targets.{name}.remaining_days"), v)?;
        }
    }
    for (i, x) in s.extra.iter().enumerate() {
        if let Some(v) = x.remaining_fraction {
            frac(&format!("extra[{i}].remaining_fraction"), v)?;
        }
        if let Some(v) = x.remaining_days {
            days(&format!("extra[{i}].remaining_days"), v)?;
        }
        if let Some(c) = &x.component {
            crate::model::Component::parse(c).map_err(|m| {
                InvalidValue::new(format!("extra[{i}].component"), c, m.to_string())
            })?;
        }
        if !x.path.is_absolute() {
            return Err(InvalidValue::new(
                format!("extra[{i}].path"),
                &x.path,
                "must be an absolute node path",
            ));
        }
    }
    s.coordination.validate()?;
    signer::validate(&s.csr, &s.signer)?;
    s.events.validate()?;
    serving::validate(&s.kubelet)?;
    paths::check(s, &|p: &Path| normalize(p))
}

/// Later files win: tables merge key by key, anything else is replaced.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

impl Settings {
    /// The effective configuration as TOML, for `config check`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(files: &[(&str, &str)]) -> (tempfile::TempDir, NodeRoot) {
        let d = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let host = d.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(host.parent().unwrap()).unwrap();
            std::fs::write(host, text).unwrap();
        }
        let r = NodeRoot::new(d.path());
        (d, r)
    }

    #[test]
    fn missing_default_file_means_defaults() {
        let (_d, r) = root_with(&[]);
        let l = load(&r, None).unwrap();
        assert_eq!(l.settings, Settings::default());
        assert!(l.sources.is_empty());
    }

    #[test]
    fn dropins_are_sorted_and_later_wins() {
        let (_d, r) = root_with(&[
            (DEFAULT_CONFIG, "[window]\nremaining_days = 40\n"),
            (
                "/etc/cert-rotator/config.d/20-b.toml",
                "[window]\nremaining_days = 50\n",
            ),
            (
                "/etc/cert-rotator/config.d/10-a.toml",
                "[window]\nremaining_days = 45\nremaining_fraction = 0.3\n",
            ),
            ("/etc/cert-rotator/config.d/.hidden.toml", "garbage = ["),
        ]);
        let l = load(&r, None).unwrap();
        assert_eq!(l.settings.window.remaining_days, 50.0);
        assert_eq!(l.settings.window.remaining_fraction, 0.3);
        assert_eq!(l.sources.len(), 3);
    }

    #[test]
    fn unknown_key_names_file_key_and_line() {
        let (_d, r) = root_with(&[(
            "/etc/cert-rotator/config.d/10-x.toml",
            "[window]\nremaining_days = 40\nremaning_fraction = 0.1\n",
        )]);
        let e = load(&r, None).unwrap_err().to_string();
        assert!(e.contains("/etc/cert-rotator/config.d/10-x.toml"), "{e}");
        assert!(e.contains("remaning_fraction"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn wrong_type_and_range_are_errors() {
        let (_d, r) = root_with(&[(DEFAULT_CONFIG, "[window]\nremaining_days = \"soon\"\n")]);
        let e = load(&r, None).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("remaining_days"), "{e}");
        let (_d, r) = root_with(&[(DEFAULT_CONFIG, "[window]\nremaining_fraction = 1.5\n")]);
        let e = load(&r, None).unwrap_err().to_string();
        assert!(e.contains("remaining_fraction = 1.5"), "{e}");
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let (_d, r) = root_with(&[]);
        let e = load(&r, Some(Path::new("/nonexistent/cr.toml"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cr.toml"));
    }

    #[test]
    fn state_and_metrics_paths_clear_of_managed_ones_name_key_and_file() {
        // Each file alone is fine; merged, the metrics file lands in the PKI.
        let (_d, r) = root_with(&[
            (DEFAULT_CONFIG, "[kubeadm]\npki_dir = \"/srv/pki\"\n"),
            (
                "/etc/cert-rotator/config.d/10-m.toml",
                "metrics_file = \"/srv/pki/ca.crt\"\n",
            ),
            ("/etc/cert-rotator/config.d/20-w.toml", "[window]\n"),
        ]);
        let e = load(&r, None).unwrap_err().to_string();
        assert!(
            e.starts_with("/etc/cert-rotator/config.d/10-m.toml: metrics_file = \"/srv/pki/ca.crt\": inside kubeadm.pki_dir"),
            "{e}"
        );
        // Through a link on the node.
        let (d, r) = root_with(&[(DEFAULT_CONFIG, "state_dir = \"/var/lib/agent\"\n")]);
        std::fs::create_dir_all(d.path().join("etc/kubernetes/manifests")).unwrap();
        std::fs::create_dir_all(d.path().join("var/lib")).unwrap();
        std::os::unix::fs::symlink("/etc/kubernetes/manifests", d.path().join("var/lib/agent"))
            .unwrap();
        let e = load(&r, None).unwrap_err().to_string();
        assert!(
            e.contains("state_dir = \"/var/lib/agent\": inside kubeadm.manifests_dir"),
            "{e}"
        );
    }

    #[test]
    fn a_fifo_or_huge_file_is_an_error_not_a_hang() {
        let (d, r) = root_with(&[]);
        let dropins = d.path().join("etc/cert-rotator/config.d");
        std::fs::create_dir_all(&dropins).unwrap();
        nix::unistd::mkfifo(&dropins.join("10-x.toml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = load(&r, None).unwrap_err().to_string();
        assert!(
            e.contains("/etc/cert-rotator/config.d/10-x.toml") && e.contains("FIFO"),
            "{e}"
        );
        std::fs::remove_file(dropins.join("10-x.toml")).unwrap();
        let f = std::fs::File::create(dropins.join("10-x.toml")).unwrap();
        f.set_len(crate::node::MAX_FILE_SIZE + 1).unwrap();
        let e = load(&r, None).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
    }
}

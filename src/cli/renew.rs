//! The renewals on request: `renew`, `renew-all` and `cert-renew`. A forced plan of the
//! selected targets through the same sequencer as `run`: no window, restarts only with
//! `--restart`, one line per target as it completes.

use super::{errln, out, outln};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use time::OffsetDateTime;

use super::context::{CliError, Context, WhenBusy};
use super::run::with_edges;
use super::{init_logging, IssueArgs, LOG_HELP};
use crate::ca::remote::RemoteSettings;
use crate::config;
use crate::node::NodeRoot;
use crate::pass::Selection;
use crate::plan::route::CaOverride;
use crate::report::pass::Outcome;
use crate::rollout::{Overrides, Pass, Restarts};

/// A renewal on request: `renew`, `renew-all` or `cert-renew`.
pub struct RenewRequest<'a> {
    pub config_file: Option<&'a std::path::Path>,
    /// cert-renew's `--state-dir`.
    pub state_override: Option<PathBuf>,
    pub ca: Option<CaOverride>,
    /// cert-renew --remote: every target signed by this cfssl server, whatever the
    /// configuration says.
    pub remote: Option<RemoteSettings>,
    pub overrides: Overrides,
    pub restart: bool,
    pub selection: Selection,
}

/// Lock, recover, plan the selected targets, run them through the same sequencer as
/// `run` (restarting only with `--restart`), one line per target as it completes.
pub fn renew(root: &NodeRoot, req: RenewRequest<'_>) -> ExitCode {
    match renew_selected(root, req) {
        Ok(code) => code,
        Err(e) => e.exit(),
    }
}

fn renew_selected(root: &NodeRoot, req: RenewRequest<'_>) -> Result<ExitCode, CliError> {
    let mut ctx = Context::load(root, req.config_file)?;
    let settings = &mut ctx.settings;
    if let Some(s) = req.state_override {
        settings.state_dir = s;
    }
    if let Some(r) = req.remote {
        settings.ca.remote = Some(r);
        settings.ca.default = config::CaChoice::Remote;
        for o in settings.targets.values_mut() {
            o.ca = None;
        }
    }
    // A name or path that is no target is a usage error, said before the state
    // directory or its lock are touched; the selection is decided once.
    let layout = crate::pass::select(root, &ctx.settings, &req.selection)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let state = ctx.state();
    if ctx.kubeadm_at_work().is_some() {
        return Ok(ExitCode::SUCCESS);
    }
    let Some(_lock) = ctx.lock_and_recover(&state, WhenBusy::Fail)? else {
        return Ok(ExitCode::from(1));
    };
    let settings = &ctx.settings;
    let plan = crate::pass::plan_selected(
        root,
        settings,
        &layout,
        req.ca.as_ref(),
        OffsetDateTime::now_utc(),
    );
    let explicit = matches!(req.selection, Selection::Named(_));
    let node = crate::inventory::NodeReader::new(root, settings);
    let run = |restarts: Restarts<'_>| {
        let pass = Pass {
            root,
            settings,
            node: &node,
            state: &state,
            overrides: req.overrides,
            restarts,
        };
        // Each result as it completes: an interrupted run shows what was done.
        crate::pass::execute(&pass, &plan, &mut |r| outln!("{}", r.line()))
    };
    let report = if req.restart {
        with_edges(root, settings, run)
    } else {
        run(Restarts::Operator)
    };
    for w in &report.warnings() {
        errln!("WARNING: {w}");
    }
    if req.restart {
        outln!();
        out!("{}", report.summary());
    } else {
        out!("{}", report.restart_advice());
    }
    // A target named on the command line that could not be renewed is a failure;
    // renew-all skips what it cannot renew (absent, external CA) by design.
    let failed = !report.ok()
        || report.results.iter().any(|r| {
            matches!(r.outcome, Outcome::Failed(_))
                || (explicit && matches!(r.outcome, Outcome::Skipped(_)))
        });
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Parser, Debug)]
#[command(
    name = "cert-renew",
    version,
    about = "Renew Kubernetes certificates and kubeconfigs from a CA, now",
    long_about = "Renews each TARGET (a certificate file with its .key beside it, a file holding certificate and key, \
                  or a kubeconfig's client certificate) from the given CA, or through a cfssl server with --remote, \
                  unconditionally: identity kept, new key by default, written atomically with backups under the \
                  state directory. One line per target; exit 1 if any failed (a failed target is left untouched).",
    after_help = LOG_HELP
)]
pub struct CertRenewCli {
    /// CA certificate that signed the targets; with --remote, the CA the returned
    /// certificates must verify against [default with --remote: the node's CA that signed
    /// each target, else the old issuer and authority key id must be kept]
    #[arg(long, value_name = "FILE", required_unless_present = "remote")]
    pub ca_cert: Option<PathBuf>,
    /// CA private key (not with --remote)
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "remote",
        conflicts_with = "remote"
    )]
    pub ca_key: Option<PathBuf>,
    /// Sign through this cfssl server (https://HOST:PORT) instead of a local CA key;
    /// the new key stays on this host, only a CSR is sent
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// File holding the cfssl auth key in hex (mode 0600 or stricter): requests go to
    /// authsign with an HMAC token [default: sign, unauthenticated]
    #[arg(long, value_name = "FILE", requires = "remote")]
    pub auth_key_file: Option<PathBuf>,
    /// CA bundle the server's https certificate must chain to [default: system roots]
    #[arg(long, value_name = "BUNDLE", requires = "remote")]
    pub remote_ca: Option<PathBuf>,
    /// cfssl signing profile [default: the server's default profile]
    #[arg(long, value_name = "NAME", requires = "remote")]
    pub profile: Option<String>,
    /// cfssl label (multiroot signer)
    #[arg(long, value_name = "NAME", requires = "remote")]
    pub label: Option<String>,
    /// Client certificate for mutual TLS with the server
    #[arg(long, value_name = "FILE", requires_all = ["remote", "client_key"])]
    pub client_cert: Option<PathBuf>,
    /// Client key for mutual TLS with the server
    #[arg(long, value_name = "FILE", requires_all = ["remote", "client_cert"])]
    pub client_key: Option<PathBuf>,
    /// Allow a plain http:// --remote URL (CSR and token travel in clear)
    #[arg(long, requires = "remote")]
    pub insecure_http: bool,
    #[command(flatten)]
    pub issue: IssueArgs,
    /// Where write-ahead records and backups go
    #[arg(long, value_name = "DIR", default_value = "/var/lib/cert-rotator")]
    pub state_dir: PathBuf,
    /// Certificate files or kubeconfigs
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<PathBuf>,
}

/// `cert-renew`: the manual tool operators know, on the live file system.
pub fn cert_renew_main() -> ExitCode {
    let cli = CertRenewCli::parse();
    init_logging();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let abs = |p: &PathBuf| crate::node::normalize(&cwd.join(p));
    let root = NodeRoot::new("/");
    let targets = cli.targets.iter().map(abs).collect();
    let (ca, remote) = match (&cli.remote, &cli.ca_cert, &cli.ca_key) {
        (Some(url), ca_cert, _) => {
            let r = RemoteSettings {
                url: url.clone(),
                auth_key_file: cli.auth_key_file.as_ref().map(abs),
                profile: cli.profile.clone().unwrap_or_default(),
                label: cli.label.clone().unwrap_or_default(),
                ca_cert: ca_cert.as_ref().map(abs),
                tls_ca_bundle: cli.remote_ca.as_ref().map(abs),
                client_cert: cli.client_cert.as_ref().map(abs),
                client_key: cli.client_key.as_ref().map(abs),
                allow_http: cli.insecure_http,
                ..RemoteSettings::default()
            };
            if let Err(e) = r.validate() {
                errln!("cert-renew: --remote: {e}");
                return ExitCode::from(2);
            }
            (None, Some(r))
        }
        (None, Some(cert), Some(key)) => (
            Some(CaOverride {
                cert: abs(cert),
                key: abs(key),
                replaces_issuer: false,
            }),
            None,
        ),
        _ => {
            errln!("cert-renew: give --ca-cert and --ca-key, or --remote URL");
            return ExitCode::from(2);
        }
    };
    renew(
        &root,
        RenewRequest {
            config_file: None,
            state_override: Some(abs(&cli.state_dir)),
            ca,
            remote,
            overrides: cli.issue.overrides(),
            restart: false,
            selection: Selection::Named(targets),
        },
    )
}

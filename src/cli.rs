//! Command line: parses arguments, wires the flow together, maps outcomes to exit codes
//! (0 all well, 1 a target or step failed, 2 usage or configuration error).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use crate::config;
use crate::inventory;
use crate::issue::RenewOptions;
use crate::node::NodeRoot;
use crate::remote_ca::RemoteSettings;
use crate::renew::{GivenCa, Outcome, Renewer, Selection};
use crate::report::Status;
use crate::write::StateDir;

#[derive(Parser, Debug)]
#[command(
    name = "cert-rotator",
    version,
    about = "Keeps a Kubernetes node's certificates valid from the node alone",
    long_about = "Keeps a kubeadm node's certificates valid without the cluster: reads the local PKI, \
                  kubeconfigs and kubelet certificates, renews what is due from the local CA and \
                  restarts what must reload."
)]
pub struct Cli {
    /// Configuration file [default: /etc/cert-rotator/config.toml plus config.d/*.toml under --root]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Resolve every node path (PKI, kubeconfigs, kubelet dir, manifests, state) under DIR
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show every certificate, its expiry and whether it is due, like `kubeadm certs check-expiration`
    Status {
        /// One JSON object {"certificates": [...], "authorities": [...]}
        #[arg(long)]
        json: bool,
    },
    /// Build a sandbox kubeadm node in a temp dir and run the agent on it
    Demo {
        /// Build the sandbox here and keep it, instead of a temp dir removed afterwards
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
    /// Renew the given certificates now, whatever their window: certificate files,
    /// kubeconfigs or the kubelet's files, as node paths
    Renew {
        /// CA certificate to sign with (node path) [default: the CA that signed each target]
        #[arg(long, value_name = "FILE", requires = "ca_key")]
        ca_cert: Option<PathBuf>,
        /// CA private key (node path)
        #[arg(long, value_name = "FILE", requires = "ca_cert")]
        ca_key: Option<PathBuf>,
        #[command(flatten)]
        issue: IssueArgs,
        /// Node paths of the certificates or kubeconfigs to renew
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<PathBuf>,
    },
    /// Renew every certificate of the node with its own CA, whatever its window
    /// (targets whose CA key is absent are skipped)
    RenewAll {
        #[command(flatten)]
        issue: IssueArgs,
    },
    /// Finish or undo a renewal that was interrupted (crash, power loss)
    Recover,
    /// Configuration commands
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct IssueArgs {
    /// Lifetime of the new certificates in days [default: the old certificate's lifetime]
    #[arg(long, value_name = "N")]
    pub days: Option<i64>,
    /// Keep the current private key
    #[arg(long, conflicts_with = "new_key")]
    pub reuse_key: bool,
    /// Make a new private key of the same algorithm and size (the default)
    #[arg(long)]
    pub new_key: bool,
}

impl IssueArgs {
    fn options(&self) -> RenewOptions {
        RenewOptions {
            days: self.days,
            reuse_key: self.reuse_key,
            now: OffsetDateTime::now_utc(),
            switch_issuer: false,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective one
    Check,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let root = NodeRoot::new(&cli.root);
    match cli.command {
        Command::Status { json } => status(&root, cli.config.as_deref(), json),
        Command::Demo { keep } => demo(keep),
        Command::Renew {
            ca_cert,
            ca_key,
            issue,
            targets,
        } => {
            let ca = ca_cert.zip(ca_key).map(|(cert, key)| GivenCa { cert, key });
            renew(
                &root,
                cli.config.as_deref(),
                None,
                ca,
                issue.options(),
                Selection::Paths(targets),
            )
        }
        Command::RenewAll { issue } => renew(
            &root,
            cli.config.as_deref(),
            None,
            None,
            issue.options(),
            Selection::All,
        ),
        Command::Recover => {
            let loaded = match config::load(&root, cli.config.as_deref()) {
                Ok(l) => l,
                Err(e) => return config_error(e),
            };
            let state = state_dir(&root, &loaded.settings);
            let Some(_lock) = lock_or_report(&state) else {
                return ExitCode::from(1);
            };
            match state.recover() {
                Ok(Some(j)) => {
                    println!(
                        "recovered an interrupted write ({}, phase {:?})",
                        j.label, j.phase
                    );
                    ExitCode::SUCCESS
                }
                Ok(None) => {
                    println!("nothing to recover");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cert-rotator: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => match config::load(&root, cli.config.as_deref()) {
            Ok(l) => {
                if l.sources.is_empty() {
                    println!("# no configuration file: built-in defaults");
                }
                for s in &l.sources {
                    println!("# read {}", s.display());
                }
                print!("{}", l.settings.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => config_error(e),
        },
    }
}

fn config_error(e: config::ConfigError) -> ExitCode {
    eprintln!("cert-rotator: {e}");
    ExitCode::from(2)
}

pub fn state_dir(root: &NodeRoot, settings: &config::Settings) -> StateDir {
    let mut s = StateDir::new(root, &settings.state_dir);
    s.keep_backups = settings.keep_backups;
    s
}

fn lock_or_report(state: &StateDir) -> Option<crate::write::PassLock> {
    match state.try_lock() {
        Ok(Some(l)) => Some(l),
        Ok(None) => {
            eprintln!("cert-rotator: another cert-rotator is writing (lock {} held); try again when it has finished", state.dir.join("lock").display());
            None
        }
        Err(e) => {
            eprintln!("cert-rotator: {e}");
            None
        }
    }
}

/// Shared by `renew`, `renew-all` and `cert-renew`: lock, recover, renew, one line each.
fn renew(
    root: &NodeRoot,
    config_file: Option<&std::path::Path>,
    state_override: Option<PathBuf>,
    ca: Option<GivenCa>,
    opts: RenewOptions,
    selection: Selection,
) -> ExitCode {
    renew_with(root, config_file, state_override, ca, None, opts, selection)
}

/// [`renew`], optionally with every target signed by the given remote CA (cert-renew
/// --remote), whatever the configuration says.
fn renew_with(
    root: &NodeRoot,
    config_file: Option<&std::path::Path>,
    state_override: Option<PathBuf>,
    ca: Option<GivenCa>,
    remote: Option<RemoteSettings>,
    opts: RenewOptions,
    selection: Selection,
) -> ExitCode {
    let mut settings = match config::load(root, config_file) {
        Ok(l) => l.settings,
        Err(e) => return config_error(e),
    };
    if let Some(s) = state_override {
        settings.state_dir = s;
    }
    if let Some(r) = remote {
        settings.ca.remote = Some(r);
        settings.ca.default = config::CaChoice::Remote;
        for o in settings.targets.values_mut() {
            o.ca = None;
        }
    }
    let state = state_dir(root, &settings);
    let Some(_lock) = lock_or_report(&state) else {
        return ExitCode::from(1);
    };
    match state.recover() {
        Ok(Some(j)) => eprintln!(
            "cert-rotator: recovered an interrupted write first ({}, phase {:?})",
            j.label, j.phase
        ),
        Ok(None) => {}
        Err(e) => {
            eprintln!("cert-rotator: {e}");
            return ExitCode::from(1);
        }
    }
    let explicit = matches!(selection, Selection::Paths(_));
    let renewer = Renewer {
        root,
        settings: &settings,
        state: &state,
        ca,
        opts,
    };
    let outcomes = renewer.run(selection);
    let mut failed = false;
    for o in &outcomes {
        println!("{}", o.line());
        if let Outcome::Renewed { warnings, .. } = &o.outcome {
            for w in warnings {
                eprintln!("WARNING: {w}");
            }
        }
        // A target named on the command line that could not be renewed is a failure;
        // renew-all skips what it cannot renew (absent, external CA) by design.
        failed |= matches!(o.outcome, Outcome::Failed(_))
            || (explicit && matches!(o.outcome, Outcome::Skipped(_)));
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn status(root: &NodeRoot, config_file: Option<&std::path::Path>, json: bool) -> ExitCode {
    let loaded = match config::load(root, config_file) {
        Ok(l) => l,
        Err(e) => return config_error(e),
    };
    let layout = inventory::layout(&loaded.settings, root);
    let inv = inventory::read(&layout, root);
    let mut status = Status::new(&inv, OffsetDateTime::now_utc());
    match state_dir(root, &loaded.settings).pending() {
        Ok(Some(j)) => {
            status.unfinished_write = Some(format!(
                "{} (phase {:?}, started {}): the next run, renew or recover finishes or undoes it",
                j.label,
                j.phase,
                crate::report::rfc3339(j.started)
            ))
        }
        Ok(None) => {}
        Err(e) => status.unfinished_write = Some(e.to_string()),
    }
    if json {
        println!("{}", status.to_json());
    } else {
        print!("{}", status.to_table());
    }
    if status.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn demo(keep: Option<PathBuf>) -> ExitCode {
    let tmp;
    let dir = match keep {
        Some(d) => d,
        None => match tempfile::Builder::new()
            .prefix("cert-rotator-demo.")
            .tempdir()
        {
            Ok(t) => {
                tmp = t;
                tmp.path().to_path_buf()
            }
            Err(e) => {
                eprintln!("cert-rotator demo: cannot create a temp dir: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let now = OffsetDateTime::now_utc();
    println!(
        "Building a sandbox kubeadm control-plane node under {}",
        dir.display()
    );
    println!("  (apiserver in its last 20%, kubelet client 91 days with 25 left, scheduler.conf expired, no super-admin.conf)");
    if let Err(e) = crate::demo::build_sandbox(&dir, now) {
        eprintln!("cert-rotator demo: building the sandbox failed: {e}");
        return ExitCode::from(1);
    }
    let root = NodeRoot::new(&dir);
    let settings = config::Settings::default();
    let layout = inventory::layout(&settings, &root);
    let inv = inventory::read(&layout, &root);
    let status = Status::new(&inv, now);
    println!("\n$ cert-rotator --root {} status\n", dir.display());
    print!("{}", status.to_table());
    let due: Vec<_> = status.certificates.iter().filter(|c| c.due).collect();
    println!(
        "\n{} of {} certificates are due:",
        due.len(),
        status.certificates.len()
    );
    for c in &due {
        println!(
            "  {:<28} {}",
            c.name,
            c.due_reason.map(|r| r.as_str()).unwrap_or_default()
        );
    }
    if status.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "cert-renew",
    version,
    about = "Renew Kubernetes certificates and kubeconfigs from a CA, now",
    long_about = "Renews each TARGET (a certificate file with its .key beside it, a file holding certificate and key, \
                  or a kubeconfig's client certificate) from the given CA, or through a cfssl server with --remote, \
                  unconditionally: identity kept, new key by default, written atomically with backups under the \
                  state directory. One line per target; exit 1 if any failed (a failed target is left untouched)."
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
                eprintln!("cert-renew: --remote: {e}");
                return ExitCode::from(2);
            }
            (None, Some(r))
        }
        (None, Some(cert), Some(key)) => (
            Some(GivenCa {
                cert: abs(cert),
                key: abs(key),
            }),
            None,
        ),
        _ => {
            eprintln!("cert-renew: give --ca-cert and --ca-key, or --remote URL");
            return ExitCode::from(2);
        }
    };
    renew_with(
        &root,
        None,
        Some(abs(&cli.state_dir)),
        ca,
        remote,
        cli.issue.options(),
        Selection::Paths(targets),
    )
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CERT_ROTATOR_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,zbus=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

//! Command line: parses arguments, wires the flow together, maps outcomes to exit codes
//! (0 all well, 1 a target or step failed, 2 usage or configuration error).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod ca;
mod ca_rotate;
mod context;
mod demo;
mod renew;
mod run;
mod signer;
mod status;

pub use ca::CaCommand;
pub use renew::{cert_renew_main, CertRenewCli};

use crate::node::{Liveness, NodeRoot};
use crate::pass::Selection;
use crate::plan::route::CaOverride;
use crate::rollout::Overrides;
use renew::RenewRequest;

/// Shown under both programs' --help: what `init_logging` reads.
const LOG_HELP: &str = "Logging: to the journal under systemd (info and above), else to stderr \
                        (warnings and above, no colour unless stderr is a terminal). \
                        CERT_ROTATOR_LOG sets the level with tracing's filter syntax, \
                        e.g. CERT_ROTATOR_LOG=debug or CERT_ROTATOR_LOG=info,cert_rotator::verify=debug.";

#[derive(Parser, Debug)]
#[command(
    name = "cert-rotator",
    version,
    about = "Keeps a Kubernetes node's certificates valid from the node alone",
    long_about = "Keeps a kubeadm node's certificates valid without the cluster: reads the local PKI, \
                  kubeconfigs and kubelet certificates, renews what is due from the local CA and \
                  restarts what must reload.",
    after_help = LOG_HELP
)]
pub struct Cli {
    /// Configuration file [default: /etc/cert-rotator/config.toml plus config.d/*.toml under --root]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Resolve every node path (PKI, kubeconfigs, kubelet dir, manifests, state) under DIR
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// The node's components run on this host: restart, probe and coordinate them even
    /// under --root DIR (a node tree a control plane here reads) [default: only when
    /// --root is /]
    #[arg(long, global = true)]
    pub live: bool,
    /// Restart nothing, not even on /: renew and write, then list what must restart
    #[arg(long, global = true)]
    pub no_restart: bool,
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
        /// Only build the sandbox node under --keep DIR (a test harness lays a node down
        /// with it, e.g. `--keep /` inside a throwaway container)
        #[arg(long, requires = "keep")]
        build_only: bool,
        /// kubeadm's encryptionAlgorithm for the sandbox's CAs and leaves
        #[arg(long, value_enum, default_value = "rsa-2048")]
        key_algorithm: DemoKeys,
    },
    /// The rotation pass (what the timer runs): renew what is due, restart what must
    /// reload, one component at a time, verify what it serves, roll back on failure
    Run {
        /// Show what would be done, change nothing (same as `plan`)
        #[arg(long)]
        dry_run: bool,
    },
    /// What a pass would renew and restart, in which order, and why
    Plan {
        #[arg(long)]
        json: bool,
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
        /// Then restart what must reload, one component at a time, and verify it, as
        /// `run` does (where the node is live: --root / or --live)
        #[arg(long)]
        restart: bool,
        /// Names as `status` prints them or kubeadm's (apiserver, etcd-server,
        /// admin.conf, ...), or node paths of certificates or kubeconfigs
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<PathBuf>,
    },
    /// Renew every certificate of the node with its own CA, whatever its window
    /// (targets whose CA key is absent are skipped)
    RenewAll {
        #[command(flatten)]
        issue: IssueArgs,
        /// Then restart what must reload, one component at a time, and verify it, as
        /// `run` does (where the node is live: --root / or --live)
        #[arg(long)]
        restart: bool,
    },
    /// Finish or undo a renewal that was interrupted (crash, power loss)
    Recover,
    /// The cluster's CAs on this node: status, renewal with the same key, export and
    /// import between nodes (docs/ca.md)
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// The certificates-API signer (docs/csr.md): sign the Approved
    /// CertificateSigningRequests of the `[[signer]]` signerNames with their CA (and, with
    /// csr.approve_kubelet_serving, approve the kubelets' own serving CSRs), one signer at
    /// a time cluster-wide (a Lease); runs until stopped (cert-rotator-signer.service,
    /// shipped disabled)
    Signer {
        /// Stop after this many rounds (list, sign, sleep) instead of running on
        #[arg(long, value_name = "N")]
        rounds: Option<u64>,
    },
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
    fn overrides(&self) -> Overrides {
        Overrides {
            days: self.days,
            reuse_key: self.reuse_key,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DemoKeys {
    #[value(name = "rsa-2048")]
    Rsa2048,
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective one
    Check,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    // --root must name an existing directory: a typo must not become a new tree.
    let root = match NodeRoot::open(&cli.root) {
        // Where the files are and whether their components run here are decided
        // apart, once, here: every restart, probe and lock asks the root.
        Ok(r) => {
            let live = Liveness::decide(r.is_host_root(), cli.live, cli.no_restart);
            r.with_liveness(live)
        }
        Err(e) => {
            errln!("cert-rotator: --root {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Status { json } => status::status(&root, cli.config.as_deref(), json),
        Command::Demo {
            keep,
            build_only,
            key_algorithm,
        } => demo::demo(keep, build_only, key_algorithm),
        Command::Run { dry_run: true } | Command::Plan { json: false } => {
            run::plan(&root, cli.config.as_deref(), false)
        }
        Command::Plan { json: true } => run::plan(&root, cli.config.as_deref(), true),
        Command::Run { dry_run: false } => run::run(&root, cli.config.as_deref()),
        Command::Renew {
            ca_cert,
            ca_key,
            issue,
            restart,
            targets,
        } => {
            let ca = ca_cert.zip(ca_key).map(|(cert, key)| CaOverride {
                cert,
                key,
                replaces_issuer: false,
            });
            renew::renew(
                &root,
                RenewRequest {
                    config_file: cli.config.as_deref(),
                    state_override: None,
                    ca,
                    remote: None,
                    overrides: issue.overrides(),
                    restart,
                    selection: Selection::Named(targets),
                },
            )
        }
        Command::RenewAll { issue, restart } => renew::renew(
            &root,
            RenewRequest {
                config_file: cli.config.as_deref(),
                state_override: None,
                ca: None,
                remote: None,
                overrides: issue.overrides(),
                restart,
                selection: Selection::All,
            },
        ),
        Command::Recover => status::recover(&root, cli.config.as_deref()),
        Command::Ca { command } => ca::ca(&root, cli.config.as_deref(), command),
        Command::Signer { rounds } => signer::signer(&root, cli.config.as_deref(), rounds),
        Command::Config {
            command: ConfigCommand::Check,
        } => status::config_check(&root, cli.config.as_deref()),
    }
}

/// Writes a read-only command's output to stdout. A reader that went away
/// (`status | head -1`) ends the command quietly with its usual exit code; any other
/// failure (a full disk) is said on stderr, exit 1. Never the panic of `print!`.
fn emit(text: &str, code: ExitCode) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            say(&format!("cannot write to standard output: {e}"));
            ExitCode::from(1)
        }
    }
}

/// Progress of a writing command on stdout. A reader that went away (`renew-all | head`)
/// or a full disk must not stop the work half-way with the panic of `print!`: the text
/// is lost, the pass goes on, the journal and the state directory keep the record.
/// What they print is the node's text too (paths, subjects, a process's command line):
/// shown with its control characters escaped ([`crate::shown`]).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = write!(std::io::stdout(), "{}", crate::shown::printable_text(&text));
    }};
}
macro_rules! outln {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = writeln!(std::io::stdout(), "{}", crate::shown::printable_text(&text));
    }};
}
/// A line on stderr that never panics (a closed or full stderr loses it).
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = writeln!(std::io::stderr(), "{}", crate::shown::printable_text(&text));
    }};
}
pub(crate) use {errln, out, outln};

/// One line on stderr; a stderr that cannot be written to is ignored rather than a panic.
fn say(message: &str) {
    let message = crate::shown::printable_text(message);
    let _ = writeln!(std::io::stderr(), "cert-rotator: {message}");
}

/// The journal when systemd runs us (structured fields: CERT_NAME, CERT_PATH, SERIAL,
/// NOT_AFTER, COMPONENT, ACTION, MESSAGE_ID), stderr otherwise; CERT_ROTATOR_LOG sets the
/// filter (documented in `--help`, [`LOG_HELP`]).
fn init_logging() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some()
        && std::path::Path::new("/run/systemd/journal/socket").exists();
    let default = if under_systemd {
        "info,zbus=off"
    } else {
        "warn,zbus=off"
    };
    // Targets, not EnvFilter: the same `level,target=level` syntax without the regex engine
    // EnvFilter's span-field matching pulls in (about 0.4 MB of the 8 MiB budget).
    let filter = || -> Targets {
        std::env::var("CERT_ROTATOR_LOG")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| default.parse().unwrap_or_default())
    };
    if under_systemd {
        if let Ok(layer) = tracing_journald::layer() {
            let layer = layer
                .with_field_prefix(None)
                .with_syslog_identifier("cert-rotator".into());
            let _ = tracing_subscriber::registry()
                .with(filter())
                .with(layer)
                .try_init();
            return;
        }
    }
    // Colour codes only for a person at a terminal, never into files or pipes.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .finish()
        .with(filter())
        .try_init();
}

//! Command line: parses arguments, wires the flow together, maps outcomes to exit codes
//! (0 all well, 1 a target or step failed, 2 usage or configuration error).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use crate::ca::remote::RemoteSettings;
use crate::config;
use crate::inventory;
use crate::node::NodeRoot;
use crate::pass::{Edges, Overrides, Pass, Restarts, Selection};
use crate::plan::route::CaOverride;
use crate::report::pass::{Outcome, PassReport};
use crate::report::{plan_text, NotANode, PassResult, Status};
use crate::write::StateDir;

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
        /// `run` does (on the live node only)
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
        /// `run` does (on the live node only)
        #[arg(long)]
        restart: bool,
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
        Ok(r) => r,
        Err(e) => {
            eprintln!("cert-rotator: --root {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Status { json } => status(&root, cli.config.as_deref(), json),
        Command::Demo {
            keep,
            build_only,
            key_algorithm,
        } => demo(keep, build_only, key_algorithm),
        Command::Run { dry_run: true } | Command::Plan { json: false } => {
            plan_cmd(&root, cli.config.as_deref(), false)
        }
        Command::Plan { json: true } => plan_cmd(&root, cli.config.as_deref(), true),
        Command::Run { dry_run: false } => run_cmd(&root, cli.config.as_deref()),
        Command::Renew {
            ca_cert,
            ca_key,
            issue,
            restart,
            targets,
        } => {
            let ca = ca_cert
                .zip(ca_key)
                .map(|(cert, key)| CaOverride { cert, key });
            renew(
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
        Command::RenewAll { issue, restart } => renew(
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

fn plan_cmd(root: &NodeRoot, config_file: Option<&std::path::Path>, json: bool) -> ExitCode {
    let loaded = match config::load(root, config_file) {
        Ok(l) => l,
        Err(e) => return config_error(e),
    };
    let state = state_dir(root, &loaded.settings);
    let plan = crate::pass::plan_run(root, &loaded.settings, &state, OffsetDateTime::now_utc());
    let text = if json {
        // The plan holds strings, numbers and times only: serializing it cannot fail.
        format!(
            "{}\n",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        )
    } else {
        plan_text(&plan, root.is_live())
    };
    let code = if plan.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    emit(&text, code)
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

/// One line on stderr; a stderr that cannot be written to is ignored rather than a panic.
fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "cert-rotator: {message}");
}

fn run_cmd(root: &NodeRoot, config_file: Option<&std::path::Path>) -> ExitCode {
    let loaded = match config::load(root, config_file) {
        Ok(l) => l,
        Err(e) => return config_error(e),
    };
    let settings = &loaded.settings;
    let state = state_dir(root, settings);
    let _lock = match state.try_lock() {
        Ok(Some(l)) => l,
        Ok(None) => {
            println!(
                "a pass is already active (lock {} held); nothing to do",
                state.lock_path().display()
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("cert-rotator: {e}");
            return ExitCode::from(1);
        }
    };
    match state.recover() {
        Ok(Some(j)) => tracing::warn!(
            "recovered an interrupted write first ({}, phase {:?})",
            j.label,
            j.phase
        ),
        Ok(None) => {}
        Err(e) => {
            eprintln!("cert-rotator: {e}");
            return ExitCode::from(1);
        }
    }
    let now = OffsetDateTime::now_utc();
    let plan = crate::pass::plan_run(root, settings, &state, now);
    print!("{}", plan_text(&plan, root.is_live()));
    let report = match live_edges(root, |edges| {
        let pass = Pass {
            root,
            settings,
            state: &state,
            overrides: Overrides::default(),
            restarts: edges,
        };
        crate::pass::execute(&pass, &plan, &mut |_| {})
    }) {
        Ok(r) => r,
        Err(code) => return code,
    };
    println!();
    print!("{}", report.summary());
    let result = PassResult {
        at: OffsetDateTime::now_utc(),
        success: report.ok(),
        renewed: report.renewed.len(),
        failed: report.failed.len(),
    };
    write_last_pass(&state, &result);
    write_metrics(root, settings, &state);
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The last pass's record in the state directory, which the metrics file reports.
const LAST_PASS: &str = "last-pass.json";

/// Records the pass that just ended; a failure is logged, the pass's outcome stands.
fn write_last_pass(state: &StateDir, result: &PassResult) {
    if let Err(e) = state.write_json(LAST_PASS, result) {
        tracing::warn!("cannot record the last pass: {e}");
    }
}

/// Writes the Prometheus textfile from a fresh inventory and the last pass. Only `run`
/// calls it: `status` and `plan` write nothing.
fn write_metrics(root: &NodeRoot, settings: &config::Settings, state: &StateDir) {
    if settings.metrics_file.as_os_str().is_empty() {
        return;
    }
    let inv = inventory::read(&inventory::layout(settings, root), root);
    let status = Status::new(&inv, OffsetDateTime::now_utc());
    let p = state.path(LAST_PASS);
    // No record yet (or an unreadable one): the pass families are left out, not invented.
    let last = match root.read(&p) {
        Ok(b) => PassResult::from_json(&b)
            .map_err(|e| {
                tracing::warn!("{}: unreadable, left out of the metrics: {e}", p.display())
            })
            .ok(),
        Err(_) => None,
    };
    let text = crate::report::metrics_text(&status, last.as_ref());
    let file = &settings.metrics_file;
    if let Some(parent) = file.parent() {
        if let Err(e) = root.create_dir_all(parent, 0o755) {
            tracing::warn!(
                "{}: cannot create the metrics directory: {e}",
                file.display()
            );
            return;
        }
    }
    // node_exporter must read it: 0644.
    if let Err(e) = root.write_atomic(file, text.as_bytes(), 0o644, None) {
        tracing::warn!("{}: cannot write metrics: {e}", file.display());
    }
}

pub fn state_dir(root: &NodeRoot, settings: &config::Settings) -> StateDir {
    StateDir::new(root, &settings.state_dir, settings.keep_backups)
}

fn lock_or_report(state: &StateDir) -> Option<crate::write::PassLock> {
    match state.try_lock() {
        Ok(Some(l)) => Some(l),
        Ok(None) => {
            eprintln!("cert-rotator: another cert-rotator is writing (lock {} held); try again when it has finished", state.lock_path().display());
            None
        }
        Err(e) => {
            eprintln!("cert-rotator: {e}");
            None
        }
    }
}

/// The edges of the live node (or none under `--root`), handed to `f`.
fn live_edges(
    root: &NodeRoot,
    f: impl FnOnce(Restarts<'_>) -> PassReport,
) -> Result<PassReport, ExitCode> {
    if !root.is_live() {
        return Ok(f(Restarts::NotLive));
    }
    let prober = crate::verify::TlsProber::default();
    let clock = crate::clock::SystemClock;
    // Connects on the first restart: a pass that restarts nothing needs no bus.
    let services = crate::restart::SystemdManager::new();
    Ok(f(Restarts::Live(Edges {
        services: &services,
        prober: &prober,
        clock: &clock,
    })))
}

/// A renewal on request: `renew`, `renew-all` or `cert-renew`.
struct RenewRequest<'a> {
    config_file: Option<&'a std::path::Path>,
    /// cert-renew's `--state-dir`.
    state_override: Option<PathBuf>,
    ca: Option<CaOverride>,
    /// cert-renew --remote: every target signed by this cfssl server, whatever the
    /// configuration says.
    remote: Option<RemoteSettings>,
    overrides: Overrides,
    restart: bool,
    selection: Selection,
}

/// Lock, recover, plan the selected targets, run them through the same sequencer as
/// `run` (restarting only with `--restart`), one line per target as it completes.
fn renew(root: &NodeRoot, req: RenewRequest<'_>) -> ExitCode {
    let mut settings = match config::load(root, req.config_file) {
        Ok(l) => l.settings,
        Err(e) => return config_error(e),
    };
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
    let plan = match crate::pass::plan_request(
        root,
        &settings,
        &req.selection,
        req.ca.as_ref(),
        OffsetDateTime::now_utc(),
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cert-rotator: {e}");
            return ExitCode::from(2);
        }
    };
    let explicit = matches!(req.selection, Selection::Named(_));
    let run = |restarts: Restarts<'_>| {
        let pass = Pass {
            root,
            settings: &settings,
            state: &state,
            overrides: req.overrides,
            restarts,
        };
        // Each result as it completes: an interrupted run shows what was done.
        crate::pass::execute(&pass, &plan, &mut |r| println!("{}", r.line()))
    };
    let report = if req.restart {
        match live_edges(root, run) {
            Ok(r) => r,
            Err(code) => return code,
        }
    } else {
        run(Restarts::Operator)
    };
    for w in &report.warnings {
        eprintln!("WARNING: {w}");
    }
    if req.restart {
        if !report.restarted.is_empty()
            || !report.verified.is_empty()
            || !report.rolled_back.is_empty()
        {
            println!();
            print!("{}", report.summary());
        }
    } else {
        print!("{}", report.restart_advice());
    }
    // A target named on the command line that could not be renewed is a failure;
    // renew-all skips what it cannot renew (absent, external CA) by design.
    let failed = !report.ok()
        || report.results.iter().any(|r| {
            matches!(r.outcome, Outcome::Failed(_))
                || (explicit && matches!(r.outcome, Outcome::Skipped(_)))
        });
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
    let not_a_node = NotANode::detect(&inv, root);
    let mut status = Status::new(&inv, OffsetDateTime::now_utc());
    match state_dir(root, &loaded.settings).pending() {
        Ok(Some(j)) => {
            status.unfinished_write = Some(format!(
                "{} (phase {:?}, started {}): the next run, renew or recover finishes or undoes it",
                j.label,
                j.phase,
                crate::timefmt::rfc3339(j.started)
            ))
        }
        Ok(None) => {}
        Err(e) => status.unfinished_write = Some(e.to_string()),
    }
    // Reading writes nothing, not even the metrics file: only `run` writes it.
    if let Some(n) = not_a_node {
        // Programs still get the document (every target missing); people get the
        // sentence instead of a table of absent rows.
        if json {
            emit(&format!("{}\n", status.to_json()), ExitCode::from(1));
        }
        say(&n.to_string());
        return ExitCode::from(1);
    }
    let text = if json {
        format!("{}\n", status.to_json())
    } else {
        status.to_table()
    };
    let code = if status.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    emit(&text, code)
}

fn demo(keep: Option<PathBuf>, build_only: bool, keys: DemoKeys) -> ExitCode {
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
    let alg = match keys {
        DemoKeys::Rsa2048 => crate::pki::KeyAlgorithm::Rsa { bits: 2048 },
        DemoKeys::EcdsaP256 => crate::pki::KeyAlgorithm::EcdsaP256,
    };
    if let Err(e) = crate::demo::build_sandbox(&dir, now, alg) {
        eprintln!("cert-rotator demo: building the sandbox failed: {e}");
        return ExitCode::from(1);
    }
    if build_only {
        return ExitCode::SUCCESS;
    }
    let root = NodeRoot::new(&dir);
    let settings = config::Settings::default();
    let layout = inventory::layout(&settings, &root);
    let inv = inventory::read(&layout, &root);
    let before = Status::new(&inv, now);
    println!("\n$ cert-rotator --root {} status\n", dir.display());
    print!("{}", before.to_table());
    let due: Vec<_> = before.certificates.iter().filter(|c| c.due).collect();
    println!(
        "\n{} of {} certificates are due:",
        due.len(),
        before.certificates.len()
    );
    for c in &due {
        println!(
            "  {:<28} {}",
            c.name,
            c.due_reason.map(|r| r.as_str()).unwrap_or_default()
        );
    }
    println!("\n$ cert-rotator --root {} run\n", dir.display());
    let state = state_dir(&root, &settings);
    let plan = crate::pass::plan_run(&root, &settings, &state, OffsetDateTime::now_utc());
    print!("{}", plan_text(&plan, false));
    let pass = Pass {
        root: &root,
        settings: &settings,
        state: &state,
        overrides: Overrides::default(),
        restarts: Restarts::NotLive,
    };
    let report = crate::pass::execute(&pass, &plan, &mut |_| {});
    println!();
    print!("{}", report.summary());
    let inv = inventory::read(&inventory::layout(&settings, &root), &root);
    let after = Status::new(&inv, OffsetDateTime::now_utc());
    println!(
        "\n$ cert-rotator --root {} status   # afterwards\n",
        dir.display()
    );
    print!("{}", after.to_table());
    let still_due = after.certificates.iter().filter(|c| c.due).count();
    println!(
        "\n{} certificates renewed, {still_due} still due.",
        report.renewed.len()
    );
    if report.ok() && !after.has_errors() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
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
                eprintln!("cert-renew: --remote: {e}");
                return ExitCode::from(2);
            }
            (None, Some(r))
        }
        (None, Some(cert), Some(key)) => (
            Some(CaOverride {
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

/// The journal when systemd runs us (structured fields: CERT_NAME, CERT_PATH, SERIAL,
/// NOT_AFTER, COMPONENT, ACTION, MESSAGE_ID), stderr otherwise; CERT_ROTATOR_LOG sets the
/// filter (documented in `--help`, [`LOG_HELP`]).
fn init_logging() {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::EnvFilter;
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some()
        && std::path::Path::new("/run/systemd/journal/socket").exists();
    let default = if under_systemd {
        "info,zbus=off"
    } else {
        "warn,zbus=off"
    };
    let filter =
        || EnvFilter::try_from_env("CERT_ROTATOR_LOG").unwrap_or_else(|_| EnvFilter::new(default));
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
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

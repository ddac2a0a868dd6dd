//! Command line: parses arguments, wires the flow together, maps outcomes to exit codes
//! (0 all well, 1 a target or step failed, 2 usage or configuration error).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use crate::config;
use crate::inventory;
use crate::node::NodeRoot;
use crate::report::Status;

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
    /// Configuration commands
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
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

fn status(root: &NodeRoot, config_file: Option<&std::path::Path>, json: bool) -> ExitCode {
    let loaded = match config::load(root, config_file) {
        Ok(l) => l,
        Err(e) => return config_error(e),
    };
    let layout = inventory::layout(&loaded.settings, root);
    let inv = inventory::read(&layout, root);
    let status = Status::new(&inv, OffsetDateTime::now_utc());
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

/// `cert-renew`: the manual tool. Its renewal behaviour lands with the local-CA renewal
/// work; until then it refuses to do anything rather than pretend.
pub fn cert_renew_main() -> ExitCode {
    eprintln!("cert-renew: not available in this build yet");
    ExitCode::from(2)
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

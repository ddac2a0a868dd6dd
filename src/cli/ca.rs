//! `ca status`, `ca renew`, `ca export`, `ca import`: the node's CAs (docs/ca.md).
//!
//! `ca renew` and `ca import` write every copy of a CA in one crash-safe change set,
//! then, where the node is live, restart what holds the CA in memory one at a time,
//! each verified, as `run` does (`--no-restart`: only say what must restart; under
//! `--root DIR` without `--live` it is said, never done).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use time::OffsetDateTime;

use super::context::{CliError, Context, WhenBusy};
use super::run::with_pass;
use super::{emit, errln, outln, say};
use crate::authority::exchange;
use crate::authority::renew::sha256_hex;
use crate::authority::status::CaStatusReport;
use crate::authority::{self, check_readable, phase_of, AuthorityError, Installed, NodeCopies};
use crate::inventory::NodeReader;
use crate::node::NodeRoot;
use crate::plan::authorities::assess_ca;
use crate::report::event::{CaCommandEvent, RenewedCa};
use crate::report::journal;
use crate::timefmt::rfc3339;

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Each CA of the node: its certificates, expiry, whether it is due, its rotation
    /// phase and every copy of it (CA file, kubeconfigs)
    Status {
        /// One JSON object {"authorities": [...]}
        #[arg(long)]
        json: bool,
    },
    /// Renew CAs with their own key (same subject and key identifier, new serial and
    /// dates; no leaf needs re-issuing), update every copy on this node, then restart
    /// what holds them, one at a time and verified
    Renew {
        /// ca, front-proxy-ca, etcd/ca (or kubeadm's etcd-ca) [default: every CA that
        /// is due]
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// Lifetime of the renewed CA in days [default: the old certificate's lifetime]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=36500))]
        days: Option<i64>,
    },
    /// Write a CA's certificate into a new FILE (for `ca import` on the other nodes)
    Export {
        /// ca, front-proxy-ca, etcd/ca (or etcd-ca)
        #[arg(value_name = "NAME")]
        name: String,
        /// A new file (never overwritten); 0644, or 0600 with --with-key
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Also write the CA's private key into FILE, for another control-plane node
        /// only: whoever has it can sign anything for the cluster
        #[arg(long)]
        with_key: bool,
    },
    /// Install a CA certificate exported on another node into this node's copies, if it
    /// is the CA this node trusts (same subject and public key), then restart what
    /// holds it, one at a time and verified
    Import {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Rotate a CA to a new key, in phases: start, trust, issue, finish (or abort),
    /// each run on every node before the next (docs/ca.md)
    Rotate(super::ca_rotate::RotateArgs),
}

pub fn ca(root: &NodeRoot, config_file: Option<&Path>, command: CaCommand) -> ExitCode {
    let result = match command {
        CaCommand::Status { json } => return status(root, config_file, json),
        CaCommand::Rotate(args) => return super::ca_rotate::rotate(root, config_file, args),
        CaCommand::Renew { names, days } => renew(root, config_file, &names, days),
        CaCommand::Export {
            name,
            file,
            with_key,
        } => export(root, config_file, &name, &operator_path(&file), with_key),
        CaCommand::Import { file } => import(root, config_file, &operator_path(&file)),
    };
    match result {
        Ok(code) => code,
        Err(e) => e.exit(),
    }
}

/// An operator's file, relative to the working directory (not under `--root`).
fn operator_path(p: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    crate::node::normalize(&cwd.join(p))
}

fn cli_error(e: AuthorityError) -> CliError {
    if e.is_usage() {
        CliError::Usage(e.to_string())
    } else {
        CliError::Failed(e.to_string())
    }
}

/// None of the CA files exists: said plainly, like `status`.
fn not_a_node(root: &NodeRoot, node: &NodeCopies) -> Result<(), CliError> {
    if node.authorities.iter().all(|a| !root.exists(&a.cert_path)) {
        let list: Vec<String> = node
            .authorities
            .iter()
            .map(|a| a.cert_path.display().to_string())
            .collect();
        return Err(CliError::Failed(format!(
            "not a Kubernetes node: none of {} exists under {}",
            list.join(", "),
            root.dir().display()
        )));
    }
    Ok(())
}

/// `ca status`: reads only.
fn status(root: &NodeRoot, config_file: Option<&Path>, json: bool) -> ExitCode {
    let ctx = match Context::load(root, config_file) {
        Ok(c) => c,
        Err(e) => return e.exit(),
    };
    let reader = NodeReader::new(root, &ctx.settings);
    let node = &reader.get().anchors;
    let state = ctx.state();
    let mut report = CaStatusReport::new(
        node,
        &ctx.settings.authorities,
        &|name| phase_of(&reader, &state, name),
        OffsetDateTime::now_utc(),
    );
    // A rotation journal that cannot be used is an error of the node: `ca status` exits
    // 1 naming it, with the way out (docs/ca.md).
    report.errors.extend(
        crate::authority::rotation::broken(&reader, &state)
            .iter()
            .map(|e| e.to_string()),
    );
    if let Err(e) = not_a_node(root, node) {
        if json {
            emit(&format!("{}\n", report.to_json()), ExitCode::from(1));
        }
        return e.exit();
    }
    for w in crate::authority::rotation::warnings(&reader, &state) {
        super::errln!("WARNING: {w}");
    }
    let code = if report.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    let text = if json {
        format!("{}\n", report.to_json())
    } else {
        report.to_table()
    };
    emit(&text, code)
}

fn renew(
    root: &NodeRoot,
    config_file: Option<&Path>,
    names: &[String],
    days: Option<i64>,
) -> Result<ExitCode, CliError> {
    let ctx = Context::load(root, config_file)?;
    let settings = &ctx.settings;
    let now = OffsetDateTime::now_utc();
    // The command line is checked against the node before the lock is taken.
    let reader = NodeReader::new(root, settings);
    let node = &reader.get().anchors;
    let selected = authority::select(node, names).map_err(cli_error)?;
    not_a_node(root, node)?;
    let selected = if names.is_empty() {
        let due: Vec<String> = node
            .authorities
            .iter()
            .filter(|a| {
                a.issuer()
                    .is_ok_and(|c| assess_ca(&settings.authorities, c, now).due)
            })
            .map(|a| a.name.clone())
            .collect();
        if due.is_empty() {
            outln!("no CA is due (under {}% of its lifetime left); name one to renew it anyway: cert-rotator ca renew ca", settings.authorities.remaining_fraction * 100.0);
            return Ok(ExitCode::SUCCESS);
        }
        due
    } else {
        selected
    };
    for name in &selected {
        if let Some(a) = node.authority(name) {
            if !a.has_key {
                return Err(cli_error(AuthorityError::NoKey {
                    name: a.name.clone(),
                    key: a.key_path.clone(),
                }));
            }
        }
    }
    let state = ctx.state();
    let selected = not_rotating(&reader, &state, selected, !names.is_empty())?;
    if selected.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let Some(_lock) = ctx.lock_and_recover(&state, WhenBusy::Fail)? else {
        return Ok(ExitCode::from(1));
    };
    let names: Vec<&str> = selected.iter().map(String::as_str).collect();
    // The node under the lock: the reader of before the lock is not reused.
    let locked = NodeReader::new(root, settings);
    let installed = with_pass(&locked, &state, |pass| {
        // The node is read again under the lock: the recovery may have finished an
        // interrupted write. Written first, then each line: the journal and stdout say
        // what is on disk.
        let node = NodeCopies::read(root, settings);
        authority::renew_with_own_keys(pass, &node, &names, days, now, &mut |renewals| {
            for r in renewals {
                outln!(
                    "{}\trenewed\tnot_after={}\tserial={}\tsha256={}",
                    r.name,
                    rfc3339(r.new.not_after),
                    r.new.serial,
                    sha256_hex(&r.new)
                );
                journal::log_ca_command(&CaCommandEvent::Renewed(RenewedCa {
                    name: r.name.clone(),
                    serial: r.new.serial.clone(),
                    not_after: r.new.not_after,
                    was_not_after: r.old.not_after,
                    sha256: sha256_hex(&r.new),
                }));
            }
        })
        .map(|(_, done)| done)
    });
    finish(installed)
}

/// The CAs of `selected` that no rotation holds (authority::rotation::guard). A CA
/// named on the command line that a rotation holds is refused (exit 1, nothing
/// changed); a due one picked by default is skipped, saying why. A broken journal is
/// an error either way.
fn not_rotating(
    node: &NodeReader<'_>,
    state: &crate::write::StateDir,
    selected: Vec<String>,
    named: bool,
) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    for name in selected {
        match crate::authority::rotation::hold(node, state, &name) {
            Ok(None) => out.push(name),
            Ok(Some(h)) if named => {
                return Err(CliError::Failed(format!(
                    "`ca renew {name}` refused: {h}; nothing changed"
                )))
            }
            Ok(Some(h)) => say(&format!("{name}: not renewed: {h}")),
            Err(e) => return Err(CliError::Failed(format!("`ca renew {name}` refused: {e}"))),
        }
    }
    Ok(out)
}

/// Prints what an installation did; exit 1 when it failed.
fn finish(installed: Result<Installed, AuthorityError>) -> Result<ExitCode, CliError> {
    let done = installed.map_err(cli_error)?;
    for w in &done.written {
        outln!("  updated {w}");
    }
    let section = |title: &str, items: &[String]| {
        if !items.is_empty() {
            outln!("{title}:");
            for i in items {
                outln!("  {i}");
            }
        }
    };
    section("restarted", &done.restarted());
    section("verified", &done.verified());
    section("not performed (not the live node)", &done.not_performed());
    let must_restart = done.must_restart();
    if !must_restart.is_empty() {
        outln!("Restart these, one at a time, to load the renewed CA (or run again without --no-restart):");
        for m in &must_restart {
            outln!("  {m}");
        }
    }
    if let Some(f) = &done.failed() {
        say(&format!("FAILED: {f}"));
        if !done.not_restarted.is_empty() {
            say(&format!(
                "not restarted after the failure: {} (the new CA files are in place)",
                done.not_restarted.join(", ")
            ));
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn export(
    root: &NodeRoot,
    config_file: Option<&Path>,
    name: &str,
    file: &Path,
    with_key: bool,
) -> Result<ExitCode, CliError> {
    let ctx = Context::load(root, config_file)?;
    let node = NodeCopies::read(root, &ctx.settings);
    let name = authority::select(&node, &[name.to_string()])
        .map_err(cli_error)?
        .remove(0);
    let Some(ca) = node.authority(&name) else {
        return Err(CliError::Usage(format!("CA {name} is not on this node")));
    };
    let exp = exchange::export(root, ca, with_key).map_err(cli_error)?;
    exchange::write_export(file, &exp).map_err(cli_error)?;
    if with_key {
        let w = format!(
            "{} holds the PRIVATE KEY of CA {name} (mode 0600): whoever has it can sign anything for this cluster. Copy it only to another control-plane node, over a channel you trust, and delete it afterwards",
            file.display()
        );
        tracing::warn!(ca = %name, action = "ca-export", "{w}");
        errln!("WARNING: {w}");
    }
    outln!(
        "{name}\texported\t{}\tserial={}\tsha256={}{}",
        file.display(),
        exp.cert.serial,
        sha256_hex(&exp.cert),
        if exp.with_key { "\twith-key" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

fn import(root: &NodeRoot, config_file: Option<&Path>, file: &Path) -> Result<ExitCode, CliError> {
    let ctx = Context::load(root, config_file)?;
    let settings = &ctx.settings;
    let f = exchange::read_import(file).map_err(cli_error)?;
    let state = ctx.state();
    // Checked before the lock, so a wrong file changes nothing and waits for no one.
    let reader = NodeReader::new(root, settings);
    not_a_node(root, &reader.get().anchors)?;
    exchange::plan_import(
        &f,
        &reader.get().anchors,
        &|n| phase_of(&reader, &state, n),
        OffsetDateTime::now_utc(),
    )
    .map_err(cli_error)?;
    let Some(_lock) = ctx.lock_and_recover(&state, WhenBusy::Fail)? else {
        return Ok(ExitCode::from(1));
    };
    // Read again under the lock: the recovery may have finished an interrupted write.
    let reader = NodeReader::new(root, settings);
    let node = &reader.get().anchors;
    check_readable(node).map_err(cli_error)?;
    let imp = exchange::plan_import(
        &f,
        node,
        &|n| phase_of(&reader, &state, n),
        OffsetDateTime::now_utc(),
    )
    .map_err(cli_error)?;
    if let Some(ca) = node.authority(&imp.name) {
        crate::authority::import_checks::check_key_node(root, settings, ca, &imp, file)
            .map_err(cli_error)?;
    }
    if imp.changes.is_empty() {
        outln!(
            "{}\talready installed\tserial={}\tsha256={}",
            imp.name,
            imp.new.serial,
            sha256_hex(&imp.new)
        );
        return Ok(ExitCode::SUCCESS);
    }
    if f.has_key {
        say(&format!(
            "{}: holds a private key too; it is not installed (this node keeps its own key file)",
            file.display()
        ));
    }
    let serials: Vec<String> = imp.certs.iter().map(|c| c.serial.clone()).collect();
    // A bundle says how many CA certificates every copy now holds.
    let count = if imp.certs.len() > 1 {
        format!("\tcerts={}", imp.certs.len())
    } else {
        String::new()
    };
    let installed = with_pass(
        &reader,
        &state,
        |pass| -> Result<Installed, AuthorityError> {
            let written = authority::write(pass, &format!("import CA {}", imp.name), &imp.changes)?;
            {
                outln!(
                    "{}\timported\tnot_after={}\tserial={}\tsha256={}{count}",
                    imp.name,
                    rfc3339(imp.new.not_after),
                    imp.new.serial,
                    sha256_hex(&imp.new)
                );
                journal::log_ca_command(&CaCommandEvent::Imported {
                    name: imp.name.clone(),
                    serial: imp.new.serial.clone(),
                    not_after: imp.new.not_after,
                    was_serial: imp.old.serial.clone(),
                    from: file.to_path_buf(),
                });
            }
            let mut done = authority::restart(pass, &imp.restarts, &serials);
            done.written = written;
            Ok(done)
        },
    );
    finish(installed)
}

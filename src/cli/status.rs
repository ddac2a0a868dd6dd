//! The commands that look: `status`, `config check`; and `recover`, which finishes or
//! undoes an interrupted write.

use std::process::ExitCode;

use time::OffsetDateTime;

use super::context::{Context, WhenBusy};
use super::{emit, say};
use crate::inventory;
use crate::node::NodeRoot;
use crate::report::{NotANode, Status};

/// `status`: every certificate and CA, like `kubeadm certs check-expiration`; writes
/// nothing.
pub fn status(root: &NodeRoot, config_file: Option<&std::path::Path>, json: bool) -> ExitCode {
    let loaded = match Context::load(root, config_file) {
        Ok(c) => c,
        Err(e) => return e.exit(),
    };
    let layout = inventory::layout(&loaded.settings, root);
    let inv = inventory::read(&layout, root);
    let not_a_node = NotANode::detect(&inv, root);
    let mut status = Status::with_authorities(
        &inv,
        &loaded.settings.authorities,
        OffsetDateTime::now_utc(),
    );
    match loaded.state().pending() {
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
    // Passes skipped in a row for kubeadm: how long nothing was renewed.
    status.kubeadm_skipped = match inventory::kubeadm::skips::read(&loaded.state()) {
        Ok(s) => s.map(|s| s.describe(OffsetDateTime::now_utc())),
        Err(e) => Some(e.to_string()),
    };
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

/// `config check`: the merged settings as the agent reads them.
pub fn config_check(root: &NodeRoot, config_file: Option<&std::path::Path>) -> ExitCode {
    let ctx = match Context::load(root, config_file) {
        Ok(c) => c,
        Err(e) => return e.exit(),
    };
    let mut text = String::new();
    if ctx.sources.is_empty() {
        text.push_str("# no configuration file: built-in defaults\n");
    }
    for s in &ctx.sources {
        text.push_str(&format!("# read {}\n", s.display()));
    }
    text.push_str(&ctx.settings.to_toml());
    emit(&text, ExitCode::SUCCESS)
}

/// `recover`: finishes or undoes a write a crash interrupted.
pub fn recover(root: &NodeRoot, config_file: Option<&std::path::Path>) -> ExitCode {
    let ctx = match Context::load(root, config_file) {
        Ok(c) => c,
        Err(e) => return e.exit(),
    };
    let state = ctx.state();
    let _lock = match ctx.lock(&state, WhenBusy::Fail) {
        Ok(l) => l,
        Err(e) => return e.exit(),
    };
    match state.recover() {
        Ok(Some(j)) => emit(
            &format!(
                "recovered an interrupted write ({}, phase {:?})\n",
                j.label, j.phase
            ),
            ExitCode::SUCCESS,
        ),
        Ok(None) => emit("nothing to recover\n", ExitCode::SUCCESS),
        Err(e) => {
            say(&e.to_string());
            ExitCode::from(1)
        }
    }
}

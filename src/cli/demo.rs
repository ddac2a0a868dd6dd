//! `demo`: a sandbox kubeadm control-plane node in a temp directory, and the agent's
//! main job on it.

use super::{errln, out, outln};
use std::path::PathBuf;
use std::process::ExitCode;

use time::OffsetDateTime;

use super::DemoKeys;
use crate::config;
use crate::inventory;
use crate::node::{Liveness, NodeRoot};
use crate::report::{plan_text, Status};
use crate::rollout::{Overrides, Pass, Restarts};

pub fn demo(keep: Option<PathBuf>, build_only: bool, keys: DemoKeys) -> ExitCode {
    let tmp;
    let dir = match keep {
        Some(d) => {
            if let Err(why) = refuse_to_overwrite(&d, build_only) {
                errln!("cert-rotator demo: --keep {}: {why}", d.display());
                return ExitCode::from(2);
            }
            d
        }
        None => match tempfile::Builder::new()
            .prefix("cert-rotator-demo.")
            .tempdir()
        {
            Ok(t) => {
                tmp = t;
                tmp.path().to_path_buf()
            }
            Err(e) => {
                errln!("cert-rotator demo: cannot create a temp dir: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let now = OffsetDateTime::now_utc();
    outln!(
        "Building a sandbox kubeadm control-plane node under {}",
        dir.display()
    );
    outln!("  (apiserver in its last 20%, kubelet client 91 days with 25 left, scheduler.conf expired, no super-admin.conf)");
    let alg = match keys {
        DemoKeys::Rsa2048 => crate::pki::KeyAlgorithm::Rsa { bits: 2048 },
        DemoKeys::EcdsaP256 => crate::pki::KeyAlgorithm::EcdsaP256,
    };
    if let Err(e) = crate::demo::build_sandbox(&dir, now, alg) {
        errln!("cert-rotator demo: building the sandbox failed: {e}");
        return ExitCode::from(1);
    }
    if build_only {
        return ExitCode::SUCCESS;
    }
    // A sandbox: nothing of it runs here, whatever directory it was built in.
    let root = NodeRoot::new(&dir).with_liveness(Liveness::Offline);
    let settings = config::Settings::default();
    let layout = inventory::layout(&settings, &root);
    let inv = inventory::read(&layout, &root);
    let before = Status::new(&inv, now);
    outln!("\n$ cert-rotator --root {} status\n", dir.display());
    out!("{}", before.to_table());
    let due: Vec<_> = before.certificates.iter().filter(|c| c.due).collect();
    outln!(
        "\n{} of {} certificates are due:",
        due.len(),
        before.certificates.len()
    );
    for c in &due {
        outln!(
            "  {:<28} {}",
            c.name,
            c.due_reason.map(|r| r.as_str()).unwrap_or_default()
        );
    }
    outln!("\n$ cert-rotator --root {} run\n", dir.display());
    let state = crate::write::StateDir::new(&root, &settings.state_dir, settings.keep_backups);
    let plan = crate::pass::plan_run_with(
        &root,
        &settings,
        &state,
        OffsetDateTime::now_utc(),
        &crate::pass::plan_options(&root),
    );
    out!("{}", plan_text(&plan, root.liveness()));
    let node = inventory::NodeReader::new(&root, &settings);
    let pass = Pass {
        root: &root,
        settings: &settings,
        node: &node,
        state: &state,
        overrides: Overrides::default(),
        restarts: Restarts::NotLive,
    };
    let report = crate::pass::execute(&pass, &plan, &mut |_| {});
    outln!();
    out!("{}", report.summary());
    let inv = inventory::read(&inventory::layout(&settings, &root), &root);
    let after = Status::new(&inv, OffsetDateTime::now_utc());
    outln!(
        "\n$ cert-rotator --root {} status   # afterwards\n",
        dir.display()
    );
    out!("{}", after.to_table());
    let still_due = after.certificates.iter().filter(|c| c.due).count();
    outln!(
        "\n{} certificates renewed, {still_due} still due.",
        report.renewed().len()
    );
    if report.ok() && !after.has_errors() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The sandbox writes a whole node (CA keys included): never over one that exists. A
/// directory for `--keep` must be empty; `--build-only` may lay the node into a
/// non-empty tree (a fresh container's `/`) as long as no node files are there yet.
/// Why `demo --keep DIR` will not build in DIR.
#[derive(Debug, thiserror::Error)]
enum KeepRefused {
    #[error("cannot read it: {0}")]
    Unreadable(#[source] std::io::Error),
    #[error("holds {0} already: the sandbox would overwrite a node's files (give an empty or new directory)")]
    HoldsANode(&'static str),
    #[error("is not empty (give an empty or new directory)")]
    NotEmpty,
}

fn refuse_to_overwrite(dir: &std::path::Path, build_only: bool) -> Result<(), KeepRefused> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(KeepRefused::Unreadable(e)),
    };
    if entries.next().is_none() {
        return Ok(());
    }
    for node_dir in ["etc/kubernetes", "var/lib/kubelet", "var/lib/cert-rotator"] {
        if std::fs::symlink_metadata(dir.join(node_dir)).is_ok() {
            return Err(KeepRefused::HoldsANode(node_dir));
        }
    }
    if build_only {
        Ok(())
    } else {
        Err(KeepRefused::NotEmpty)
    }
}

//! The commands that look: `status`, `config check`; and `recover`, which finishes or
//! undoes an interrupted write.

use std::io::Write;
use std::process::ExitCode;

use time::OffsetDateTime;

use super::context::{Context, WhenBusy};
use super::{emit, say};
use crate::inventory;
use crate::node::NodeRoot;
use crate::report::{self, CertificateStatus, NotANode, Status, StatusStream};

/// `status`: every certificate and CA, like `kubeadm certs check-expiration`; writes
/// nothing.
pub fn status(root: &NodeRoot, config_file: Option<&std::path::Path>, json: bool) -> ExitCode {
    let loaded = match Context::load(root, config_file) {
        Ok(c) => c,
        Err(e) => return e.exit(),
    };
    // One reading of the node: a kubeconfig the layout looked at is not read again.
    let files = inventory::NodeFiles::new(root);
    let layout = inventory::layout_in(&loaded.settings, &files);
    // What the layout read and no target reads (kubelet.conf pointing at the kubelet's
    // own file) is not needed again.
    files.retain(|p| layout.targets.iter().any(|t| t.path == p));
    // Only the authorities are kept: every target is read, shown and dropped in turn,
    // so memory does not grow with the number of certificates.
    let observed = inventory::read_authorities(&layout, root);
    let read = |t: &inventory::Target| read_once(t, &files, &observed);
    let now = report::status::whole_second(OffsetDateTime::now_utc());
    let authorities =
        report::status::authority_statuses(&observed, &loaded.settings.authorities, now);
    let unfinished_write = match loaded.state().pending() {
        Ok(Some(j)) => Some(format!(
            "{} (phase {:?}, started {}): the next run, renew or recover finishes or undoes it",
            j.label,
            j.phase,
            crate::timefmt::rfc3339(j.started)
        )),
        Ok(None) => None,
        Err(e) => Some(e.to_string()),
    };
    // Passes skipped in a row for kubeadm: how long nothing was renewed.
    let kubeadm_skipped = match crate::write::kubeadm_skips::read(&loaded.state()) {
        Ok(s) => s.map(|s| s.describe(OffsetDateTime::now_utc())),
        Err(e) => Some(e.to_string()),
    };
    let authority_errors = authorities.iter().any(report::AuthorityStatus::has_error);
    let code = |certificate_errors: bool| {
        if certificate_errors || authority_errors {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    };
    // Reading writes nothing, not even the metrics file: only `run` writes it.
    if json {
        let stream = StatusStream {
            role: layout.role,
            targets: &layout.targets,
            read,
            authorities: &authorities,
            unfinished_write: &unfinished_write,
            kubeadm_skipped: &kubeadm_skipped,
        };
        let mut out = std::io::BufWriter::new(LeftOpen::new(std::io::stdout().lock()));
        let seen = match stream.write_json(now, &mut out).and_then(|s| {
            out.flush()?;
            Ok(s)
        }) {
            Ok(s) => s,
            Err(e) => {
                say(&format!("cannot write to standard output: {e}"));
                return ExitCode::from(1);
            }
        };
        // Programs get the document even on a host that is no node (every target
        // missing); the sentence goes after it.
        if let Some(n) = NotANode::detect_in(&layout, seen.all_missing, root) {
            say(&n.to_string());
            return ExitCode::from(1);
        }
        return code(seen.certificate_errors);
    }
    let status = Status {
        role: layout.role,
        generated_at: now,
        certificates: layout
            .targets
            .iter()
            .map(|t| CertificateStatus::of(t, &read(t), now))
            .collect(),
        authorities,
        unfinished_write,
        kubeadm_skipped,
    };
    // People get the sentence instead of a table of absent rows.
    let all_missing = status.certificates.iter().all(|c| c.missing);
    if let Some(n) = NotANode::detect_in(&layout, all_missing, root) {
        say(&n.to_string());
        return ExitCode::from(1);
    }
    let certificate_errors = status.certificates.iter().any(|c| c.error.is_some());
    emit(&status.to_table(), code(certificate_errors))
}

/// One target read and its kubeconfig let go of: a kubeconfig (up to 4 MiB, its private
/// key perhaps embedded) is held only while its row is made, not until `status` exits.
fn read_once(
    t: &inventory::Target,
    files: &inventory::NodeFiles<'_>,
    observed: &[inventory::ObservedAuthority],
) -> inventory::TargetState {
    let state = inventory::read_target_in(t, files, observed);
    files.forget(&t.path);
    state
}

/// Standard output a reader may leave early (`status --json | head`): once the pipe is
/// broken the rest is dropped without an error, as [`emit`] does, so the document is
/// still read to the end and the exit status still tells whether a certificate had an
/// error.
struct LeftOpen<W> {
    inner: W,
    gone: bool,
}

impl<W: Write> LeftOpen<W> {
    fn new(inner: W) -> Self {
        LeftOpen { inner, gone: false }
    }

    fn tolerate<T>(&mut self, r: std::io::Result<T>, dropped: T) -> std::io::Result<T> {
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.gone = true;
                Ok(dropped)
            }
            r => r,
        }
    }
}

impl<W: Write> Write for LeftOpen<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.gone {
            return Ok(buf.len());
        }
        let r = self.inner.write(buf);
        self.tolerate(r, buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.gone {
            return Ok(());
        }
        let r = self.inner.flush();
        self.tolerate(r, ())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::inventory::{NodeFiles, TargetState};
    use crate::model::TargetKind;

    /// `status` streams its targets: once a kubeconfig target's row is made, its bytes
    /// and parse (private key included) are no longer held for the rest of the run.
    #[test]
    fn a_kubeconfig_target_is_not_held_after_its_read() {
        let (_d, root) = crate::fixture::temp_control_plane();
        let s = Settings::default();
        let files = NodeFiles::new(&root);
        let layout = inventory::layout_in(&s, &files);
        let observed = inventory::read_authorities(&layout, &root);
        let mut kubeconfigs = 0;
        for t in layout
            .targets
            .iter()
            .filter(|t| t.kind == TargetKind::Kubeconfig)
        {
            let state = read_once(t, &files, &observed);
            assert!(matches!(state, TargetState::Read(_)), "{}", t.name);
            assert!(!files.holds(&t.path), "{} still held", t.name);
            kubeconfigs += 1;
        }
        assert!(kubeconfigs >= 4, "{kubeconfigs}");
    }
}

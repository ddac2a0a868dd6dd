//! What each phase does on the node. Every phase follows one protocol:
//!
//! 1. the phase machine decides from the journal and the CA files (nothing written on a
//!    refusal);
//! 2. the journal marks the phase `pending`;
//! 3. the phase's node files are written as ONE crash-safe change set
//!    ([`StateDir::apply`]): a crash leaves all old or all new files;
//! 4. the journal records the phase (files in place, not yet verified);
//! 5. the files are checked against what the phase promises ([`super::check`]), then
//!    what holds the CA in memory restarts one at a time, each verified; the journal
//!    records the phase verified.
//!
//! A crash between 2 and 4 makes the same command run again (its writes are computed
//! from the staged CA and the backups, so they converge); a crash after 4 makes it
//! resume at 5. `abort` puts back the byte copies `start` made.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::abort::{
    abort, before_start, manifest_of, not_restored, present, restarted_by_manifest,
};
use super::check;
use super::files::{self, CaFiles, EditError};
use super::journal::{self, BackedUp, Phase, RotationJournal};
use super::phase::{self, Command, Decision, Observed, Recorded, Which};
use super::stage::{self, StageError};
use super::trusted::JournalError;
use super::Staged;
use crate::authority::copies::{AnchorKind, NodeCopies};
use crate::ca::{CaError, LocalCa};
use crate::config::Settings;
use crate::issue::{self, IssueError, RenewOptions};
use crate::model::{Component, FileChange, NewContent};
use crate::node::kubeconfig::replace_cluster_ca;
use crate::node::NodeRoot;
use crate::pki::{CertFacts, PrivateKey};
use crate::rollout::{Overrides, Pass, Restarts};
use crate::write::{StateDir, WriteError};

/// Why a phase did not complete. Each names its file, CA or component. Large errors
/// are boxed, so that every step's `Result` stays small.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// Out of order, or a precondition does not hold: nothing was changed.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Stage(Box<StageError>),
    #[error("{0}")]
    Edit(Box<EditError>),
    #[error("{0}")]
    Write(Box<WriteError>),
    #[error("{0}")]
    Issue(Box<IssueError>),
    #[error("{0}")]
    Ca(Box<CaError>),
    #[error("{0}")]
    Copy(Box<crate::authority::copies::CopyError>),
    /// The journal or a staged file is not what the agent wrote: nothing was changed.
    #[error("{0}")]
    Journal(Box<JournalError>),
    /// A restart or its verification failed; the phase stays unverified.
    #[error("{0}")]
    RestartFailed(String),
    #[error("{}: {problem}", path.display())]
    Node { path: PathBuf, problem: String },
    #[error("{}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        source: Box<crate::node::kubeconfig::KubeconfigError>,
    },
    #[error("the {phase} phase's files are not as it promises:\n  {}", problems.join("\n  "))]
    Check {
        phase: &'static str,
        problems: Vec<String>,
    },
}

macro_rules! rotation_error_from {
    ($($variant:ident($error:ty)),*) => {
        $(impl From<$error> for RotationError {
            fn from(e: $error) -> Self {
                RotationError::$variant(Box::new(e))
            }
        })*
    };
}

rotation_error_from!(
    Stage(StageError),
    Edit(EditError),
    Write(WriteError),
    Issue(IssueError),
    Ca(CaError),
    Copy(crate::authority::copies::CopyError),
    Journal(JournalError)
);

pub(super) fn node_err(path: &Path) -> impl FnOnce(crate::node::NodeError) -> RotationError + '_ {
    move |e| RotationError::Node {
        path: path.to_path_buf(),
        problem: e.problem.to_string(),
    }
}

/// `start`'s options.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// A new CA the operator gives (node paths): the same on every control-plane node.
    pub new_cert: Option<PathBuf>,
    pub new_key: Option<PathBuf>,
    pub cross_sign: bool,
}

/// What a phase command did, for the operator.
#[derive(Debug, Default)]
pub struct Outcome {
    pub lines: Vec<String>,
    /// Not restarted (files only, `--no-restart`): what must, in order, before the next phase.
    pub must_restart: Vec<String>,
    pub warnings: Vec<String>,
}

/// Everything a phase works with.
pub struct Ctx<'a> {
    pub root: &'a NodeRoot,
    pub settings: &'a Settings,
    pub state: &'a StateDir,
    pub restarts: Restarts<'a>,
    pub now: OffsetDateTime,
}

impl<'a> Ctx<'a> {
    /// The pass whose restart path (one at a time, paced, verified, under the lock) a
    /// phase, an abort or a forced abort restarts through.
    pub fn pass(&self) -> Pass<'a> {
        Pass {
            root: self.root,
            settings: self.settings,
            state: self.state,
            overrides: Overrides::default(),
            restarts: self.restarts,
        }
    }
}

const NEW_CERT: &str = "new-ca.crt";
const NEW_KEY: &str = "new-ca.key";
const OLD_CERT: &str = "old-ca.crt";
const CROSS: &str = "cross.crt";
const ARCHIVED_KEY: &str = "old-ca.key";

pub(super) fn read_bytes(root: &NodeRoot, p: &Path) -> Result<Vec<u8>, RotationError> {
    root.read_file(p).map(|(_, b)| b).map_err(node_err(p))
}

fn read_cert(root: &NodeRoot, p: &Path) -> Result<CertFacts, RotationError> {
    let b = read_bytes(root, p)?;
    let mut certs = files::certs_of(p, &b)?;
    if certs.is_empty() {
        return Err(RotationError::Node {
            path: p.to_path_buf(),
            problem: "no certificate".into(),
        });
    }
    Ok(certs.remove(0))
}

fn read_key(root: &NodeRoot, p: &Path) -> Result<PrivateKey, RotationError> {
    let b = zeroize::Zeroizing::new(read_bytes(root, p)?);
    // A CA key read to sign or to be installed: checked fully.
    let key = PrivateKey::from_pem(&b).and_then(|k| k.check().map(|()| k));
    key.map_err(|e| RotationError::Node {
        path: p.to_path_buf(),
        problem: e.to_string(),
    })
}

pub(super) fn load_staged(
    root: &NodeRoot,
    dir: &Path,
    j: &RotationJournal,
) -> Result<Staged, RotationError> {
    let old = read_cert(root, &dir.join(OLD_CERT))?;
    let new = read_cert(root, &dir.join(NEW_CERT))?;
    let cross = if j.cross_sign {
        Some(read_cert(root, &dir.join(CROSS))?)
    } else {
        None
    };
    let mut staged = vec![
        (&old, &j.old_sha256, OLD_CERT),
        (&new, &j.new_sha256, NEW_CERT),
    ];
    if let (Some(x), Some(want)) = (&cross, &j.cross_sha256) {
        // `issue` serves it in every serving chain: it must be the one `start` made.
        staged.push((x, want, CROSS));
    }
    for (c, want, name) in staged {
        if &stage::sha256(c) != want {
            return Err(RotationError::Node {
                path: dir.join(name),
                problem:
                    "does not match the fingerprint the journal recorded: the staged CA was changed"
                        .into(),
            });
        }
    }
    Ok(Staged { old, new, cross })
}

/// Runs `ca rotate NAME <cmd>`.
pub fn rotate(
    ctx: &Ctx<'_>,
    ca: &'static str,
    cmd: Command,
    opts: &StartOptions,
) -> Result<Outcome, RotationError> {
    let f = CaFiles::of(ctx.settings, ctx.root, ca);
    let dir = journal::rotation_dir(ctx.state, ca);
    let j = super::trusted::read(ctx.root, ctx.settings, ctx.state, ca)?;
    let staged = match &j {
        Some(j) => Some(load_staged(ctx.root, &dir, j)?),
        None => None,
    };
    let kubeadm = files::kubeadm_running(ctx.root, ctx.settings);
    let seen = match &staged {
        Some(s) => {
            let (bundle, key) = check::observe_ca(ctx.root, &f, s);
            let j = j.as_ref().expect("staged with a journal");
            let drift = matches!(j.phase, Phase::Trusting | Phase::Issuing | Phase::Finished)
                && !check::problems(
                    ctx.root,
                    ctx.settings,
                    &f,
                    j,
                    s,
                    &crate::inventory::read_node(ctx.root, ctx.settings),
                    j.phase,
                )
                .is_empty();
            Observed {
                bundle,
                key,
                kubeadm,
                drift,
            }
        }
        None => observe_unstaged(ctx.root, &f, kubeadm)?,
    };
    let recorded = j.as_ref().map(|j| Recorded {
        phase: j.phase,
        verified: j.verified,
        pending: j.pending,
    });
    let decision = phase::decide(recorded, &seen, cmd);
    let mut out = Outcome::default();
    match decision {
        Decision::Refuse(why) => {
            return Err(RotationError::Refused(format!(
                "{ca}: `ca rotate {ca} {}` refused: {why} (CA file {}, journal {})",
                cmd.name(),
                f.cert.display(),
                journal::journal_path(ctx.state, ca).display()
            )))
        }
        Decision::Done(why) => {
            if let (Command::Start, Some(j)) = (cmd, &j) {
                check_same_given(ctx, j, opts)?;
            }
            out.lines.push(format!("{ca}: {why}"));
            return Ok(out);
        }
        Decision::Resume => {
            let mut j = j.expect("a phase to resume has a journal");
            let s = staged.expect("staged with a journal");
            out.lines.push(format!(
                "{ca}: the {} phase's files are in place; restarting and verifying",
                j.phase.name()
            ));
            finish_phase(ctx, &f, &mut j, &s, &mut out)?;
            return Ok(out);
        }
        Decision::Run => {}
    }
    match cmd {
        Command::Start => start(ctx, &f, j.as_ref(), opts, &mut out)?,
        Command::Abort => {
            let mut j = j.expect("abort runs with a journal");
            let s = staged.expect("staged with a journal");
            abort(ctx, &f, &mut j, &s, &mut out)?;
        }
        c => {
            let mut j = j.expect("a phase runs with a journal");
            let s = staged.expect("staged with a journal");
            let target = c.target();
            j.pending = Some(target);
            journal::write(ctx.state, &j)?;
            let changes = match c {
                Command::Trust => trust_changes(ctx, &f, &j, &s)?,
                Command::Issue => issue_changes(ctx, &f, &mut j, &s)?,
                Command::Finish => finish_changes(ctx, &f, &j, &s, &dir)?,
                _ => unreachable!("start and abort are handled above"),
            };
            // Recorded before the write: an abort after a crash removes what it created.
            journal::write(ctx.state, &j)?;
            let applied = ctx
                .state
                .apply(&format!("ca rotate {ca} {}", c.name()), &changes)?;
            if target == Phase::Finished {
                if let Some(signer) = f.signer.as_ref().filter(|_| j.signer_flag_moved) {
                    // The controller-manager no longer names it: kubeadm's layout again.
                    remove(ctx.root, signer)?;
                }
            }
            out.lines.push(format!(
                "{ca}: {} phase written ({} files changed in one change set, backup {})",
                target.name(),
                applied.entries.len(),
                applied.backup_dir.display()
            ));
            for e in &applied.entries {
                out.lines.push(format!("  wrote {}", e.path.display()));
            }
            j.phase = target;
            j.pending = None;
            j.verified = false;
            j.phase_at = ctx.now;
            journal::write(ctx.state, &j)?;
            finish_phase(ctx, &f, &mut j, &s, &mut out)?;
        }
    }
    Ok(out)
}

/// Before a rotation is recorded: the CA file's first certificate is "old".
fn observe_unstaged(
    root: &NodeRoot,
    f: &CaFiles,
    kubeadm: Option<String>,
) -> Result<Observed, RotationError> {
    let b = read_bytes(root, &f.cert)?;
    let certs = files::certs_of(&f.cert, &b)?;
    let bundle = certs
        .iter()
        .enumerate()
        .map(|(i, _)| if i == 0 { Which::Old } else { Which::Other })
        .collect();
    let key = match (root.read_file(&f.key), certs.first()) {
        (Ok((_, k)), Some(c)) => match PrivateKey::from_pem(&k) {
            Ok(k) if k.matches(c) => Which::Old,
            _ => Which::Other,
        },
        _ => Which::Other,
    };
    Ok(Observed {
        bundle,
        key,
        kubeadm,
        drift: false,
    })
}

/// `start` again with `--new-cert` must name the CA already staged.
fn check_same_given(
    ctx: &Ctx<'_>,
    j: &RotationJournal,
    opts: &StartOptions,
) -> Result<(), RotationError> {
    if let Some(p) = &opts.new_cert {
        let c = read_cert(ctx.root, p)?;
        if stage::sha256(&c) != j.new_sha256 {
            return Err(RotationError::Refused(format!(
                "{}: is not the new CA already staged (sha256 {}); `abort` first to stage another",
                p.display(),
                j.new_sha256
            )));
        }
    }
    Ok(())
}

pub(super) fn remove(root: &NodeRoot, p: &Path) -> Result<(), RotationError> {
    if root.remove_file(p).map_err(node_err(p))? {
        let dir = p.parent().unwrap_or(Path::new("/"));
        root.sync_dir(dir).map_err(node_err(dir))?;
    }
    Ok(())
}

/// Every node file a rotation of this CA may touch.
pub(super) fn touched(root: &NodeRoot, settings: &Settings, f: &CaFiles) -> Vec<PathBuf> {
    let mut v = vec![f.cert.clone(), f.key.clone()];
    v.extend(f.signer.iter().cloned());
    v.push(f.kcm_manifest.clone());
    v.extend(f.manifests(settings));
    v.extend(
        kubeconfig_copies(root, settings, f)
            .into_iter()
            .map(|(p, _)| p),
    );
    let inv = crate::inventory::read_node(root, settings);
    for (o, r) in files::leaves(&inv, f.name) {
        v.push(o.target.path.clone());
        v.push(r.cert_file.clone());
        v.extend(r.key_file.iter().cloned());
    }
    let mut seen = Vec::new();
    v.retain(|p| {
        let new = !seen.contains(p);
        seen.push(p.clone());
        new
    });
    v
}

pub(super) fn write_state_file(
    root: &NodeRoot,
    p: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), RotationError> {
    root.write_atomic(p, bytes, mode, None).map_err(node_err(p))
}

fn start(
    ctx: &Ctx<'_>,
    f: &CaFiles,
    previous: Option<&RotationJournal>,
    opts: &StartOptions,
    out: &mut Outcome,
) -> Result<(), RotationError> {
    let root = ctx.root;
    let dir = journal::rotation_dir(ctx.state, f.name);
    let old = read_cert(root, &f.cert)?;
    let old_key = read_key(root, &f.key)?;
    let new = match (&opts.new_cert, &opts.new_key) {
        (Some(c), Some(k)) => stage::load_given(root, c, k, &old, ctx.now)?,
        (None, None) => stage::generate(&old, &old_key, ctx.now)?,
        _ => {
            return Err(RotationError::Refused(
                "--new-cert and --new-key go together".into(),
            ))
        }
    };
    let cross = if opts.cross_sign {
        Some(stage::cross_sign(&new.cert, &old, &old_key, &f.cert)?)
    } else {
        None
    };
    if let Some(p) = previous {
        // A finished rotation is kept under its own name beside the new one.
        let to = dir.with_file_name(format!(
            "{}.finished-{}",
            journal::slug(f.name),
            p.phase_at.unix_timestamp()
        ));
        root.rename(&dir, &to).map_err(node_err(&dir))?;
    }
    // A crash before the journal is written leaves no rotation: a next `start` writes
    // these files again.
    root.create_dir_all(&dir.join("backup"), 0o700)
        .map_err(node_err(&dir))?;
    write_state_file(
        root,
        &dir.join(OLD_CERT),
        stage::pem(&old).as_bytes(),
        0o600,
    )?;
    write_state_file(
        root,
        &dir.join(NEW_CERT),
        stage::pem(&new.cert).as_bytes(),
        0o600,
    )?;
    let key_pem = new.key.to_pem().map_err(|e| RotationError::Node {
        path: dir.join(NEW_KEY),
        problem: e.to_string(),
    })?;
    write_state_file(root, &dir.join(NEW_KEY), key_pem.as_bytes(), 0o600)?;
    if let Some(x) = &cross {
        write_state_file(root, &dir.join(CROSS), stage::pem(x).as_bytes(), 0o600)?;
    }
    let mut backups = Vec::new();
    for p in touched(ctx.root, ctx.settings, f) {
        let meta = root.symlink_metadata(&p).map_err(node_err(&p))?;
        let b = match meta {
            None => BackedUp {
                path: p,
                copy: None,
                link: None,
            },
            Some(m) if m.file_type().is_symlink() => BackedUp {
                link: Some(root.read_link(&p).map_err(node_err(&p))?),
                path: p,
                copy: None,
            },
            Some(_) => {
                let copy = dir.join("backup").join(p.strip_prefix("/").unwrap_or(&p));
                if let Some(parent) = copy.parent() {
                    root.create_dir_all(parent, 0o700)
                        .map_err(node_err(parent))?;
                }
                write_state_file(root, &copy, &read_bytes(root, &p)?, 0o600)?;
                BackedUp {
                    path: p,
                    copy: Some(copy),
                    link: None,
                }
            }
        };
        backups.push(b);
    }
    let signer_flag_moved = match (&f.signer, root.read_file(&f.kcm_manifest)) {
        (Some(_), Ok((_, m))) => files::signer_flag(&f.kcm_manifest, &m)?
            .is_some_and(|v| Path::new(&v) == f.cert.as_path()),
        _ => false,
    };
    let j = RotationJournal {
        ca: f.name.to_string(),
        phase: Phase::Started,
        verified: true,
        pending: None,
        cross_sign: cross.is_some(),
        old_sha256: stage::sha256(&old),
        new_sha256: stage::sha256(&new.cert),
        cross_sha256: cross.as_ref().map(stage::sha256),
        started_at: ctx.now,
        phase_at: ctx.now,
        backups,
        signer_flag_moved,
        created: Vec::new(),
        abort_restarts: Vec::new(),
    };
    journal::write(ctx.state, &j)?;
    out.lines.push(format!(
        "{}: staged the new CA {} (sha256 {}) in {}; nothing live changed",
        f.name,
        new.cert.subject,
        j.new_sha256,
        dir.display()
    ));
    if let Some(x) = &j.cross_sha256 {
        out.lines.push(format!(
            "{}: cross certificate (the new CA signed by the old key) sha256 {x}",
            f.name
        ));
    }
    out.lines.push(format!(
        "{}: backed up {} files the rotation may touch; next: `ca rotate {} trust` on every node",
        f.name,
        j.backups.len(),
        f.name
    ));
    Ok(())
}

/// Adds or replaces the change of `path`: `edit` gets the bytes the change set would
/// write (a change already planned, else the file now) and returns the new bytes, or
/// `None` to leave it.
fn edit(
    root: &NodeRoot,
    changes: &mut Vec<FileChange>,
    path: &Path,
    secret: bool,
    edit: impl FnOnce(&[u8]) -> Result<Option<Vec<u8>>, RotationError>,
) -> Result<(), RotationError> {
    let at = changes.iter().position(|c| c.path == path);
    let current = match at.map(|i| &changes[i].content) {
        Some(NewContent::File(b)) => b.clone(),
        _ => read_bytes(root, path)?,
    };
    if let Some(new) = edit(&current)? {
        let c = FileChange::file(path, new, if secret { 0o600 } else { 0o644 }, secret);
        match at {
            Some(i) => changes[i] = c,
            None => changes.push(c),
        }
    }
    Ok(())
}

/// A whole file's content, unless it already is that.
fn set(
    root: &NodeRoot,
    changes: &mut Vec<FileChange>,
    path: &Path,
    bytes: Vec<u8>,
    secret: bool,
) -> Result<(), RotationError> {
    let now = root.read_file(path).ok().map(|(_, b)| b);
    if now.as_deref() != Some(bytes.as_slice()) {
        changes.retain(|c| c.path != path);
        changes.push(FileChange::file(
            path,
            bytes,
            if secret { 0o600 } else { 0o644 },
            secret,
        ));
    }
    Ok(())
}

/// The kubeconfig copies of this CA: (resolved node path, cluster entry).
pub fn kubeconfig_copies(
    root: &NodeRoot,
    settings: &Settings,
    f: &CaFiles,
) -> Vec<(PathBuf, String)> {
    let nc = NodeCopies::read(root, settings);
    nc.authority(f.name)
        .map(|a| {
            a.anchors
                .iter()
                .filter_map(|t| match &t.kind {
                    AnchorKind::Kubeconfig { cluster } => Some((t.path.clone(), cluster.clone())),
                    AnchorKind::CaFile => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every kubeconfig copy of this CA holds `bundle`, edited on top of what the change
/// set already writes to that kubeconfig (a re-issued client certificate).
fn kubeconfigs_to(
    root: &NodeRoot,
    settings: &Settings,
    f: &CaFiles,
    changes: &mut Vec<FileChange>,
    bundle: &[&CertFacts],
) -> Result<(), RotationError> {
    let nc = NodeCopies::read(root, settings);
    if let Some(e) = nc.unreadable.first() {
        return Err(RotationError::Refused(format!(
            "{e}: the CA copy in it cannot be updated; fix or remove the file first"
        )));
    }
    let pem = files::bundle_pem(bundle);
    for (path, cluster) in kubeconfig_copies(root, settings, f) {
        edit(root, changes, &path, true, |b| {
            let new =
                replace_cluster_ca(b, &path, &[(&cluster, pem.as_bytes())]).map_err(|source| {
                    RotationError::Kubeconfig {
                        path: path.clone(),
                        source: Box::new(source),
                    }
                })?;
            Ok((new != b).then_some(new))
        })?;
    }
    Ok(())
}

fn signer_flag_to(
    root: &NodeRoot,
    f: &CaFiles,
    changes: &mut Vec<FileChange>,
    from: &Path,
    to: &Path,
) -> Result<(), RotationError> {
    let m = &f.kcm_manifest;
    let bytes = read_bytes(root, m)?;
    match files::signer_flag(m, &bytes)? {
        Some(v) if Path::new(&v) == to => Ok(()),
        _ => {
            let new = files::with_signer_flag(m, &bytes, from, to)?;
            // Never a temp file in the manifests directory: the kubelet would run it.
            changes.push(FileChange {
                stage_outside: true,
                ..FileChange::file(m, new, 0o600, false)
            });
            Ok(())
        }
    }
}

fn trust_changes(
    ctx: &Ctx<'_>,
    f: &CaFiles,
    j: &RotationJournal,
    s: &Staged,
) -> Result<Vec<FileChange>, RotationError> {
    let root = ctx.root;
    let mut changes = Vec::new();
    if let (Some(signer), true) = (&f.signer, j.signer_flag_moved) {
        // One certificate, the issuing one, before ca.crt becomes a bundle: the
        // controller-manager's signer refuses a bundle ("expected 1 certificate").
        set(
            root,
            &mut changes,
            signer,
            stage::pem(&s.old).into_bytes(),
            false,
        )?;
        signer_flag_to(root, f, &mut changes, &f.cert, signer)?;
    }
    set(
        root,
        &mut changes,
        &f.cert,
        files::bundle_pem(&[&s.old, &s.new]).into_bytes(),
        false,
    )?;
    kubeconfigs_to(root, ctx.settings, f, &mut changes, &[&s.old, &s.new])?;
    Ok(changes)
}

fn issue_changes(
    ctx: &Ctx<'_>,
    f: &CaFiles,
    j: &mut RotationJournal,
    s: &Staged,
) -> Result<Vec<FileChange>, RotationError> {
    let root = ctx.root;
    let dir = journal::rotation_dir(ctx.state, f.name);
    let mut changes = Vec::new();
    let new_key = read_key(root, &dir.join(NEW_KEY))?;
    if !new_key.matches(&s.new) {
        // It becomes the CA key: one that does not match the staged CA is not ours.
        return Err(RotationError::Node {
            path: dir.join(NEW_KEY),
            problem: format!(
                "does not match the staged new CA {}: the staged key was changed",
                dir.join(NEW_CERT).display()
            ),
        });
    }
    let key_pem = new_key.to_pem().map_err(|e| RotationError::Node {
        path: dir.join(NEW_KEY),
        problem: e.to_string(),
    })?;
    set(
        root,
        &mut changes,
        &f.key,
        key_pem.as_bytes().to_vec(),
        true,
    )?;
    set(
        root,
        &mut changes,
        &f.cert,
        files::bundle_pem(&[&s.new, &s.old]).into_bytes(),
        false,
    )?;
    if let (Some(signer), true) = (&f.signer, j.signer_flag_moved) {
        set(
            root,
            &mut changes,
            signer,
            stage::pem(&s.new).into_bytes(),
            false,
        )?;
        signer_flag_to(root, f, &mut changes, &f.cert, signer)?;
    }
    kubeconfigs_to(root, ctx.settings, f, &mut changes, &[&s.old, &s.new])?;
    // Every leaf of this CA from the new one, as a renewal would issue it (same
    // identity, new key); the plan's reading of each target is the renewal's input.
    let new_ca = LocalCa::load(
        root,
        &format!("{} (new)", f.name),
        &dir.join(NEW_CERT),
        &dir.join(NEW_KEY),
        ctx.now,
    )?;
    let inv = crate::inventory::read_node(root, ctx.settings);
    let opts = RenewOptions {
        days: None,
        reuse_key: false,
        now: ctx.now,
        // From the old CA to the new: the operator's explicit choice.
        switch_issuer: true,
    };
    for (o, r) in files::leaves(&inv, f.name) {
        if r.cert.is_signed_by(&s.new) {
            continue;
        }
        let prepared = issue::prepare(&o.target, r, Some(&new_ca), &opts)?;
        for c in prepared.changes {
            changes.retain(|x| x.path != c.path);
            changes.push(c);
        }
        out_warn(&prepared.warnings);
    }
    // Serving chains: leaf, then X, for clients that trust only the old CA.
    for path in &f.serving {
        if !root.exists(path) {
            continue;
        }
        let cross = s.cross.clone();
        edit(root, &mut changes, path, false, |b| {
            let certs = files::certs_of(path, b)?;
            let Some(leaf) = certs.first() else {
                return Ok(None);
            };
            let mut chain = vec![leaf];
            chain.extend(
                certs[1..]
                    .iter()
                    .filter(|c| cross.as_ref().is_none_or(|x| x.der != c.der)),
            );
            if let Some(x) = &cross {
                chain.insert(1, x);
            }
            let new = files::bundle_pem(&chain).into_bytes();
            Ok((new != b).then_some(new))
        })?;
    }
    for c in &changes {
        let known = j.backups.iter().any(|b| b.path == c.path);
        if !known && !root.exists(&c.path) && !j.created.contains(&c.path) {
            j.created.push(c.path.clone());
        }
    }
    Ok(changes)
}

fn out_warn(w: &[String]) {
    for w in w {
        tracing::warn!("{w}");
    }
}

fn finish_changes(
    ctx: &Ctx<'_>,
    f: &CaFiles,
    j: &RotationJournal,
    s: &Staged,
    dir: &Path,
) -> Result<Vec<FileChange>, RotationError> {
    let root = ctx.root;
    // Nothing of the old CA may be left in use: it stops being trusted now.
    let inv = crate::inventory::read_node(root, ctx.settings);
    let stale: Vec<String> = files::leaves(&inv, f.name)
        .into_iter()
        .filter(|(_, r)| !r.cert.is_signed_by(&s.new))
        .map(|(o, r)| format!("{} ({})", o.target.name, r.cert_file.display()))
        .collect();
    if !stale.is_empty() {
        return Err(RotationError::Refused(format!(
            "{}: still issued by the old CA, which finish stops trusting: {}; run `ca rotate {} issue` again",
            f.name,
            stale.join(", "),
            f.name
        )));
    }
    // The old key is archived, not deleted: an emergency re-add stays possible.
    let archived = dir.join(ARCHIVED_KEY);
    if let Some(copy) = j
        .backups
        .iter()
        .find(|b| b.path == f.key)
        .and_then(|b| b.copy.clone())
    {
        write_state_file(root, &archived, &read_bytes(root, &copy)?, 0o600)?;
    }
    let mut changes = Vec::new();
    set(
        root,
        &mut changes,
        &f.cert,
        stage::pem(&s.new).into_bytes(),
        false,
    )?;
    if let (Some(signer), true) = (&f.signer, j.signer_flag_moved) {
        // Back to kubeadm's manifest: ca.crt is a single certificate again.
        signer_flag_to(root, f, &mut changes, signer, &f.cert)?;
    }
    kubeconfigs_to(root, ctx.settings, f, &mut changes, &[&s.new])?;
    for path in &f.serving {
        if !root.exists(path) {
            continue;
        }
        let cross = s.cross.clone();
        edit(root, &mut changes, path, false, |b| {
            let certs = files::certs_of(path, b)?;
            let kept: Vec<&CertFacts> = certs
                .iter()
                .filter(|c| cross.as_ref().is_none_or(|x| x.der != c.der))
                .collect();
            let new = files::bundle_pem(&kept).into_bytes();
            Ok((new != b).then_some(new))
        })?;
    }
    Ok(changes)
}

/// Checks the phase's promises on disk, then restarts and verifies what holds the CA,
/// and records the phase verified. An aborted rotation's directory is removed then.
pub(super) fn finish_phase(
    ctx: &Ctx<'_>,
    f: &CaFiles,
    j: &mut RotationJournal,
    s: &Staged,
    out: &mut Outcome,
) -> Result<(), RotationError> {
    let inv = crate::inventory::read_node(ctx.root, ctx.settings);
    if j.phase == Phase::Aborted {
        // The manifests the restarts write back are checked after them.
        not_restored(ctx, j, &restarted_by_manifest(ctx, j))?;
    } else {
        let problems = check::problems(ctx.root, ctx.settings, f, j, s, &inv, j.phase);
        if !problems.is_empty() {
            return Err(RotationError::Check {
                phase: j.phase.name(),
                problems,
            });
        }
    }
    out.lines.push(format!(
        "{}: files verified for the {} phase",
        f.name,
        j.phase.name()
    ));
    if j.phase == Phase::Aborted {
        // Only what abort restored restarts (nothing after `start`); a static pod by
        // its manifest of before `start`, so the manifests end byte-identical too.
        let list: Vec<Component> = present(ctx, f)
            .into_iter()
            .filter(|c| j.abort_restarts.contains(&c.name()))
            .collect();
        restart_list(ctx, f, j, &list, out)?;
        if matches!(ctx.restarts, Restarts::Live(_)) {
            not_restored(ctx, j, &[])?;
        }
    } else if j.phase != Phase::Started {
        restart_all(ctx, f, j, out)?;
        if matches!(ctx.restarts, Restarts::Operator) && !out.must_restart.is_empty() {
            // --no-restart on the live node: the operator restarts; the phase counts
            // as verified once this command runs again and restarts and verifies.
            journal::write(ctx.state, j)?;
            out.lines.push(format!(
                "{}: the {} phase is written but not verified: restart what is listed, or run `ca rotate {} {}` again without --no-restart",
                f.name,
                j.phase.name(),
                f.name,
                j.phase.command()
            ));
            return Ok(());
        }
    }
    j.verified = true;
    if j.phase == Phase::Aborted {
        let dir = journal::rotation_dir(ctx.state, f.name);
        ctx.root.remove_dir_all(&dir).map_err(node_err(&dir))?;
        out.lines.push(format!(
            "{}: the rotation is undone; the node is as before `start`",
            f.name
        ));
    } else {
        journal::write(ctx.state, j)?;
        out.lines.push(match j.phase {
            Phase::Trusting => format!("{}: every trust anchor holds [old, new]; next, once every node trusts both: `ca rotate {} issue`", f.name, f.name),
            Phase::Issuing => format!("{}: the new CA signs; next, once every client has the new CA: `ca rotate {} finish`", f.name, f.name),
            Phase::Finished => format!("{}: the rotation is finished; the old CA's key is archived in {}", f.name, journal::rotation_dir(ctx.state, f.name).join(ARCHIVED_KEY).display()),
            _ => String::new(),
        });
    }
    Ok(())
}

fn restart_all(
    ctx: &Ctx<'_>,
    f: &CaFiles,
    j: &RotationJournal,
    out: &mut Outcome,
) -> Result<(), RotationError> {
    restart_list(ctx, f, j, &present(ctx, f), out)
}

fn restart_list(
    ctx: &Ctx<'_>,
    f: &CaFiles,
    j: &RotationJournal,
    present: &[Component],
    out: &mut Outcome,
) -> Result<(), RotationError> {
    let pass = ctx.pass();
    // The same restarts as `ca renew` and a pass: one at a time, paced, each verified;
    // the static pods' annotation names the new CA and the phase.
    let serials = [j.new_sha256.clone(), j.phase.name().to_string()];
    let done = crate::authority::restart_writing(&pass, present, &serials, |c| {
        let pod = files::static_pod(c).filter(|_| j.phase == Phase::Aborted)?;
        before_start(ctx.root, j, &manifest_of(ctx, pod))
    });
    out.lines.extend(
        done.restarted
            .iter()
            .map(|l| format!("{}: restarted {l}", f.name)),
    );
    out.lines.extend(
        done.verified
            .iter()
            .map(|l| format!("{}: verified {l}", f.name)),
    );
    out.must_restart.extend(done.not_performed);
    out.must_restart.extend(done.must_restart);
    match done.failed {
        Some(e) => Err(RotationError::RestartFailed(format!(
            "{e} (not restarted: {})",
            if done.not_restarted.is_empty() {
                "none".to_string()
            } else {
                done.not_restarted.join(", ")
            }
        ))),
        None => Ok(()),
    }
}

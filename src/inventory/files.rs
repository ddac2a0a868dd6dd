//! One reading of the node's files: the gate, and each kubeconfig read and parsed at most
//! once.
//!
//! A kubeconfig is looked at by the layout (does kubelet.conf point at the kubelet's
//! symlink, whose client certificate names the Node), by the inventory (the current
//! user's client certificate) and by the CA copies (every cluster's
//! `certificate-authority-data`). Each used to read and parse it again; YAML is most of
//! what a kubeconfig costs. [`NodeFiles`] reads it once, bounded and through the
//! `--root` gate as every read is, parses both readings in one pass
//! ([`kubeconfig::parse_both`]) and hands the same bytes and results to each of them.

use std::cell::{Cell, RefCell};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use crate::node::kubeconfig::{self, ClusterEntry, Kubeconfig, KubeconfigError};
use crate::node::{NodeError, NodeRoot};

/// A kubeconfig as read once: where it is, its bytes, and both of its readings.
pub struct KubeconfigFile {
    /// Node path of the file itself, every symlink resolved.
    pub resolved: PathBuf,
    /// The bytes as read: a renewal or a CA change rewrites them in place.
    pub bytes: Arc<Vec<u8>>,
    /// The current context's user and its credential (relative file references taken
    /// from the path asked for, as kubectl takes them).
    pub kubeconfig: Result<Kubeconfig, Arc<KubeconfigError>>,
    /// Every cluster entry and the CA it trusts.
    pub clusters: Result<Vec<ClusterEntry>, Arc<KubeconfigError>>,
    /// The file's permission bits (it may embed a client key).
    pub mode: u32,
}

// Not derived: the bytes hold the client key (client-key-data); a `{:?}` shows their length.
impl std::fmt::Debug for KubeconfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeconfigFile")
            .field("resolved", &self.resolved)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("kubeconfig", &self.kubeconfig)
            .field("clusters", &self.clusters)
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// What reading one kubeconfig gave: the file, or the gate's error (shared, since each
/// reader reports it in its own terms).
pub type KubeconfigRead = Rc<Result<KubeconfigFile, Arc<NodeError>>>;

/// The node's files for one reading of the node: the gate, and the kubeconfigs read so
/// far, by the node path asked for.
pub struct NodeFiles<'a> {
    root: &'a NodeRoot,
    kubeconfigs: RefCell<Vec<(PathBuf, KubeconfigRead)>>,
    /// Kubeconfigs read from the node so far, each read counted (a read again after
    /// [`Self::forget`] too).
    reads: Cell<usize>,
}

impl<'a> NodeFiles<'a> {
    pub fn new(root: &'a NodeRoot) -> Self {
        NodeFiles {
            root,
            kubeconfigs: RefCell::new(Vec::new()),
            reads: Cell::new(0),
        }
    }

    pub fn root(&self) -> &'a NodeRoot {
        self.root
    }

    /// The kubeconfig at `path`, read and parsed on its first use. A file that cannot be
    /// read gives the same error to every reader; nothing is read twice.
    pub fn kubeconfig(&self, path: &Path) -> KubeconfigRead {
        if let Some((_, k)) = self.kubeconfigs.borrow().iter().find(|(p, _)| p == path) {
            return k.clone();
        }
        self.reads.set(self.reads.get() + 1);
        let read = Rc::new(read_kubeconfig(self.root, path));
        self.kubeconfigs
            .borrow_mut()
            .push((path.to_path_buf(), read.clone()));
        read
    }

    /// Lets go of the kubeconfig at `path`, its bytes and its parse (an embedded private
    /// key included): a reader that goes through the targets one at a time keeps only
    /// what another reader still needs. A later use reads it again.
    pub fn forget(&self, path: &Path) {
        self.kubeconfigs.borrow_mut().retain(|(p, _)| p != path);
    }

    /// Keeps only the kubeconfigs at the paths `keep` accepts.
    pub fn retain(&self, keep: impl Fn(&Path) -> bool) {
        self.kubeconfigs.borrow_mut().retain(|(p, _)| keep(p));
    }

    /// Whether the kubeconfig at `path` is held.
    pub fn holds(&self, path: &Path) -> bool {
        self.kubeconfigs.borrow().iter().any(|(p, _)| p == path)
    }

    /// How many times a kubeconfig was read from the node: each read counted, not each
    /// file held.
    pub fn kubeconfigs_read(&self) -> usize {
        self.reads.get()
    }
}

fn read_kubeconfig(root: &NodeRoot, path: &Path) -> Result<KubeconfigFile, Arc<NodeError>> {
    let file = root.open_file(path).map_err(Arc::new)?;
    let resolved = file.path.clone();
    let mode = file.metadata().permissions().mode();
    let bytes = file.read_all().map_err(Arc::new)?;
    let parsed = kubeconfig::parse_both(&bytes, path);
    Ok(KubeconfigFile {
        mode,
        resolved,
        bytes: Arc::new(bytes),
        kubeconfig: parsed.kubeconfig.map_err(Arc::new),
        clusters: parsed.clusters.map_err(Arc::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads are counted as they happen, not as files held: a kubeconfig asked for twice
    /// is read once, and once let go of, read again.
    #[test]
    fn each_read_of_a_kubeconfig_is_counted() {
        let (_d, root) = crate::fixture::temp_control_plane();
        let files = NodeFiles::new(&root);
        let admin = Path::new("/etc/kubernetes/admin.conf");
        let first = files.kubeconfig(admin);
        assert!(first.as_ref().is_ok());
        assert!(Rc::ptr_eq(&first, &files.kubeconfig(admin)));
        assert_eq!(files.kubeconfigs_read(), 1);
        drop(first);
        files.forget(admin);
        assert!(!files.holds(admin));
        assert!(files.kubeconfig(admin).as_ref().is_ok());
        assert!(files.holds(admin));
        assert_eq!(files.kubeconfigs_read(), 2);
        files.retain(|p| p != admin);
        assert!(!files.holds(admin));
    }
}

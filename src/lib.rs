//! cert-rotator: keeps a Kubernetes node's certificates valid from the node alone.
//!
//! The flow, one module each, every module importing only the ones above it in this
//! list: config -> inventory -> plan -> issue -> write -> restart -> verify -> report,
//! rolled out by [`rollout`] (below the CA lifecycle, [`authority`]), sequenced by
//! [`pass`] and driven by [`cli`]. Beneath the flow sit the clock, time formats,
//! certificates and keys ([`pki`]), the one gate to the node's files ([`node`]) and
//! the shared vocabulary ([`model`]).

/// Wall-clock time and sleeping behind a seam, so a pass can be replayed.
pub mod clock;
/// Time as operators read it: RFC 3339 and kubeadm's short forms.
pub mod timefmt;
/// Text from the node made safe for a terminal: control characters escaped.
pub mod shown;
/// PEM, certificates, keys and X.509 building: the one crypto and ASN.1 stack.
pub mod pki;
/// The running system's /proc (not under `--root`): bounded reads, start times.
pub mod procfs;
/// The node's files under `--root`: the only reader and writer, and kubeconfig parsing.
pub mod node;
/// Shared vocabulary with no I/O: components, target kinds, file changes, endpoints.
pub mod model;
/// config.toml and config.d merged into validated settings.
pub mod config;
/// The agent's HTTPS client: TLS roots and client certificates from node files, timeouts.
pub mod net;
/// Which certificates and CAs this node holds, and where its components listen, read
/// from its files.
pub mod inventory;
/// The pure plan: what is due, who signs it, in which order, what restarts.
pub mod plan;
/// The CA seam: the local CA key or a remote cfssl server signs.
pub mod ca;
/// The Kubernetes API from the node: a kubeconfig's client, the objects, the Lease,
/// Events, and the certificates API as kubelet.crt's CA (`[kubelet] serving = "csr"`).
pub mod kube;
/// A planned target and its CA to the exact file changes that renew it.
pub mod issue;
/// Crash-safe change sets with backups, the state directory and its lock.
pub mod write;
/// What must reload: systemd units over D-Bus, static pods by manifest annotation.
pub mod restart;
/// Does the component serve what is on disk: endpoints, TLS probe, wait loop.
pub mod verify;
/// One restart at a time across the cluster: the lock in etcd or a FleetLock server.
pub mod coordination;
/// Rendering: status, plan, pass summary, metrics.
pub mod report;
/// The rollout of a renewed component: probe first, pace, restart, verify, or roll
/// back; the cross-node lock's slot and the restart history.
pub mod rollout;
/// The cluster's CAs on this node: their copies, renewal, export and import.
pub mod authority;
/// The sequencer: due CAs, then per group issue -> write -> roll out.
pub mod pass;
/// `cert-rotator signer`: signs Approved CSRs of the configured signerNames.
pub mod signer;
/// A kubeadm-faithful node for the demo and the tests.
pub mod fixture;
/// The sandbox node of `cert-rotator demo`.
pub mod demo;
/// The command line of both programs.
pub mod cli;

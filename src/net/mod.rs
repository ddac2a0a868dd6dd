//! The agent's HTTPS client, apart from what it talks to: [`crate::net::https`] builds
//! it (roots, client certificate, timeouts), [`crate::net::handshake`] tells a handshake
//! that hangs from a connect that hangs. The cfssl client (`ca::remote`) and the restart
//! lock's etcd and FleetLock clients (`coordination`) are built with it.

pub mod handshake;
pub mod https;

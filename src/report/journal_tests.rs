//! The journal lines as the stderr formatter writes them (the journald layer takes the
//! same fields): captured from a subscriber of this thread only.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use time::macros::datetime;

use super::*;
use crate::report::event::RenewedCa;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn journal_of(f: impl FnOnce()) -> String {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = out.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn ca_renew_says_the_ca_its_serial_and_end_under_the_ca_renewed_id() {
    let line = journal_of(|| {
        log_ca_command(&CaCommandEvent::Renewed(RenewedCa {
            name: "etcd/ca".into(),
            serial: "0a1b".into(),
            not_after: datetime!(2036-12-01 00:00 UTC),
            was_not_after: datetime!(2026-12-10 00:00 UTC),
            sha256: "ff".into(),
        }))
    });
    assert!(line.contains(" WARN cert_rotator::cli::ca: "), "{line}");
    assert!(
        line.contains("renewed CA etcd/ca with its own key: serial 0a1b, ends 2036-12-01T00:00:00Z (was 2026-12-10T00:00:00Z); every copy on this node updated"),
        "{line}"
    );
    for field in [
        "ca=etcd/ca",
        "serial=0a1b",
        "not_after=2036-12-01T00:00:00Z",
        "action=\"ca-renew\"",
        "message_id=\"6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a09\"",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
}

#[test]
fn ca_import_says_the_file_and_the_serial_it_replaced_under_the_ca_renewed_id() {
    let line = journal_of(|| {
        log_ca_command(&CaCommandEvent::Imported {
            name: "ca".into(),
            serial: "02".into(),
            not_after: datetime!(2036-12-01 00:00 UTC),
            was_serial: "01".into(),
            from: PathBuf::from("/tmp/ca.export"),
        })
    });
    assert!(line.contains(" WARN cert_rotator::cli::ca: "), "{line}");
    assert!(
        line.contains("installed CA ca from /tmp/ca.export: serial 02, ends 2036-12-01T00:00:00Z (was serial 01); every copy on this node updated"),
        "{line}"
    );
    for field in [
        "ca=ca",
        "serial=02",
        "action=\"ca-import\"",
        "message_id=\"6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a09\"",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    assert!(!line.contains("not_after="), "{line}");
}

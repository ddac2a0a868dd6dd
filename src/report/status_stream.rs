//! `status --json` written while the targets are read, one certificate at a time: what a
//! status holds stays flat in the number of certificates (a directory of 10,000 extra
//! certificates would otherwise keep every reading, every entry and the whole document
//! at once). The bytes are those of [`Status::to_json`](super::Status::to_json): both
//! serialize the same [`Document`].

use std::cell::Cell;
use std::io::{self, Write};

use serde::ser::{Serialize, SerializeSeq, Serializer};
use time::OffsetDateTime;

use super::status::{whole_second, Document};
use super::{AuthorityStatus, CertificateStatus};
use crate::inventory::{NodeRole, Target, TargetState};

/// The status document of `targets`, each read by `read` only when its entry is written.
pub struct StatusStream<'a, F> {
    pub role: NodeRole,
    pub targets: &'a [Target],
    pub read: F,
    pub authorities: &'a [AuthorityStatus],
    pub unfinished_write: &'a Option<String>,
    pub kubeadm_skipped: &'a Option<String>,
}

/// What the written entries showed, for the exit status and the not-a-node sentence,
/// which come after the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streamed {
    /// Some certificate's entry has an error.
    pub certificate_errors: bool,
    /// Every target was missing.
    pub all_missing: bool,
}

impl<F: Fn(&Target) -> TargetState> StatusStream<'_, F> {
    /// Writes the document and its final newline to `out` at `now`; each reading is
    /// dropped once its entry is written.
    pub fn write_json<W: Write>(&self, now: OffsetDateTime, out: W) -> io::Result<Streamed> {
        let now = whole_second(now);
        let seen = Cell::new(Streamed {
            certificate_errors: false,
            all_missing: true,
        });
        let doc = Document {
            role: self.role,
            generated_at: now,
            certificates: Entries {
                stream: self,
                now,
                seen: &seen,
            },
            authorities: self.authorities,
            unfinished_write: self.unfinished_write,
            kubeadm_skipped: self.kubeadm_skipped,
        };
        let mut out = out;
        serde_json::to_writer_pretty(&mut out, &doc)?;
        out.write_all(b"\n")?;
        Ok(seen.get())
    }
}

/// The certificates' list, read as it is serialized. `Serialize` takes `&self`, hence the
/// `Cell` for what the entries showed.
struct Entries<'s, 'a, F> {
    stream: &'s StatusStream<'a, F>,
    now: OffsetDateTime,
    seen: &'s Cell<Streamed>,
}

impl<F: Fn(&Target) -> TargetState> Serialize for Entries<'_, '_, F> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let targets = self.stream.targets;
        let mut seq = serializer.serialize_seq(Some(targets.len()))?;
        for t in targets {
            let entry = CertificateStatus::of(t, &(self.stream.read)(t), self.now);
            let mut seen = self.seen.get();
            seen.certificate_errors |= entry.error.is_some();
            seen.all_missing &= entry.missing;
            self.seen.set(seen);
            seq.serialize_element(&entry)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthoritySettings;
    use crate::inventory::{self, Inventory};
    use crate::report::status::authority_statuses;
    use crate::report::Status;

    /// The stream writes what `to_json` writes, byte for byte, including entries that are
    /// missing, in error and not managed.
    #[test]
    fn the_stream_writes_the_bytes_of_to_json() {
        let (dir, root) = crate::fixture::temp_control_plane();
        // One key that is not its certificate's, one certificate that is not there.
        std::fs::copy(
            dir.path().join("etc/kubernetes/pki/front-proxy-client.key"),
            dir.path().join("etc/kubernetes/pki/apiserver.key"),
        )
        .unwrap();
        std::fs::remove_file(dir.path().join("etc/kubernetes/super-admin.conf")).unwrap();
        let settings = crate::config::Settings::default();
        let layout = inventory::layout(&settings, &root);
        let inv: Inventory = inventory::read(&layout, &root);
        let now = OffsetDateTime::now_utc();
        let mut status = Status::with_authorities(&inv, &AuthoritySettings::default(), now);
        status.unfinished_write = Some("a write".into());
        let expected = format!("{}\n", status.to_json());
        assert!(expected.contains("does not match"), "{expected}");
        assert!(expected.contains("\"missing\": true"), "{expected}");

        let authorities = authority_statuses(
            &inv.authorities,
            &AuthoritySettings::default(),
            whole_second(now),
        );
        let stream = StatusStream {
            role: layout.role,
            targets: &layout.targets,
            read: |t: &Target| inventory::read_target(t, &root, &inv.authorities),
            authorities: &authorities,
            unfinished_write: &status.unfinished_write,
            kubeadm_skipped: &status.kubeadm_skipped,
        };
        let mut out = Vec::new();
        let seen = stream.write_json(now, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        assert_eq!(
            seen,
            Streamed {
                certificate_errors: true,
                all_missing: false
            }
        );
    }

    #[test]
    fn an_empty_list_is_written_as_to_json_writes_it() {
        let now = OffsetDateTime::now_utc();
        let status = Status {
            role: NodeRole::Worker,
            generated_at: whole_second(now),
            certificates: Vec::new(),
            authorities: Vec::new(),
            unfinished_write: None,
            kubeadm_skipped: None,
        };
        let stream = StatusStream {
            role: NodeRole::Worker,
            targets: &[],
            read: |_: &Target| TargetState::Missing,
            authorities: &[],
            unfinished_write: &None,
            kubeadm_skipped: &None,
        };
        let mut out = Vec::new();
        let seen = stream.write_json(now, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}\n", status.to_json())
        );
        assert!(seen.all_missing && !seen.certificate_errors);
    }
}

//! The phase machine: a pure function of what the node's files show, what the journal
//! records and the command asked for, to the step to run or the reason to refuse.
//! Nothing here reads or writes; steps.rs and the files beside it do what it decides.

use super::journal::Phase;

/// A `ca rotate NAME ...` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Start,
    Trust,
    Issue,
    Finish,
    Abort,
}

impl Command {
    pub fn name(self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::Trust => "trust",
            Command::Issue => "issue",
            Command::Finish => "finish",
            Command::Abort => "abort",
        }
    }

    /// The phase this command brings the rotation into.
    pub fn target(self) -> Phase {
        match self {
            Command::Start => Phase::Started,
            Command::Trust => Phase::Trusting,
            Command::Issue => Phase::Issuing,
            Command::Finish => Phase::Finished,
            Command::Abort => Phase::Aborted,
        }
    }
}

/// What the journal says, reduced to what the machine needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub phase: Phase,
    pub verified: bool,
    pub pending: Option<Phase>,
}

/// Which certificate of the rotation a node certificate is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Old,
    New,
    /// Neither: a certificate the rotation does not know.
    Other,
}

/// What the CA's own files show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The CA file's certificates in order.
    pub bundle: Vec<Which>,
    /// Whose key the CA key file holds (`Other` when it matches neither or is absent).
    pub key: Which,
    /// A kubeadm run in progress, in words (its process or its tmp directory).
    pub kubeadm: Option<String>,
    /// The node's files no longer hold all the journal's phase promises (a kubeconfig
    /// bundle collapsed, the signer flag reverted): re-running that phase re-applies it.
    pub drift: bool,
}

/// The machine's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run the command's step: write its files, restart, verify.
    Run,
    /// The files of the command's phase are in place; only its restarts and
    /// verification are left (a crash or a failed verification interrupted them).
    Resume,
    /// The phase is complete: nothing to do, and the command says so.
    Done(String),
    /// Out of order, or a precondition does not hold: exit 1, nothing changed.
    Refuse(String),
}

use Which::{New, Old};

/// The CA file and key of each phase: before `start` and in `started`, `[old]` with the
/// old key; in `trusting`, `[old, new]` with the old key (kubeadm pairs the first
/// certificate with the key); in `issuing`, `[new, old]` with the new key; after
/// `finish`, `[new]` with the new key.
pub fn expected_ca_files(phase: Phase) -> (Vec<Which>, Which) {
    match phase {
        Phase::Started | Phase::Aborted => (vec![Old], Old),
        Phase::Trusting => (vec![Old, New], Old),
        Phase::Issuing => (vec![New, Old], New),
        Phase::Finished => (vec![New], New),
    }
}

fn words(bundle: &[Which]) -> String {
    let w: Vec<&str> = bundle
        .iter()
        .map(|w| match w {
            Old => "old",
            New => "new",
            Which::Other => "unknown",
        })
        .collect();
    format!("[{}]", w.join(", "))
}

/// Whether the CA files are as phase `p` leaves them; else what is wrong, in words.
fn ca_files_in(p: Phase, seen: &Observed) -> Result<(), String> {
    let (bundle, key) = expected_ca_files(p);
    if seen.bundle != bundle {
        let collapsed = seen.bundle.len() == 1 && bundle.len() == 2;
        return Err(format!(
            "the CA file holds {} where the {} phase leaves {}{}",
            words(&seen.bundle),
            p.name(),
            words(&bundle),
            if collapsed {
                " (collapsed to one certificate: did `kubeadm certs renew` or `kubeadm upgrade` run? re-run the phase's command to re-apply it)"
            } else if seen.bundle.len() == bundle.len() && seen.bundle.len() == 2 {
                " (the order is wrong: kubeadm pairs the first certificate with the key)"
            } else {
                ""
            }
        ));
    }
    if seen.key != key {
        return Err(format!(
            "the CA key is {} where the {} phase leaves the {} key",
            match seen.key {
                Old => "the old CA's",
                New => "the new CA's",
                Which::Other => "neither the old nor the new CA's",
            },
            p.name(),
            if key == Old { "old" } else { "new" }
        ));
    }
    Ok(())
}

/// The phase that must be complete before `cmd` may run.
fn before(cmd: Command) -> Option<Phase> {
    match cmd {
        Command::Start | Command::Abort => None,
        Command::Trust => Some(Phase::Started),
        Command::Issue => Some(Phase::Trusting),
        Command::Finish => Some(Phase::Issuing),
    }
}

/// Decides what `cmd` does, given the journal (`None`: no rotation recorded) and the
/// CA's files.
pub fn decide(journal: Option<Recorded>, seen: &Observed, cmd: Command) -> Decision {
    if let Some(k) = &seen.kubeadm {
        return Decision::Refuse(format!(
            "kubeadm is running ({k}): it rewrites certificates and kubeconfigs; run `{}` when it has finished",
            cmd.name()
        ));
    }
    let Some(j) = journal.filter(|j| !(j.phase == Phase::Aborted && j.verified)) else {
        return match cmd {
            Command::Start => match ca_files_in(Phase::Started, seen) {
                Ok(()) => Decision::Run,
                Err(e) => Decision::Refuse(format!(
                    "{e}: a rotation must start from a CA file with one certificate whose key is beside it"
                )),
            },
            Command::Abort => Decision::Done("no rotation in progress: nothing to abort".into()),
            c => Decision::Refuse(format!(
                "no rotation of this CA is in progress: run `start` first, not `{}`",
                c.name()
            )),
        };
    };
    let target = cmd.target();
    // A finished rotation is history: a new one may start, nothing else runs.
    if j.phase == Phase::Finished && j.verified {
        return match cmd {
            Command::Finish if seen.drift || ca_files_in(Phase::Finished, seen).is_err() => {
                Decision::Run
            }
            Command::Finish => Decision::Done("the rotation is finished: nothing to do".into()),
            Command::Start => match ca_files_in(Phase::Started, &relabel_new_as_old(seen)) {
                Ok(()) => Decision::Run,
                Err(e) => Decision::Refuse(e),
            },
            Command::Abort => Decision::Refuse(
                "the rotation is finished: there is no abort after finish (the old CA is archived in the rotation directory)".into(),
            ),
            c => Decision::Refuse(format!(
                "the rotation is finished: `{}` belongs to a rotation in progress",
                c.name()
            )),
        };
    }
    if cmd == Command::Abort {
        return match (j.phase, j.verified) {
            (Phase::Aborted, false) => Decision::Resume,
            (Phase::Finished, _) => Decision::Refuse(
                "finish has begun: there is no abort after finish; run `finish` again to complete it".into(),
            ),
            _ => Decision::Run,
        };
    }
    if j.phase == Phase::Aborted {
        return Decision::Refuse("an abort is not complete: run `abort` again".into());
    }
    // The command's own phase, reached: done, or only its verification is left.
    if j.phase == target {
        let drifted = seen.drift || ca_files_in(target, seen).is_err();
        return match () {
            // Re-apply what kubeadm (or a person) undid; the writes converge.
            _ if target != Phase::Started && drifted => Decision::Run,
            _ if j.verified => Decision::Done(format!(
                "the {} phase is complete: nothing to do",
                target.name()
            )),
            _ => Decision::Resume,
        };
    }
    let Some(need) = before(cmd) else {
        // start while a rotation is in progress.
        return Decision::Refuse(format!(
            "a rotation of this CA is in progress (phase {}): continue it or `abort` it",
            j.phase.name()
        ));
    };
    if j.phase > target {
        return Decision::Refuse(format!(
            "the rotation is already in the {} phase, past `{}`",
            j.phase.name(),
            cmd.name()
        ));
    }
    if j.phase != need {
        return Decision::Refuse(format!(
            "`{}` follows the {} phase, but the rotation is in the {} phase: run `{}` first",
            cmd.name(),
            need.name(),
            j.phase.name(),
            need.command()
        ));
    }
    if !j.verified && need != Phase::Started {
        return Decision::Refuse(format!(
            "the {} phase did not finish its restarts and verification: run `{}` again first",
            need.name(),
            need.command()
        ));
    }
    // An interrupted attempt at this very command may have committed its files: they
    // are in the command's phase already, and the step is re-run to converge.
    if j.pending == Some(target) && ca_files_in(target, seen).is_ok() {
        return Decision::Run;
    }
    match ca_files_in(need, seen) {
        Ok(()) => Decision::Run,
        Err(e) => Decision::Refuse(format!(
            "{e}; `{}` needs the files the {} phase left",
            cmd.name(),
            need.name()
        )),
    }
}

/// After a finished rotation the new CA is the one a next rotation starts from.
fn relabel_new_as_old(seen: &Observed) -> Observed {
    let flip = |w: Which| match w {
        New => Old,
        Old => Which::Other,
        o => o,
    };
    Observed {
        bundle: seen.bundle.iter().copied().map(flip).collect(),
        key: flip(seen.key),
        kubeadm: seen.kubeadm.clone(),
        drift: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Which::Other;

    fn seen(bundle: &[Which], key: Which) -> Observed {
        Observed {
            bundle: bundle.to_vec(),
            key,
            kubeadm: None,
            drift: false,
        }
    }

    fn rec(phase: Phase, verified: bool) -> Option<Recorded> {
        Some(Recorded {
            phase,
            verified,
            pending: None,
        })
    }

    fn refused(d: Decision, words: &str) {
        match d {
            Decision::Refuse(m) => assert!(m.contains(words), "{m:?} lacks {words:?}"),
            d => panic!("expected a refusal with {words:?}, got {d:?}"),
        }
    }

    #[test]
    fn the_happy_path_runs_each_phase_once_then_says_done() {
        let steps = [
            (None, seen(&[Old], Old), Command::Start),
            (rec(Phase::Started, true), seen(&[Old], Old), Command::Trust),
            (
                rec(Phase::Trusting, true),
                seen(&[Old, New], Old),
                Command::Issue,
            ),
            (
                rec(Phase::Issuing, true),
                seen(&[New, Old], New),
                Command::Finish,
            ),
        ];
        for (j, s, c) in &steps {
            assert_eq!(decide(*j, s, *c), Decision::Run, "{c:?}");
        }
        let again = [
            (rec(Phase::Started, true), seen(&[Old], Old), Command::Start),
            (
                rec(Phase::Trusting, true),
                seen(&[Old, New], Old),
                Command::Trust,
            ),
            (
                rec(Phase::Issuing, true),
                seen(&[New, Old], New),
                Command::Issue,
            ),
            (
                rec(Phase::Finished, true),
                seen(&[New], New),
                Command::Finish,
            ),
        ];
        for (j, s, c) in &again {
            assert!(matches!(decide(*j, s, *c), Decision::Done(_)), "{c:?}");
        }
    }

    #[test]
    fn out_of_order_commands_are_refused_naming_the_phase_to_run() {
        refused(
            decide(None, &seen(&[Old], Old), Command::Trust),
            "run `start` first",
        );
        refused(
            decide(
                rec(Phase::Started, true),
                &seen(&[Old], Old),
                Command::Issue,
            ),
            "run `trust` first",
        );
        refused(
            decide(
                rec(Phase::Started, true),
                &seen(&[Old], Old),
                Command::Finish,
            ),
            "run `issue` first",
        );
        refused(
            decide(
                rec(Phase::Issuing, true),
                &seen(&[New, Old], New),
                Command::Trust,
            ),
            "already in the issuing phase",
        );
        refused(
            decide(
                rec(Phase::Trusting, true),
                &seen(&[Old, New], Old),
                Command::Start,
            ),
            "in progress (phase trusting)",
        );
    }

    #[test]
    fn an_unverified_phase_resumes_and_blocks_the_next() {
        assert_eq!(
            decide(
                rec(Phase::Trusting, false),
                &seen(&[Old, New], Old),
                Command::Trust
            ),
            Decision::Resume
        );
        refused(
            decide(
                rec(Phase::Trusting, false),
                &seen(&[Old, New], Old),
                Command::Issue,
            ),
            "run `trust` again first",
        );
    }

    #[test]
    fn a_committed_but_unrecorded_phase_is_run_again_to_converge() {
        let j = Some(Recorded {
            phase: Phase::Trusting,
            verified: true,
            pending: Some(Phase::Issuing),
        });
        assert_eq!(
            decide(j, &seen(&[New, Old], New), Command::Issue),
            Decision::Run
        );
        // Without the pending mark the same files are a wrong order.
        refused(
            decide(
                rec(Phase::Trusting, true),
                &seen(&[New, Old], New),
                Command::Issue,
            ),
            "the CA file holds [new, old]",
        );
    }

    #[test]
    fn files_that_disagree_with_the_journal_are_refused_in_words() {
        refused(
            decide(
                rec(Phase::Trusting, true),
                &seen(&[New, Old], Old),
                Command::Issue,
            ),
            "the order is wrong",
        );
        refused(
            decide(
                rec(Phase::Trusting, true),
                &seen(&[Old], Old),
                Command::Issue,
            ),
            "collapsed to one certificate",
        );
        refused(
            decide(
                rec(Phase::Issuing, true),
                &seen(&[New, Old], Old),
                Command::Finish,
            ),
            "the CA key is the old CA's",
        );
        refused(
            decide(None, &seen(&[Old, New], Old), Command::Start),
            "one certificate",
        );
        refused(
            decide(None, &seen(&[Old], Other), Command::Start),
            "neither the old nor the new",
        );
    }

    #[test]
    fn abort_from_every_phase_before_finish_and_never_after() {
        for p in [Phase::Started, Phase::Trusting, Phase::Issuing] {
            for v in [true, false] {
                assert_eq!(
                    decide(rec(p, v), &seen(&[Old], Old), Command::Abort),
                    Decision::Run,
                    "{p:?}"
                );
            }
        }
        assert_eq!(
            decide(
                rec(Phase::Aborted, false),
                &seen(&[Old], Old),
                Command::Abort
            ),
            Decision::Resume
        );
        refused(
            decide(
                rec(Phase::Finished, true),
                &seen(&[New], New),
                Command::Abort,
            ),
            "no abort after finish",
        );
        refused(
            decide(
                rec(Phase::Finished, false),
                &seen(&[New], New),
                Command::Abort,
            ),
            "no abort after finish",
        );
        assert!(matches!(
            decide(None, &seen(&[Old], Old), Command::Abort),
            Decision::Done(_)
        ));
        // A completed abort is no rotation: start again.
        assert_eq!(
            decide(
                rec(Phase::Aborted, true),
                &seen(&[Old], Old),
                Command::Start
            ),
            Decision::Run
        );
    }

    #[test]
    fn a_phase_whose_files_drifted_is_re_applied_by_its_own_command() {
        let mut s = seen(&[Old, New], Old);
        s.drift = true;
        assert_eq!(
            decide(rec(Phase::Trusting, true), &s, Command::Trust),
            Decision::Run
        );
        // A collapsed CA file too: trust writes the bundle again.
        assert_eq!(
            decide(
                rec(Phase::Trusting, true),
                &seen(&[Old], Old),
                Command::Trust
            ),
            Decision::Run
        );
        let mut s = seen(&[New], New);
        s.drift = true;
        assert_eq!(
            decide(rec(Phase::Finished, true), &s, Command::Finish),
            Decision::Run
        );
    }

    #[test]
    fn kubeadm_running_refuses_everything() {
        let mut s = seen(&[Old], Old);
        s.kubeadm = Some("/etc/kubernetes/tmp/kubeadm-backup-etcd-x exists".into());
        for c in [Command::Start, Command::Trust, Command::Abort] {
            refused(
                decide(rec(Phase::Started, true), &s, c),
                "kubeadm is running",
            );
        }
    }

    #[test]
    fn a_finished_rotation_lets_a_new_one_start_from_the_new_ca() {
        assert_eq!(
            decide(
                rec(Phase::Finished, true),
                &seen(&[New], New),
                Command::Start
            ),
            Decision::Run
        );
        refused(
            decide(
                rec(Phase::Finished, true),
                &seen(&[New], New),
                Command::Trust,
            ),
            "finished",
        );
    }
}

//! After a restart, a try of verification counts only when a process started after the
//! restart request answered it ([`super::listener`]).

use std::cell::RefCell;
use std::collections::BTreeSet;

use super::listener::{judge, ticks_between, Answerer, Listener, RestartRequested};
use super::{Endpoint, Prober, TryError, VerifyError};

/// Who answers the tries of one verification.
pub(super) struct Who<'a> {
    prober: &'a dyn Prober,
    requested: Option<&'a RestartRequested>,
    component: &'a str,
    /// The endpoints whose listener could not be identified, said once each.
    said: RefCell<BTreeSet<String>>,
}

impl<'a> Who<'a> {
    pub(super) fn new(
        prober: &'a dyn Prober,
        requested: Option<&'a RestartRequested>,
        component: &'a str,
    ) -> Self {
        Who {
            prober,
            requested,
            component,
            said: RefCell::default(),
        }
    }

    /// Runs one try (`check`, which returns the line of a passed check) so that it
    /// counts only when answered by a new process: the listeners are looked at before
    /// the check (a listener that is new then leaves no old one to answer it) and, when
    /// none listened yet, again after it passed.
    pub(super) fn answers(
        &self,
        ep: &Endpoint,
        check: impl FnOnce() -> Result<String, TryError>,
    ) -> Result<String, TryError> {
        let Some(req) = self.requested else {
            return check();
        };
        match judge(&self.prober.listeners(ep), req) {
            Answerer::Old(l) => Err(old(ep, &l)),
            Answerer::Unknown(why) => Ok(self.unidentified(ep, check()?, &why)),
            Answerer::New(l) => Ok(by(check()?, &l, req)),
            Answerer::NotListening => {
                let line = check()?;
                match judge(&self.prober.listeners(ep), req) {
                    // It started listening meanwhile: the next try tells who answers.
                    Answerer::Old(l) => Err(old(ep, &l)),
                    Answerer::New(l) => Err(TryError::from(VerifyError::NotReady {
                        endpoint: ep.to_string(),
                        message: format!("{} started listening during the probe", who(&l)),
                    })),
                    Answerer::Unknown(why) => Ok(self.unidentified(ep, line, &why)),
                    Answerer::NotListening => Ok(self.unidentified(
                        ep,
                        line,
                        &format!("nothing on this host listens on port {}", ep.port),
                    )),
                }
            }
        }
    }

    /// A passed check whose answering process could not be identified: as before the
    /// process check, said once per endpoint in the log.
    fn unidentified(&self, ep: &Endpoint, line: String, why: &str) -> String {
        if self.said.borrow_mut().insert(ep.to_string()) {
            let comp = self.component;
            tracing::warn!(component = %comp, endpoint = %ep, "cannot tell which process answers on {ep} ({why}): verified without it");
        }
        format!("{line} (answering process not identified: {why})")
    }
}

/// A listener as the log names it: its process, or its socket where the process is
/// not visible here.
fn who(l: &Listener) -> String {
    match l.process {
        Some(p) => format!("pid {}", p.pid),
        None => format!(
            "the socket inode {} (its process not visible here)",
            l.inode
        ),
    }
}

fn old(ep: &Endpoint, l: &Listener) -> TryError {
    TryError::from(VerifyError::OldListener {
        endpoint: ep.to_string(),
        listener: who(l),
    })
}

fn by(line: String, l: &Listener, req: &RestartRequested) -> String {
    match l.process {
        Some(p) => format!(
            "{line}, answered by pid {} (started {}s after the restart request)",
            p.pid,
            ticks_between(req.at, p.started)
        ),
        None => format!(
            "{line}, answered by a socket opened after the restart request (inode {}; its process not visible here)",
            l.inode
        ),
    }
}

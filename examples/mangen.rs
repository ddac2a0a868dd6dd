//! Writes the man pages of `cert-rotator` and `cert-renew` from their clap definitions:
//! cert-rotator.1, one page per subcommand (cert-rotator-status.1,
//! cert-rotator-config-check.1, ...) and cert-renew.1, uncompressed, into the given
//! directory.
//!
//! ```sh
//! cargo run --release --example mangen -- OUT_DIR [DATE]
//! ```
//!
//! DATE (YYYY-MM-DD, default none) goes into every page's footer; with a
//! fixed date (packaging/build.sh passes the last commit's) rebuilding a
//! commit gives byte-identical pages. build.sh gzips them for the deb and rpm
//! packages.
//!
//! clap_mangen renders NAME, SYNOPSIS, DESCRIPTION, OPTIONS and the subcommand
//! list from the clap definitions, so they cannot drift from `--help`. What clap
//! does not know is added here, in roff: EXIT STATUS, FILES, ENVIRONMENT (the
//! `--help` epilogue on logging, which clap_mangen would title "EXTRA"), EXAMPLES
//! and SEE ALSO.
//!
//! The date is an argument and not SOURCE_DATE_EPOCH because aws-lc-sys's `cc`
//! build script reruns when that variable changes: setting it for `cargo run`
//! would rebuild the crypto that `make test` already built.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_mangen::Man;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (out, date) = match args.as_slice() {
        [out] => (PathBuf::from(out), ""),
        [out, date] if is_date(date) => (PathBuf::from(out), date.as_str()),
        _ => {
            eprintln!("usage: mangen OUT_DIR [YYYY-MM-DD]");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("mangen: cannot create {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    // No `help` subcommand page: `cert-rotator help` only repeats --help.
    let mut agent = cert_rotator::cli::Cli::command().disable_help_subcommand(true);
    agent.build();
    // Subcommands have no version of their own: every page names the package's.
    let source = format!("cert-rotator {}", agent.get_version().unwrap_or_default());
    let mut renew = cert_rotator::cli::CertRenewCli::command();
    renew.build();
    let mut written = Vec::new();
    let result = generate(agent, &out, date, &source, &mut written)
        .and_then(|()| write_page(renew, &out, date, &source).map(|p| written.push(p)));
    if let Err(e) = result {
        eprintln!("mangen: writing man pages into {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    for p in written {
        println!("{}", p.display());
    }
    ExitCode::SUCCESS
}

/// The page of `cmd`, then those of its visible subcommands, depth first. After
/// `build()` a subcommand's display name is the full `cert-rotator-config-check`.
fn generate(
    cmd: clap::Command,
    out: &Path,
    date: &str,
    source: &str,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        generate(sub.clone(), out, date, source, written)?;
    }
    written.push(write_page(cmd, out, date, source)?);
    Ok(())
}

/// One page: clap_mangen's sections in its order, this page's own sections before the
/// version.
fn write_page(cmd: clap::Command, out: &Path, date: &str, source: &str) -> io::Result<PathBuf> {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    let has_options = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_subcommands = cmd.get_subcommands().any(|s| !s.is_hide_set());
    let has_version = cmd.get_version().is_some();
    let epilogue = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(|s| s.to_string());
    // SYNOPSIS is rendered here, before Man takes the command.
    let synopsis = synopsis(&cmd, &name)?;
    let man = Man::new(cmd)
        .date(date)
        .source(source)
        .manual("cert-rotator manual");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    page.extend_from_slice(synopsis.as_bytes());
    man.render_description_section(&mut page)?;
    if has_options {
        man.render_options_section(&mut page)?;
    }
    if has_subcommands {
        man.render_subcommands_section(&mut page)?;
    }
    page.extend_from_slice(own_sections(&name, epilogue.as_deref()).as_bytes());
    if has_version {
        man.render_version_section(&mut page)?;
    }
    let path = out.join(man.get_filename());
    std::fs::write(&path, page)?;
    Ok(path)
}

/// One way to call a command: the arguments it leaves out and those it requires (by
/// clap id), beyond what clap itself marks required.
#[derive(Default)]
struct Form {
    leave_out: &'static [&'static str],
    require: &'static [&'static str],
}

/// cert-renew's options that need `--remote` (clap's `requires = "remote"`).
const REMOTE_ONLY: &[&str] = &[
    "remote",
    "auth_key_file",
    "remote_ca",
    "profile",
    "label",
    "client_cert",
    "client_key",
    "insecure_http",
];

/// cert-renew is called in one of two ways: with a local CA, or through a cfssl server.
const CERT_RENEW_FORMS: &[Form] = &[
    Form {
        leave_out: REMOTE_ONLY,
        require: &["ca_cert", "ca_key"],
    },
    Form {
        leave_out: &["ca_key"],
        require: &["remote"],
    },
];

/// SYNOPSIS with every option's value (`[--config FILE]`), which clap_mangen leaves out:
/// the command as typed (`cert-rotator renew`), global options first, then the command's
/// own, then its arguments (`TARGET...`) or subcommand. --help and --version are under
/// OPTIONS only.
fn synopsis(cmd: &clap::Command, name: &str) -> io::Result<String> {
    let all = [Form::default()];
    let forms: &[Form] = if name == "cert-renew" {
        CERT_RENEW_FORMS
    } else {
        &all
    };
    let known = |id: &str| cmd.get_arguments().any(|a| a.get_id() == id);
    for f in forms {
        if let Some(id) = f.leave_out.iter().chain(f.require).find(|id| !known(id)) {
            return Err(io::Error::other(format!(
                "{name}: the synopsis names {id:?}, which the clap definition does not have"
            )));
        }
    }
    let typed = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    let mut out = String::from(".SH SYNOPSIS\n.nh\n.ad l\n");
    for (i, f) in forms.iter().enumerate() {
        if i > 0 {
            out.push_str(".br\n");
        }
        let mut words = vec![format!("\\fB{}\\fR", escape(typed))];
        let shown = |a: &&clap::Arg| {
            let id = a.get_id().as_str();
            !a.is_hide_set() && id != "help" && id != "version" && !f.leave_out.contains(&id)
        };
        let options: Vec<&clap::Arg> = cmd
            .get_arguments()
            .filter(shown)
            .filter(|a| !a.is_positional())
            .collect();
        let required =
            |a: &clap::Arg| a.is_required_set() || f.require.contains(&a.get_id().as_str());
        let ordered = options
            .iter()
            .filter(|a| a.is_global_set())
            .chain(options.iter().filter(|a| !a.is_global_set() && required(a)))
            .chain(
                options
                    .iter()
                    .filter(|a| !a.is_global_set() && !required(a)),
            );
        for a in ordered {
            // `\ `: an option and its value stay on one line.
            let mut w = format!("\\fB\\-\\-{}\\fR", escape(a.get_long().unwrap_or_default()));
            if a.get_action().takes_values() {
                w.push_str(&format!("\\ \\fI{}\\fR", escape(&value_of(a))));
            }
            words.push(if required(a) { w } else { format!("[{w}]") });
        }
        for a in cmd.get_positionals().filter(shown) {
            let many = a.get_num_args().is_some_and(|n| n.max_values() > 1);
            let w = format!(
                "\\fI{}\\fR{}",
                escape(&value_of(a)),
                if many { "..." } else { "" }
            );
            words.push(if a.is_required_set() {
                w
            } else {
                format!("[{w}]")
            });
        }
        if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
            words.push("\\fICOMMAND\\fR".into());
        }
        // `\%`: a word is never hyphenated.
        let words: Vec<String> = words.iter().map(|w| format!("\\%{w}")).collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    // Left-aligned and unhyphenated, as synopses are; then back to the defaults.
    out.push_str(".ad\n.hy\n");
    Ok(out)
}

/// What an argument's value is called: its possible values (`rsa-2048|ecdsa-p256`), its
/// value name (`FILE`), else its id in capitals.
fn value_of(a: &clap::Arg) -> String {
    let possible: Vec<String> = a
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    if !possible.is_empty() {
        return possible.join("|");
    }
    match a.get_value_names() {
        Some(names) => names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        None => a.get_id().as_str().to_uppercase(),
    }
}

/// Roff text, built section by section; every text given is escaped.
#[derive(Default)]
struct Roff(String);

impl Roff {
    fn section(&mut self, title: &str) -> &mut Self {
        self.0.push_str(&format!(".SH \"{title}\"\n"));
        self
    }

    fn para(&mut self, text: &str) -> &mut Self {
        self.0.push_str(".PP\n");
        self.line(text)
    }

    /// A tagged paragraph: `tag` in bold (a code) or italics (a path).
    fn item(&mut self, font: char, tag: &str, text: &str) -> &mut Self {
        self.0
            .push_str(&format!(".TP\n.{font} \"{}\"\n", escape(tag)));
        self.line(text)
    }

    /// Lines shown as typed, indented.
    fn example(&mut self, text: &str, lines: &[&str]) -> &mut Self {
        self.para(text);
        self.0.push_str(".PP\n.RS 4\n.nf\n");
        for l in lines {
            self.line(l);
        }
        self.0.push_str(".fi\n.RE\n");
        self
    }

    fn line(&mut self, text: &str) -> &mut Self {
        let t = escape(text);
        // A line starting with . or ' would be read as a request.
        if t.starts_with(['.', '\'']) {
            self.0.push_str("\\&");
        }
        self.0.push_str(&t);
        self.0.push('\n');
        self
    }
}

/// Backslashes and hyphens as roff wants them: `\e` prints a backslash, `\-` a hyphen
/// that survives copy and paste into a shell.
fn escape(s: &str) -> String {
    s.replace('\\', "\\e").replace('-', "\\-")
}

/// The configuration files, read by both programs.
const CONFIG_FILES: [(&str, &str); 2] = [
    (
        "/etc/cert-rotator/config.toml",
        "The configuration: every key, commented, with its default (an absent file means the \
         built-in defaults, which fit a kubeadm node). Check it with \"cert-rotator config check\".",
    ),
    (
        "/etc/cert-rotator/config.d/*.toml",
        "Drop-ins, read after config.toml in name order (names starting with \".\" skipped); \
         later files win key by key.",
    ),
];

/// The node's files the agent reads and renews (kubeadm's layout, the [kubeadm] paths).
const NODE_FILES: [(&str, &str); 5] = [
    (
        "/etc/kubernetes/pki/",
        "The CAs (ca, front-proxy-ca, etcd/ca) and the control plane's certificates and keys \
         ([kubeadm] pki_dir).",
    ),
    (
        "/etc/kubernetes/admin.conf, super-admin.conf, controller-manager.conf, scheduler.conf, kubelet.conf",
        "kubeadm's kubeconfigs ([kubeadm] kubeconfig_dir): their embedded client certificates \
         are renewed in place.",
    ),
    (
        "/root/.kube/config",
        "The operator's copy of admin.conf ([kubeadm] user_kubeconfigs), kept in sync. A \
         kubeconfig whose user has a token, an exec plugin or OIDC is listed as not managed \
         and left alone.",
    ),
    (
        "/etc/kubernetes/manifests/",
        "The static pod manifests ([kubeadm] manifests_dir): a restart of kube-apiserver, \
         kube-controller-manager or kube-scheduler is a cert-rotator.k8s.io/certs-hash \
         annotation written into its manifest.",
    ),
    (
        "/var/lib/kubelet/pki/",
        "The kubelet's kubelet-client-current.pem (a symlink to the current client \
         certificate and key), kubelet.crt and kubelet.key ([kubeadm] kubelet_pki_dir).",
    ),
];

/// The state directory's entries, under `dir`.
fn state_files(dir: &str, with_pass_records: bool) -> Vec<(String, &'static str)> {
    let mut v = vec![
        (
            format!("{dir}/journal.json"),
            "The write-ahead record of a renewal in progress; after a crash the next command \
             (or \"cert-rotator recover\") finishes or undoes it.",
        ),
        (
            format!("{dir}/backup/"),
            "Every replaced file, under the time of its renewal and its node path (directories \
             0700, files 0600); keep_backups generations are kept.",
        ),
        (
            format!("{dir}/lock"),
            "Held by the command that writes, so one renewal or pass runs at a time.",
        ),
    ];
    if with_pass_records {
        v.push((
            format!("{dir}/history.json"),
            "When components were restarted: keeps min_restart_gap_seconds across passes.",
        ));
        v.push((
            format!("{dir}/last-pass.json"),
            "The last pass's result, reported in the metrics file.",
        ));
    }
    v
}

/// The exit codes of a page, most specific for its own command.
fn exit_codes(name: &str) -> Vec<(&'static str, &'static str)> {
    let usage = "Usage or configuration error: bad arguments, an unknown key or invalid value \
                 in the configuration, --root not a directory. Nothing was changed.";
    match name {
        "cert-rotator" => vec![
            (
                "0",
                "All is well: every target was read, and what was due was renewed (and, for run \
                 and renew --restart, restarted and verified). For run also when another \
                 pass is active (nothing is done).",
            ),
            (
                "1",
                "A target or step failed: a certificate, key or CA certificate is unreadable or \
                 malformed, a renewal, restart or verification failed (the component's files \
                 were rolled back), a target named on the command line cannot be renewed, \
                 another command holds the lock; for status, the host is not a Kubernetes node.",
            ),
            ("2", usage),
        ],
        "cert-rotator-status" => vec![
            (
                "0",
                "Every present target and CA certificate was read (due or not; missing optional \
                 targets and not managed kubeconfigs included).",
            ),
            (
                "1",
                "A target or CA certificate is unreadable or malformed (still listed, with its \
                 error), or the host is not a Kubernetes node: none of the CA certificate, \
                 kubelet.conf or the kubelet's certificates exists.",
            ),
            ("2", usage),
        ],
        "cert-rotator-run" => vec![
            (
                "0",
                "The pass succeeded: what was due was renewed, restarted and verified (or \
                 nothing was due). Also when another pass is active: it says so and does \
                 nothing.",
            ),
            (
                "1",
                "A target or CA certificate is unreadable, or a renewal, restart or \
                 verification failed: that component's files were rolled back and the pass \
                 stopped; the next pass tries again.",
            ),
            ("2", usage),
        ],
        "cert-rotator-plan" => vec![
            ("0", "The plan was made."),
            ("1", "A target or CA certificate is unreadable."),
            ("2", usage),
        ],
        "cert-rotator-renew" => vec![
            (
                "0",
                "Every named target was renewed (and, with --restart, its component \
                 restarted and verified).",
            ),
            (
                "1",
                "A named target could not be renewed (absent, its CA key absent, not managed, \
                 refused) and was left as it was, a restart or verification failed, or \
                 another command holds the lock.",
            ),
            (
                "2",
                "Usage or configuration error, or a TARGET names nothing on this node (the \
                 message lists the valid names). Nothing was changed.",
            ),
        ],
        "cert-rotator-renew-all" => vec![
            (
                "0",
                "Every target whose CA is available was renewed; the others were skipped.",
            ),
            (
                "1",
                "A renewal, restart or verification failed, or another command holds the lock.",
            ),
            ("2", usage),
        ],
        "cert-rotator-recover" => vec![
            (
                "0",
                "An interrupted write was finished or undone, or there was none.",
            ),
            ("1", "It could not be, or another command holds the lock."),
            ("2", usage),
        ],
        "cert-rotator-config" | "cert-rotator-config-check" => vec![
            (
                "0",
                "The configuration is valid; the effective one was printed.",
            ),
            ("2", usage),
        ],
        "cert-rotator-demo" => vec![
            (
                "0",
                "The sandbox was built and the agent ran on it without error.",
            ),
            ("1", "The sandbox could not be built, or a step failed."),
            ("2", "Usage error."),
        ],
        "cert-renew" => vec![
            ("0", "Every TARGET was renewed."),
            (
                "1",
                "A TARGET could not be renewed (not signed by the given CA, refused by the \
                 remote CA, unreadable, not managed); it was left as it was. The others were \
                 renewed.",
            ),
            (
                "2",
                "Usage error: neither --ca-cert with --ca-key nor --remote, an \
                 invalid --remote URL (http:// without --insecure-http), a TARGET that \
                 does not exist. Nothing was changed.",
            ),
        ],
        n if n.starts_with("cert-rotator-ca") => vec![
            (
                "0",
                "Done: the CAs were shown, renewed, exported or imported (and, on a live node \
                 without --no-restart, what holds them restarted and verified); or no CA was due.",
            ),
            (
                "1",
                "A CA file or a kubeconfig holding a copy is unreadable, the CA key is not on \
                 the node (renew), the file is not the CA this node trusts (import), the \
                 export file exists, a restart or verification failed (the new CA files stay), \
                 or another command holds the lock. Otherwise nothing was changed.",
            ),
            (
                "2",
                "Usage or configuration error, or NAME is not a CA of this node (the message \
                 lists the valid names). Nothing was changed.",
            ),
        ],
        _ => Vec::new(),
    }
}

/// EXIT STATUS, FILES, ENVIRONMENT, EXAMPLES and SEE ALSO of the page `name`.
fn own_sections(name: &str, epilogue: Option<&str>) -> String {
    let mut r = Roff::default();
    let codes = exit_codes(name);
    if !codes.is_empty() {
        r.section("EXIT STATUS");
        for (code, text) in codes {
            r.item('B', code, text);
        }
    }
    match name {
        "cert-rotator" => {
            r.section("FILES");
            for (path, text) in CONFIG_FILES {
                r.item('I', path, text);
            }
            r.item(
                'I',
                "/var/lib/cert-rotator/",
                "The state directory (state_dir), one of its own: write-ahead record, backups, \
                 restart history, last pass, lock:",
            );
            r.0.push_str(".RS\n");
            for (path, text) in state_files("/var/lib/cert-rotator", true) {
                r.item('I', &path, text);
            }
            r.0.push_str(".RE\n");
            r.item(
                'I',
                "/var/lib/cert-rotator/metrics/cert-rotator.prom",
                "The Prometheus textfile (metrics_file) that every run writes; status and plan \
                 write nothing. Point node_exporter's --collector.textfile.directory at its \
                 directory.",
            );
            for (path, text) in NODE_FILES {
                r.item('I', path, text);
            }
            r.para(
                "state_dir and metrics_file may not point into the PKI, the manifests, the \
                 kubeconfigs or the kubelet's files. Under --root DIR every path above is \
                 resolved under DIR; a symlink that would lead out of DIR is refused, and a \
                 FIFO, device or file larger than 4 MiB where a file is read is an error.",
            );
        }
        "cert-renew" => {
            r.section("FILES");
            for (path, text) in CONFIG_FILES {
                r.item('I', path, text);
            }
            r.para(
                "cert-renew reads the configuration for the node's layout ([kubeadm] paths) and \
                 keep_backups; the CA is the one given on the command line, and --state-dir \
                 replaces state_dir.",
            );
            r.item(
                'I',
                "/var/lib/cert-rotator/",
                "The default --state-dir, shared with cert-rotator:",
            );
            r.0.push_str(".RS\n");
            for (path, text) in state_files("/var/lib/cert-rotator", false) {
                r.item('I', &path, text);
            }
            r.0.push_str(".RE\n");
        }
        _ => {}
    }
    if let Some(text) = epilogue {
        r.section("ENVIRONMENT");
        r.item(
            'B',
            "CERT_ROTATOR_LOG",
            "The log filter, in tracing's syntax: debug, or info,cert_rotator::verify=debug.",
        );
        r.para(text);
    }
    match name {
        "cert-rotator" => {
            r.section("EXAMPLES");
            r.example(
                "What the node has, and what is due:",
                &["cert-rotator status"],
            );
            r.example(
                "What the next pass would do, then the pass as the timer runs it:",
                &["cert-rotator plan", "systemctl start cert-rotator.service"],
            );
            r.example(
                "Renew the apiserver's and etcd's serving certificates now, with kubeadm's \
                 names, then restart and verify what must reload:",
                &["cert-rotator renew --restart apiserver etcd-server"],
            );
            r.example(
                "A disk mounted under /mnt/node (files only); a tree whose components run here:",
                &[
                    "cert-rotator --root /mnt/node status --json",
                    "cert-rotator --root /srv/node --live run",
                ],
            );
        }
        "cert-renew" => {
            r.section("EXAMPLES");
            r.example(
                "Renew the apiserver's serving certificate from the cluster CA, with the old \
                 lifetime and a new key:",
                &[
                    "cert-renew --ca-cert /etc/kubernetes/pki/ca.crt \\",
                    "    --ca-key /etc/kubernetes/pki/ca.key \\",
                    "    /etc/kubernetes/pki/apiserver.crt",
                ],
            );
            r.example(
                "Renew admin.conf and the operator's copy for a year, keeping their keys, with \
                 backups in a directory of your own:",
                &[
                    "cert-renew --ca-cert /etc/kubernetes/pki/ca.crt \\",
                    "    --ca-key /etc/kubernetes/pki/ca.key --days 365 --reuse-key \\",
                    "    --state-dir /root/cert-renew-state \\",
                    "    /etc/kubernetes/admin.conf /root/.kube/config",
                ],
            );
            r.example(
                "On a worker, which has no CA key: the kubelet's serving certificate through a \
                 cfssl server (the new key stays on the node, only a CSR is sent):",
                &[
                    "cert-renew --remote https://ca.example.internal:8888 \\",
                    "    --auth-key-file /etc/cert-rotator/cfssl-auth.key \\",
                    "    --remote-ca /etc/cert-rotator/cfssl-server-ca.pem \\",
                    "    --ca-cert /etc/kubernetes/pki/ca.crt --profile kubelet --days 91 \\",
                    "    /var/lib/kubelet/pki/kubelet.crt",
                ],
            );
            r.para(
                "cert-renew restarts nothing: restart the components that use a renewed \
                 certificate (cert-rotator renew --restart does, for the node's own targets).",
            );
        }
        _ => {}
    }
    r.section("SEE ALSO");
    let see_also: &[&str] = match name {
        "cert-rotator" => &[
            "cert-renew",
            "cert-rotator-status",
            "cert-rotator-run",
            "cert-rotator-plan",
            "cert-rotator-renew",
            "cert-rotator-renew-all",
            "cert-rotator-recover",
            "cert-rotator-ca",
            "cert-rotator-config-check",
            "systemctl",
            "journalctl",
        ],
        "cert-renew" => &["cert-rotator", "cert-rotator-renew", "openssl-x509"],
        _ => &["cert-rotator"],
    };
    for (i, page) in see_also.iter().enumerate() {
        let comma = if i + 1 < see_also.len() { "," } else { "" };
        r.0.push_str(&format!(".BR {} (1){comma}\n", escape(page)));
    }
    r.0
}

/// YYYY-MM-DD, digits and dashes only.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

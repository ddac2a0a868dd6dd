//! The metrics file of a real pass, served by the real node_exporter (Debian's
//! prometheus-node-exporter, textfile collector only) and checked by the real promtool;
//! then the real Prometheus scrapes that node_exporter with the shipped alert rules
//! loaded, so the rules are proven against the names and labels the agent writes, not
//! against hand-written series (those are tests/prometheus/*.test.yml).

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use common::*;

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A process killed (and reaped) when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// GET `url` until it answers 200 or `within` has passed; the body.
fn get_when_up(url: &str, child: &mut Running, within: StdDuration) -> String {
    let start = Instant::now();
    loop {
        if let Ok(mut r) = ureq::get(url).call() {
            if let Ok(body) = r.body_mut().read_to_string() {
                return body;
            }
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("{url}: the server exited ({status}) before answering");
        }
        assert!(start.elapsed() < within, "{url}: no answer in {within:?}");
        std::thread::sleep(StdDuration::from_millis(100));
    }
}

/// `promtool check metrics` on `text`: its exit status and what it printed.
fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian's prometheus package)");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    (out.status.success(), text_of(&out))
}

fn text_of(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// node_exporter with only the textfile collector, reading `dir`, on a free loopback port.
fn node_exporter(dir: &Path) -> (Running, u16) {
    let port = free_port();
    let child = Command::new(NODE_EXPORTER)
        .arg("--collector.disable-defaults")
        .arg("--collector.textfile")
        .arg(format!("--collector.textfile.directory={}", dir.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run prometheus-node-exporter");
    (Running(child), port)
}

/// Where the agent writes the textfile in these tests: Debian's node_exporter directory
/// (docs/metrics.md), under the node root.
const TEXTFILE_DIR: &str = "/var/lib/prometheus/node-exporter";

/// A control-plane node after a real `run`: the front-proxy client expired (the pass
/// renews it), apiserver with 20 days and scheduler.conf with 10 days left and a CA in
/// its last 1% of life (none of them due under the window configured here, so the pass
/// leaves them: the alert rules must see them), metrics written into TEXTFILE_DIR.
fn node_after_a_pass() -> tempfile::TempDir {
    let mut spec = NodeSpec::control_plane(now())
        .with(
            "front-proxy-client",
            Validity::days(365, Duration::days(-2)),
        )
        .with("apiserver", Validity::days(365, Duration::days(20)))
        .with("scheduler.conf", Validity::days(365, Duration::days(10)));
    spec.ca_validity = Validity::days(3650, Duration::days(30));
    let d = node(&spec);
    let cfg = d.path().join("metrics-test.toml");
    std::fs::write(
        &cfg,
        format!(
            "metrics_file = \"{TEXTFILE_DIR}/cert-rotator.prom\"\n\
             [window]\nremaining_fraction = 0.01\nremaining_days = 5\n\
             [authorities]\nrenew = false\n"
        ),
    )
    .unwrap();
    let out = run(d.path(), &["--config", cfg.to_str().unwrap(), "run"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("renewed (1)"), "{all}");
    d
}

/// The first sample line of `family` whose labels include every one of `labels`.
fn sample<'t>(text: &'t str, family: &str, labels: &[&str]) -> Option<&'t str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .find(|l| labels.iter().all(|x| l.contains(x)))
}

fn value(line: &str) -> f64 {
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn node_exporter_serves_the_metrics_of_a_real_pass_and_promtool_accepts_them() {
    let d = node_after_a_pass();
    let r = d.path();
    let dir = host(r, TEXTFILE_DIR);
    let file = std::fs::read_to_string(dir.join("cert-rotator.prom")).unwrap();
    let (ok, said) = promtool_check_metrics(&file);
    assert!(
        ok && said.trim().is_empty(),
        "promtool on the file: {said}\n{file}"
    );

    let (mut ne, port) = node_exporter(&dir);
    let served = get_when_up(
        &format!("http://127.0.0.1:{port}/metrics"),
        &mut ne,
        StdDuration::from_secs(20),
    );
    let (ok, said) = promtool_check_metrics(&served);
    assert!(
        ok && said.trim().is_empty(),
        "promtool on the scrape: {said}"
    );
    // node_exporter read the file without complaint.
    assert!(
        served.contains("\nnode_textfile_scrape_error 0\n"),
        "{served}"
    );

    // apiserver.crt in x509-certificate-exporter's labels, with the value and serial
    // that `status --json` reports for it.
    let (status, code) = {
        let out = run(r, &["status", "--json"]);
        (
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
            out.status.code(),
        )
    };
    assert_eq!(code, Some(0), "{status:#}");
    let api = status["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "apiserver")
        .unwrap();
    let not_after = time::OffsetDateTime::parse(
        api["not_after"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    let serial = u128::from_str_radix(api["serial"].as_str().unwrap(), 16).unwrap();
    let line = sample(
        &served,
        "x509_cert_not_after",
        &[
            "filename=\"apiserver.crt\"",
            "filepath=\"/etc/kubernetes/pki/apiserver.crt\"",
            "issuer_CN=\"kubernetes\"",
            "subject_CN=\"kube-apiserver\"",
            &format!("serial_number=\"{serial}\""),
        ],
    )
    .unwrap_or_else(|| panic!("no x509_cert_not_after for apiserver.crt:\n{served}"));
    assert_eq!(value(line), not_after as f64, "{line}");
    // A kubeconfig's user certificate, the renewed front-proxy client, every family.
    assert!(
        sample(
            &served,
            "x509_cert_not_after",
            &[
                "embedded_key=\"kubernetes-admin\"",
                "embedded_kind=\"user\"",
                "filepath=\"/etc/kubernetes/admin.conf\""
            ]
        )
        .is_some(),
        "{served}"
    );
    let fpc = sample(
        &served,
        "x509_cert_expired",
        &["filename=\"front-proxy-client.crt\""],
    )
    .unwrap();
    assert_eq!(value(fpc), 0.0, "renewed by the pass: {fpc}");
    for family in [
        "x509_cert_not_before",
        "x509_cert_not_after",
        "x509_cert_expired",
        "x509_cert_error",
        "cert_rotator_authority_due",
        "cert_rotator_certificate_not_after_seconds",
    ] {
        assert!(
            served.contains(&format!("# TYPE {family} gauge\n")),
            "{family}:\n{served}"
        );
    }
    assert!(
        served.contains("\ncert_rotator_pass_success 1\n"),
        "{served}"
    );
    assert!(
        served.contains("\ncert_rotator_last_success_timestamp_seconds "),
        "{served}"
    );
}

/// The shipped rules, loaded by the real Prometheus scraping the node_exporter of a real
/// pass: the alerts the node's state calls for become pending (their `for: 15m` is not
/// waited for), and only those.
#[test]
fn prometheus_with_the_shipped_rules_alerts_on_what_the_textfile_says() {
    let d = node_after_a_pass();
    let (mut ne, ne_port) = node_exporter(&host(d.path(), TEXTFILE_DIR));
    get_when_up(
        &format!("http://127.0.0.1:{ne_port}/metrics"),
        &mut ne,
        StdDuration::from_secs(20),
    );
    let rules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/prometheus/cert-rotator-alerts.yml");
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{ne_port}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let mut prom = Running(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run prometheus"),
    );
    let alerts_url = format!("http://127.0.0.1:{port}/api/v1/alerts");
    // (alertname, filepath or CA name) of the pending and firing alerts.
    let want = [
        ("CertRotatorAuthorityDue", "ca"),
        ("CertRotatorAuthorityDue", "etcd/ca"),
        ("CertRotatorAuthorityDue", "front-proxy-ca"),
        ("CertificateExpiration", "/etc/kubernetes/scheduler.conf"),
        ("CertificateRenewal", "/etc/kubernetes/pki/apiserver.crt"),
        ("CertificateRenewal", "/etc/kubernetes/scheduler.conf"),
    ];
    let start = Instant::now();
    let got = loop {
        let body = get_when_up(&alerts_url, &mut prom, StdDuration::from_secs(30));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut got: Vec<(String, String)> = v["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let l = &a["labels"];
                let what = l["filepath"].as_str().or(l["name"].as_str()).unwrap_or("");
                (
                    l["alertname"].as_str().unwrap_or("").to_string(),
                    what.to_string(),
                )
            })
            .collect();
        got.sort();
        got.dedup();
        if got.len() >= want.len() || start.elapsed() > StdDuration::from_secs(30) {
            break got;
        }
        std::thread::sleep(StdDuration::from_millis(250));
    };
    let mut want: Vec<(String, String)> = want
        .iter()
        .map(|(a, w)| (a.to_string(), w.to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

/// A failed pass keeps the time of the last successful one, in last-pass.json and in the
/// metrics (what `CertRotatorNoRecentSuccess` reads), through the real binary.
#[test]
fn a_failed_pass_keeps_the_last_success_in_the_metrics() {
    let d = node(&NodeSpec::worker(now()));
    let r = d.path();
    let out = run(r, &["run"]);
    assert!(out.status.success(), "{}", text(&out));
    let metrics = host(r, "/var/lib/cert-rotator/metrics/cert-rotator.prom");
    let last_success = |text: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with("cert_rotator_last_success_timestamp_seconds "))
            .map(value)
    };
    let first = std::fs::read_to_string(&metrics).unwrap();
    let ok_at = last_success(&first).unwrap_or_else(|| panic!("{first}"));
    assert!(first.contains("\ncert_rotator_pass_success 1\n"), "{first}");
    // Nothing of a node left: the next pass fails.
    std::thread::sleep(StdDuration::from_millis(1100));
    std::fs::remove_dir_all(host(r, "/etc/kubernetes")).unwrap();
    std::fs::remove_dir_all(host(r, "/var/lib/kubelet")).unwrap();
    let out = run(r, &["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let second = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        second.contains("\ncert_rotator_pass_success 0\n"),
        "{second}"
    );
    assert_eq!(last_success(&second), Some(ok_at), "{second}");
    let pass_at = second
        .lines()
        .find(|l| l.starts_with("cert_rotator_pass_timestamp_seconds "))
        .map(value)
        .unwrap();
    assert!(pass_at > ok_at, "{second}");
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(host(r, "/var/lib/cert-rotator/last-pass.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["success"], false, "{record}");
    assert!(record["last_success"].is_string(), "{record}");
}

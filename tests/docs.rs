//! The operators' documentation against the program it documents:
//!
//! - config/config.toml names every key `config check` prints, and every key it names is
//!   one the program accepts (the file with every key uncommented passes `config check`
//!   and prints exactly the documented keys); the defaults it shows are the built-in ones;
//!   as shipped it is accepted and changes nothing.
//! - docs/status.md names every field `status --json` prints.
//! - README.md's usage lines use only options the binaries' `--help` lists.
//! - README.md and docs/*.md mention no file of the repository that does not exist.
//! - README.md's "Layout of the code" matches the tree: every module and test it lists
//!   exists, every top-level module of src/ and every suite and script of tests/ is
//!   listed, the booted (tests/e2e) and real-Kubernetes (tests/k8s) scripts included.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn repo_file(rel: &str) -> PathBuf {
    Path::new(REPO).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `cert-rotator --root ROOT config check [--config FILE]`, which must succeed; its
/// stdout parsed as TOML.
fn config_check(root: &Path, file: Option<&Path>) -> toml::Table {
    let mut args = vec!["config".to_string(), "check".to_string()];
    if let Some(f) = file {
        args.push("--config".into());
        args.push(f.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(root, &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "config check {file:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("config check prints UTF-8");
    text.parse()
        .unwrap_or_else(|e| panic!("config check printed no TOML ({e}):\n{text}"))
}

/// The text after `#` (and one optional space) when a comment line is a commented-out
/// key (`#key = value`, `# key = value`) or table header (`#[table]`, `#[[array]]`);
/// prose comments and continuation lines are not.
fn commented_out(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('#')?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    if is_key_or_header(rest) {
        Some(rest)
    } else {
        None
    }
}

fn is_key_or_header(s: &str) -> bool {
    if s.starts_with('[') {
        return s.trim_end().ends_with(']');
    }
    let Some((key, _)) = s.split_once('=') else {
        return false;
    };
    let key = key.trim_end();
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The file with every commented-out key and table header uncommented.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| commented_out(l).unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The parts of a dotted TOML key or header (`ca.remote.targets."kubelet.crt"`), quotes
/// removed, dots inside quotes kept.
fn key_parts(path: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in path.trim().chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    parts.push(cur.trim().to_string());
    parts
}

/// A key path as compared: parts joined by dots, a name chosen by the operator (the
/// part after `targets`, in `[targets."NAME"]` and `[ca.remote.targets."NAME"]`) as `*`.
fn normal(parts: &[String]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 && parts[i - 1] == "targets" {
            out.push("*");
        } else {
            out.push(p);
        }
    }
    out.join(".")
}

/// Every key and table path of a configuration file, read line by line, commented out
/// or not: `[section]` headers (and their parents) and `key = value` lines under them.
fn documented_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut section: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = commented_out(line).unwrap_or(line).trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(h) = line.strip_prefix('[') {
            let h = h.trim_start_matches('[');
            let h = &h[..h.find(']').expect("a header ends with ]")];
            section = key_parts(h);
            for n in 1..=section.len() {
                keys.insert(normal(&section[..n]));
            }
        } else if let Some((k, _)) = line.split_once('=') {
            let mut p = section.clone();
            p.extend(key_parts(k));
            keys.insert(normal(&p));
        }
    }
    keys
}

/// Every key and table path of parsed TOML, arrays of tables entered.
fn toml_keys(t: &toml::Table) -> BTreeSet<String> {
    fn walk(t: &toml::Table, prefix: &[String], out: &mut BTreeSet<String>) {
        for (k, v) in t {
            let mut p = prefix.to_vec();
            p.push(k.clone());
            out.insert(normal(&p));
            match v {
                toml::Value::Table(sub) => walk(sub, &p, out),
                toml::Value::Array(items) => {
                    for item in items {
                        if let toml::Value::Table(sub) = item {
                            walk(sub, &p, out);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(t, &[], &mut out);
    out
}

/// The leaf values of parsed TOML by normalised path (the first array element only).
fn toml_leaves(t: &toml::Table) -> Vec<(String, toml::Value)> {
    fn walk(t: &toml::Table, prefix: &[String], out: &mut Vec<(String, toml::Value)>) {
        for (k, v) in t {
            let mut p = prefix.to_vec();
            p.push(k.clone());
            match v {
                toml::Value::Table(sub) => walk(sub, &p, out),
                toml::Value::Array(items) if items.first().is_some_and(toml::Value::is_table) => {
                    if let Some(toml::Value::Table(sub)) = items.first() {
                        walk(sub, &p, out);
                    }
                }
                v => out.push((normal(&p), v.clone())),
            }
        }
    }
    let mut out = Vec::new();
    walk(t, &[], &mut out);
    out
}

fn lookup<'a>(t: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let parts = key_parts(path);
    let (last, dirs) = parts.split_last()?;
    let mut cur = t;
    for d in dirs {
        cur = cur.get(d)?.as_table()?;
    }
    cur.get(last)
}

/// Equal as configuration values: `30` and `30.0` are the same number of days.
fn same_value(a: &toml::Value, b: &toml::Value) -> bool {
    let num = |v: &toml::Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn uncommented_config(dir: &Path) -> PathBuf {
    let full = dir.join("every-key.toml");
    std::fs::write(&full, uncommented(&read("config/config.toml"))).unwrap();
    full
}

fn missing(want: &BTreeSet<String>, have: &BTreeSet<String>) -> Vec<String> {
    want.difference(have).cloned().collect()
}

#[test]
fn config_toml_documents_every_key_and_only_keys_the_program_accepts() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let text = read("config/config.toml");
    let documented = documented_keys(&text);

    // The built-in defaults: every key printed must be documented.
    let defaults = toml_keys(&config_check(root.path(), None));
    let undocumented = missing(&defaults, &documented);
    assert!(
        undocumented.is_empty(),
        "config check prints keys config/config.toml does not document: {undocumented:?}"
    );

    // Every key set: the program must accept all of them (unknown keys are errors) and
    // print exactly the documented ones, optional keys, [ca.remote], per-target tables
    // and [[extra]] included.
    let full = config_check(root.path(), Some(&uncommented_config(work.path())));
    let printed = toml_keys(&full);
    let undocumented = missing(&printed, &documented);
    assert!(
        undocumented.is_empty(),
        "config check prints keys config/config.toml does not document: {undocumented:?}"
    );
    let unprinted = missing(&documented, &printed);
    assert!(
        unprinted.is_empty(),
        "config/config.toml documents keys config check does not show: {unprinted:?}"
    );
    // The line-by-line reading and the TOML parser agree on the uncommented file.
    let parsed: toml::Table = uncommented(&text).parse().unwrap();
    assert_eq!(toml_keys(&parsed), documented);
    // Every section the program has is there: a guard against the walk finding nothing.
    for k in [
        "state_dir",
        "keep_backups",
        "metrics_file",
        "window.remaining_days",
        "kubeadm.user_kubeconfigs",
        "targets.*.enabled",
        "targets.*.ca",
        "extra.component",
        "ca.default",
        "ca.remote.url",
        "ca.remote.lifetime_margin_days",
        "ca.remote.targets.*.days",
        "run.verify_timeout_seconds",
    ] {
        assert!(documented.contains(k), "{k} not documented");
    }
}

#[test]
fn config_toml_shows_the_built_in_defaults() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let documented: toml::Table = uncommented(&read("config/config.toml")).parse().unwrap();
    let check = |t: &toml::Table, skip: &[&str]| {
        for (path, value) in toml_leaves(t) {
            if skip.contains(&path.as_str()) {
                continue;
            }
            let shown = lookup(&documented, &path)
                .unwrap_or_else(|| panic!("{path} = {value}: not in config/config.toml"));
            assert!(
                same_value(shown, &value),
                "config/config.toml shows {path} = {shown}, the built-in default is {value}"
            );
        }
    };
    // Everything but [ca.remote], [[extra]] and [[signer]], which are off by default.
    check(&config_check(root.path(), None), &["extra", "signer"]);
    // [ca.remote]'s defaults: every key but the required url (the optional paths are
    // unset by default and not printed).
    let remote = work.path().join("remote.toml");
    std::fs::write(
        &remote,
        "[ca.remote]\nurl = \"https://ca.example.internal:8888\"\n",
    )
    .unwrap();
    let with_remote = config_check(root.path(), Some(&remote));
    assert!(lookup(&with_remote, "ca.remote.attempts").is_some());
    check(&with_remote, &["extra", "signer", "ca.remote.url"]);
    // [[signer]]'s defaults: the example shows them for the keys that have one.
    let signer = work.path().join("signer.toml");
    std::fs::write(
        &signer,
        "[[signer]]\nname = \"a.example/b\"\nca_cert = \"/ca.pem\"\nca_key = \"/ca.key\"\nusages = [\"server auth\"]\n",
    )
    .unwrap();
    let with_signer = config_check(root.path(), Some(&signer));
    let first = |t: &toml::Table| {
        t["signer"].as_array().unwrap()[0]
            .as_table()
            .unwrap()
            .clone()
    };
    let (built_in, shown) = (first(&with_signer), first(&documented));
    for k in ["max_duration_seconds", "key_algorithms"] {
        assert_eq!(
            built_in[k], shown[k],
            "config/config.toml shows signer.{k} = {}",
            shown[k]
        );
    }
}

#[test]
fn config_toml_as_shipped_is_accepted_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let shipped = repo_file("config/config.toml");
    assert_eq!(
        config_check(root.path(), Some(&shipped)),
        config_check(root.path(), None),
        "config/config.toml as shipped must leave every built-in default as it is"
    );
    // Also where the package puts it, read as the node's own file.
    let etc = host(root.path(), "/etc/cert-rotator");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(&shipped, etc.join("config.toml")).unwrap();
    let out = run(root.path(), &["config", "check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("# read /etc/cert-rotator/config.toml"));
}

/// Every field of `status --json`, top level, certificates and authorities, not-managed
/// kubeconfigs and unfinished writes included, is named in docs/status.md.
#[test]
fn status_md_names_every_json_field() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    // A token user in the operator's kubeconfig: listed as not managed.
    std::fs::write(
        host(r, "/root/.kube/config"),
        "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nclusters:\n- name: k\n  cluster:\n    server: https://10.0.0.10:6443\nusers:\n- name: u\n  user:\n    token: abc\n",
    )
    .unwrap();
    let (v, code) = status_json(r);
    assert_eq!(code, 0, "{v:#}");
    assert!(
        cert(&v, "/root/.kube/config")["not_managed"].is_string(),
        "{v:#}"
    );
    let mut fields = BTreeSet::new();
    for (k, _) in v.as_object().unwrap() {
        fields.insert(k.clone());
    }
    for list in ["certificates", "authorities"] {
        for item in v[list].as_array().unwrap() {
            for (k, _) in item.as_object().unwrap() {
                fields.insert(k.clone());
            }
        }
    }
    let doc = read("docs/status.md");
    let absent: Vec<&String> = fields
        .iter()
        .filter(|f| !doc.contains(&format!("`{f}`")))
        .collect();
    assert!(
        absent.is_empty(),
        "docs/status.md does not name these status --json fields: {absent:?}"
    );
    for reason in ["`expired`", "`under-20-percent`", "`under-30-days`"] {
        assert!(doc.contains(reason), "docs/status.md lacks {reason}");
    }
}

fn help(program: &Path, args: &[&str]) -> String {
    let out: Output = Command::new(program)
        .args(args)
        .arg("--help")
        .output()
        .expect("run --help");
    assert_eq!(out.status.code(), Some(0), "{program:?} {args:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

/// The usage block of README.md: each line's program, subcommand words and options must
/// be what the binaries' `--help` lists.
#[test]
fn readme_usage_uses_only_options_the_binaries_have() {
    let readme = read("README.md");
    let usage = readme
        .split("\n## Usage\n")
        .nth(1)
        .and_then(|s| s.split("```").nth(1))
        .expect("README.md has a ## Usage section with a code block");
    let mut lines = 0;
    for line in usage.lines().skip(1) {
        let line = line.split(" # ").next().unwrap_or(line);
        let tokens: Vec<String> = line
            .split(|c: char| c.is_whitespace() || "[]|".contains(c))
            .filter(|t| !t.is_empty())
            .map(|t| t.trim_end_matches("...").to_string())
            .collect();
        let Some((program, rest)) = tokens.split_first() else {
            continue;
        };
        let exe = match program.as_str() {
            "cert-rotator" => bin(),
            "cert-renew" => renew_bin(),
            other => panic!("README usage line for an unknown program {other}: {line}"),
        };
        // Subcommand words: lowercase words before the first option or argument, past
        // the global options and their values.
        let mut sub = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            let t = &rest[i];
            if t == "--config" || t == "--root" {
                i += 2;
                continue;
            }
            if t.starts_with('-') || !t.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
                break;
            }
            sub.push(t.as_str());
            i += 1;
        }
        let text = help(&exe, &sub);
        // An option is listed when a line of the help starts with it (`  -h, --help`,
        // `      --days <N>`), not merely when a description mentions it.
        let listed = |opt: &str| {
            text.lines().any(|l| {
                let l = l.trim_start();
                let l = l.split_once(", ").map_or(l, |(short, long)| {
                    if short.len() == 2 && short.starts_with('-') {
                        long
                    } else {
                        l
                    }
                });
                l == opt || l.starts_with(&format!("{opt} "))
            })
        };
        for opt in rest.iter().filter(|t| t.starts_with("--")) {
            assert!(
                listed(opt),
                "README.md: `{line}` uses {opt}, which `{program} {} --help` does not list",
                sub.join(" ")
            );
        }
        lines += 1;
    }
    assert!(lines >= 8, "README.md's usage block has only {lines} lines");
}

/// Repository files that README.md and docs/*.md mention (`docs/x.md`, `src/ca/remote/`,
/// `tests/e2e/run.sh`, ...) exist.
#[test]
fn readme_and_docs_mention_no_missing_file() {
    let mut docs = vec!["README.md".to_string()];
    for e in std::fs::read_dir(repo_file("docs")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            docs.push(format!("docs/{name}"));
        }
    }
    let tops = [
        "docs/",
        "config/",
        "packaging/",
        "systemd/",
        "tests/",
        "src/",
        "examples/",
        "benches/",
        ".ci/",
    ];
    let mut absent = Vec::new();
    for doc in &docs {
        let text = read(doc);
        for (at, _) in text.match_indices('/') {
            // The path around this slash: a run of path characters.
            let is_path = |c: char| c.is_ascii_alphanumeric() || "_./-*".contains(c);
            let start = text[..at]
                .char_indices()
                .rev()
                .find(|(_, c)| !is_path(*c))
                .map_or(0, |(i, c)| i + c.len_utf8());
            let end = text[at..]
                .find(|c: char| !is_path(c))
                .map_or(text.len(), |i| at + i);
            let candidate = text[start..end].trim_end_matches(['.', '-']);
            if start + candidate.len() < at || !tops.iter().any(|t| candidate.starts_with(t)) {
                continue;
            }
            // A glob (config.d/*.toml, tests/e2e/*.sh) names a pattern, not a file.
            if candidate.contains('*') {
                continue;
            }
            if !repo_file(candidate).exists() {
                absent.push(format!("{doc}: {candidate}"));
            }
        }
    }
    absent.sort();
    absent.dedup();
    assert!(absent.is_empty(), "mentioned but missing: {absent:#?}");
}

/// The configuration example in README.md is one the program accepts.
#[test]
fn readme_configuration_example_is_accepted() {
    let readme = read("README.md");
    let example = readme
        .split("\n## Configuration\n")
        .nth(1)
        .and_then(|s| s.split("```toml\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README.md has a ## Configuration section with a toml block");
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("readme.toml");
    std::fs::write(&file, example).unwrap();
    let effective = config_check(root.path(), Some(&file));
    assert!(lookup(&effective, "targets.\"admin.conf\".remaining_days").is_some());
}

/// One line of README.md's code layout: the names it lists (`pki/`, `fixture/, demo.rs`,
/// a row of test suites) and its description, continuation lines included.
struct LayoutEntry {
    names: Vec<String>,
    description: String,
}

/// The entries under `top` (`src/` or `tests/`) of the layout block: lines indented by
/// two spaces start an entry, whose names end at the first double space; deeper lines
/// continue its description.
fn layout_entries(block: &str, top: &str) -> Vec<LayoutEntry> {
    let mut out: Vec<LayoutEntry> = Vec::new();
    let mut inside = false;
    for line in block.lines() {
        let body = line.trim_start();
        let indent = line.len() - body.len();
        if indent == 0 {
            inside = body.trim_end() == top;
            continue;
        }
        if !inside {
            continue;
        }
        if indent == 2 {
            let (names, description) = body.split_once("  ").unwrap_or((body, ""));
            out.push(LayoutEntry {
                names: names
                    .split([' ', ','])
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect(),
                description: description.trim().to_string(),
            });
        } else if let Some(e) = out.last_mut() {
            e.description.push(' ');
            e.description.push_str(body);
        }
    }
    out
}

/// The file names (`*.rs`, `*.sh`) a description mentions, with their directories
/// when it gives them (`authority/status.rs`, `benches/fleet-sim.sh`).
fn files_named(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)))
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| w.ends_with(".rs") || w.ends_with(".sh"))
        .map(str::to_string)
        .collect()
}

/// Whether a file called `name` is in `dir` or below it.
fn exists_under(dir: &Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        (e.file_name() == name && p.is_file()) || (p.is_dir() && exists_under(&p, name))
    })
}

#[test]
fn readme_layout_lists_the_tree() {
    let readme = read("README.md");
    let block = readme
        .split("\n## Layout of the code\n")
        .nth(1)
        .and_then(|s| s.split("```").nth(1))
        .expect("README.md has a ## Layout of the code section with a code block");
    let mut problems = Vec::new();
    for top in ["src", "tests"] {
        let entries = layout_entries(block, &format!("{top}/"));
        assert!(entries.len() >= 3, "README's layout lists little of {top}/");
        let base = repo_file(top);
        let listed: BTreeSet<String> = entries.iter().flat_map(|e| e.names.clone()).collect();
        // Every name exists: a file, or a directory written with its slash.
        for n in &listed {
            let p = base.join(n.trim_end_matches('/'));
            if !(if n.ends_with('/') {
                p.is_dir()
            } else {
                p.is_file()
            }) {
                problems.push(format!("README lists {top}/{n}, which does not exist"));
            }
        }
        // Every file a description names is in its entry's directories (or beside it).
        for e in &entries {
            let mut dirs: Vec<PathBuf> = e
                .names
                .iter()
                .filter(|n| n.ends_with('/'))
                .map(|n| base.join(n.trim_end_matches('/')))
                .collect();
            if dirs.is_empty() {
                dirs.push(base.clone());
            }
            for f in files_named(&e.description) {
                let found = if f.contains('/') {
                    base.join(&f).is_file() || repo_file(&f).is_file()
                } else {
                    dirs.iter().any(|d| exists_under(d, &f))
                };
                if !found {
                    problems.push(format!(
                        "README's {top}/{} names {f}, which is not there",
                        e.names.join(", ")
                    ));
                }
            }
        }
        // Every top-level module, suite, script and directory is listed.
        for e in std::fs::read_dir(&base).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let shown = if e.path().is_dir() {
                format!("{name}/")
            } else if name.ends_with(".rs") || name.ends_with(".sh") {
                name
            } else {
                continue;
            };
            if !listed.contains(&shown) {
                problems.push(format!("{top}/{shown} is not in README's layout"));
            }
        }
    }
    // The booted-systemd and real-Kubernetes scripts are each named on their line.
    let tests = layout_entries(block, "tests/");
    for dir in ["e2e", "k8s"] {
        let Some(entry) = tests.iter().find(|e| e.names == [format!("{dir}/")]) else {
            problems.push(format!("README's layout has no tests/{dir}/ line"));
            continue;
        };
        let named = files_named(&entry.description);
        for e in std::fs::read_dir(repo_file(&format!("tests/{dir}"))).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name.ends_with(".sh") && !named.contains(&name) {
                problems.push(format!(
                    "tests/{dir}/{name} is not named in README's layout"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "README.md's layout: {problems:#?}");
}

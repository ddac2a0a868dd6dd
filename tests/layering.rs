//! The module order of src/lib.rs is the import order: a module may name (`crate::X`)
//! only the modules listed above it, so the flow has no cycles and each layer can be
//! read without the ones above. Test code (files of `#[cfg(test)]` modules, and what
//! follows a `#[cfg(test)]` module line) may use anything, such as the fixture.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules in the order src/lib.rs lists them.
fn module_order() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Files holding only tests: `tests.rs`, `*_tests.rs`.
fn is_test_file(p: &Path) -> bool {
    let name = p.file_name().unwrap().to_string_lossy();
    name == "tests.rs" || name.ends_with("_tests.rs")
}

/// The `crate::X` names of a file's non-test code, with their line numbers.
fn crate_names(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let t = line.trim();
        if t.starts_with("#[cfg(test)]")
            && lines.peek().is_some_and(|(_, l)| {
                let l = l.trim();
                l.starts_with("mod ") || l.starts_with("pub mod ") || l.starts_with("#[path")
            })
        {
            // Test modules come last in a file (rustfmt and the project's habit).
            break;
        }
        let code = t.split("//").next().unwrap_or("");
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push((n + 1, name));
        }
    }
    out
}

#[test]
fn every_module_imports_only_modules_listed_above_it_in_lib_rs() {
    let order = module_order();
    assert!(order.len() > 10, "{order:?}");
    let rank: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut upward = Vec::new();
    for (i, module) in order.iter().enumerate() {
        let mut files = Vec::new();
        let file = src().join(format!("{module}.rs"));
        if file.exists() {
            files.push(file);
        }
        let dir = src().join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        for f in files.iter().filter(|f| !is_test_file(f)) {
            let text = std::fs::read_to_string(f).unwrap();
            for (line, name) in crate_names(&text) {
                if rank.get(name.as_str()).is_some_and(|&r| r > i) {
                    upward.push(format!(
                        "{}:{line}: {module} imports crate::{name}",
                        f.strip_prefix(src()).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports going up:\n{}",
        upward.join("\n")
    );
}

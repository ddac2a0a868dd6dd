//! The module order of src/lib.rs is the import order: a module may name (`crate::X`)
//! only the modules listed above it, so the flow has no cycles and each layer can be
//! read without the ones above. Test code (files of `#[cfg(test)]` modules, and the
//! `#[cfg(test)]` items of a file) may use anything, such as the fixture.

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

/// The change in brace depth of a line of code: string literals and the char literals
/// `'{'`, `'}'` are not counted (format strings would be balanced anyway).
fn brace_delta(code: &str) -> i64 {
    let code = code.replace("'{'", "").replace("'}'", "");
    let (mut depth, mut in_str, mut escaped) = (0, false, false);
    for c in code.chars() {
        match (in_str, c) {
            (true, _) if escaped => escaped = false,
            (true, '\\') => escaped = true,
            (true, '"') => in_str = false,
            (true, _) => {}
            (false, '"') => in_str = true,
            (false, '{') => depth += 1,
            (false, '}') => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// A file's non-test code, line by line (numbered from 1, comments cut): a
/// `#[cfg(test)]` item is left out, whether a declaration (`mod tests;`, ending at its
/// `;`) or a block (`mod tests { ... }`, to its matching brace); the code after it is
/// kept.
fn non_test_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let code = line.split("//").next().unwrap_or("").trim();
        if !code.starts_with("#[cfg(test)]") {
            out.push((n + 1, code.to_string()));
            continue;
        }
        // The item under the attribute (after any other attributes on their own lines):
        // up to its `;`, or up to the brace that closes the one it opens.
        let mut item = code["#[cfg(test)]".len()..].trim().to_string();
        let (mut depth, mut opened) = (0, false);
        loop {
            if !(item.is_empty() || item.starts_with("#[")) {
                depth += brace_delta(&item);
                opened |= item.contains('{');
                if (depth <= 0 && opened) || (!opened && item.ends_with(';')) {
                    break;
                }
            }
            match lines.next() {
                Some((_, l)) => item = l.split("//").next().unwrap_or("").trim().to_string(),
                None => break,
            }
        }
    }
    out
}

/// The top-level names of a `crate::{...}` group starting at `group` (just after the
/// `{`): the first segment of each of its paths, with its byte offset in `code`.
fn group_names(code: &str, group: usize) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let (mut depth, mut expect_name) = (1, true);
    let mut chars = code[group..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => break,
            '}' => depth -= 1,
            ',' if depth == 1 => expect_name = true,
            c if expect_name && depth == 1 && (c.is_alphanumeric() || c == '_') => {
                let mut name = c.to_string();
                while let Some((_, c)) = chars.next_if(|(_, c)| c.is_alphanumeric() || *c == '_') {
                    name.push(c);
                }
                out.push((group + i, name));
                expect_name = false;
            }
            _ => {}
        }
    }
    out
}

/// The `crate::X` names of a file's non-test code, with their line numbers; a grouped
/// `use crate::{a, b::c}` names `a` and `b`.
fn crate_names(text: &str) -> Vec<(usize, String)> {
    let lines = non_test_lines(text);
    // The kept code as one text (a group may span lines), and where each line starts.
    let mut code = String::new();
    let mut starts = Vec::new();
    for (n, l) in &lines {
        starts.push((code.len(), *n));
        code.push_str(l);
        code.push('\n');
    }
    let line_at = |at: usize| {
        let i = starts.partition_point(|(s, _)| *s <= at);
        starts[i.saturating_sub(1)].1
    };
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + 7..];
        if rest.starts_with('{') {
            for (at, name) in group_names(&code, i + 8) {
                out.push((line_at(at), name));
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        out.push((line_at(i), name));
    }
    out
}

#[test]
fn test_items_are_skipped_and_groups_are_read() {
    let text = "use crate::pki;\n\
        #[cfg(test)]\n\
        mod queue_tests;\n\
        use crate::{model, node::{self, NodeRoot},\n    config};\n\
        #[cfg(test)]\n\
        mod tests {\n    use crate::cli;\n    fn f() { let _ = '}'; }\n}\n\
        fn g() -> crate::write::X { todo!(\"{}\") } // crate::cli\n";
    let names: Vec<_> = crate_names(text);
    assert_eq!(
        names,
        [
            (1, "pki".to_string()),
            (4, "model".into()),
            (4, "node".into()),
            (5, "config".into()),
            (11, "write".into())
        ]
    );
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

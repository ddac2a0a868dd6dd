//! Writes the man pages of `cert-rotator` from its clap definition:
//! cert-rotator.1 and one page per subcommand (cert-rotator-status.1,
//! cert-rotator-config-check.1, ...), uncompressed, into the given directory.
//!
//! ```sh
//! cargo run --release --example mangen -- OUT_DIR [DATE]
//! ```
//!
//! DATE (YYYY-MM-DD, default none) goes into every page's footer; with a
//! fixed date (packaging/build.sh passes the last commit's) rebuilding a
//! commit gives byte-identical pages. build.sh adds the static
//! packaging/cert-renew.1 and gzips the lot for the deb and rpm packages.
//!
//! The date is an argument and not SOURCE_DATE_EPOCH because the `cc` build
//! scripts of ring and aws-lc-sys rerun when that variable changes: setting it
//! for `cargo run` would rebuild the crypto that `make test` already built.

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
    let mut cmd = cert_rotator::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let source = format!("cert-rotator {}", cmd.get_version().unwrap_or_default());
    let mut written = Vec::new();
    if let Err(e) = generate(cmd, &out, date, &source, &mut written) {
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
/// `source` ("cert-rotator 0.1.0") goes on every page: subcommands have no
/// version of their own.
fn generate(
    cmd: clap::Command,
    out: &Path,
    date: &str,
    source: &str,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        generate(sub.clone(), out, date, source, written)?;
    }
    let man = Man::new(cmd)
        .date(date)
        .source(source)
        .manual("cert-rotator manual");
    written.push(man.generate_to(out)?);
    Ok(())
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

//! `cert-renew --ca-cert C --ca-key K --days N FILE...`: the manual renewal tool.

fn main() -> std::process::ExitCode {
    cert_rotator::cli::cert_renew_main()
}

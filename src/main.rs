fn main() -> std::process::ExitCode {
    cert_rotator::cli::main()
}

# The README's two commands: `cargo run --release -- demo` and `make test`.
# Everything runs in the release profile so the tests, the packages and the
# booted-systemd test share one build of the dependencies.

.PHONY: test lint unit demo

test: lint unit

lint:
	cargo fmt --check
	cargo clippy --release --all-targets --features failpoints -- -D warnings

unit:
	cargo test --release --features failpoints

demo:
	cargo run --release -- demo

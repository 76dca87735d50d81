#!/usr/bin/env bash
# The test command (README): formatting, lints, then every unit and integration test of the
# workspace against real Mosquitto brokers. Needs: cargo, cmake, libssl-dev, pkg-config, mosquitto.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v mosquitto >/dev/null || { echo "mosquitto is not installed: apt-get install -y mosquitto mosquitto-clients" >&2; exit 1; }
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace

//! The full test suite, as CI runs it: formatting, lints, the protocol crate
//! for wasm32, the web bundle, every native test (unit, property, interop
//! with the real Python server, bridge integration, the browser end to end),
//! and the wasm tests in headless Chromium.

use std::process::Command;

use anyhow::Result;

use crate::setup::{root, run};

pub(crate) fn test(_args: &[String]) -> Result<()> {
    crate::setup::setup()?;
    let cargo = || {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root());
        cmd
    };
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args([
        "clippy",
        "-p",
        "dumdum-client-wasm",
        "--target",
        "wasm32-unknown-unknown",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args([
        "build",
        "-p",
        "dumdum-protocol",
        "--target",
        "wasm32-unknown-unknown",
    ]))?;
    // The fuzz targets live outside the workspace; keep them compiling.
    run(cargo()
        .args(["check", "--bins", "--quiet"])
        .current_dir(root().join("protocol/fuzz")))?;
    crate::dist::dist(&[])?;
    run(cargo().args(["test", "--workspace"]))?;
    run(cargo()
        .args([
            "test",
            "-p",
            "dumdum-client-wasm",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            "wasm-bindgen-test-runner",
        )
        .env("CHROMEDRIVER", "/usr/bin/chromedriver"))?;
    eprintln!("xtask test: every check passed");
    Ok(())
}

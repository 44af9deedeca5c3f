//! Build automation for dumdum-web: `cargo xtask <command>`.
//!
//! - `dist`: build the browser bundle into `target/www` (wasm + JS glue + www/);
//!   `--size-report` ranks the wasm's code by crate and function.
//! - `run`: `dist`, then start the bridge with its embedded server.
//! - `test`: install what a fresh machine lacks, then every check CI runs.
//! - `bench`: the end-to-end benchmark, direct vs through the bridge.
//! - `fuzz`: run every protocol fuzz target for a bounded time.
//! - `soak`: chaos through the release bridge; nothing lost or doubled.
//! - `release`: the release `dumdum-bridge` with the built page inside it.

use std::process::ExitCode;

mod bench;
mod dist;
mod fuzz;
mod release;
mod setup;
mod size_report;
mod soak;
mod test;
mod wsclient;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((cmd, rest)) => (cmd.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match cmd {
        "dist" => dist::dist(rest),
        "run" => dist::run(rest),
        "test" => test::test(rest),
        "setup" => setup::setup(),
        "bench" => bench::bench(rest),
        "fuzz" => fuzz::fuzz(rest),
        "release" => release::release(rest),
        "soak" => soak::soak(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n  dist   build the web page into target/www (--size-report: what the wasm is made of, by crate and function)\n  run    build the page and start the bridge with its embedded server (extra args go to dumdum-bridge)\n  test   install missing tools, then run the full test suite (what CI runs)\n  setup  only install missing tools\n  bench  end-to-end benchmark: direct TCP vs through the bridge, against the Python and the embedded server (cargo xtask bench --help)\n  fuzz   run each protocol fuzz target for a bounded time from the checked-in corpus (cargo xtask fuzz --help)\n  release build the release dumdum-bridge with the page inside it (target/release/dumdum-bridge: one file to deploy)\n  soak   sessions with cuts, reconnects, slow readers and server restarts through the release bridge; checks nothing is lost or doubled (cargo xtask soak --help)"
            );
            return if cmd == "help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {cmd}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

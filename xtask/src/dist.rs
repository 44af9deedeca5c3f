//! The browser bundle (owned by the client work; see issue 4).

use anyhow::{Result, bail};

pub(crate) fn dist(_args: &[String]) -> Result<()> {
    bail!("the web bundle build is not written yet")
}

pub(crate) fn run(_args: &[String]) -> Result<()> {
    bail!("the run command is not written yet")
}

//! Installs what a fresh machine lacks (written with the test command).

use anyhow::Result;

pub(crate) fn setup() -> Result<()> {
    Ok(())
}

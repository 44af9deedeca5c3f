//! The full test suite (what CI runs).

use anyhow::Result;

pub(crate) fn test(_args: &[String]) -> Result<()> {
    crate::setup::setup()
}

//! The bridge (see issue 3).

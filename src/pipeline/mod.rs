//! The modules as steps of one run (in progress).

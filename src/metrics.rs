//! Detection and clustering metrics (in progress).

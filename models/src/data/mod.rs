//! Data sets (arriving).

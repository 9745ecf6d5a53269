//! `tailship status` through the binary.

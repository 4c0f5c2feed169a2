//! Integration tests of watchpost-health.

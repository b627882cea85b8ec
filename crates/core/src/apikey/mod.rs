//! Placeholder: filled in by the apikey work.

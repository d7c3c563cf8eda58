//! A rustls trust builder with the wasmCloud HTTP client's semantics.

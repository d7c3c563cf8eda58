//! The wasmCloud secrets protocol served over NATS (work in progress).

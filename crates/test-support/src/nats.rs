//! A real `nats-server` (with JetStream) on a free loopback port, for the secrets tests.

//! A real `docker-registry` (plain HTTP or private-CA TLS) on a free loopback port, and image-building helpers (umoci, skopeo), for the image tests.

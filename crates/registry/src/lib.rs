//! OCI registries and image layouts for `anchorage image inject` (work in progress).

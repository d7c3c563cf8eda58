//! Writers: each turns a [`Bundle`](crate::Bundle) into bytes in one format and writes them
//! through [`atomic`](crate::atomic).

pub(crate) mod openssl_dir;
pub(crate) mod pem;

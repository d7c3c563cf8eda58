//! Java trust-store writers (PKCS#12, JKS) over [`anchorage_keystore`].

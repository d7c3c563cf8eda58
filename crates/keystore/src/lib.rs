//! Java trust stores: PKCS#12 and JKS holding trusted-certificate entries.

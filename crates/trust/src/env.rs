//! Environment variables that point each runtime at a trust bundle.

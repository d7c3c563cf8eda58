//! What the manager announces: [`RotationEvent`]s, on a per-identity [`Subscription`] and on
//! the firehose.
//!
//! Owns the shape of an announcement and the subscriber's side of the per-identity channel.
//! A subscription is a `tokio::sync::watch` receiver of its own identity's latest state, so a
//! rotation wakes the subscribers of that identity and nobody else (FSM's Tresor announced on
//! one global topic that woke every proxy for every rotation). It does not decide when
//! rotations happen.

use std::sync::Arc;

use anchorage_x509::{Sha256Fingerprint, Timestamp};
use serde::Serialize;
use tokio::sync::watch;

use crate::issued::{IssuedCertificate, IssuerId};
use crate::request::Identity;

/// Why a certificate was replaced (or dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RotationReason {
    /// First certificate for the identity.
    Issued,
    /// A get asked for other SANs, kind or key type than the cached certificate has.
    RequestChanged,
    /// The cached certificate was due (its remaining life fell under the policy's share) or
    /// expired.
    Renewed,
    /// The issuing CA changed: the issuer now signs with another CA, or a new issuer was set.
    IssuerChanged,
    /// Someone asked for it: [`super::CertManager::rotate`] or
    /// [`super::CertManager::reissue_all`].
    Forced,
    /// The identity was released: the cache entry is gone and the subscription ends.
    Released,
}

/// The facts of one certificate an auditor needs, without the certificate or its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// Serial number, colon-separated hex.
    pub serial: String,
    /// SHA-256 fingerprint of the certificate.
    pub sha256: Sha256Fingerprint,
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
    /// The CA that signed it.
    pub issuer: IssuerId,
}

impl CertSummary {
    /// The summary of `issued`.
    pub fn of(issued: &IssuedCertificate) -> Self {
        Self {
            serial: issued.certificate.serial().to_owned(),
            sha256: issued.certificate.sha256(),
            not_before: issued.not_before(),
            not_after: issued.not_after(),
            issuer: issued.issuer,
        }
    }
}

/// One rotation: which identity, why, what it had and what it has now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RotationEvent {
    /// The identity whose certificate changed.
    pub identity: Identity,
    /// Why.
    pub reason: RotationReason,
    /// The certificate replaced; `None` on the first issuance.
    pub old: Option<CertSummary>,
    /// The certificate now served; `None` when released.
    pub new: Option<CertSummary>,
    /// When, on the manager's clock.
    pub at: Timestamp,
}

/// What a per-identity channel holds: the latest event and certificate.
#[derive(Clone, Debug, Default)]
pub(super) struct Latest {
    pub(super) event: Option<RotationEvent>,
    pub(super) certificate: Option<Arc<IssuedCertificate>>,
}

/// A subscription to one identity's rotations, from [`super::CertManager::subscribe`].
///
/// Woken only by rotations of its own identity. It keeps the latest state, not a queue: a
/// subscriber that is slow to look sees the newest certificate and the event that produced it
/// (which is what a proxy reloading its certificate wants). After a release, [`Self::next`]
/// returns the [`RotationReason::Released`] event, then `None`.
#[derive(Debug)]
pub struct Subscription {
    identity: Identity,
    rx: watch::Receiver<Latest>,
}

impl Subscription {
    pub(super) fn new(identity: Identity, rx: watch::Receiver<Latest>) -> Self {
        Self { identity, rx }
    }

    /// The identity this subscription follows.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The certificate currently served for the identity, if one has been issued (and it was
    /// not released).
    pub fn certificate(&self) -> Option<Arc<IssuedCertificate>> {
        self.rx.borrow().certificate.clone()
    }

    /// True when [`Self::next`] would return at once: a rotation happened since the last
    /// call, or the subscription has ended.
    pub fn has_changed(&self) -> bool {
        self.rx.has_changed().unwrap_or(true)
    }

    /// Waits for the identity's next rotation and returns its event. `None` once the identity
    /// has been released (after its `Released` event was returned) or the manager is gone.
    pub async fn next(&mut self) -> Option<RotationEvent> {
        loop {
            self.rx.changed().await.ok()?;
            if let Some(event) = self.rx.borrow_and_update().event.clone() {
                return Some(event);
            }
        }
    }
}

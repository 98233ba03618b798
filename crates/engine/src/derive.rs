//! What the engine derives from the directory before it writes: an
//! identity's policy tiers, whether it has an active owner, and the events
//! an owner's lifecycle change fans out to the identities it owns.

use lockstep_domain::{
    DirectoryChange, GroupId, Identity, IdentityId, IdentityKind, IdentityStatus, Subject, Tiers,
};
use lockstep_store::{NewEvent, StoreResult};

use crate::{Engine, EngineError};

impl Engine {
    /// The groups an identity is in, when groups can confer a tier (else
    /// none, without a read: with no tier groups configured, membership
    /// never changes a tier).
    pub(crate) fn tier_groups(&self, id: IdentityId) -> StoreResult<Vec<(GroupId, String)>> {
        if self.config.policy.has_tier_groups() {
            self.stores.directory.groups_of(id)
        } else {
            Ok(Vec::new())
        }
    }

    /// An identity's tiers given its groups.
    pub(crate) fn tiers_with(&self, identity: &Identity, groups: &[(GroupId, String)]) -> Tiers {
        self.tiers_for(identity.kind, identity.risk_tier, groups)
    }

    /// The tiers of an identity of `kind` and `risk_tier` in `groups` (what
    /// the policy reads of it; start-up has only these, not whole rows).
    pub(crate) fn tiers_for(
        &self,
        kind: lockstep_domain::IdentityKind,
        risk_tier: Option<lockstep_domain::RiskTier>,
        groups: &[(GroupId, String)],
    ) -> Tiers {
        self.config.policy.tiers_of(kind, risk_tier, groups.iter().map(|(id, name)| (*id, name.as_str())))
    }

    /// An identity's tiers as the directory stands.
    pub(crate) fn current_tiers(&self, identity: &Identity) -> StoreResult<Tiers> {
        Ok(self.tiers_with(identity, &self.tier_groups(identity.id)?))
    }

    /// The first of `owners` (other than `except`) that is active now.
    pub(crate) fn active_owner(
        &self,
        owners: &[IdentityId],
        except: Option<IdentityId>,
    ) -> StoreResult<Option<IdentityId>> {
        for owner in owners.iter().filter(|o| Some(**o) != except) {
            if self.stores.directory.identity(*owner)?.is_some_and(|o| o.status == IdentityStatus::Active) {
                return Ok(Some(*owner));
            }
        }
        Ok(None)
    }

    /// A non-human identity needs an owner; an owner is a live human other
    /// than the identity itself. Checked only when kind or owners are set,
    /// so that an identity whose owner has left can still be deactivated.
    pub(crate) fn check_ownership(&self, identity: &Identity) -> Result<(), EngineError> {
        let invalid = |message: String| EngineError::Invalid { field: "owner", message };
        if identity.owners.is_empty()
            && identity.kind != IdentityKind::Human
            && !matches!(identity.kind, IdentityKind::Agent | IdentityKind::AgenticApplication)
        {
            return Err(invalid(format!("a {} identity needs an owner (a human User)", identity.kind)));
        }
        for owner in &identity.owners {
            if *owner == identity.id {
                return Err(invalid("an identity cannot own itself".into()));
            }
            match self.stores.directory.identity(*owner)? {
                Some(o) if o.status != IdentityStatus::Deprovisioned && o.kind == IdentityKind::Human => {}
                _ => return Err(invalid(format!("{owner} is not a live human User"))),
            }
        }
        Ok(())
    }

    /// The events an identity's own owner change adds (`owner_lost` when it
    /// leaves the identity without an active owner, `owner_restored` when
    /// it gives one back), and the identities it had to read.
    pub(crate) fn owner_change(
        &self,
        current: &Identity,
        next: &Identity,
        footprint: &mut Vec<IdentityId>,
    ) -> StoreResult<Option<DirectoryChange>> {
        if current.owners == next.owners {
            return Ok(None);
        }
        footprint.extend(current.owners.iter().chain(&next.owners).copied());
        let before = self.active_owner(&current.owners, None)?;
        let after = self.active_owner(&next.owners, None)?;
        Ok(match (before, after) {
            (Some(_), None) => Some(DirectoryChange::OwnerLost { owner: None }),
            (None, Some(owner)) if !current.owners.is_empty() => {
                Some(DirectoryChange::OwnerRestored { owner })
            }
            _ => None,
        })
    }

    /// The events an owner's activation or deactivation fans out to the
    /// identities it owns: `owner_lost` for each left without another
    /// active owner, `owner_restored` for each that had none. `cause` is
    /// the index of the status change among the write's events.
    pub(crate) fn owner_fanout(
        &self,
        owner: &Identity,
        was_active: bool,
        cause: usize,
        footprint: &mut Vec<IdentityId>,
    ) -> StoreResult<Vec<NewEvent>> {
        let is_active = owner.status == IdentityStatus::Active;
        if was_active == is_active {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        // Called by the writer preparing a batch: read where writes go.
        for owned in self.stores.directory.owned_by_to_write(owner.id)? {
            if owned.id == owner.id {
                continue;
            }
            footprint.push(owned.id);
            footprint.extend(owned.owners.iter().copied());
            if self.active_owner(&owned.owners, Some(owner.id))?.is_some() {
                continue;
            }
            let change = if is_active {
                DirectoryChange::OwnerRestored { owner: owner.id }
            } else {
                DirectoryChange::OwnerLost { owner: Some(owner.id) }
            };
            let subject = Subject::of_identity(&owned, self.current_tiers(&owned)?);
            out.push(NewEvent { subject, change, caused_by: Some(cause) });
        }
        Ok(out)
    }
}

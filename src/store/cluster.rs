//! Leadership among replicas: a lease per singleton duty (the pipeline), taken, renewed and given
//! up by the cluster's campaign. Stepping down is announced, so the trait carries [`Announce`].

use async_trait::async_trait;
use jiff::Timestamp;

use super::{Announce, Result};

#[async_trait]
pub trait ClusterStore: Announce + Send + Sync {
    /// Takes or renews the lease on a singleton duty until `until`; true while `holder` has it.
    /// A lease held by someone else is taken only once it has run out at `now`; on SQLite,
    /// where the lock file proves the caller is the only process, at once.
    async fn lead(
        &self,
        duty: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool>;
    /// Gives a duty up, so that another replica takes it at once.
    async fn resign(&self, duty: &str, holder: &str) -> Result<()>;
}

//! Work a migration leaves to the store's next opening because it needs Rust
//! code: each pending item is a row of `store_upgrades`, done and deleted in one
//! transaction, so an opening interrupted half-way does it again.

use sqlx::QueryBuilder;

use super::{Store, StoreError, Tx};
use crate::link::family::written_address_key;

/// Mentions updated per statement.
const CHUNK: usize = 2000;

impl Store {
    /// Does the pending upgrades (none on a new store: the migrations insert a row
    /// only when there is data to upgrade).
    pub(super) async fn finish_upgrades(&self) -> Result<(), StoreError> {
        let pending: Vec<(String,)> = on_pool!(self, p => sqlx::query_as(
            "SELECT name FROM store_upgrades ORDER BY name")
            .fetch_all(p).await)?;
        for (name,) in pending {
            match name.as_str() {
                "mention_address_keys" => self.fill_address_keys().await?,
                other => {
                    tracing::warn!(upgrade = other, "Unknown store upgrade left pending");
                }
            }
        }
        Ok(())
    }

    /// `mentions.address_key` for the mentions stored before it existed.
    async fn fill_address_keys(&self) -> Result<(), StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        let rows: Vec<(i64, String, String)> = on_tx!(tx, t => sqlx::query_as(
            "SELECT id, address_line1, postcode FROM mentions \
             WHERE address_line1 IS NOT NULL AND postcode IS NOT NULL")
            .fetch_all(&mut **t).await)?;
        let keys: Vec<(i64, String)> = rows
            .into_iter()
            .filter_map(|(id, line, postcode)| {
                written_address_key(Some(&line), Some(&postcode)).map(|k| (id, k))
            })
            .collect();
        for chunk in keys.chunks(CHUNK) {
            on_tx!(tx, t => {
                let mut qb = QueryBuilder::new("WITH v (id, k) AS (");
                qb.push_values(chunk, |mut b, (id, key)| {
                    b.push_bind(*id).push_bind(key.as_str());
                });
                qb.push(") UPDATE mentions SET address_key = v.k FROM v WHERE mentions.id = v.id");
                qb.build().execute(&mut **t).await.map(|_| ())
            })?;
        }
        on_tx!(tx, t => sqlx::query("DELETE FROM store_upgrades WHERE name = 'mention_address_keys'")
            .execute(&mut **t).await.map(|_| ()))?;
        tx.commit().await?;
        tracing::info!(
            mentions = keys.len(),
            "Kept the address keys of earlier mentions"
        );
        Ok(())
    }
}

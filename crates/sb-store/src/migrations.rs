//! The two migration trees, embedded. Same versions and names in both (tested).

use sb_sql::Backend;
use sb_sql::migrate::Migration;

macro_rules! tree {
    ($dir:literal: $(($version:literal, $name:literal)),* $(,)?) => {
        &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/", $dir, "/", $name, ".sql")),
        }),*]
    };
}

pub static SQLITE: &[Migration] = tree!("sqlite": (1, "0001_foundation"), (2, "0002_inbox"), (3, "0003_live_events"), (4, "0004_customer_merges"), (5, "0005_presence"), (6, "0006_widget"), (7, "0007_inbound_batches"), (8, "0008_templates"), (9, "0009_consents"), (10, "0010_outbound_rules"), (11, "0011_mailbox_sync"), (12, "0012_inventory"), (13, "0013_carts"), (14, "0014_orders"), (15, "0015_returns"), (16, "0016_customer_data"), (17, "0017_canned_responses"), (18, "0018_fulfillments_transfers"), (19, "0019_inbound_replay_by_key"), (20, "0020_location_routing_rank"), (21, "0021_signed_tokens"), (22, "0022_message_idempotency"), (23, "0023_idempotent_requests"), (24, "0024_webhooks"), (25, "0025_journeys"), (26, "0026_links"));
pub static POSTGRES: &[Migration] = tree!("postgres": (1, "0001_foundation"), (2, "0002_inbox"), (3, "0003_live_events"), (4, "0004_customer_merges"), (5, "0005_presence"), (6, "0006_widget"), (7, "0007_inbound_batches"), (8, "0008_templates"), (9, "0009_consents"), (10, "0010_outbound_rules"), (11, "0011_mailbox_sync"), (12, "0012_inventory"), (13, "0013_carts"), (14, "0014_orders"), (15, "0015_returns"), (16, "0016_customer_data"), (17, "0017_canned_responses"), (18, "0018_fulfillments_transfers"), (19, "0019_inbound_replay_by_key"), (20, "0020_location_routing_rank"), (21, "0021_signed_tokens"), (22, "0022_message_idempotency"), (23, "0023_idempotent_requests"), (24, "0024_webhooks"), (25, "0025_journeys"), (26, "0026_links"));

pub fn for_backend(backend: Backend) -> &'static [Migration] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_migration_list() {
        let list = |ms: &[Migration]| ms.iter().map(|m| (m.version, m.name)).collect::<Vec<_>>();
        assert_eq!(list(SQLITE), list(POSTGRES));
        let versions: Vec<i64> = SQLITE.iter().map(|m| m.version).collect();
        let mut sorted = versions.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(versions, sorted, "versions strictly increase");
    }

    #[test]
    fn migration_directories_hold_exactly_the_listed_files() {
        for (dir, list) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/").to_owned() + dir;
            let mut files: Vec<String> = std::fs::read_dir(&path)
                .expect("migration directory exists")
                .map(|e| e.expect("readable entry").file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let listed: Vec<String> = list.iter().map(|m| format!("{}.sql", m.name)).collect();
            assert_eq!(
                files, listed,
                "every file in migrations/{dir} is listed in migrations.rs"
            );
        }
    }
}

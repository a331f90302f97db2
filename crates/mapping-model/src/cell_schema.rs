//! Diesel table definitions for the columns of a Nova *cell* database that
//! the cell-v2 tools read and write: `instances`, `compute_nodes` and
//! `services`, with Nova's exact names (docs/cellv2.md). Only the columns used here
//! are declared; the tables have more (see `crates/mapping-testkit/nova-cell-schema/`).
//!
//! Soft delete in a cell database: `deleted = 0` for a live row,
//! `deleted = id` for a deleted one; a soft-deleted (restorable) instance has
//! `vm_state = 'soft-delete'` and `deleted = 0`.

diesel::table! {
    /// `instances`: one row per instance of the cell, deleted ones included.
    instances (id) {
        /// Creation time (naive UTC); the order of `map_instances`.
        created_at -> Nullable<Timestamp>,
        /// Last update time (naive UTC).
        updated_at -> Nullable<Timestamp>,
        /// Deletion time (naive UTC), set with `deleted`.
        deleted_at -> Nullable<Timestamp>,
        /// Surrogate key; the tie-breaker of the `map_instances` order.
        id -> Integer,
        /// Owning user.
        user_id -> Nullable<Varchar>,
        /// Owning project.
        project_id -> Nullable<Varchar>,
        /// VM state; `soft-delete` for a soft-deleted instance.
        vm_state -> Nullable<Varchar>,
        /// Compute host.
        host -> Nullable<Varchar>,
        /// Hypervisor node.
        node -> Nullable<Varchar>,
        /// Display name.
        display_name -> Nullable<Varchar>,
        /// The instance's uuid (unique).
        uuid -> Varchar,
        /// 0 while live, the row's id once deleted.
        deleted -> Nullable<Integer>,
    }
}

diesel::table! {
    /// `compute_nodes`: one row per hypervisor node of the cell.
    compute_nodes (id) {
        /// Creation time (naive UTC).
        created_at -> Nullable<Timestamp>,
        /// Last update time (naive UTC).
        updated_at -> Nullable<Timestamp>,
        /// Deletion time (naive UTC).
        deleted_at -> Nullable<Timestamp>,
        /// Surrogate key.
        id -> Integer,
        /// The `services` row of the node's nova-compute.
        service_id -> Nullable<Integer>,
        /// vCPUs (required by the schema).
        vcpus -> Integer,
        /// Memory in MiB (required).
        memory_mb -> Integer,
        /// Local disk in GiB (required).
        local_gb -> Integer,
        /// vCPUs used (required).
        vcpus_used -> Integer,
        /// Memory used (required).
        memory_mb_used -> Integer,
        /// Disk used (required).
        local_gb_used -> Integer,
        /// Hypervisor type (required).
        hypervisor_type -> Text,
        /// Hypervisor version (required).
        hypervisor_version -> Integer,
        /// CPU description, JSON (required).
        cpu_info -> Text,
        /// Hypervisor host name of the node.
        hypervisor_hostname -> Nullable<Varchar>,
        /// 0 while live, the row's id once deleted.
        deleted -> Nullable<Integer>,
        /// Compute host (the key of `host_mappings`).
        host -> Nullable<Varchar>,
        /// The node's uuid.
        uuid -> Nullable<Varchar>,
        /// 1 once `discover_hosts` mapped the host, else 0.
        mapped -> Nullable<Integer>,
    }
}

diesel::table! {
    /// `services`: one row per service (binary) per host of the cell.
    services (id) {
        /// Creation time (naive UTC).
        created_at -> Nullable<Timestamp>,
        /// Last update time (naive UTC).
        updated_at -> Nullable<Timestamp>,
        /// Deletion time (naive UTC).
        deleted_at -> Nullable<Timestamp>,
        /// Surrogate key.
        id -> Integer,
        /// Host the service runs on.
        host -> Nullable<Varchar>,
        /// The binary, e.g. `nova-compute`.
        binary -> Nullable<Varchar>,
        /// The RPC topic, e.g. `compute`.
        topic -> Nullable<Varchar>,
        /// Heartbeats so far (required).
        report_count -> Integer,
        /// Whether the service is disabled.
        disabled -> Nullable<Bool>,
        /// 0 while live, the row's id once deleted.
        deleted -> Nullable<Integer>,
        /// The service's uuid.
        uuid -> Nullable<Varchar>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(instances, compute_nodes, services);

//! Diesel table definitions for the three mapping tables of `nova_api`,
//! with the exact names Nova uses (docs/schema.md).

diesel::table! {
    /// `cell_mappings`: one row per cell (database + message queue).
    cell_mappings (id) {
        /// Creation time (naive UTC), set by the library.
        created_at -> Nullable<Timestamp>,
        /// Last update time (naive UTC), set by the library.
        updated_at -> Nullable<Timestamp>,
        /// Surrogate key.
        id -> Integer,
        /// The cell's uuid (unique).
        uuid -> Varchar,
        /// Human-readable name.
        name -> Nullable<Varchar>,
        /// Message-queue URL, possibly a template.
        transport_url -> Nullable<Text>,
        /// Database URL, possibly a template.
        database_connection -> Nullable<Text>,
        /// Whether the scheduler skips this cell.
        disabled -> Nullable<Bool>,
    }
}

diesel::table! {
    /// `instance_mappings`: instance uuid → cell, project, user.
    instance_mappings (id) {
        /// Creation time (naive UTC), set by the library.
        created_at -> Nullable<Timestamp>,
        /// Last update time (naive UTC), set by the library.
        updated_at -> Nullable<Timestamp>,
        /// Surrogate key.
        id -> Integer,
        /// The instance's uuid (unique).
        instance_uuid -> Varchar,
        /// The cell, or NULL while unscheduled.
        cell_id -> Nullable<Integer>,
        /// Owning project.
        project_id -> Varchar,
        /// Whether the instance is queued for deletion (NULL in old rows).
        queued_for_delete -> Nullable<Bool>,
        /// Owning user (NULL in rows from old releases).
        user_id -> Nullable<Varchar>,
    }
}

diesel::table! {
    /// `host_mappings`: compute host → cell.
    host_mappings (id) {
        /// Creation time (naive UTC), set by the library.
        created_at -> Nullable<Timestamp>,
        /// Last update time (naive UTC), set by the library.
        updated_at -> Nullable<Timestamp>,
        /// Surrogate key.
        id -> Integer,
        /// The cell the host belongs to.
        cell_id -> Integer,
        /// The compute host name (unique).
        host -> Varchar,
    }
}

diesel::joinable!(instance_mappings -> cell_mappings (cell_id));
diesel::joinable!(host_mappings -> cell_mappings (cell_id));
diesel::allow_tables_to_appear_in_same_query!(cell_mappings, instance_mappings, host_mappings);

//! URL templates in cell mappings (docs/tables.md), through the database: stored
//! raw, expanded on load against the defaults of `Options`.

mod support;

use cell_mappings::{
    CellMapping, CellMappingUpdate, Database, NewCellMapping, NewHostMapping, NewInstanceMapping,
    Options,
};
use mapping_testkit::{backend_tests, uuid, TestDb};
use support::string;

const MQ_DEFAULT: &str = "rabbit://nova:s3cret@mq.example.org:5672/nova_vhost?ssl=1#frag";
const DB_DEFAULT: &str = "mysql+pymysql://root:dbpw@db.example.org:3306/nova_api?charset=utf8";

const MQ_TEMPLATE: &str = "rabbit://{username}:{password}@{hostname}:{port}/{path}";
const MQ_EXPANDED: &str = "rabbit://nova:s3cret@mq.example.org:5672/nova_vhost";
const DB_TEMPLATE: &str = "{scheme}://{username}:{password}@{hostname}:{port}/nova_cell1?{query}";
const DB_EXPANDED: &str = "mysql+pymysql://root:dbpw@db.example.org:3306/nova_cell1?charset=utf8";

/// A second handle on the test database that expands templates.
fn expanding(t: &TestDb, mq: Option<&str>, db: Option<&str>) -> Database {
    let mut options = Options::default();
    options.default_transport_url = mq.map(str::to_owned);
    options.default_database_connection = db.map(str::to_owned);
    t.reopen(options)
}

/// What is stored in a column of the cell, read by raw SQL.
fn stored(t: &TestDb, cell_uuid: impl std::fmt::Display, column: &str) -> Option<String> {
    string(
        t,
        &format!("SELECT {column} AS v FROM cell_mappings WHERE uuid = '{cell_uuid}'"),
    )
}

fn template_cell(t: &TestDb, mq: &str, db: &str) -> CellMapping {
    t.cells()
        .create(NewCellMapping::new(uuid(), mq, db).name("templated"))
        .unwrap()
}

backend_tests! {
    fn loads_expanded_everywhere_a_cell_is_read(t) {
        let cell = template_cell(t, MQ_TEMPLATE, DB_TEMPLATE);
        let im = t.instance_mappings().create(NewInstanceMapping::new(uuid(), "p", "u").cell(&cell)).unwrap();
        let hm = t.host_mappings().create(NewHostMapping::new("compute-1", &cell)).unwrap();
        let db = expanding(t, Some(MQ_DEFAULT), Some(DB_DEFAULT));
        let check = |c: &CellMapping, what: &str| {
            assert_eq!(c.transport_url, MQ_EXPANDED, "{what}");
            assert_eq!(c.database_connection, DB_EXPANDED, "{what}");
            assert_eq!(c.uuid, cell.uuid, "{what}");
        };
        check(&db.cells().get_by_uuid(cell.uuid).unwrap(), "get_by_uuid");
        check(&db.cells().get_all().unwrap()[0], "get_all");
        check(&db.cells().get_by_disabled(false).unwrap()[0], "get_by_disabled");
        check(&db.cells().get_by_project_id("p").unwrap()[0], "cells get_by_project_id");
        let got = db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        check(got.cell_mapping.as_ref().unwrap(), "instance get_by_instance_uuid");
        for im in db.instance_mappings().get_by_project_id("p").unwrap() {
            check(im.cell_mapping.as_ref().unwrap(), "instance get_by_project_id");
        }
        for im in db.instance_mappings().get_not_deleted_by_cell_and_project(cell.uuid, None, None).unwrap() {
            check(im.cell_mapping.as_ref().unwrap(), "get_not_deleted_by_cell_and_project");
        }
        check(&db.host_mappings().get_by_host(&hm.host).unwrap().cell_mapping, "get_by_host");
        check(&db.host_mappings().get_all().unwrap()[0].cell_mapping, "host get_all");
        // The object returned by create on an expanding handle is expanded too.
        let created = db.cells().create(NewCellMapping::new(uuid(), MQ_TEMPLATE, DB_TEMPLATE)).unwrap();
        assert_eq!(created.transport_url, MQ_EXPANDED);
        assert_eq!(created.database_connection, DB_EXPANDED);
    }

    fn each_variable_expands(t) {
        let mq = "{scheme}|{username}|{password}|{hostname}|{port}|{path}|{query}|{fragment}";
        let cell = template_cell(t, mq, "{scheme}://{hostname}/{path}");
        let db = expanding(t, Some(MQ_DEFAULT), Some(DB_DEFAULT));
        let got = db.cells().get_by_uuid(cell.uuid).unwrap();
        assert_eq!(got.transport_url, "rabbit|nova|s3cret|mq.example.org|5672|nova_vhost|ssl=1|frag");
        assert_eq!(got.database_connection, "mysql+pymysql://db.example.org/nova_api");
        // Literal braces, and `}}` even where no `{` appears, as Python formats them.
        let braces = template_cell(t, "rabbit://{{not-a-field}}@{hostname}/", "sqlite:///a}}b");
        let got = db.cells().get_by_uuid(braces.uuid).unwrap();
        assert_eq!(got.transport_url, "rabbit://{not-a-field}@mq.example.org/");
        assert_eq!(got.database_connection, "sqlite:///a}b");
        // A plain URL comes back as it is.
        let plain = template_cell(t, "rabbit://h/", "sqlite:///x");
        let got = db.cells().get_by_uuid(plain.uuid).unwrap();
        assert_eq!((got.transport_url.as_str(), got.database_connection.as_str()), ("rabbit://h/", "sqlite:///x"));
    }

    fn multi_host_numbered_form(t) {
        let default = "rabbit://u1:p1@h1:5672,u2:p2@h2:5673/vhost";
        let all = "rabbit://{username1}:{password1}@{hostname1}:{port1},{username2}:{password2}@{hostname2}:{port2}/{path}";
        let second = "rabbit://{username2}:{password2}@{hostname2}:{port2}/cell2";
        let a = template_cell(t, all, "sqlite://");
        let b = template_cell(t, second, "sqlite://");
        let db = expanding(t, Some(default), None);
        assert_eq!(db.cells().get_by_uuid(a.uuid).unwrap().transport_url, default);
        assert_eq!(db.cells().get_by_uuid(b.uuid).unwrap().transport_url, "rabbit://u2:p2@h2:5673/cell2");
    }

    fn without_a_default_the_template_is_returned(t) {
        let cell = template_cell(t, MQ_TEMPLATE, DB_TEMPLATE);
        let got = t.cells().get_by_uuid(cell.uuid).unwrap();
        assert_eq!(got.transport_url, MQ_TEMPLATE);
        assert_eq!(got.database_connection, DB_TEMPLATE);
        assert_eq!(cell.transport_url, MQ_TEMPLATE, "create returns it unexpanded too");
        // Each default governs its own column only.
        let mq_only = expanding(t, Some(MQ_DEFAULT), None);
        let got = mq_only.cells().get_by_uuid(cell.uuid).unwrap();
        assert_eq!(got.transport_url, MQ_EXPANDED);
        assert_eq!(got.database_connection, DB_TEMPLATE);
        let db_only = expanding(t, None, Some(DB_DEFAULT));
        let got = db_only.cells().get_by_uuid(cell.uuid).unwrap();
        assert_eq!(got.transport_url, MQ_TEMPLATE);
        assert_eq!(got.database_connection, DB_EXPANDED);
    }

    fn a_broken_template_is_returned_unchanged(t) {
        let broken = ["rabbit://{", "rabbit://{unknown}@h/", "rabbit://{0}/", "rabbit://}/", "rabbit://{port:>5}/"];
        let cells: Vec<CellMapping> = broken.iter().map(|b| template_cell(t, b, b)).collect();
        let db = expanding(t, Some(MQ_DEFAULT), Some(DB_DEFAULT));
        for (b, cell) in broken.iter().zip(&cells) {
            let got = db.cells().get_by_uuid(cell.uuid).unwrap();
            assert_eq!(got.transport_url, *b);
            assert_eq!(got.database_connection, *b);
        }
        let all = db.cells().get_all().unwrap();
        assert_eq!(all.len(), broken.len());
        for (b, c) in broken.iter().zip(&all) {
            assert_eq!(c.transport_url, *b);
        }
    }

    fn an_unparsable_default_leaves_the_template(t) {
        let cell = template_cell(t, MQ_TEMPLATE, DB_TEMPLATE);
        let db = expanding(t, Some("rabbit://u:p@h:notaport/"), Some("mysql://u:p@[::1/db"));
        let got = db.cells().get_by_uuid(cell.uuid).unwrap();
        assert_eq!(got.transport_url, MQ_TEMPLATE);
        assert_eq!(got.database_connection, DB_TEMPLATE);
    }

    fn the_raw_template_stays_stored(t) {
        let db = expanding(t, Some(MQ_DEFAULT), Some(DB_DEFAULT));
        let mut cell = db.cells().create(NewCellMapping::new(uuid(), MQ_TEMPLATE, DB_TEMPLATE)).unwrap();
        assert_eq!(cell.transport_url, MQ_EXPANDED);
        assert_eq!(stored(t, cell.uuid, "transport_url").as_deref(), Some(MQ_TEMPLATE));
        assert_eq!(stored(t, cell.uuid, "database_connection").as_deref(), Some(DB_TEMPLATE));

        // Saving another field does not write the expanded values back.
        cell = db.cells().save(&cell, &CellMappingUpdate::new().disabled(true).name(Some("renamed"))).unwrap();
        assert_eq!(cell.transport_url, MQ_EXPANDED, "the object stays expanded");
        assert_eq!(stored(t, cell.uuid, "transport_url").as_deref(), Some(MQ_TEMPLATE));
        assert_eq!(stored(t, cell.uuid, "database_connection").as_deref(), Some(DB_TEMPLATE));
        let raw = t.cells().get_by_uuid(cell.uuid).unwrap();
        assert_eq!(raw.transport_url, MQ_TEMPLATE);
        assert!(raw.disabled);

        // Saving a new template stores it raw and shows it expanded.
        let new_mq = "rabbit://{username}:{password}@{hostname}:{port}/cell1";
        cell = db.cells().save(&cell, &CellMappingUpdate::new().transport_url(new_mq)).unwrap();
        assert_eq!(cell.transport_url, "rabbit://nova:s3cret@mq.example.org:5672/cell1");
        assert_eq!(stored(t, cell.uuid, "transport_url").as_deref(), Some(new_mq));
        assert_eq!(db.cells().get_by_uuid(cell.uuid).unwrap(), cell);
    }
}

//! No password in any `Debug` or `Display` of a public type that can hold a
//! URL: a password is planted in every URL position (user info, a second
//! host of a multi-host URL, percent-encoded, a sensitive query key, a
//! template default) of every URL field, and each value's `Debug` (plain
//! and `{:#?}`) and, where it has one, `Display` and source chain are
//! searched for it.

mod common;

use std::time::{Duration, SystemTime};

use mapping_diesel::{ConnectionUrl, Database, Options};
use mapping_model::{
    CellMapping, CellMappingUpdate, HostMapping, HostMappingUpdate, InstanceMapping,
    InstanceMappingUpdate, NewCellMapping, NewHostMapping, NewInstanceMapping,
};
use mapping_router::{CellResult, CellState, Route, Router, RouterError, RouterOptions};
use mapping_testkit::{BackendKind, TestDb};

const SECRET: &str = "Pw7-planted";

/// URLs with the secret in each position a URL can hold one.
fn planted() -> Vec<String> {
    vec![
        format!("mysql+pymysql://nova:{SECRET}@db.example/nova_cell1?charset=utf8"),
        format!("postgresql+psycopg2://nova:{SECRET}@db.example:5432/nova_cell1"),
        format!("rabbit://nova:one@mq1:5672,nova:{SECRET}@mq2:5672/cell1"),
        format!("mysql://nova:{}@db/x", SECRET.replace('-', "%2D")),
        format!("mysql://nova@db/x?password={SECRET}&charset=utf8"),
        format!("sqlite:////var/lib/nova/x.sqlite?secret_key={SECRET}"),
        format!("nova:{SECRET}@db"),
        format!("mysql://nova:{SECRET}/with@odd@db/x"),
    ]
}

fn assert_clean(what: &str, shown: &str) {
    let encoded = SECRET.replace('-', "%2D");
    assert!(
        !shown.contains(SECRET) && !shown.contains(&encoded),
        "{what} shows the password: {shown}"
    );
}

fn debug_clean<T: std::fmt::Debug>(what: &str, value: &T) {
    assert_clean(what, &format!("{value:?}"));
    assert_clean(what, &format!("{value:#?}"));
}

fn error_clean(what: &str, e: &(dyn std::error::Error + 'static)) {
    assert_clean(what, &format!("{e} {e:?} {e:#?}"));
    let mut source = e.source();
    while let Some(s) = source {
        assert_clean(what, &format!("{s} {s:?}"));
        source = s.source();
    }
}

fn cell(url: &str) -> CellMapping {
    CellMapping {
        id: 1,
        uuid: uuid::Uuid::new_v4(),
        name: Some("cell1".into()),
        transport_url: url.to_owned(),
        database_connection: url.to_owned(),
        disabled: false,
        created_at: None,
        updated_at: None,
    }
}

#[test]
fn the_model_types_hide_passwords() {
    for url in planted() {
        let c = cell(&url);
        debug_clean("CellMapping", &c);
        debug_clean("NewCellMapping", &NewCellMapping::new("u", &url, &url));
        debug_clean(
            "CellMappingUpdate",
            &CellMappingUpdate::new()
                .transport_url(&url)
                .database_connection(&url),
        );
        let im = InstanceMapping {
            id: 1,
            instance_uuid: mapping_testkit::uuid().as_str().into(),
            cell_mapping: Some(c.clone()),
            project_id: "p".into(),
            user_id: None,
            queued_for_delete: false,
            created_at: None,
            updated_at: None,
        };
        debug_clean("InstanceMapping", &im);
        debug_clean(
            "NewInstanceMapping",
            &NewInstanceMapping::new(mapping_testkit::uuid(), "p", "u").cell(&c),
        );
        debug_clean(
            "InstanceMappingUpdate",
            &InstanceMappingUpdate::new().cell(Some(&c)),
        );
        let hm = HostMapping {
            id: 1,
            host: "h".into(),
            cell_mapping: c.clone(),
            created_at: None,
            updated_at: None,
        };
        debug_clean("HostMapping", &hm);
        debug_clean("NewHostMapping", &NewHostMapping::new("h", &c));
        debug_clean(
            "HostMappingUpdate",
            &HostMappingUpdate {
                cell_mapping: Some(c.clone()),
                ..HostMappingUpdate::new()
            },
        );
    }
}

#[test]
fn options_hide_passwords() {
    for url in planted() {
        debug_clean(
            "Options",
            &Options::default()
                .default_transport_url(&url)
                .default_database_connection(&url),
        );
        debug_clean(
            "RouterOptions",
            &RouterOptions::default().default_database_connection(&url),
        );
    }
}

#[test]
fn connection_urls_and_their_errors_hide_passwords() {
    for url in planted() {
        match ConnectionUrl::parse(&url) {
            Ok(parsed) => {
                debug_clean("ConnectionUrl", &parsed);
                assert_clean("ConnectionUrl::redacted", &parsed.redacted());
            }
            Err(e) => error_clean("UrlError", &e),
        }
        // Opening it: a URL error, or a connection error (nothing listens).
        if let Err(e) = Database::open_with(
            &url,
            Options::default()
                .connection_timeout(Duration::from_millis(300))
                .connect_timeout(Duration::from_millis(300)),
        ) {
            error_clean("Database::open error", &e);
        }
    }
}

#[test]
fn router_values_hide_passwords() {
    let api = TestDb::new(BackendKind::Sqlite);
    let db = common::cell_db(BackendKind::Sqlite, &["x"]);
    let router = Router::new(
        api.db.clone(),
        RouterOptions::default().connect_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    debug_clean("Router", &router);
    // A cell whose transport URL holds the secret, routed to: Route and
    // CellTarget show the cell.
    for url in planted() {
        let c = api
            .cells()
            .create(NewCellMapping::new(
                mapping_testkit::uuid(),
                &url,
                db.db.url(),
            ))
            .unwrap();
        let instance = mapping_testkit::uuid();
        common::map_instance(&api, &instance, &c);
        let route = router.route(instance.parse().unwrap()).unwrap();
        assert!(matches!(route, Route::Cell(_)));
        debug_clean("Route", &route);
    }
    // Cells that cannot be reached, or whose URL is refused, with the secret
    // in their database URL: every result, error and health record.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut urls = planted();
    urls.push(format!(
        "postgresql://nova:{SECRET}@127.0.0.1:{closed}/nova_cell1"
    ));
    urls.push(format!(
        "mysql://nova:{SECRET}@127.0.0.1:{closed}/nova_cell1"
    ));
    urls.push(format!("postgres://nova:{SECRET}@[::1:{closed}/nova"));
    for url in &urls {
        let c = common::register(&api, "sick", url);
        for _ in 0..2 {
            let r = router.scatter_gather(
                std::slice::from_ref(&c),
                Duration::from_secs(5),
                |_, conn| common::batch(conn, "SELECT 1"),
            );
            debug_clean("CellResults", &r);
            if let Some(e) = r[&c.uuid].error() {
                error_clean("RouterError", e);
            }
            if let Err(e) = router.target_cell(&c, |conn| common::batch(conn, "SELECT 1")) {
                error_clean("RouterError (target_cell)", &e);
            }
        }
    }
    debug_clean("cell_health", &router.cell_health());
    let unavailable: CellResult<()> = CellResult::Unavailable {
        since: SystemTime::now(),
        last_error: Some("x".into()),
    };
    debug_clean("CellResult", &unavailable);
    debug_clean("CellState", &CellState::Up);
    let e = RouterError::InvalidOptions {
        field: "f",
        reason: "r".into(),
    };
    error_clean("RouterError", &e);
}

//! Unit tests of connection-URL parsing, rendering and redaction.

use super::*;

fn ok(url: &str) -> ConnectionUrl {
    match ConnectionUrl::parse(url) {
        Ok(parsed) => parsed,
        Err(err) => panic!("{url:?} was refused: {err}"),
    }
}

fn err(url: &str) -> UrlError {
    match ConnectionUrl::parse(url) {
        Ok(parsed) => panic!("{url:?} was accepted as {parsed:?}"),
        Err(err) => err,
    }
}

fn is_malformed(url: &str) -> bool {
    matches!(err(url), UrlError::Malformed { .. })
}

#[test]
fn sqlite_memory_forms() {
    for url in [
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite::memory:",
        ":memory:",
        "SQLite://",
        "sqlite+pysqlite://",
        "sqlite+pysqlite:///:memory:",
        "sqlite://?check_same_thread=false",
        "sqlite:///:memory:?cache=shared",
    ] {
        let parsed = ok(url);
        assert_eq!(parsed.backend(), BackendKind::Sqlite, "{url}");
        assert!(parsed.is_sqlite_memory(), "{url}");
        assert_eq!(parsed.diesel_url(), ":memory:", "{url}");
        assert_eq!(parsed.database(), None, "{url}");
        assert_eq!(parsed.to_string(), "sqlite:///:memory:", "{url}");
    }
}

#[test]
fn sqlite_file_forms() {
    let cases = [
        ("sqlite:////absolute/path.db", "/absolute/path.db"),
        ("sqlite:///relative/path.db", "relative/path.db"),
        (
            "sqlite+pysqlite:////var/lib/nova/nova_api.db",
            "/var/lib/nova/nova_api.db",
        ),
        ("sqlite:///rel.db?check_same_thread=false", "rel.db"),
        ("/tmp/x.db", "/tmp/x.db"),
        ("./x.db", "./x.db"),
        ("x.db", "x.db"),
        ("C:\\data\\x.db", "C:\\data\\x.db"),
        ("c:/data/x.db", "c:/data/x.db"),
        ("sqlite:///file:x.db", "./file:x.db"),
    ];
    for (url, path) in cases {
        let parsed = ok(url);
        assert_eq!(parsed.backend(), BackendKind::Sqlite, "{url}");
        assert!(!parsed.is_sqlite_memory(), "{url}");
        assert_eq!(parsed.diesel_url(), path, "{url}");
        assert!(parsed.database().is_some(), "{url}");
        // The displayed form parses back to the same database.
        assert_eq!(ok(&parsed.to_string()).diesel_url(), path, "{url}");
    }
    assert_eq!(
        ok("sqlite:///relative/path.db").database(),
        Some("relative/path.db")
    );
    assert_eq!(ok("sqlite:////abs.db").to_string(), "sqlite:////abs.db");
}

#[test]
fn sqlite_uri_filenames_pass_through() {
    let parsed = ok("file:test.db?mode=ro");
    assert_eq!(parsed.backend(), BackendKind::Sqlite);
    assert_eq!(parsed.diesel_url(), "file:test.db?mode=ro");
    assert_eq!(parsed.database(), Some("test.db"));
    assert!(!parsed.is_sqlite_memory());

    let shared = ok("file:t1?mode=memory&cache=shared");
    assert!(shared.is_sqlite_memory());
    assert_eq!(shared.database(), None);
    assert!(ok("file::memory:").is_sqlite_memory());
}

#[test]
fn sqlite_refusals() {
    assert!(is_malformed("sqlite:relative.db"));
    assert!(is_malformed("sqlite:/x.db"));
    assert!(is_malformed("sqlite://host/x.db"));
    assert!(is_malformed("sqlite+pysqlcipher://:s3cr3t@/x.db"));
    assert_eq!(err(""), UrlError::Empty);
    assert_eq!(err("  \n"), UrlError::Empty);
    assert!(is_malformed("x\0.db"));
    assert!(is_malformed("my sql://h/db"));
}

#[test]
fn sqlite_with_database_is_unsupported() {
    let result = ok("sqlite://").with_database("x");
    assert!(matches!(
        result,
        Err(UrlError::Unsupported {
            backend: BackendKind::Sqlite,
            ..
        })
    ));
}

#[test]
fn postgres_forms() {
    for scheme in [
        "postgres",
        "postgresql",
        "postgresql+psycopg2",
        "postgresql+psycopg",
        "postgresql+pg8000",
        "PostgreSQL",
    ] {
        let url = format!("{scheme}://nova:pw@db.example:5432/nova_api?sslmode=require");
        let parsed = ok(&url);
        assert_eq!(parsed.backend(), BackendKind::Postgres, "{url}");
        assert_eq!(
            parsed.diesel_url(),
            "postgres://nova:pw@db.example:5432/nova_api?sslmode=require"
        );
        assert_eq!(parsed.database(), Some("nova_api"));
        assert!(!parsed.is_sqlite_memory());
    }
}

#[test]
fn postgres_keeps_query_and_allows_socket_and_multi_host() {
    let parsed = ok("postgresql+psycopg2://u@/nova?host=/var/run/postgresql&client_encoding=utf8");
    assert_eq!(
        parsed.diesel_url(),
        "postgres://u@/nova?host=/var/run/postgresql&client_encoding=utf8"
    );
    assert_eq!(ok("postgres:///db").database(), Some("db"));
    assert_eq!(ok("postgres://").diesel_url(), "postgres://");
    assert_eq!(ok("postgres://h").database(), None);
    assert_eq!(ok("postgres://h/").database(), None);
    let multi = ok("postgresql://h1:5432,h2,[::1]:5433/db");
    assert_eq!(multi.diesel_url(), "postgres://h1:5432,h2,[::1]:5433/db");
    assert_eq!(ok("postgres://h/my%20db").database(), Some("my db"));
}

#[test]
fn mysql_forms() {
    for scheme in [
        "mysql",
        "mysql+pymysql",
        "mysql+mysqldb",
        "mysql+mysqlconnector",
        "mariadb",
        "mariadb+pymysql",
        "MySQL",
    ] {
        let url = format!("{scheme}://nova:pw@db.example:3306/nova_api");
        let parsed = ok(&url);
        assert_eq!(parsed.backend(), BackendKind::Mysql, "{url}");
        assert_eq!(
            parsed.diesel_url(),
            "mysql://nova:pw@db.example:3306/nova_api"
        );
        assert_eq!(parsed.database(), Some("nova_api"));
    }
}

#[test]
fn mysql_query_keys_are_filtered() {
    let parsed = ok("mysql+pymysql://u:pw@h/nova?charset=utf8mb4&plugin=dbcounter&read_default_file=/etc/my.cnf&ssl_ca=/ca.pem&ssl_mode=VERIFY_CA&database=x&ssl_cert=/c&ssl_key=/k&ssl_capath=/d&connect_timeout=3");
    assert_eq!(
        parsed.diesel_url(),
        "mysql://u:pw@h/nova?ssl_ca=/ca.pem&ssl_mode=VERIFY_CA&ssl_cert=/c&ssl_key=/k&connect_timeout=3"
    );
    assert_eq!(
        ok("mysql://u@h/nova?charset=utf8").diesel_url(),
        "mysql://u@h/nova"
    );
    assert!(is_malformed("mysql://u@h/nova?ssl_mode=sometimes"));
}

#[test]
fn mysql_socket_without_host() {
    let parsed = ok("mysql+pymysql://nova:pw@/nova?unix_socket=/var/run/mysqld/mysqld.sock");
    assert_eq!(
        parsed.diesel_url(),
        "mysql://nova:pw@localhost/nova?unix_socket=/var/run/mysqld/mysqld.sock"
    );
    assert!(is_malformed("mysql://nova:pw@/nova"));
    assert!(is_malformed("mysql:///nova"));
    assert!(is_malformed("mysql://"));
}

#[test]
fn pymysql_reaches_localhost_over_tcp_as_pymysql_does() {
    for (url, diesel) in [
        (
            "mysql+pymysql://nova:pw@localhost:3307/nova?charset=utf8",
            "mysql://nova:pw@127.0.0.1:3307/nova",
        ),
        (
            "mysql+pymysql://nova@LocalHost/nova",
            "mysql://nova@127.0.0.1/nova",
        ),
        (
            "MariaDB+PyMySQL://nova@localhost:3308/x",
            "mysql://nova@127.0.0.1:3308/x",
        ),
        // A socket named in the URL is used, as PyMySQL uses it.
        (
            "mysql+pymysql://nova@localhost/nova?unix_socket=/run/mysqld/mysqld.sock",
            "mysql://nova@localhost/nova?unix_socket=/run/mysqld/mysqld.sock",
        ),
        // libmysqlclient's URLs keep its reading: localhost is the socket.
        (
            "mysql://nova@localhost:3307/nova",
            "mysql://nova@localhost:3307/nova",
        ),
        (
            "mysql+mysqldb://nova@localhost:3307/nova",
            "mysql://nova@localhost:3307/nova",
        ),
        // Other hosts are untouched.
        (
            "mysql+pymysql://nova@db.example:3307/nova",
            "mysql://nova@db.example:3307/nova",
        ),
        (
            "mysql+pymysql://nova@localhost.example/nova",
            "mysql://nova@localhost.example/nova",
        ),
    ] {
        assert_eq!(ok(url).diesel_url(), diesel, "{url}");
    }
}

#[test]
fn mysql_refusals() {
    assert!(is_malformed("mysql://u@h:abc/db"));
    assert!(is_malformed("mysql://u@h:65536/db"));
    assert!(is_malformed("mysql://u@h1,h2/db"));
    assert!(is_malformed("mysql://u@h/db/extra"));
    assert!(is_malformed("mysql://u@h/my db"));
    assert!(is_malformed("mysql://u@h/.."));
    assert!(is_malformed("mysql://u@h/%2E"));
    assert!(is_malformed("mysql://u@h\u{e9}/db"));
    assert!(is_malformed("mysql://u@[nope]/db"));
    assert!(is_malformed("mysql://u@h[/db"));
    assert!(is_malformed("mysql:/u@h/db"));
    assert!(is_malformed("mysql:u@h/db"));
    assert_eq!(
        ok("mysql://u@[::1]:3306/db").diesel_url(),
        "mysql://u@[::1]:3306/db"
    );
    assert_eq!(ok("mysql://u@h:/db").diesel_url(), "mysql://u@h:/db");
}

#[test]
fn postgres_refusals() {
    assert!(is_malformed("postgres:/db"));
    assert!(is_malformed("postgresql:db"));
    assert!(is_malformed("postgres://h:port/db"));
    assert!(is_malformed("postgres://h:99999/db"));
    assert!(is_malformed("postgres://[::1/db"));
    assert!(is_malformed("postgres://h/db%zz"));
    assert!(is_malformed("postgres://h/db#frag"));
    assert!(is_malformed("postgres://h/d\tb"));
}

#[test]
fn unknown_schemes() {
    assert_eq!(
        err("oracle://scott:tiger@h/db"),
        UrlError::UnknownScheme {
            scheme: "oracle".to_owned()
        }
    );
    assert_eq!(
        err("postgresql+://h/db"),
        UrlError::UnknownScheme {
            scheme: "postgresql+".to_owned()
        }
    );
    assert!(matches!(err("http://h/"), UrlError::UnknownScheme { .. }));
}

#[test]
fn passwords_keep_their_escapes() {
    let parsed = ok("mysql+pymysql://nova:p%40ss@h/db");
    assert_eq!(parsed.diesel_url(), "mysql://nova:p%40ss@h/db");
    assert_eq!(parsed.redacted(), "mysql://nova:***@h/db");
    // A raw `@` in the password is escaped; the host follows the last `@`.
    let raw = ok("postgresql://nova:p@ss@h/db");
    assert_eq!(raw.diesel_url(), "postgres://nova:p%40ss@h/db");
    assert_eq!(raw.redacted(), "postgres://nova:***@h/db");
}

#[test]
fn redaction() {
    let parsed = ok("postgresql+psycopg2://nova:pw@h/db?sslmode=require");
    assert_eq!(
        parsed.redacted(),
        "postgres://nova:***@h/db?sslmode=require"
    );
    assert_eq!(parsed.to_string(), parsed.redacted());
    assert!(!format!("{parsed:?}").contains("pw@"));
    // No password: unchanged; empty password: nothing to hide.
    assert_eq!(ok("mysql://nova@h/db").redacted(), "mysql://nova@h/db");
    assert_eq!(ok("mysql://nova:@h/db").redacted(), "mysql://nova:@h/db");
    assert_eq!(ok("postgres://h/db").redacted(), "postgres://h/db");
    // Passwords in the query.
    assert_eq!(
        ok("postgres://nova@h/db?password=pw&sslmode=require").redacted(),
        "postgres://nova@h/db?password=***&sslmode=require"
    );
}

#[test]
fn with_database_rewrites_the_path() {
    let base = ok("mysql+pymysql://u:pw@h:3306/nova_api?charset=utf8&ssl_mode=required");
    let other = match base.with_database("nova_test_1") {
        Ok(other) => other,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        other.diesel_url(),
        "mysql://u:pw@h:3306/nova_test_1?ssl_mode=required"
    );
    assert_eq!(other.database(), Some("nova_test_1"));
    assert_eq!(other.backend(), BackendKind::Mysql);

    let pg = ok("postgres://u@h");
    let other = match pg.with_database("t-2") {
        Ok(other) => other,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(other.diesel_url(), "postgres://u@h/t-2");
    assert_eq!(other.redacted(), "postgres://u@h/t-2");

    for bad in ["", "a/b", "a b", "x'y", &"n".repeat(64)] {
        assert!(matches!(
            pg.with_database(bad),
            Err(UrlError::InvalidDatabaseName { .. })
        ));
    }
}

#[test]
fn from_str_and_equality() {
    let parsed: Result<ConnectionUrl, _> = "postgresql://u@h/db".parse();
    assert_eq!(parsed, Ok(ok("postgres://u@h/db")));
    let clone = ok("sqlite://").clone();
    assert_eq!(clone, ok(":memory:"));
}

#[test]
fn passwords_never_leak() {
    let secret = "s3cr3t";
    let erroring = [
        "postgres://nova:s3cr3t@h:port/db",
        "postgres://nova:s3cr3t@h:99999/db",
        "postgres://nova:s3cr3t@[::1/db",
        "postgres://nova:s3cr3t@h/db%zz",
        "postgres://nova:s3cr3t@h/db#x",
        "postgres:/nova:s3cr3t@h/db",
        "postgres:nova:s3cr3t@h/db",
        "postgres://nova:s3cr3t@h/d\tb",
        "postgres://nova:s3/cr3t@h/db",
        "postgres://nova:1234/s3cr3t@h/db",
        "postgres://nova:1234?s3cr3t@h/db",
        "postgres://nova:1234?x=s3cr3t@h/db",
        "postgres://nova:s3#cr3t@h/db",
        "postgres://nova:s3cr3t#@h/db",
        "postgres://h:x/db?password=s3cr3t",
        "postgres://h:x/db?sslpassword=s3cr3t",
        "mysql://nova:s3cr3t@h:abc/db",
        "mysql://nova:s3cr3t@h:65536/db",
        "mysql://nova:s3cr3t@/db",
        "mysql://nova:s3cr3t@h1,h2/db",
        "mysql://nova:s3cr3t@h/db/x",
        "mysql://nova:s3cr3t@h/d b",
        "mysql://nova:s3cr3t@h/db?ssl_mode=bad",
        "mysql://nova:s3cr3t@[zz]/db",
        "mysql:nova:s3cr3t@h/db",
        "mysql://nova:s3cr3t@h\0/db",
        "mysql+pymysql://nova:s3/cr3t@h/db",
        "oracle://nova:s3cr3t@h/db",
        "s3cr3t://x",
        "sqlite+pysqlcipher://:s3cr3t@/x.db",
        "sqlite://nova:s3cr3t@h/x.db",
        "sqlite:nova:s3cr3t@h",
        "my sql://nova:s3cr3t@h/db",
        "_pg://nova:s3cr3t@h/db",
    ];
    for url in erroring {
        let error = match ConnectionUrl::parse(url) {
            Ok(parsed) => panic!("{:?} was accepted", parsed),
            Err(error) => error,
        };
        if url.starts_with("s3cr3t:") {
            // The scheme itself is the only thing reported.
            assert_eq!(
                error,
                UrlError::UnknownScheme {
                    scheme: secret.to_owned()
                }
            );
            continue;
        }
        assert!(!error.to_string().contains(secret), "{url}: {error}");
        assert!(!format!("{error:?}").contains(secret), "{url}: {error:?}");
    }

    let accepted = [
        "postgres://nova:s3cr3t@h/db",
        "postgresql+psycopg2://nova:s3cr3t@h:5432/db?sslmode=require",
        "postgres://nova@h/db?password=s3cr3t",
        "postgres://nova:s3cr3t@h",
        "mysql+pymysql://nova:s3cr3t@h/db?charset=utf8",
        "mysql://nova:s3cr3t@/db?unix_socket=/s",
        "mysql://nova:s3cr3t@x@h/db",
        "mysql://nova:s3cr3t:x@h/db",
        "file:x.db?key=s3cr3t",
    ];
    for url in accepted {
        let parsed = ok(url);
        assert!(!parsed.redacted().contains(secret), "{url}");
        assert!(!parsed.to_string().contains(secret), "{url}");
        assert!(!format!("{parsed:?}").contains(secret), "{url}");
        assert!(!format!("{parsed:#?}").contains(secret), "{url}");
        if let Ok(other) = parsed.with_database("other") {
            assert!(!other.to_string().contains(secret), "{url}");
            assert!(other.diesel_url().contains(secret), "{url}");
        }
    }
}

#[test]
fn odd_strings_never_panic() {
    let punct: Vec<char> = (0x21u8..0x7f)
        .map(char::from)
        .filter(|c| c.is_ascii_punctuation())
        .collect();
    let prefixes = [
        "",
        "sqlite:",
        "sqlite://",
        "postgres://",
        "mysql://u:p@h",
        "file:",
    ];
    for &a in &punct {
        for &b in &punct {
            for &c in &punct {
                let tail: String = [a, b, c].iter().collect();
                for prefix in prefixes {
                    let text = format!("{prefix}{tail}");
                    if let Ok(parsed) = ConnectionUrl::parse(&text) {
                        let _ = parsed.with_database("x");
                        let _ = parsed.to_string();
                    }
                }
            }
        }
    }
    for text in [
        "é://x",
        "mysql://é@h/é",
        "postgres://h/%C3",
        "mysql://[",
        "postgres://]:",
    ] {
        let _ = ConnectionUrl::parse(text);
    }
}

/// Found by the `connection_url` fuzz target: a relative path starting with
/// `file:` in another case was handed over bare, so its rendered form read
/// back as a `file:` URI.
#[test]
fn fuzz_regression_file_prefix_in_any_case_is_a_path() {
    for url in ["sqlite:///filE:f", "sqlite:///FILE:x.db"] {
        let parsed = ok(url);
        let path = url.trim_start_matches("sqlite:///");
        assert_eq!(parsed.diesel_url(), format!("./{path}"), "{url}");
        assert_eq!(parsed.database(), Some(path), "{url}");
        assert_eq!(ok(&parsed.unredacted()), parsed, "{url}");
        assert_eq!(ok(&parsed.to_string()), parsed, "{url}");
    }
}

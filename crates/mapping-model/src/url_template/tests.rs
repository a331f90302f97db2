//! Unit tests of URL-template expansion.

use super::*;

const DB_DEFAULT: &str = "mysql+pymysql://root:secret@DB.Example:3306/nova_api?charset=utf8#frag";

fn expand(template: &str) -> String {
    expand_url_template(template, Some(DB_DEFAULT))
}

#[test]
fn each_variable() {
    assert_eq!(expand("{scheme}"), "mysql+pymysql");
    assert_eq!(expand("{username}"), "root");
    assert_eq!(expand("{password}"), "secret");
    assert_eq!(expand("{hostname}"), "db.example");
    assert_eq!(expand("{port}"), "3306");
    assert_eq!(expand("{path}"), "nova_api");
    assert_eq!(expand("{query}"), "charset=utf8");
    assert_eq!(expand("{fragment}"), "frag");
}

#[test]
fn realistic_database_template() {
    let got = expand_url_template(
        "mysql+pymysql://{username}:{password}@{hostname}/nova_cell1",
        Some("mysql+pymysql://root:secret@db.example:3306/nova_api?charset=utf8"),
    );
    assert_eq!(got, "mysql+pymysql://root:secret@db.example/nova_cell1");
    let got = expand_url_template(
        "{scheme}://{username}:{password}@{hostname}:{port}/nova_cell1?{query}",
        Some("mysql+pymysql://root:secret@db.example:3306/nova_api?charset=utf8"),
    );
    assert_eq!(
        got,
        "mysql+pymysql://root:secret@db.example:3306/nova_cell1?charset=utf8"
    );
}

#[test]
fn conversion_and_empty_spec() {
    assert_eq!(expand("{port!s}"), "3306");
    assert_eq!(expand("{port:}"), "3306");
    assert_eq!(expand("{username!s:}"), "root");
}

#[test]
fn multi_host_numbered_variables() {
    let default = "rabbit://u1:p1@h1:5672,u2:p2@H2:5673/vhost";
    let e = |t: &str| expand_url_template(t, Some(default));
    assert_eq!(e("{username1}"), "u1");
    assert_eq!(e("{password1}"), "p1");
    assert_eq!(e("{hostname1}"), "h1");
    assert_eq!(e("{port1}"), "5672");
    assert_eq!(e("{username2}"), "u2");
    assert_eq!(e("{password2}"), "p2");
    // Numbered host names are not lowercased.
    assert_eq!(e("{hostname2}"), "H2");
    assert_eq!(e("{port2}"), "5673");
    assert_eq!(e("{path}"), "vhost");
    assert_eq!(
        e("rabbit://{username1}:{password1}@{hostname1}:{port1},{username2}:{password2}@{hostname2}:{port2}/cell1"),
        "rabbit://u1:p1@h1:5672,u2:p2@H2:5673/cell1"
    );
    // No third host, no index zero, no leading zeros.
    assert_eq!(e("{hostname3}"), "{hostname3}");
    assert_eq!(e("{hostname0}"), "{hostname0}");
    assert_eq!(e("{hostname01}"), "{hostname01}");
    assert_eq!(
        e("{hostname99999999999999999999999}"),
        "{hostname99999999999999999999999}"
    );
}

#[test]
fn multi_host_plain_variables_follow_urlparse() {
    let default = "rabbit://u1:p1@h1:5672,u2:p2@H2:5673/vhost";
    let e = |t: &str| expand_url_template(t, Some(default));
    assert_eq!(e("{username}"), "u1");
    assert_eq!(e("{password}"), "p1@h1:5672,u2:p2");
    assert_eq!(e("{hostname}"), "h2");
    assert_eq!(e("{port}"), "5673");
}

#[test]
fn multi_host_entries_without_credentials_or_port() {
    let default = "rabbit://h1,[::1]:5673,[fe80::1],guest@h2:5672/";
    let e = |t: &str| expand_url_template(t, Some(default));
    assert_eq!(
        e("{username1}|{password1}|{hostname1}|{port1}"),
        "|None|h1|None"
    );
    assert_eq!(e("{hostname2}|{port2}"), "::1|:5673");
    assert_eq!(e("{hostname3}|{port3}"), "fe80::1|");
    assert_eq!(
        e("{username4}|{password4}|{hostname4}|{port4}"),
        "guest|None|h2|5672"
    );
}

#[test]
fn multi_host_entry_with_unclosed_bracket_fails() {
    // Passes urlparse's checks but Nova's per-entry parser raises.
    let default = "rabbit://[::1],[h/";
    assert_eq!(
        expand_url_template("{hostname}", Some(default)),
        "{hostname}"
    );
}

#[test]
fn missing_port_and_password_print_none() {
    let default = "mysql+pymysql://root@db/nova_api";
    let e = |t: &str| expand_url_template(t, Some(default));
    assert_eq!(e("{username}"), "root");
    assert_eq!(e("{password}"), "None");
    assert_eq!(e("{port}"), "None");
    assert_eq!(e("{hostname}"), "db");
    assert_eq!(e("{query}|{fragment}"), "|");
    assert_eq!(e("{username1}"), "{username1}");

    let e = |t: &str| expand_url_template(t, Some("sqlite:////var/lib/nova/api.db"));
    assert_eq!(
        e("{username}|{password}|{hostname}|{port}"),
        "None|None|None|None"
    );
    assert_eq!(e("{path}"), "var/lib/nova/api.db");
    assert_eq!(e("{scheme}"), "sqlite");
}

#[test]
fn empty_password_is_empty_not_none() {
    let e = |t: &str| expand_url_template(t, Some("mysql://root:@db/x"));
    assert_eq!(e("[{password}]"), "[]");
}

#[test]
fn ipv6_default() {
    let default = "rabbit://guest:guest@[FE80::1%Eth0]:5672/";
    let e = |t: &str| expand_url_template(t, Some(default));
    assert_eq!(e("{hostname}"), "fe80::1%Eth0");
    assert_eq!(e("{port}"), "5672");
    let e = |t: &str| expand_url_template(t, Some("mysql://u:p@[::1]/db"));
    assert_eq!(e("{hostname}|{port}"), "::1|None");
}

#[test]
fn bad_defaults_fail() {
    for default in [
        "mysql://u:p@[::1/db",
        "mysql://u:p@::1]/db",
        "mysql://u:p@[not-ipv6]/db",
        "mysql://u:p@[1.2.3.4]/db",
        "mysql://u:p@[::1%]/db",
        "mysql://u:p@host:abc/db",
        "mysql://u:p@host:65536/db",
        "mysql://u:p@host:-1/db",
        "mysql://u:p@host:\u{0665}/db",
        "mysql://u:p@ho\u{FF0F}st/db",
    ] {
        assert_eq!(
            expand_url_template("{username}", Some(default)),
            "{username}",
            "{default}"
        );
    }
}

#[test]
fn unusual_but_valid_defaults() {
    let e = |d: &str, t: &str| expand_url_template(t, Some(d));
    assert_eq!(e("mysql://u:p@[v1.x]/db", "{hostname}"), "v1.x");
    assert_eq!(e("mysql://u:p@h:00080/db", "{port}"), "80");
    assert_eq!(e("mysql://u:p@h:/db", "{port}"), "None");
    assert_eq!(e("mysql://u:p@h:0/db", "{port}"), "0");
    assert_eq!(e("mysql://us\u{e9}r:p@h/db", "{username}"), "us\u{e9}r");
    // Leading spaces are dropped; tabs and newlines removed.
    assert_eq!(e("  my\tsql://u:p@h/d\nb", "{scheme}/{path}"), "mysql/db");
    // The scheme is lowercased; `;params` leave the path for http only.
    assert_eq!(e("HTTP://h/a;b", "{scheme}:{path}"), "http:a");
    assert_eq!(e("rabbit://h/a;b", "{path}"), "a;b");
    // No scheme, no netloc.
    assert_eq!(
        e("just/a/path?q#f", "{scheme}|{path}|{query}|{fragment}"),
        "|just/a/path|q|f"
    );
    // Percent-escapes stay as written.
    assert_eq!(
        e("mysql://u%40x:p%2Fw@h/db", "{username}:{password}"),
        "u%40x:p%2Fw"
    );
}

#[test]
fn literal_braces() {
    assert_eq!(expand("{{literal}}"), "{literal}");
    assert_eq!(expand("{{{username}}}"), "{root}");
    assert_eq!(expand("a}}b{{c"), "a}b{c");
}

#[test]
fn broken_templates_are_returned_unchanged() {
    for template in [
        "{",
        "}",
        "{unknown}",
        "{0}",
        "{}",
        "x{username",
        "x}username",
        "}}}",
        "{username}}",
        "{port:>5}",
        "{port!r}",
        "{port!}",
        "{port!ss}",
        "{port.real}",
        "{path[0]}",
        "{username:{port}}",
        "{ username}",
        "{Username}",
    ] {
        assert_eq!(expand(template), template);
    }
}

#[test]
fn no_default_returns_template_unchanged() {
    assert_eq!(expand_url_template("{username}", None), "{username}");
    assert_eq!(expand_url_template("", None), "");
}

#[test]
fn template_without_braces_is_returned_as_is() {
    let plain = "mysql+pymysql://a:b@c/d";
    assert_eq!(expand_url_template(plain, Some(DB_DEFAULT)), plain);
    assert_eq!(expand_url_template(plain, Some("mysql://h:bad/")), plain);
}

#[test]
fn non_ascii_template() {
    assert_eq!(
        expand("h\u{e9}{{\u{1F600}}}{username}\u{e9}"),
        "h\u{e9}{\u{1F600}}root\u{e9}"
    );
}

#[test]
fn odd_strings_never_panic() {
    let punct: Vec<char> = (0x21u8..0x7f)
        .map(char::from)
        .filter(|c| c.is_ascii_punctuation())
        .collect();
    let mut samples = vec![String::new()];
    for &a in &punct {
        samples.push(a.to_string());
        for &b in &punct {
            samples.push([a, b].iter().collect());
            for &c in &punct {
                samples.push([a, b, c].iter().collect());
            }
        }
    }
    let defaults = [
        Some(DB_DEFAULT),
        Some("rabbit://u1:p1@h1:5672,u2:p2@[::1]:5672/"),
        Some(""),
        None,
    ];
    for sample in &samples {
        for default in defaults {
            let _ = expand_url_template(sample, default);
        }
        let _ = expand_url_template("{username}{hostname1}{port}", Some(sample));
        let wrapped = format!("x://{sample}@{sample}:{sample}/{sample}");
        let _ = expand_url_template("{password}{port2}", Some(&wrapped));
    }
}

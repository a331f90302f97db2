//! Says loudly which backends this test run covers. Under CI (`CI=true`) a
//! run without every backend compiled in fails: CI must test all three.

use std::io::Write;

use cell_mappings::BackendKind;
use mapping_testkit::compiled_backends;

#[test]
fn every_backend_is_tested_or_the_run_says_so() {
    let all = [
        BackendKind::Sqlite,
        BackendKind::Postgres,
        BackendKind::Mysql,
    ];
    let missing: Vec<BackendKind> = all
        .into_iter()
        .filter(|b| !compiled_backends().contains(b))
        .collect();
    if missing.is_empty() {
        return;
    }
    // Written to the stderr handle, not through eprintln!, so that the test
    // harness does not swallow it.
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n*** THIS RUN DOES NOT TEST {missing:?}: build with --all-features \
         (scripts/test-all.sh) to test every backend ***\n"
    );
    assert!(
        std::env::var("CI").is_err(),
        "CI must run every backend, but {missing:?} are not compiled in"
    );
}

//! The user-facing docs list every rejection code with its number, so they cannot drift
//! from the table in `code.rs`.

use docket_core::RejectCode;

#[test]
fn readme_lists_every_rejection_code() {
    let readme = include_str!("../../README.md");
    for code in RejectCode::ALL {
        let row = format!("| {} | `{}` |", code.number(), code.name());
        assert!(readme.contains(&row), "README.md lacks the row {row:?}");
    }
}

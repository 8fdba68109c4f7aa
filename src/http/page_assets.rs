//! The sync page's ES modules, `GET /js/{module}.js`: one table of names and files compiled
//! into the binary (as the page itself is), so a deployment stays one file and the page's
//! `<script type="module">` imports load from this origin under `script-src 'self'`.
//!
//! A table and not a directory walk: the server answers only for files named here, and a
//! module added under `static/js/` without a row fails the test below.

use warp::reply::Response;
use warp::{Filter, Rejection};

/// `(file name under /js/, contents)` of every module the page imports.
const MODULES: &[(&str, &str)] = &[
    ("chordpro.js", include_str!("../../static/js/chordpro.js")),
    ("click.js", include_str!("../../static/js/click.js")),
    ("clock.js", include_str!("../../static/js/clock.js")),
    (
        "connection.js",
        include_str!("../../static/js/connection.js"),
    ),
    ("controls.js", include_str!("../../static/js/controls.js")),
    ("session.js", include_str!("../../static/js/session.js")),
    ("sheet.js", include_str!("../../static/js/sheet.js")),
    ("timeline.js", include_str!("../../static/js/timeline.js")),
    ("view.js", include_str!("../../static/js/view.js")),
];

/// The module served at `/js/{name}`, if there is one.
fn module(name: &str) -> Option<&'static str> {
    MODULES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, body)| *body)
}

/// Whether `path` is a module this route serves (for the metrics' route label).
pub fn is_module_path(path: &str) -> bool {
    path.strip_prefix("/js/").and_then(module).is_some()
}

/// `GET /js/{module}.js`; any other name under `/js/` is the JSON 404 `NOT_FOUND` naming
/// what is missing (the route exists: the module does not). GET and HEAD (the caller adds
/// the method filter).
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("js" / String).map(|name: String| match module(&name) {
        Some(body) => super::with_type(body, "text/javascript; charset=utf-8"),
        None => super::json_error(
            warp::http::StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no such page module",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_file_has_a_row_and_every_row_a_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static/js");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("static/js")
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".js"))
            .collect();
        on_disk.sort();
        let mut rows: Vec<String> = MODULES.iter().map(|(n, _)| (*n).to_owned()).collect();
        rows.sort();
        assert_eq!(on_disk, rows);
    }

    /// The sheet is the leader's text and the names are the members': the page puts text in
    /// with `textContent` only, never through an HTML parser.
    #[test]
    fn the_page_never_writes_markup() {
        let app = include_str!("../../static/app.js");
        for (name, body) in MODULES.iter().copied().chain([("app.js", app)]) {
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "createContextualFragment",
                "eval(",
            ] {
                assert!(!body.contains(sink), "{name} uses {sink}");
            }
        }
    }

    #[test]
    fn only_named_modules_are_module_paths() {
        assert!(is_module_path("/js/clock.js"));
        for path in [
            "/js/",
            "/js/nope.js",
            "/js/../app.js",
            "/js/clock.js/",
            "/jsclock.js",
        ] {
            assert!(!is_module_path(path), "{path}");
        }
    }
}

// The NIF embeds libpython: link it, and record its directory as the rpath so the NIF loads
// the Python it was built against (PYO3_PYTHON), not whichever libpython the loader finds.
fn main() {
    if std::env::var_os("CARGO_FEATURE_NIF").is_some() {
        pyo3_build_config::add_libpython_rpath_link_args();
        pyo3_build_config::use_pyo3_cfgs();
    }
}

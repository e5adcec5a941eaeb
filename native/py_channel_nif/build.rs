// The NIF leaves libpython's symbols undefined: they are resolved when it is loaded, against
// the libpython `py_loader` opened first (RTLD_GLOBAL), so one build serves any install of
// its Python minor. scripts/build_nif.sh gives pyo3 a PYO3_CONFIG_FILE per minor that
// suppresses the link; macOS needs the linker told that undefined symbols are expected.
fn main() {
    if std::env::var_os("CARGO_FEATURE_NIF").is_some() {
        pyo3_build_config::add_extension_module_link_args();
        pyo3_build_config::use_pyo3_cfgs();
    }
}

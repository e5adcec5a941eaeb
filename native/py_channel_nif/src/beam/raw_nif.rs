//! NIFs called once per message, registered without rustler's `#[nif]` wrapper: that wrapper
//! collects every call's arguments into a `Vec`, a `malloc` and a `free` per call, about a
//! tenth of a `send/2` of a small term (perf). These read their arguments where the VM put
//! them. Everything else the wrapper does is kept: a wrong argument is a `badarg`, a panic is
//! raised as `nif_panicked` and never unwinds into the VM.

use rustler::codegen_runtime::{c_int, NifReturnable, NifReturned};
use rustler::sys::{ErlNifEnv, ErlNifTerm};
use rustler::{Env, NifResult, Term};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Registers `$function`, a `fn(Env, [Term; $arity]) -> NifResult<Term>`, as the NIF
/// `$name/$arity` of the module `rustler::init!` names.
macro_rules! raw_nif {
    ($name:literal, $arity:literal, $function:path) => {
        rustler::codegen_runtime::inventory::submit!(rustler::Nif {
            name: concat!($name, "\0").as_ptr() as *const rustler::codegen_runtime::c_char,
            arity: $arity,
            flags: rustler::SchedulerFlags::Normal as rustler::codegen_runtime::c_uint,
            raw_func: {
                unsafe extern "C" fn raw(
                    env: *mut rustler::sys::ErlNifEnv,
                    argc: rustler::codegen_runtime::c_int,
                    argv: *const rustler::sys::ErlNifTerm,
                ) -> rustler::sys::ErlNifTerm {
                    // SAFETY: the VM calls a NIF with its env and `argc` arguments.
                    unsafe { $crate::beam::raw_nif::call::<$arity>(env, argc, argv, $function) }
                }
                raw
            },
        });
    };
}
pub(crate) use raw_nif;

/// Runs `function` over the call's arguments, answering as rustler's wrapper would.
///
/// # Safety
/// `env` and `argv` are a NIF call's, with `argc` arguments.
pub unsafe fn call<const ARITY: usize>(
    env: *mut ErlNifEnv,
    argc: c_int,
    argv: *const ErlNifTerm,
    function: for<'a> fn(Env<'a>, [Term<'a>; ARITY]) -> NifResult<Term<'a>>,
) -> ErlNifTerm {
    let lifetime = ();
    // SAFETY: the env is the call's, valid for its duration.
    let env = unsafe { Env::new(&lifetime, env) };
    debug_assert_eq!(argc as usize, ARITY);
    // SAFETY: the VM passes `argc` terms of `env`, registered with this arity.
    let arguments: [Term<'_>; ARITY] =
        std::array::from_fn(|index| unsafe { Term::new(env, *argv.add(index)) });
    let returned = match catch_unwind(AssertUnwindSafe(|| function(env, arguments))) {
        Ok(Ok(term)) => NifReturnable::into_returned(term, env),
        Ok(Err(error)) => NifReturnable::into_returned(error, env),
        Err(_) => NifReturned::Raise(rustler::types::atom::nif_panicked().as_c_arg()),
    };
    // SAFETY: made for this env, during this call.
    unsafe { returned.apply(env) }
}

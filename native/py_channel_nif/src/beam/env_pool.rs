//! Process-independent envs, kept for reuse. Each `py` job copies its inputs into an env of
//! its own and answers from it; allocating one (`enif_alloc_env`, which sets up a phony
//! process) took 0.6 µs of the submitting NIF's 2 µs, reusing a cleared one takes 0.05 µs.

use rustler::sys::{enif_get_tuple, ErlNifTerm};
use rustler::types::map::MapIterator;
use rustler::{OwnedEnv, Term, TermType};
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Envs kept at most: enough for the jobs of a busy node in flight, little memory idle.
const KEPT: usize = 64;
/// Inputs of at most this many terms are few (see [`few_terms`]).
const FEW_TERMS: usize = 64;

/// Whether `inputs` are few terms: clearing an env that holds copies of them frees a
/// handful of blocks and references, cheap on a scheduler. Clearing one that held 200,000
/// binaries took 7 ms. Looks at no more than `FEW_TERMS` terms.
pub fn few_terms(inputs: &[Term<'_>]) -> bool {
    let mut budget = FEW_TERMS;
    inputs.iter().all(|&term| within(term, &mut budget))
}

/// Counts `term` and what it holds down from `budget`; false once the budget is spent.
fn within(term: Term<'_>, budget: &mut usize) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    match term.get_type() {
        TermType::List => {
            let mut rest = term;
            while let Ok((item, tail)) = rest.list_get_cell() {
                if !within(item, budget) {
                    return false;
                }
                rest = tail;
            }
            // An improper list's tail is a term too.
            rest.is_empty_list() || within(rest, budget)
        }
        TermType::Tuple => {
            let env = term.get_env();
            let mut arity = 0;
            let mut elements = MaybeUninit::<*const ErlNifTerm>::uninit();
            // SAFETY: a tuple term of a live env; the elements stay valid with it.
            let is_tuple = unsafe {
                enif_get_tuple(
                    env.as_c_arg(),
                    term.as_c_arg(),
                    &mut arity,
                    elements.as_mut_ptr(),
                )
            } != 0;
            if !is_tuple || arity as usize > *budget {
                return false;
            }
            // SAFETY: `enif_get_tuple` filled it in.
            let elements = unsafe { elements.assume_init() };
            (0..arity as usize).all(|index| {
                // SAFETY: `index` is below the tuple's arity.
                within(unsafe { Term::new(env, *elements.add(index)) }, budget)
            })
        }
        TermType::Map => MapIterator::new(term).is_some_and(|mut entries| {
            entries.all(|(key, value)| within(key, budget) && within(value, budget))
        }),
        // A fun holds what it captured, which the NIF API cannot count.
        TermType::Fun | TermType::Unknown => false,
        _ => true,
    }
}

static KEPT_ENVS: Mutex<Vec<OwnedEnv>> = Mutex::new(Vec::new());

/// An env from the pool (or a new one), cleared and given back when dropped, on any thread.
pub struct PooledEnv(Option<OwnedEnv>);

impl PooledEnv {
    pub fn take() -> PooledEnv {
        let kept = lock().pop();
        PooledEnv(Some(kept.unwrap_or_default()))
    }

    /// Moves the env out, to live on elsewhere (a job's answer parked for its caller, or its
    /// inputs handed to the caller with a kept answer); this one is empty from now on, and
    /// must not be used.
    pub fn hand_over(&mut self) -> PooledEnv {
        PooledEnv(self.0.take())
    }
}

impl Deref for PooledEnv {
    type Target = OwnedEnv;

    fn deref(&self) -> &OwnedEnv {
        self.0
            .as_ref()
            .expect("a pooled env is present until dropped")
    }
}

impl DerefMut for PooledEnv {
    fn deref_mut(&mut self) -> &mut OwnedEnv {
        self.0
            .as_mut()
            .expect("a pooled env is present until dropped")
    }
}

impl Drop for PooledEnv {
    fn drop(&mut self) {
        if let Some(mut env) = self.0.take() {
            // Terms saved in it become unloadable (rustler counts clears), and its heap goes.
            env.clear();
            let mut kept = lock();
            if kept.len() < KEPT {
                kept.push(env);
            }
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<OwnedEnv>> {
    KEPT_ENVS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

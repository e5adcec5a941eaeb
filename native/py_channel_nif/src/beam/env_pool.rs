//! Process-independent envs, kept for reuse. Each `py` job copies its inputs into an env of
//! its own and answers from it; allocating one (`enif_alloc_env`, which sets up a phony
//! process) took 0.6 µs of the submitting NIF's 2 µs, reusing a cleared one takes 0.05 µs.
//!
//! An env whose job had small inputs goes back to the pool as it is, and is cleared by the
//! scheduler that takes it next. Its heap was allocated on a scheduler (the inputs are copied
//! in the submitting NIF): freed on the worker thread, each block went back to that scheduler
//! as delayed work, handled at the end of a time slice; `py:call`'s p99 was 0.7-1.2 µs higher
//! (`make bench` table 3, A/B x3). An env with large inputs is cleared at once, on whichever
//! thread gives it back, so that the pool never holds their memory.

use rustler::types::map::MapIterator;
use rustler::types::tuple::get_tuple;
use rustler::{Binary, OwnedEnv, Term, TermType};
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Envs kept at most: enough for the jobs of a busy node in flight, little memory idle.
const KEPT: usize = 64;
/// Inputs of at most this many terms are small (binaries included only up to the VM's
/// on-heap limit): a few hundred bytes of heap, held by an idle pooled env at most.
const SMALL_INPUT_TERMS: usize = 32;
const ON_HEAP_BINARY_MAX: usize = 64;

/// Kept envs, and whether each still holds its last job's terms.
static KEPT_ENVS: Mutex<Vec<(OwnedEnv, bool)>> = Mutex::new(Vec::new());

/// An env from the pool (or a new one), given back when dropped, on any thread.
pub struct PooledEnv {
    env: Option<OwnedEnv>,
    /// Given back uncleared (see the module's doc): its terms are small inputs.
    clear_when_reused: bool,
}

impl PooledEnv {
    /// An empty env, cleared here if it still held the terms of its last job.
    pub fn take() -> PooledEnv {
        let kept = lock().pop();
        let env = match kept {
            Some((mut env, true)) => {
                env.clear();
                env
            }
            Some((env, false)) => env,
            None => OwnedEnv::default(),
        };
        PooledEnv {
            env: Some(env),
            clear_when_reused: false,
        }
    }

    /// Once its job is over, this env goes back uncleared if `inputs`, the terms saved in it,
    /// are small; else it is cleared when given back.
    pub fn clear_when_reused_if_small(&mut self, inputs: &[Term<'_>]) {
        let mut budget = SMALL_INPUT_TERMS;
        self.clear_when_reused = inputs.iter().all(|&term| is_small(term, &mut budget));
    }

    /// Moves the env out, to live on elsewhere (a job's answer parked for its caller); this
    /// one is empty from now on, and must not be used. The answer's terms are cleared with
    /// the env when it is given back.
    pub fn hand_over(&mut self) -> PooledEnv {
        PooledEnv {
            env: self.env.take(),
            clear_when_reused: false,
        }
    }
}

/// Whether `term` is at most `budget` terms, counted down, with no binary over the on-heap
/// limit (a larger one is shared by reference count: keeping the term keeps the binary).
fn is_small(term: Term<'_>, budget: &mut usize) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    match term.get_type() {
        TermType::Atom | TermType::Integer | TermType::Float | TermType::Pid => true,
        TermType::Ref | TermType::Port => true,
        TermType::Binary => term
            .decode::<Binary>()
            .is_ok_and(|binary| binary.len() <= ON_HEAP_BINARY_MAX),
        TermType::List => {
            // Cell by cell: an improper list is an input too (rustler's iterator panics).
            let mut rest = term;
            while let Ok((item, tail)) = rest.list_get_cell() {
                if !is_small(item, budget) {
                    return false;
                }
                rest = tail;
            }
            rest.is_empty_list() || is_small(rest, budget)
        }
        TermType::Tuple => {
            get_tuple(term).is_ok_and(|items| items.into_iter().all(|item| is_small(item, budget)))
        }
        TermType::Map => MapIterator::new(term).is_some_and(|mut entries| {
            entries.all(|(key, value)| is_small(key, budget) && is_small(value, budget))
        }),
        // A fun holds what it captured; anything else is not worth the look.
        _ => false,
    }
}

impl Deref for PooledEnv {
    type Target = OwnedEnv;

    fn deref(&self) -> &OwnedEnv {
        self.env
            .as_ref()
            .expect("a pooled env is present until dropped")
    }
}

impl DerefMut for PooledEnv {
    fn deref_mut(&mut self) -> &mut OwnedEnv {
        self.env
            .as_mut()
            .expect("a pooled env is present until dropped")
    }
}

impl Drop for PooledEnv {
    fn drop(&mut self) {
        if let Some(mut env) = self.env.take() {
            if !self.clear_when_reused {
                // Terms saved in it become unloadable (rustler counts clears), and its heap
                // goes.
                env.clear();
            }
            let mut kept = lock();
            if kept.len() < KEPT {
                kept.push((env, self.clear_when_reused));
            }
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(OwnedEnv, bool)>> {
    KEPT_ENVS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

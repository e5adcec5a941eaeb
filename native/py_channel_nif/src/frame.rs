//! A queued message: the term in external term format, so it is process-independent, exact
//! (pids, refs, funs, bignums, improper lists) and its byte size is what `max_size` counts.

use crate::channel::Weighed;
use crate::channel_resource::ChannelResource;
use rustler::{sys, Env, OwnedBinary, ResourceArc, Term, TermType};

pub struct Frame {
    etf: OwnedBinary,
    /// Channels inside the message. The encoded bytes only name a channel; these keep it
    /// alive until the frame is received, so the term decodes to the same live channel.
    #[expect(dead_code, reason = "held only for its references")]
    pinned_channels: Vec<ResourceArc<ChannelResource>>,
}

impl Frame {
    /// Encodes `term` for the channel `destination`. A message holding `destination` itself
    /// does not pin it: the frame lives inside it, and pinning would make a cycle.
    pub fn encode(term: Term<'_>, destination: &ChannelResource) -> Frame {
        Frame {
            etf: term.to_binary(),
            pinned_channels: channels_inside(term, destination),
        }
    }

    /// The term, rebuilt in `env`.
    pub fn decode<'a>(&self, env: Env<'a>) -> Term<'a> {
        // SAFETY: the bytes were produced by enif_term_to_binary in this VM.
        let (term, _) = unsafe { env.binary_to_term_trusted(self.etf.as_slice()) }
            .expect("a frame holds valid external term format");
        term
    }

    pub fn encoded_bytes(&self) -> &[u8] {
        self.etf.as_slice()
    }
}

impl Weighed for Frame {
    fn weight(&self) -> usize {
        self.etf.len()
    }
}

/// Every channel reference inside `term`, found with an explicit stack so that any nesting
/// depth is safe. Only containers and references are looked at; scalars cost one type check.
fn channels_inside(
    term: Term<'_>,
    destination: &ChannelResource,
) -> Vec<ResourceArc<ChannelResource>> {
    let mut found = Vec::new();
    let mut pending = vec![term];
    while let Some(term) = pending.pop() {
        match term.get_type() {
            TermType::Ref => {
                if let Ok(channel) = term.decode::<ResourceArc<ChannelResource>>() {
                    if !std::ptr::eq(&*channel, destination) {
                        found.push(channel);
                    }
                }
            }
            TermType::Tuple => pending.extend(tuple_elements(term)),
            TermType::List => {
                let mut rest = term;
                while let Ok((head, tail)) = rest.list_get_cell() {
                    pending.push(head);
                    rest = tail;
                }
                if !rest.is_empty_list() {
                    pending.push(rest); // improper tail
                }
            }
            TermType::Map => {
                if let Some(entries) = rustler::types::map::MapIterator::new(term) {
                    for (key, value) in entries {
                        pending.push(key);
                        pending.push(value);
                    }
                }
            }
            _ => {}
        }
    }
    found
}

fn tuple_elements(tuple: Term<'_>) -> impl Iterator<Item = Term<'_>> {
    let env = tuple.get_env();
    let mut arity = 0;
    let mut elements: *const sys::ErlNifTerm = std::ptr::null();
    // SAFETY: `tuple` is a tuple term of `env`; enif_get_tuple points into its heap.
    let ok = unsafe {
        sys::enif_get_tuple(env.as_c_arg(), tuple.as_c_arg(), &mut arity, &mut elements)
    } != 0;
    let elements: &[sys::ErlNifTerm] = if ok && arity > 0 {
        // SAFETY: enif_get_tuple returned `arity` elements at `elements`, live as long as `tuple`.
        unsafe { std::slice::from_raw_parts(elements, arity as usize) }
    } else {
        &[]
    };
    elements
        .iter()
        .map(move |&raw| unsafe { Term::new(env, raw) })
}

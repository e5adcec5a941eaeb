%% @private
%% @doc The Rust NIF's entry points. The public API, with argument checks and
%% readable errors, is `py_channel' and `py'.
%%
%% There is no `-on_load': which library to load depends on the Python chosen
%% at start, and a library that fails to load must not stop the node from
%% booting. `py_loader' loads it when the application starts; a stub called
%% before that (code run without starting the application) loads it first.
-module(py_channel_nif).

-export([load_nif/2, loaded/0]).
-export([new_channel/2, send/2, try_receive/1, close/1, info/1,
         wait/2, take_woken/1, settle_wait/1, cancel_wait/1, send_or_wait/4,
         cancel_send_wait/1, send_many/2,
         call_send/4, caller_poll/1, caller_stop_polling/1, caller_abandon/1, caller_look_on/2, caller_reply/2,
         term_size/1, live_channels/0,
         py_start/1, py_exec/4, py_eval/6, py_call/8, py_stream/8, py_abandon/1, py_cancel/1,
         py_started/1, py_look_on/1, py_poll/1, py_look/3, py_stop_polling/1, py_namespace_new/0, py_callback_reply/2, py_set_runtime/1,
         py_set_none_atom/1, py_pool_counts/0]).

-nifs([loaded/0, new_channel/2, send/2, try_receive/1, close/1, info/1,
       wait/2, take_woken/1, settle_wait/1, cancel_wait/1, send_or_wait/4,
       cancel_send_wait/1, send_many/2,
       call_send/4, caller_poll/1, caller_stop_polling/1, caller_abandon/1, caller_look_on/2, caller_reply/2,
       term_size/1, live_channels/0,
       py_start/1, py_exec/4, py_eval/6, py_call/8, py_stream/8, py_abandon/1, py_cancel/1,
       py_started/1, py_look_on/1, py_poll/1, py_look/3, py_stop_polling/1, py_namespace_new/0, py_callback_reply/2, py_set_runtime/1,
       py_set_none_atom/1, py_pool_counts/0]).

%% @doc Loads the library at `Path' (no extension) into this module; only
%% `py_loader' calls this (`erlang:load_nif/2' loads for its caller's module).
-spec load_nif(binary(), map()) -> ok | {error, {atom(), string()}}.
load_nif(Path, LoadInfo) ->
    erlang:load_nif(unicode:characters_to_list(Path), LoadInfo).

%% @doc Whether the NIF is loaded (the NIF answers `true').
-spec loaded() -> boolean().
loaded() -> false.

%% A stub runs only while the NIF is not loaded. It hands the call over to
%% `py_loader', which loads the NIF and makes the call again, now to the NIF:
%% as a tail call, so that no stub is on the stack while loading patches the
%% stubs (returning into one after that crashes the VM).
-define(LOADED(Function, Args), py_loader:load_and_apply(?MODULE, Function, Args)).

new_channel(MaxSize, Owner) -> ?LOADED(new_channel, [MaxSize, Owner]).
send(Channel, Term) -> ?LOADED(send, [Channel, Term]).
try_receive(Channel) -> ?LOADED(try_receive, [Channel]).
close(Channel) -> ?LOADED(close, [Channel]).
info(Channel) -> ?LOADED(info, [Channel]).
wait(Channel, Tag) -> ?LOADED(wait, [Channel, Tag]).
take_woken(Watch) -> ?LOADED(take_woken, [Watch]).
settle_wait(Watch) -> ?LOADED(settle_wait, [Watch]).
cancel_wait(Watch) -> ?LOADED(cancel_wait, [Watch]).
term_size(Term) -> ?LOADED(term_size, [Term]).
live_channels() -> ?LOADED(live_channels, []).
send_or_wait(Channel, Term, Tag, Woken) -> ?LOADED(send_or_wait, [Channel, Term, Tag, Woken]).
cancel_send_wait(Watch) -> ?LOADED(cancel_send_wait, [Watch]).
send_many(Channel, Terms) -> ?LOADED(send_many, [Channel, Terms]).
call_send(Channel, Tag, Request, Previous) ->
    ?LOADED(call_send, [Channel, Tag, Request, Previous]).
caller_poll(Caller) -> ?LOADED(caller_poll, [Caller]).
caller_stop_polling(Caller) -> ?LOADED(caller_stop_polling, [Caller]).
caller_abandon(Caller) -> ?LOADED(caller_abandon, [Caller]).
caller_look_on(Caller, Channel) -> ?LOADED(caller_look_on, [Caller, Channel]).
caller_reply(Caller, Reply) -> ?LOADED(caller_reply, [Caller, Reply]).
py_start(Ref) -> ?LOADED(py_start, [Ref]).
py_exec(Ref, Namespace, Output, Code) -> ?LOADED(py_exec, [Ref, Namespace, Output, Code]).
py_eval(Ref, Namespace, Output, Code, Locals, Reply) ->
    ?LOADED(py_eval, [Ref, Namespace, Output, Code, Locals, Reply]).
py_call(Ref, Namespace, Output, Module, Function, Args, Kwargs, Reply) ->
    ?LOADED(py_call, [Ref, Namespace, Output, Module, Function, Args, Kwargs, Reply]).
py_stream(Ref, Namespace, Output, Module, Function, Args, Kwargs, Channel) ->
    ?LOADED(py_stream, [Ref, Namespace, Output, Module, Function, Args, Kwargs, Channel]).
py_abandon(Handle) -> ?LOADED(py_abandon, [Handle]).
py_cancel(Handle) -> ?LOADED(py_cancel, [Handle]).
py_poll(Handle) -> ?LOADED(py_poll, [Handle]).
py_stop_polling(Handle) -> ?LOADED(py_stop_polling, [Handle]).
py_started(Handle) -> ?LOADED(py_started, [Handle]).
py_look_on(Handle) -> ?LOADED(py_look_on, [Handle]).
py_look(Handle, BegunMicros, SpinMicros) -> ?LOADED(py_look, [Handle, BegunMicros, SpinMicros]).
py_namespace_new() -> ?LOADED(py_namespace_new, []).
py_callback_reply(Handle, Result) -> ?LOADED(py_callback_reply, [Handle, Result]).
py_set_runtime(Pid) -> ?LOADED(py_set_runtime, [Pid]).
py_set_none_atom(Name) -> ?LOADED(py_set_none_atom, [Name]).
py_pool_counts() -> ?LOADED(py_pool_counts, []).

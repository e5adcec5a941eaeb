%% @private
%% @doc Loads the Rust NIF. Functions here are the raw NIF entry points;
%% the public API, with argument checks and readable errors, is `py_channel'.
-module(py_channel_nif).

-export([new_channel/2, send/2, try_receive/1, close/1, info/1,
         wait/2, cancel_wait/2, send_or_wait/4, cancel_send_wait/2, send_many/2,
         term_size/1, live_channels/0,
         py_start/1, py_exec/4, py_eval/5, py_call/8, py_stream/8, py_abandon/1, py_cancel/1,
         py_namespace_new/0, py_callback_reply/2, py_set_runtime/1,
         py_set_none_atom/1, py_pool_counts/0]).

-nifs([new_channel/2, send/2, try_receive/1, close/1, info/1,
       wait/2, cancel_wait/2, send_or_wait/4, cancel_send_wait/2, send_many/2,
         term_size/1, live_channels/0,
       py_start/1, py_exec/4, py_eval/5, py_call/8, py_stream/8, py_abandon/1, py_cancel/1,
       py_namespace_new/0, py_callback_reply/2, py_set_runtime/1,
       py_set_none_atom/1, py_pool_counts/0]).

-on_load(load/0).

-spec load() -> ok | {error, term()}.
load() ->
    Priv = priv_dir(),
    %% The load info tells the NIF where the `erlang' Python package is.
    erlang:load_nif(filename:join([Priv, "native", "py_channel_nif"]),
                    unicode:characters_to_binary(filename:join(Priv, "python"))).

%% The application's priv dir, or the one beside this module's ebin when the
%% code path has no `py_channel' application (a bare `erl -pa ebin').
priv_dir() ->
    case code:priv_dir(py_channel) of
        {error, bad_name} ->
            filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
        Dir ->
            Dir
    end.

-define(NOT_LOADED, erlang:nif_error({not_loaded, ?MODULE})).

new_channel(_MaxSize, _Owner) -> ?NOT_LOADED.
send(_Channel, _Term) -> ?NOT_LOADED.
try_receive(_Channel) -> ?NOT_LOADED.
close(_Channel) -> ?NOT_LOADED.
info(_Channel) -> ?NOT_LOADED.
wait(_Channel, _Tag) -> ?NOT_LOADED.
cancel_wait(_Channel, _WaiterId) -> ?NOT_LOADED.
term_size(_Term) -> ?NOT_LOADED.
live_channels() -> ?NOT_LOADED.
send_or_wait(_Channel, _Term, _Tag, _Woken) -> ?NOT_LOADED.
cancel_send_wait(_Channel, _WaiterId) -> ?NOT_LOADED.
send_many(_Channel, _Terms) -> ?NOT_LOADED.
py_start(_Ref) -> ?NOT_LOADED.
py_exec(_Ref, _Namespace, _Output, _Code) -> ?NOT_LOADED.
py_eval(_Ref, _Namespace, _Output, _Code, _Locals) -> ?NOT_LOADED.
py_call(_Ref, _Namespace, _Output, _Module, _Function, _Args, _Kwargs, _Reply) -> ?NOT_LOADED.
py_stream(_Ref, _Namespace, _Output, _Module, _Function, _Args, _Kwargs, _Channel) -> ?NOT_LOADED.
py_abandon(_Handle) -> ?NOT_LOADED.
py_cancel(_Handle) -> ?NOT_LOADED.
py_namespace_new() -> ?NOT_LOADED.
py_callback_reply(_Handle, _Result) -> ?NOT_LOADED.
py_set_runtime(_Pid) -> ?NOT_LOADED.
py_set_none_atom(_Name) -> ?NOT_LOADED.
py_pool_counts() -> ?NOT_LOADED.

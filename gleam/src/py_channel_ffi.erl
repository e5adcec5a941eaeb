%% @private
%% @doc The Erlang side of the Gleam modules `py_channel/channel',
%% `py_channel/python' and `py_channel/term': shapes Erlang results into
%% Gleam's `Result' and custom types.
-module(py_channel_ffi).

-export([new/0, new_with_max_size/1, send/2, send_with_timeout/3, close/1, info/1,
         call_channel/3, to_call/1, reply/2,
         receive_term/2, try_receive/1, subscribe/2, receive_delivery/2,
         exec/1, eval/1, exec_with_timeout/2, eval_with_timeout/2, eval_with_channel/3,
         call/3, call_with_timeout/4, spawn/3, await/2, cancel/1,
         identity/1, self_term/0, receive_any/1,
         to_int/1, to_float/1, to_string/1, to_bool/1, to_bit_string/1, to_atom_name/1,
         to_list/1, to_tuple2/1, to_tuple3/1, to_dict/1]).

-spec new() -> py_channel:channel().
new() ->
    {ok, Channel} = py_channel:new(),
    Channel.

-spec new_with_max_size(integer()) -> {ok, py_channel:channel()} | {error, nil}.
new_with_max_size(MaxSize) ->
    case py_channel:new(#{max_size => MaxSize}) of
        {ok, Channel} -> {ok, Channel};
        {error, _} -> {error, nil}
    end.

-spec send(py_channel:channel(), term()) -> {ok, nil} | {error, busy | closed | too_large}.
send(Channel, Message) ->
    case py_channel:send(Channel, Message) of
        ok -> {ok, nil};
        busy -> {error, busy};
        {error, Reason} -> {error, Reason}
    end.

-spec send_with_timeout(py_channel:channel(), term(), integer()) ->
          {ok, nil} | {error, closed | too_large | timeout}.
send_with_timeout(Channel, Message, TimeoutMs) ->
    case py_channel:send(Channel, Message, timeout(TimeoutMs)) of
        ok -> {ok, nil};
        {error, Reason} -> {error, Reason}
    end.

-spec call_channel(py_channel:channel(), term(), integer()) ->
          {ok, term()} | {error, timeout | closed | too_large}.
call_channel(Channel, Request, TimeoutMs) ->
    py_channel:call(Channel, Request, timeout(TimeoutMs)).

-spec to_call(term()) -> {ok, {py_channel:caller(), term()}} | {error, nil}.
to_call({Caller, Request}) when is_reference(Caller) -> {ok, {Caller, Request}};
to_call(_) -> {error, nil}.

-spec reply(py_channel:caller(), term()) -> {ok, nil} | {error, nil}.
reply(Caller, Message) ->
    case py_channel:reply(Caller, Message) of
        ok -> {ok, nil};
        {error, already_replied} -> {error, nil}
    end.

-spec receive_term(py_channel:channel(), integer()) -> {ok, term()} | {error, closed | timeout}.
receive_term(Channel, TimeoutMs) ->
    py_channel:recv(Channel, timeout(TimeoutMs)).

-spec try_receive(py_channel:channel()) -> {ok, term()} | {error, closed | empty}.
try_receive(Channel) ->
    py_channel:try_receive(Channel).

-spec subscribe(py_channel:channel(), integer()) -> nil.
subscribe(Channel, Credit) ->
    ok = py_channel:subscribe(Channel, max(Credit, 0)),
    nil.

-spec receive_delivery(py_channel:channel(), integer()) ->
          {ok, {message, term()} | passive | ended} | {error, nil}.
receive_delivery(Channel, TimeoutMs) ->
    receive
        {py_channel, Channel, Term} -> {ok, {message, Term}};
        {py_channel_passive, Channel} -> {ok, passive};
        {py_channel_closed, Channel} -> {ok, ended}
    after timeout(TimeoutMs) -> {error, nil}
    end.

-spec close(py_channel:channel()) -> nil.
close(Channel) ->
    ok = py_channel:close(Channel),
    nil.

-spec info(py_channel:channel()) ->
          {info, non_neg_integer(), non_neg_integer(), boolean(), non_neg_integer(),
           non_neg_integer(), non_neg_integer(), non_neg_integer(), non_neg_integer(),
           non_neg_integer(), non_neg_integer(), non_neg_integer()}.
info(Channel) ->
    #{size := Size, max_size := MaxSize, closed := Closed, length := Length,
      waiting_readers := WaitingReaders, waiting_senders := WaitingSenders, sent := Sent, received := Received, busy := Busy,
      sent_bytes := SentBytes, received_bytes := ReceivedBytes} = py_channel:info(Channel),
    {info, Size, MaxSize, Closed, Length, WaitingReaders, WaitingSenders, Sent, Received, Busy, SentBytes,
     ReceivedBytes}.

-spec exec(binary()) -> {ok, nil} | {error, term()}.
exec(Code) ->
    case py:exec(Code) of
        ok -> {ok, nil};
        Error -> python_error(Error)
    end.

-spec eval(binary()) -> {ok, term()} | {error, term()}.
eval(Code) ->
    result(py:eval(Code)).

%% A negative timeout is 0 (Gleam has no badarg to raise).
-spec exec_with_timeout(binary(), integer()) -> {ok, nil} | {error, term()}.
exec_with_timeout(Code, TimeoutMs) ->
    case py:exec(Code, #{timeout => timeout(TimeoutMs)}) of
        ok -> {ok, nil};
        Error -> python_error(Error)
    end.

-spec eval_with_timeout(binary(), integer()) -> {ok, term()} | {error, term()}.
eval_with_timeout(Code, TimeoutMs) ->
    result(py:eval(Code, #{}, timeout(TimeoutMs))).

timeout(Ms) -> min(max(Ms, 0), 16#FFFFFFFF).

-spec eval_with_channel(binary(), binary(), py_channel:channel()) -> {ok, term()} | {error, term()}.
eval_with_channel(Code, Name, Channel) ->
    result(py:eval(Code, #{Name => Channel})).

-spec call(binary(), binary(), list()) -> {ok, term()} | {error, term()}.
call(Module, Function, Args) ->
    result(py:call(Module, Function, Args)).

-spec call_with_timeout(binary(), binary(), list(), integer()) -> {ok, term()} | {error, term()}.
call_with_timeout(Module, Function, Args, TimeoutMs) ->
    result(py:call(Module, Function, Args, #{}, timeout(TimeoutMs))).

-spec spawn(binary(), binary(), list()) -> py:pending().
spawn(Module, Function, Args) ->
    py:spawn_call(Module, Function, Args).

-spec await(py:pending(), integer()) -> {ok, term()} | {error, term()}.
await(Pending, TimeoutMs) ->
    result(py:await(Pending, timeout(TimeoutMs))).

-spec cancel(py:pending()) -> nil.
cancel(Pending) ->
    ok = py:cancel(Pending),
    nil.

-spec identity(term()) -> term().
identity(Value) -> Value.

-spec self_term() -> pid().
self_term() -> self().

-spec receive_any(integer()) -> {ok, term()} | {error, nil}.
receive_any(TimeoutMs) ->
    receive Message -> {ok, Message}
    after timeout(TimeoutMs) -> {error, nil}
    end.

-spec to_float(term()) -> {ok, float()} | {error, nil}.
to_float(Value) when is_float(Value) -> {ok, Value};
to_float(_) -> {error, nil}.

-spec to_bool(term()) -> {ok, boolean()} | {error, nil}.
to_bool(Value) when is_boolean(Value) -> {ok, Value};
to_bool(_) -> {error, nil}.

-spec to_bit_string(term()) -> {ok, binary()} | {error, nil}.
to_bit_string(Value) when is_binary(Value) -> {ok, Value};
to_bit_string(_) -> {error, nil}.

-spec to_atom_name(term()) -> {ok, binary()} | {error, nil}.
to_atom_name(Value) when is_atom(Value) -> {ok, atom_to_binary(Value, utf8)};
to_atom_name(_) -> {error, nil}.

-spec to_list(term()) -> {ok, list()} | {error, nil}.
to_list(Value) when is_list(Value) ->
    try length(Value) of _ -> {ok, Value} catch error:badarg -> {error, nil} end;
to_list(_) -> {error, nil}.

-spec to_tuple2(term()) -> {ok, {term(), term()}} | {error, nil}.
to_tuple2({_, _} = Value) -> {ok, Value};
to_tuple2(_) -> {error, nil}.

-spec to_tuple3(term()) -> {ok, {term(), term(), term()}} | {error, nil}.
to_tuple3({_, _, _} = Value) -> {ok, Value};
to_tuple3(_) -> {error, nil}.

-spec to_dict(term()) -> {ok, [{term(), term()}]} | {error, nil}.
to_dict(Value) when is_map(Value) -> {ok, lists:sort(maps:to_list(Value))};
to_dict(_) -> {error, nil}.

-spec to_int(term()) -> {ok, integer()} | {error, nil}.
to_int(Value) when is_integer(Value) -> {ok, Value};
to_int(_) -> {error, nil}.

-spec to_string(term()) -> {ok, binary()} | {error, nil}.
to_string(Value) when is_binary(Value) ->
    case unicode:characters_to_binary(Value) of
        Value -> {ok, Value};
        _ -> {error, nil}
    end;
to_string(_) -> {error, nil}.

result({ok, Value}) -> {ok, Value};
result(Error) -> python_error(Error).

%% Every case of py:py_error(), as Gleam's PythonError.
-spec python_error(py:py_error()) ->
          {error, {python_exception, binary(), binary()} | timeout | cancelled
                | {python_not_started, binary()}}.
python_error({error, {python_not_started, Reason}}) ->
    {error, {python_not_started, Reason}};
python_error({error, timeout}) ->
    {error, timeout};
python_error({error, cancelled}) ->
    {error, cancelled};
python_error({error, {Name, Message}}) when is_atom(Name) ->
    {error, {python_exception, atom_to_binary(Name, utf8), Message}};
python_error({error, {Name, Message}}) when is_binary(Name) ->
    {error, {python_exception, Name, Message}}.

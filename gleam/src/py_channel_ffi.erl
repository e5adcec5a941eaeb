%% @private
%% @doc The Erlang side of the Gleam modules `py_channel/channel' and
%% `py_channel/python': shapes Erlang results into Gleam's `Result' and custom
%% types.
-module(py_channel_ffi).

-export([new/0, new_with_max_size/1, send/2, close/1, info/1,
         exec/1, eval/1, exec_with_timeout/2, eval_with_timeout/2, eval_with_channel/3,
         to_int/1, to_string/1]).

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

-spec to_int(term()) -> {ok, integer()} | {error, nil}.
to_int(Value) when is_integer(Value) -> {ok, Value};
to_int(_) -> {error, nil}.

-spec to_string(term()) -> {ok, binary()} | {error, nil}.
to_string(Value) when is_binary(Value) -> {ok, Value};
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

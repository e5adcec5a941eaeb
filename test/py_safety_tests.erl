%% Regression tests for issue 9: nothing crashes the node, nothing is lost,
%% nothing is stuck, no memory is held for ever. Each test names the item of
%% the issue it covers; each failed (or crashed the VM) before its fix.
-module(py_safety_tests).

-include_lib("eunit/include/eunit.hrl").

-import(py_test_support, [wait_until/1]).

-define(HELPERS, <<"
import threading, gc
import erlang
from erlang import Atom
from erlang.channel import Channel, ChannelClosed, reply

def on_thread(function, *args):
    '''Runs function(*args) on a thread Python starts (8 MiB stack, not a worker).'''
    function = globals()[function]
    outcome = {}
    def run():
        try:
            outcome['value'] = function(*args)
        except BaseException as error:
            outcome['error'] = error
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if 'error' in outcome:
        raise outcome['error']
    return outcome['value']

def on_thread_with_stack(size, function, *args):
    '''on_thread, with a thread stack of `size` bytes.'''
    default = threading.stack_size(size)
    try:
        return on_thread(function, *args)
    finally:
        threading.stack_size(default)

def echo_from_channel(ref, pid):
    '''Receives one term and replies it: conversion both ways on this thread.'''
    reply(pid, Channel(ref).receive(5))

def echo_or_error(ref, pid):
    try:
        reply(pid, Channel(ref).receive(5))
    except ValueError as error:
        reply(pid, (Atom('error'), str(error)))

def send_built(pid, source):
    erlang.send(pid, eval(source))

def nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value

def identity(value):
    return value
">>).

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

safety_test_() ->
    {setup, fun setup/0,
     [{timeout, 120, {"1: big maps both ways, on workers and Python threads",
                      fun big_maps/0}},
      {timeout, 60, {"2: deep nesting on a Python thread is an error, not a crash",
                     fun deep_nesting_on_python_threads/0}},
      {"4: a killed Erlang reader does not swallow a wake", fun killed_reader_passes_wake/0},
      {"4: ... nor does it keep a Python reader waiting", fun killed_reader_python_reader/0},
      {"4: a killed parked reader leaves the line at once", fun killed_reader_leaves_line/0},
      {timeout, 60, {"4: a reader whose kill is still on its way when it is woken passes the "
                     "wake on", fun reader_killed_before_woken/0}},
      {"4: a reader killed after its wake, before it took, passes the wake on",
       fun reader_killed_after_wake/0},
      {"4: a waiting sender killed after its wake, before it sent, passes the wake on",
       fun sender_killed_after_wake/0},
      {"4: a reader that parks in a loop keeps no monitors of its settled waits",
       fun parks_leave_no_monitors/0},
      {"5: bad timeouts are refused before any side effect", fun bad_timeouts/0},
      {"5: ... through erlang.call too", fun bad_timeouts_callbacks/0},
      {"6: receive_many keeps what it took when a later term fails",
       fun receive_many_conversion_error/0},
      {"7: a failed conversion sends nothing", fun failed_reply_sends_nothing/0},
      {"8: colliding map keys are an error, never a silent merge", fun colliding_keys/0},
      {timeout, 60, {"9: received terms are released", fun received_terms_released/0}},
      {timeout, 60, {"10: channels holding each other are freed once received",
                     fun channel_cycles_freed/0}},
      {"10: a fun holding its own channel does not keep it", fun fun_cycle_freed/0},
      {timeout, 60, {"12: exception class names make no new atoms",
                     fun exception_names_no_atoms/0}},
      {"13: huge timeouts wait for ever, never panic", fun huge_timeouts/0}]}.

helpers() ->
    ok = py:exec(?HELPERS).

%% Item 1 ----------------------------------------------------------------

big_maps() ->
    helpers(),
    [begin
         Map = maps:from_list([{I, I} || I <- lists:seq(1, N)]),
         Source = iolist_to_binary(io_lib:format("{i: i for i in range(1, ~b)}", [N + 1])),
         %% Python -> Erlang on a worker thread.
         ?assertEqual({ok, Map}, py:eval(Source)),
         %% Python -> Erlang on a thread Python started.
         {ok, none} = py:call('__main__', on_thread, [send_built, self(), Source]),
         ?assertEqual(Map, receive M when is_map(M) -> M after 30000 -> timeout end),
         %% Erlang -> Python -> Erlang through call arguments.
         ?assertEqual({ok, Map}, py:call('__main__', identity, [Map])),
         %% A frame read by Python, on a worker and on a Python thread.
         {ok, Ch} = py_channel:new(),
         ok = py_channel:send(Ch, Map),
         {ok, none} = py:call('__main__', echo_from_channel, [Ch, self()]),
         ?assertEqual(Map, receive M2 when is_map(M2) -> M2 after 30000 -> timeout end),
         ok = py_channel:send(Ch, Map),
         {ok, none} = py:call('__main__', on_thread, [echo_from_channel, Ch, self()]),
         ?assertEqual(Map, receive M3 when is_map(M3) -> M3 after 30000 -> timeout end)
     end || N <- [0, 128, 129, 10000, 1000000]],
    ok.

%% Item 2 ----------------------------------------------------------------

deep_nesting_on_python_threads() ->
    helpers(),
    Deep = lists:foldl(fun(_, Acc) -> [Acc] end, [], lists:seq(1, 9000)),
    {ok, Ch} = py_channel:new(),
    %% Threads Python starts get the workers' 16 MiB stack: 9,000 levels convert.
    ok = py_channel:send(Ch, Deep),
    {ok, none} = py:call('__main__', on_thread, [echo_or_error, Ch, self()]),
    ?assertEqual(Deep, receive Echo -> Echo after 30000 -> no_answer end),
    {ok, none} = py:call('__main__', on_thread, [send_built, self(), <<"nested(9000)">>]),
    ?assertEqual(Deep, receive Sent -> Sent after 30000 -> no_answer end),
    %% On a thread with a small stack (Python code may choose one), the stack runs out
    %% before the bound: a clean ValueError both ways, never a crash. (1 MiB: glibc may
    %% hand a thread a cached stack up to 4 times larger than asked, still too small.)
    OneMiB = 1024 * 1024,
    ok = py_channel:send(Ch, Deep),
    {ok, none} = py:call('__main__', on_thread_with_stack, [OneMiB, echo_or_error, Ch, self()]),
    ?assertMatch({error, <<"term nested deeper than this thread's stack allows", _/binary>>},
                 receive Answer -> Answer after 30000 -> no_answer end),
    ?assertMatch({error, {'ValueError', <<"object nested deeper than this thread's stack", _/binary>>}},
                 py:call('__main__', on_thread_with_stack,
                         [OneMiB, send_built, self(), <<"nested(9000)">>])),
    %% Far beyond the bound: always a clean error.
    ?assertMatch({error, {'ValueError', _}},
                 py:call('__main__', on_thread, [send_built, self(), <<"nested(200000)">>])),
    ?assertMatch({error, {'ValueError', _}}, py:eval(<<"nested(200000)">>)),
    ?assertEqual([], flush()).

%% Item 4 ----------------------------------------------------------------

%% A reader parked in recv/2 is killed; a live reader parks after it. The
%% next term must wake the live one at once, not at its own timeout.
killed_reader_passes_wake() ->
    {ok, Ch} = py_channel:new(),
    Doomed = spawn(fun() -> py_channel:recv(Ch, infinity) end),
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 1 end),
    exit(Doomed, kill),
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 0 end),
    Parent = self(),
    Live = spawn_link(fun() -> Parent ! {self(), py_channel:recv(Ch, infinity)} end),
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 1 end),
    ok = py_channel:send(Ch, hello),
    ?assertEqual({ok, hello}, receive {Live, R} -> R after 2000 -> stuck end).

killed_reader_python_reader() ->
    helpers(),
    {ok, Ch} = py_channel:new(),
    Doomed = spawn(fun() -> py_channel:recv(Ch, infinity) end),
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 1 end),
    exit(Doomed, kill),
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 0 end),
    Pending = py:spawn_call('__main__', echo_from_channel, [Ch, self()]),
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 1 end),
    ok = py_channel:send(Ch, hello),
    ?assertEqual(hello, receive hello -> hello after 2000 -> stuck end),
    ?assertEqual({ok, none}, py:await(Pending, 5000)).

%% A parked reader that dies is not counted among the waiting readers (it was,
%% until a send picked it).
killed_reader_leaves_line() ->
    {ok, Ch} = py_channel:new(),
    Doomed = spawn(fun() -> py_channel:recv(Ch, infinity) end),
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 1 end),
    exit(Doomed, kill),
    wait_until(fun() -> not is_process_alive(Doomed) end),
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 0 end).

%% The send picks a parked reader that is killed but has not handled its kill
%% yet, so its wake message is delivered; its exit must pass the wake to the
%% Python reader parked behind it. (The flake of killed_reader_python_reader,
%% made likely: processes of high priority, one per scheduler, keep the killed
%% one from running. Not certain: it may run before they do, and then leaves
%% the line at once; such attempts are tried again.)
reader_killed_before_woken() ->
    helpers(),
    Reached = [killed_before_woken_once() || _ <- lists:seq(1, 10)],
    ?assertNotEqual([], [hello || hello <- Reached]),
    ?assertEqual([], [Other || Other <- Reached, Other =/= hello, Other =/= not_reached]).

killed_before_woken_once() ->
    {ok, Ch} = py_channel:new(),
    Doomed = spawn(fun() -> py_channel:recv(Ch, infinity) end),
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 1 end),
    Priority = process_flag(priority, high),
    Hogs = [spawn_opt(fun Spin() -> Spin() end, [{priority, high}])
            || _ <- lists:seq(1, erlang:system_info(schedulers_online))],
    Pending = try
                  exit(Doomed, kill),
                  Job = py:spawn_call('__main__', echo_from_channel, [Ch, self()]),
                  %% Doomed still counted: it has not handled its kill.
                  Deadline = erlang:monotonic_time(millisecond) + 500,
                  case yield_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 2
                                   end, Deadline) of
                      ok -> ok = py_channel:send(Ch, hello);
                      timeout -> ok = py_channel:send(Ch, not_reached)
                  end,
                  Job
              after
                  [exit(Hog, kill) || Hog <- Hogs],
                  process_flag(priority, Priority)
              end,
    Got = receive Echo when Echo =:= hello; Echo =:= not_reached -> Echo after 2000 -> stuck end,
    {ok, none} = py:await(Pending, 5000),
    Got.

%% A reader is woken (the wake message is in its mailbox) and killed before it
%% takes the term: the Python reader parked behind it gets the wake.
reader_killed_after_wake() ->
    helpers(),
    {ok, Ch} = py_channel:new(),
    Doomed = park_and_hold(fun() -> py_channel_nif:wait(Ch, 1) end),
    Pending = py:spawn_call('__main__', echo_from_channel, [Ch, self()]),
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 2 end),
    ok = py_channel:send(Ch, hello),
    wait_until(fun() -> process_info(Doomed, message_queue_len) =/= {message_queue_len, 0} end),
    exit(Doomed, kill),
    ?assertEqual(hello, receive hello -> hello after 2000 -> stuck end),
    ?assertEqual({ok, none}, py:await(Pending, 5000)).

%% Two senders wait for room; a receive leaves the channel half full and wakes
%% the first, which is killed before it sends again: the second gets the wake.
sender_killed_after_wake() ->
    Term = {filler, <<"0123456789">>},
    {ok, Ch} = py_channel:new(#{max_size => 4 * py_channel:term_size(Term)}),
    [ok = py_channel:send(Ch, Term) || _ <- lists:seq(1, 4)],
    Doomed = park_and_hold(fun() -> py_channel_nif:send_or_wait(Ch, Term, 1, 0) end),
    Parent = self(),
    Live = spawn_link(fun() -> Parent ! {self(), py_channel:send(Ch, Term, infinity)} end),
    wait_until(fun() -> maps:get(waiting_senders, py_channel:info(Ch)) =:= 2 end),
    [{ok, Term} = py_channel:try_receive(Ch) || _ <- [1, 2]],
    wait_until(fun() -> process_info(Doomed, message_queue_len) =/= {message_queue_len, 0} end),
    ?assertEqual(2, maps:get(length, py_channel:info(Ch))),
    exit(Doomed, kill),
    ?assertEqual(ok, receive {Live, R} -> R after 2000 -> stuck end),
    ?assertEqual(3, maps:get(length, py_channel:info(Ch))).

%% Each park monitors the reader until it takes what it was woken for; 100
%% parks left several monitors until the reader's garbage collection.
parks_leave_no_monitors() ->
    {ok, Ch} = py_channel:new(),
    Parent = self(),
    Reader = spawn_link(fun() ->
                                [{ok, I} = py_channel:recv(Ch, 5000) || I <- lists:seq(1, 100)],
                                {monitored_by, Monitors} = process_info(self(), monitored_by),
                                Parent ! {self(), length(Monitors)}
                        end),
    [begin
         wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 1 end),
         ok = py_channel:send(Ch, I)
     end || I <- lists:seq(1, 100)],
    Left = receive {Reader, Count} -> Count after 10000 -> timeout end,
    ?assert(is_integer(Left) andalso Left =< 1).

%% A process that parks with `Park' (answering `{waiting, Watch}'), keeps the
%% watch, and never acts on its wake.
park_and_hold(Park) ->
    Parent = self(),
    Pid = spawn(fun() ->
                        {waiting, Watch} = Park(),
                        Parent ! {self(), parked},
                        receive {never, Watch} -> ok end
                end),
    receive {Pid, parked} -> Pid end.

%% wait_until/1 without sleeping (a sleeping process of high priority would
%% let the others run): `ok', or `timeout' at `Deadline'.
yield_until(Condition, Deadline) ->
    case Condition() of
        true -> ok;
        false ->
            case erlang:monotonic_time(millisecond) < Deadline of
                true -> erlang:yield(), yield_until(Condition, Deadline);
                false -> timeout
            end
    end.

%% Item 5 ----------------------------------------------------------------

bad_timeouts() ->
    {ok, Ch} = py_channel:new(),
    [?assertError(badarg, py_channel:recv(Ch, Bad)) || Bad <- [1 bsl 32, -1, 1.5, forever]],
    ?assertEqual(0, maps:get(waiting_readers, py_channel:info(Ch))),
    [?assertError(badarg, py:call(math, sqrt, [4], #{}, Bad)) || Bad <- [-1, 1 bsl 32]],
    ?assertError(badarg, py:eval(<<"1">>, #{}, -1)),
    Pending = py:spawn_call(math, sqrt, [4]),
    ?assertError(badarg, py:await(Pending, -1)),
    ?assertEqual({ok, 2.0}, py:await(Pending, 5000)),
    ok = py_channel:send(Ch, later),
    timer:sleep(200),
    ?assertEqual([], flush()),
    %% The largest `receive' timeout still works.
    ?assertEqual({ok, later}, py_channel:recv(Ch, 16#FFFFFFFF)).

bad_timeouts_callbacks() ->
    helpers(),
    ok = py_channel:register_callbacks(),
    {ok, Ch} = py_channel:new(),
    ok = py:exec(<<"def call_outcome(*args):\n"
                   "    try:\n"
                   "        return erlang.call(*args)\n"
                   "    except erlang.CallError as error:\n"
                   "        return (Atom('call_error'), str(error))\n">>),
    [?assertMatch({ok, {call_error, _}},
                  py:call('__main__', call_outcome, [Name, Ch, 1 bsl 32]))
     || Name <- [<<"_py_channel_wait">>, <<"_py_channel_receive">>]],
    ?assertEqual(0, maps:get(waiting_readers, py_channel:info(Ch))),
    ok = py_channel:send(Ch, still_there),
    ?assertEqual({ok, still_there}, py_channel:try_receive(Ch)),
    ?assertEqual([], flush()).

%% Item 6 ----------------------------------------------------------------

receive_many_conversion_error() ->
    helpers(),
    ok = py:exec(<<"def batches_and_errors(ref):\n"
                   "    ch = Channel(ref)\n"
                   "    out = []\n"
                   "    for _ in range(3):\n"
                   "        try:\n"
                   "            out.append(ch.receive_many(10, 1))\n"
                   "        except ValueError:\n"
                   "            out.append(Atom('value_error'))\n"
                   "    return out\n">>),
    {ok, Ch} = py_channel:new(),
    TooDeep = lists:foldl(fun(_, Acc) -> [Acc] end, [], lists:seq(1, 20000)),
    [ok = py_channel:send(Ch, T) || T <- [1, 2, TooDeep, 3, 4]],
    ?assertEqual({ok, [[1, 2], value_error, [3, 4]]},
                 py:call('__main__', batches_and_errors, [Ch])).

%% Item 7 ----------------------------------------------------------------

failed_reply_sends_nothing() ->
    helpers(),
    ok = py:exec(<<"def bad_then_good(pid):\n"
                   "    errors = 0\n"
                   "    for send in (reply, erlang.send):\n"
                   "        try:\n"
                   "            send(pid, object())\n"
                   "        except TypeError:\n"
                   "            errors += 1\n"
                   "        try:\n"
                   "            send(pid, [1, 2, object()])\n"
                   "        except TypeError:\n"
                   "            errors += 1\n"
                   "    reply(pid, Atom('after'))\n"
                   "    return errors\n">>),
    ?assertEqual({ok, 4}, py:call('__main__', bad_then_good, [self()])),
    ?assertEqual(['after'], flush()).

%% Item 8 ----------------------------------------------------------------

colliding_keys() ->
    helpers(),
    Colliding = [#{<<"b">> => 1, b => 2}, #{1 => a, 1.0 => b}, #{true => a, 1 => b},
                 #{undefined => a, nil => b}, #{none => a, undefined => b}],
    [begin
         {error, {'ValueError', Message}} = py:call('__main__', identity, [Map]),
         [?assertNotEqual(nomatch, binary:match(Message, printed(Key)))
          || Key <- maps:keys(Map)],
         {ok, Ch} = py_channel:new(),
         ok = py_channel:send(Ch, Map),
         {ok, none} = py:call('__main__', echo_or_error, [Ch, self()]),
         ?assertMatch({error, _}, receive Answer -> Answer after 5000 -> none end)
     end || Map <- Colliding],
    %% Python -> Erlang: keys equal in Erlang but not in Python.
    [?assertMatch({error, {'ValueError', _}}, py:eval(Source))
     || Source <- [<<"{None: 1, Atom('none'): 2}">>, <<"{b'a': 1, 'a': 2}">>,
                   <<"{True: 1, Atom('true'): 2}">>,
                   <<"{float('nan'): 1, float('nan'): 2}">>]],
    %% Keys that stay apart still convert.
    ?assertEqual({ok, #{<<"b">> => 1, 1 => 2, 2.5 => 3}},
                 py:call('__main__', identity, [#{<<"b">> => 1, 1 => 2, 2.5 => 3}])).

printed(Term) ->
    iolist_to_binary(io_lib:format("~p", [Term])).

%% Item 9 ----------------------------------------------------------------

%% Terms sent into the channel they hold are stored encoded and decoded when
%% read; what Python read must not stay held after it is dropped.
received_terms_released() ->
    helpers(),
    erlang:garbage_collect(),
    #{live := Live0, binary := Binary0} = usage(),
    Pid = spawn(fun() ->
                             {ok, Ch} = py_channel:new(),
                             [ok = py_channel:send(Ch, {Ch, binary:copy(<<I>>, 2000000)})
                              || I <- lists:seq(1, 100)],
                             ok = py_channel:close(Ch),
                             {ok, 100} = py:eval(<<"sum(1 for _ in __import__('erlang').Channel(ch))">>, #{ch => Ch})
                     end),
    wait_exit(Pid),
    py:eval(<<"gc.collect()">>),
    wait_until(fun() -> maps:get(live, usage()) =< Live0 end),
    wait_until(fun() -> maps:get(binary, usage()) < Binary0 + 20000000 end).

%% Item 10 ---------------------------------------------------------------

channel_cycles_freed() ->
    helpers(),
    #{live := Live0} = usage(),
    Pid = spawn(fun() ->
                             Pairs = [begin
                                          {ok, A} = py_channel:new(),
                                          {ok, B} = py_channel:new(),
                                          ok = py_channel:send(A, {peer, B}),
                                          ok = py_channel:send(B, {peer, A}),
                                          {A, B}
                                      end || _ <- lists:seq(1, 200)],
                             %% Half read by Erlang, half by Python.
                             {ErlangRead, PythonRead} = lists:split(100, Pairs),
                             [{ok, {peer, _}} = py_channel:try_receive(C)
                              || {A, B} <- ErlangRead, C <- [A, B]],
                             [{ok, _} = py:eval(<<"__import__('erlang').Channel(c).receive(1)">>, #{c => C})
                              || {A, B} <- PythonRead, C <- [A, B]],
                             ok
                     end),
    wait_exit(Pid),
    py:eval(<<"gc.collect()">>),
    wait_until(fun() -> maps:get(live, usage()) =< Live0 end).

fun_cycle_freed() ->
    #{live := Live0} = usage(),
    Pid = spawn(fun() ->
                             {ok, Received} = py_channel:new(),
                             ok = py_channel:send(Received, fun() -> Received end),
                             {ok, F} = py_channel:try_receive(Received),
                             Received = F(),
                             {ok, Queued} = py_channel:new(),
                             ok = py_channel:send(Queued, fun() -> Queued end),
                             %% A fun holding another channel keeps that one alive.
                             {ok, Holder} = py_channel:new(),
                             {ok, Held} = py_channel:new(),
                             ok = py_channel:send(Holder, fun() -> Held end),
                             ok = py_channel:send(Holder, Holder),
                             {ok, G} = py_channel:try_receive(Holder),
                             ok = py_channel:send(G(), still_works),
                             {ok, still_works} = py_channel:try_receive(Held),
                             ok
                     end),
    wait_exit(Pid),
    wait_until(fun() -> maps:get(live, usage()) =< Live0 end).

%% Item 12 ---------------------------------------------------------------

exception_names_no_atoms() ->
    helpers(),
    ok = py:exec(<<"def raise_new(i):\n"
                   "    raise type(f'PyChannelFreshError{i}', (Exception,), {})('made at run time')\n">>),
    ?assertMatch({error, {'ZeroDivisionError', _}}, py:eval(<<"1/0">>)),
    Atoms0 = erlang:system_info(atom_count),
    Errors = [py:call('__main__', raise_new, [I]) || I <- lists:seq(1, 3000)],
    ?assert(erlang:system_info(atom_count) - Atoms0 < 100),
    ?assertEqual({error, {<<"PyChannelFreshError7">>, <<"made at run time">>}},
                 lists:nth(7, Errors)).

%% Item 13 ---------------------------------------------------------------

huge_timeouts() ->
    helpers(),
    {ok, Ch} = py_channel:new(),
    [begin
         ok = py_channel:send(Ch, N),
         ?assertEqual({ok, Expected}, py:eval(Source, #{ch => Ch}))
     end || {N, Source, Expected} <-
                [{1, <<"Channel(ch).receive(timeout=1e300)">>, 1},
                 {2, <<"Channel(ch).receive_many(1, timeout=1e300)">>, [2]},
                 {3, <<"Channel(ch).receive(timeout=1e19)">>, 3},
                 {4, <<"Channel(ch).receive(timeout=float('inf'))">>, 4}]],
    %% Waiting for ever really waits, and still wakes for a term.
    ok = py:exec(<<"def wait_long(ref):\n"
                   "    return Channel(ref).receive(timeout=1e300)\n">>),
    Waiting = py:spawn_call('__main__', wait_long, [Ch]),
    timer:sleep(100),
    ok = py_channel:send(Ch, woken),
    ?assertEqual({ok, woken}, py:await(Waiting, 5000)),
    [?assertMatch({error, {'ValueError', _}}, py:eval(Source, #{ch => Ch}))
     || Source <- [<<"Channel(ch).receive(timeout=float('nan'))">>,
                   <<"Channel(ch).receive(timeout=-1e300)">>]].

%% Helpers ---------------------------------------------------------------

usage() ->
    erlang:garbage_collect(),
    #{live => maps:get(live_channels, py_channel:stats()),
      binary => erlang:memory(binary)}.

wait_exit(Pid) ->
    Ref = monitor(process, Pid),
    receive {'DOWN', Ref, process, Pid, Reason} -> ?assertEqual(normal, Reason)
    after 60000 -> error(timeout)
    end.

flush() ->
    receive Message -> [Message | flush()] after 0 -> [] end.

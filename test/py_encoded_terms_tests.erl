%% Small plain terms are queued in a flat encoding of their own rather than
%% copied as terms (native/py_channel_nif/src/beam/flat_term.rs), and a Python
%% reader builds its objects from that encoding without the term. These tests
%% hold that store to the term's: every term at and past the edges of what is
%% encoded comes back exact to an Erlang reader, weighs what term_size/1 says,
%% and reaches Python as the same objects a py:call argument becomes; binaries
%% viewed from an encoded frame outlive it.
-module(py_encoded_terms_tests).

-include_lib("eunit/include/eunit.hrl").

-define(PYTHON, <<"
from erlang import Atom
from erlang.channel import Channel, reply

def describe(x):
    '''The object's shape: types all the way down, and the leaves' values.'''
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [describe(item) for item in x])
    if isinstance(x, memoryview):
        return ('memoryview', x.readonly, x.tobytes())
    return (type(x).__name__, repr(x))

def describe_each(ref, count, binary):
    channel = Channel(ref, binary=binary)
    return [describe(channel.receive()) for _ in range(count)]

def echo_each(ref, count, pid):
    channel = Channel(ref)
    for _ in range(count):
        reply(pid, channel.receive())

def keep_views(ref, count):
    '''Reads count binaries as views, keeps them all, and answers whether each
    still holds what it held when read, after every later frame was read.'''
    channel = Channel(ref, binary='memoryview')
    kept = []
    for _ in range(count):
        view = channel.receive()
        kept.append((view, view.tobytes()))
    return all(view.tobytes() == seen for view, seen in kept)

SENT_FROM_PYTHON = [('request', 1, b'raw', 2.5, None, True, [Atom('a'), 'text', (), []]),
                    2**63, -2**63, 2**64, b'x' * 100, [1.5] * 10, float('nan')]

def interleave(busy_ref, stalled_ref, runs, run_length):
    '''Sends run_length terms to one channel, read at once, then one to another that nobody
    reads, runs times over.'''
    busy, stalled = Channel(busy_ref), Channel(stalled_ref)
    for run in range(runs):
        for index in range(run_length):
            busy.send((Atom('x'), index))
        busy.receive_many(run_length)
        stalled.send((Atom('b'), run))

import threading

def on_threads(first_ref, second_ref, count):
    '''A thread Python starts sends count terms to each of two channels, in runs of 3; a
    second thread reads the first channel as views and keeps them; both end before the views
    are looked at, and the second channel is left for Erlang.'''
    def send():
        first, second = Channel(first_ref), Channel(second_ref)
        for start in range(0, count, 3):
            for n in range(start, min(start + 3, count)):
                first.send(b'v%d' % n)
            for n in range(start, min(start + 3, count)):
                second.send((Atom('t'), n, 'x' * (n % 50)))
    kept = []
    def read():
        channel = Channel(first_ref, binary='memoryview')
        while len(kept) < count:
            kept.extend(channel.receive_many(100))
    sender = threading.Thread(target=send)
    sender.start()
    sender.join()
    reader = threading.Thread(target=read)
    reader.start()
    reader.join()
    return [bytes(view) for view in kept] == [b'v%d' % n for n in range(count)]

def drain_in_batches(ref, count):
    channel = Channel(ref)
    taken = []
    while len(taken) < count:
        taken.extend(channel.receive_many(10, timeout=5))
    return taken

def python_to_python(ref):
    channel = Channel(ref)
    for item in SENT_FROM_PYTHON:
        channel.send(item)
    return [describe(channel.receive()) for _ in SENT_FROM_PYTHON]
">>).

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

%% A namespace is the calling process's: each test defines the helpers in its own.
helpers() ->
    ok = py:exec(?PYTHON).

encoded_terms_test_() ->
    {setup, fun setup/0,
     [{"terms at the edges of the encoding come back exact, weighing what term_size/1 says",
       fun erlang_reader_exact/0},
      {"Python reads each as the objects a py:call argument becomes, in every binary mode",
       fun python_reader_same_objects/0},
      {"what Python reads goes back exact (by the type table)", fun python_round_trip/0},
      {"views of encoded binaries outlive their frames and the chunks after them",
       fun views_outlive_frames/0},
      {"Python to Python: read as the terms Python sent would be", fun python_to_python/0},
      {"the per-message NIFs, called without rustler's wrapper, still refuse bad arguments",
       fun raw_nifs_refuse_bad_arguments/0},
      {timeout, 60,
       {"a queued frame keeps no other channel's read frames in memory (Erlang senders)",
        fun queued_frame_holds_little_erlang/0}},
      {timeout, 60,
       {"... nor from Python senders", fun queued_frame_holds_little_python/0}},
      {"on threads Python started: encoded, read as views, alive after both threads end",
       fun on_python_threads/0},
      {"receive_many passes a killed waiting sender's wake on to the next",
       fun receive_many_passes_a_dead_senders_wake_on/0}]}.

%% Encoded, and just past what is encoded (each of those is copied as a term).
edge_terms() ->
    Big = binary:copy(<<"0123456789">>, 100),
    Port = hd(erlang:ports()),
    Nested = fun(Depth) -> lists:foldl(fun(_, Inner) -> [Inner] end, leaf, lists:seq(1, Depth)) end,
    [atom, [], {}, self(), Port, true, false, undefined, nil, none,
     0, -1, 42, (1 bsl 59) - 1, 1 bsl 59, -(1 bsl 59) - 1,
     (1 bsl 63) - 1, -(1 bsl 63), 1 bsl 63, (1 bsl 64) - 1,
     1 bsl 64, -(1 bsl 63) - 1, 1 bsl 200,
     1.5, -0.0, 0.0, 1.0e300,
     <<>>, <<"data">>, <<"héllo"/utf8>>, <<255, 0, 254>>,
     binary:copy(<<"x">>, 64), binary:copy(<<"x">>, 65), Big,
     binary:part(Big, 10, 20), binary:part(Big, 10, 64), <<1:3>>, <<"ab", 1:5>>,
     {request, self(), <<"data">>}, {1, {2, {3, [4, 5, {}]}}}, [a, [b, [c, []]]],
     {bytes, <<"raw">>}, {memoryview, <<"seen">>}, {bytes, Big}, {bytes, <<1:3>>},
     Nested(63), Nested(64), Nested(65),
     lists:duplicate(400, atom), lists:duplicate(500, atom),
     lists:seq(1, 300), [binary:copy(<<"y">>, 64) || _ <- lists:seq(1, 70)],
     [a | b], [1, 2 | <<"tail">>], {a, #{k => v}}, [1, make_ref()], {fun() -> ok end},
     {{}, [], <<>>, 0}].

erlang_reader_exact() ->
    {ok, Ch} = py_channel:new(),
    lists:foreach(
      fun(Term) ->
              ok = py_channel:send(Ch, Term),
              ?assertEqual({Term, py_channel:term_size(Term)},
                           {Term, maps:get(size, py_channel:info(Ch))}),
              {ok, Back} = py_channel:try_receive(Ch),
              ?assert(Back =:= Term, {Term, Back})
      end, edge_terms() ++ [{Ch, self()}]),
    %% The same through send_many/2 and a subscriber.
    Terms = edge_terms(),
    {ok, Sent} = py_channel:send_many(Ch, Terms),
    ?assertEqual(length(Terms), Sent),
    ok = py_channel:subscribe(Ch, length(Terms)),
    Received = [receive {py_channel, Ch, T} -> T after 5000 -> timeout end || _ <- Terms],
    ?assert(Received =:= Terms),
    receive {py_channel_passive, Ch} -> ok after 5000 -> error(no_passive) end.

python_reader_same_objects() ->
    helpers(),
    Terms = edge_terms(),
    lists:foreach(
      fun(Mode) ->
              {ok, Ch} = py_channel:new(),
              {ok, Sent} = py_channel:send_many(Ch, Terms),
              ?assertEqual(length(Terms), Sent),
              {ok, FromChannel} =
                  py:call('__main__', describe_each, [Ch, length(Terms), Mode], #{}, 30000),
              Expected = [begin
                              {ok, Described} = py:call('__main__', describe, [as_argument(T, Mode)]),
                              Described
                          end || T <- Terms],
              lists:foreach(fun({Term, Got, Want}) -> ?assertEqual({Term, Want}, {Term, Got}) end,
                            lists:zip3(Terms, FromChannel, Expected))
      end, [<<"auto">>, <<"bytes">>, <<"memoryview">>]).

%% What a py:call argument must be to arrive as a channel's reader in `Mode' reads
%% the term: its binaries tagged, outside a tag of their own.
as_argument(Term, <<"auto">>) -> Term;
as_argument(Term, Mode) -> tag_binaries(Term, binary_to_atom(Mode)).

tag_binaries({bytes, B} = Tagged, _Tag) when is_binary(B) -> Tagged;
tag_binaries({memoryview, B} = Tagged, _Tag) when is_binary(B) -> Tagged;
tag_binaries(B, Tag) when is_binary(B) -> {Tag, B};
tag_binaries(T, Tag) when is_tuple(T) -> list_to_tuple(tag_binaries(tuple_to_list(T), Tag));
tag_binaries([H | T], Tag) when is_list(T) -> [tag_binaries(H, Tag) | tag_binaries(T, Tag)];
tag_binaries(Other, _Tag) -> Other.

python_round_trip() ->
    helpers(),
    Terms = edge_terms(),
    {ok, Ch} = py_channel:new(),
    Echo = py:spawn_call('__main__', echo_each, [Ch, length(Terms), self()]),
    {ok, _} = py_channel:send_many(Ch, Terms),
    lists:foreach(
      fun(Term) ->
              receive Back -> ?assert(Back =:= normal_form(Term), {Term, Back})
              after 5000 -> error({no_echo, Term})
              end
      end, Terms),
    ?assertEqual({ok, none}, py:await(Echo, 5000)).

%% The type table's normal form: the none atoms come back as none, a tagged
%% binary as the binary.
normal_form(undefined) -> none;
normal_form(nil) -> none;
normal_form({bytes, B}) when is_binary(B) -> B;
normal_form({memoryview, B}) when is_binary(B) -> B;
normal_form(T) when is_tuple(T) -> list_to_tuple(normal_form(tuple_to_list(T)));
normal_form([H | T]) when is_list(T) -> [normal_form(H) | normal_form(T)];
normal_form(Other) -> Other.

views_outlive_frames() ->
    helpers(),
    Count = 20000,
    {ok, Ch} = py_channel:new(),
    Reader = py:spawn_call('__main__', keep_views, [Ch, Count]),
    [ok = py_test_support:send_retrying(Ch, integer_to_binary(N * 7919)) || N <- lists:seq(1, Count)],
    ?assertEqual({ok, true}, py:await(Reader, 60000)).

python_to_python() ->
    helpers(),
    {ok, Ch} = py_channel:new(),
    {ok, Sent} = py:eval(<<"SENT_FROM_PYTHON">>),
    Expected = [begin {ok, D} = py:call('__main__', describe, [T]), D end || T <- Sent],
    ?assertEqual({ok, Expected}, py:call('__main__', python_to_python, [Ch])).

%% send/2, try_receive/1, send/3's step and send_many/2's step are registered
%% without rustler's wrapper (native/py_channel_nif/src/beam/raw_nif.rs): each
%% still answers a wrong argument with badarg, queuing nothing.
raw_nifs_refuse_bad_arguments() ->
    {ok, Ch} = py_channel:new(),
    ?assertError(badarg, py_channel_nif:send(make_ref(), term)),
    ?assertError(badarg, py_channel_nif:send(self(), term)),
    ?assertError(badarg, py_channel_nif:try_receive(<<"not a channel">>)),
    ?assertError(badarg, py_channel_nif:send_or_wait(Ch, term, -1, 0)),
    ?assertError(badarg, py_channel_nif:send_or_wait(Ch, term, 1, not_a_ticket)),
    ?assertError(badarg, py_channel_nif:send_or_wait(42, term, 1, 0)),
    ?assertError(badarg, py_channel_nif:send_many(Ch, [a, b | c])),
    ?assertError(badarg, py_channel_nif:send_many(Ch, not_a_list)),
    ?assertEqual(#{size => 0, length => 0}, maps:with([size, length], py_channel:info(Ch))),
    ?assertEqual(ok, py_channel_nif:send(Ch, term)),
    ?assertEqual({ok, term}, py_channel_nif:try_receive(Ch)).

%% Encoded frames live in chunks a sending thread fills one after another. A
%% frame left queued must not keep alive a chunk's worth of other channels'
%% frames that were read long ago: that memory is counted by no max_size and
%% shown by no erlang:memory/0. Runs of 255 sends to a channel that is read at
%% once, each followed by one send to a channel nobody reads: 4,000 of those
%% queued frames (about 176 KB as max_size counts them) held a 16 KiB chunk
%% each: the resident size grew by 36 MB, from Erlang or Python senders alike
%% (1 MB once a chunk holds one channel's frames).
-define(INTERLEAVED_RUNS, 4000).
-define(RUN_LENGTH, 255).
%% Resident growth allowed while the stalled frames are queued.
-define(HELD_MARGIN_MB, 16).

queued_frame_holds_little_erlang() ->
    {ok, Busy} = py_channel:new(),
    {ok, Stalled} = py_channel:new(),
    Before = py_test_support:rss_mb(),
    lists:foreach(
      fun(Run) ->
              [ok = py_channel:send(Busy, {x, I}) || I <- lists:seq(1, ?RUN_LENGTH)],
              [{ok, _} = py_channel:try_receive(Busy) || _ <- lists:seq(1, ?RUN_LENGTH)],
              ok = py_channel:send(Stalled, {b, Run})
      end, lists:seq(1, ?INTERLEAVED_RUNS)),
    held_little(Before, Stalled).

queued_frame_holds_little_python() ->
    helpers(),
    {ok, Busy} = py_channel:new(),
    {ok, Stalled} = py_channel:new(),
    Before = py_test_support:rss_mb(),
    {ok, none} = py:call('__main__', interleave,
                         [Busy, Stalled, ?INTERLEAVED_RUNS, ?RUN_LENGTH], #{}, 60000),
    held_little(Before, Stalled).

held_little(Before, Stalled) ->
    ?assertEqual(?INTERLEAVED_RUNS, maps:get(length, py_channel:info(Stalled))),
    Held = py_test_support:rss_mb() - Before,
    ?assert(Held < ?HELD_MARGIN_MB, {resident_growth_mb, Held}),
    %% Every stalled frame is still there, in order.
    [?assertMatch({ok, {b, _}}, py_channel:try_receive(Stalled))
     || _ <- lists:seq(1, ?INTERLEAVED_RUNS)].

%% Terms encoded and views made on threads Python started: the chunks outlive
%% both threads (the sender's gives its chunk back as the thread ends).
on_python_threads() ->
    helpers(),
    Count = 3000,
    {ok, First} = py_channel:new(),
    {ok, Second} = py_channel:new(),
    ?assertEqual({ok, true}, py:call('__main__', on_threads, [First, Second, Count], #{}, 30000)),
    Expected = [{t, N, binary:copy(<<"x">>, N rem 50)} || N <- lists:seq(0, Count - 1)],
    ?assertEqual(Expected, [element(2, py_channel:try_receive(Second)) || _ <- Expected]),
    ?assertEqual({error, empty}, py_channel:try_receive(Second)).

%% receive_many counts what it takes in batches, but at once while a sender
%% waits for room: the first waiting sender, killed, cannot take the wake; it
%% must go on to the next, whose term then arrives.
receive_many_passes_a_dead_senders_wake_on() ->
    helpers(),
    {ok, Ch} = py_channel:new(#{max_size => 64}),
    Fill = [N || N <- lists:seq(1, 8)],
    [ok = py_channel:send(Ch, N) || N <- Fill],
    busy = py_channel:send(Ch, 9),
    Self = self(),
    {Doomed, Monitor} = spawn_monitor(fun() -> py_channel:send(Ch, doomed, infinity) end),
    wait_until(fun() -> maps:get(waiting_senders, py_channel:info(Ch)) =:= 1 end),
    spawn_link(fun() -> Self ! {sent, py_channel:send(Ch, survivor, infinity)} end),
    wait_until(fun() -> maps:get(waiting_senders, py_channel:info(Ch)) =:= 2 end),
    exit(Doomed, kill),
    receive {'DOWN', Monitor, process, Doomed, killed} -> ok end,
    ?assertEqual({ok, Fill ++ [survivor]},
                 py:call('__main__', drain_in_batches, [Ch, length(Fill) + 1], #{}, 10000)),
    ?assertEqual(ok, receive {sent, R} -> R after 5000 -> no_answer end),
    ?assertMatch(#{waiting_senders := 0, length := 0}, py_channel:info(Ch)).

wait_until(Condition) ->
    py_test_support:wait_until(Condition).

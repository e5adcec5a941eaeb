%% EUnit suite for the Erlang `py_channel' API, driving the real NIF.
-module(py_channel_tests).

-include_lib("eunit/include/eunit.hrl").

-import(py_test_support, [send_retrying/2, recv_all/1, wait_until/1]).

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

py_channel_test_() ->
    {setup, fun setup/0,
     [{"new/0 gives an open, empty, unbounded channel", fun new_defaults/0},
      {"terms come back exactly (=:=)", fun exact_round_trip/0},
      {"a channel inside a message comes back as the same live channel",
       fun channel_in_message/0},
      {"deep nesting does not overflow the stack", fun deep_nesting/0},
      {"FIFO order", fun fifo_order/0},
      {"term_size/1 counts words and binary bytes", fun term_size_measure/0},
      {"size counts the bytes queued", fun byte_accounting/0},
      {"busy when the queued bytes would exceed max_size", fun busy_rule/0},
      {"too_large when the term alone exceeds max_size", fun too_large/0},
      {"close keeps queued terms for readers to drain", fun close_then_drain/0},
      {"close is idempotent and send after close fails", fun close_twice/0},
      {"bad options to new/1", fun bad_options/0},
      {"a non-channel is a badarg everywhere", fun non_channel_badarg/0},
      {"the owner's exit closes the channel; queued terms still drain",
       fun owner_exit_closes/0},
      {"the creator is the default owner", fun creator_is_owner/0},
      {"a dead owner gives a closed channel", fun dead_owner/0},
      {"memory is freed when the last reference is gone", fun freed_when_unreferenced/0},
      {"a pinned channel lives as long as the message holding it",
       fun pinned_channel_lifetime/0},
      {"a channel holding itself is still freed", fun self_reference_freed/0},
      {"queued binaries are released once received", fun binaries_released_when_received/0},
      {"recv/2 waits for a send", fun recv_waits_for_send/0},
      {"recv/2 times out and leaves no message behind", fun recv_timeout/0},
      {"close wakes every blocked Erlang reader", fun close_wakes_readers/0},
      {timeout, 60, {"many Erlang readers each get distinct terms", fun many_readers/0}},
      {timeout, 120,
       {"8 producers x 10,000 sends, one reader: every value exactly once",
        fun eight_producers_one_reader/0}},
      {"term_size/1 of what a send counts", fun term_size_matches_send/0},
      {"info/1 totals: sent, received, busy and their bytes, the same in Python",
       fun info_totals/0},
      {"stats/0 counts Python jobs running and queued", fun stats_jobs/0}]}.

term_size_matches_send() ->
    {ok, Ch} = py_channel:new(),
    Term = {request, self(), <<"data">>, [1.5, big]},
    ok = py_channel:send(Ch, Term),
    ?assertEqual(py_channel:term_size(Term), maps:get(size, py_channel:info(Ch))).


new_defaults() ->
    {ok, Ch} = py_channel:new(),
    ?assertMatch(#{size := 0, max_size := 0, closed := false}, py_channel:info(Ch)),
    ?assertEqual({error, empty}, py_channel:try_receive(Ch)).

sample_terms() ->
    Port = open_port({spawn, "true"}, []),
    port_close(Port),
    <<_:3, Bits/bitstring>> = <<"odd bits">>,
    Big = binary:copy(<<"0123456789abcdef">>, 1024),
    <<_:7/binary, Sub:100/binary, _/binary>> = Big,
    [0, -1, 42, 1 bsl 64, -(1 bsl 200), 1.5, -0.0, 1.0e308,
     atom, 'with space', true, false, undefined, nil, none, '',
     <<>>, <<"utf8 ✓"/utf8>>, <<255, 0, 254>>, Big, Sub, Bits,
     self(), make_ref(), Port, fun lists:map/2, fun(X) -> X + 1 end,
     [], [1, 2, 3], [a | b], [1, [2, [3 | 4]] | <<"tail">>], "a string",
     {}, {a}, {request, self(), <<"data">>},
     #{}, #{a => 1, <<"b">> => [2], {c} => #{d => e}},
     maps:from_list([{N, N * N} || N <- lists:seq(1, 100)]),
     {deep, [#{k => {self(), make_ref(), [1.0 | 2]}}]}].

exact_round_trip() ->
    {ok, Ch} = py_channel:new(),
    Terms = sample_terms(),
    [ok = py_channel:send(Ch, T) || T <- Terms],
    Back = [begin {ok, T} = py_channel:try_receive(Ch), T end || _ <- Terms],
    ?assertEqual(length(Terms), length(Back)),
    lists:foreach(fun({Sent, Got}) -> ?assert(Sent =:= Got) end,
                  lists:zip(Terms, Back)),
    %% Funs stay callable after the trip.
    ok = py_channel:send(Ch, fun(X) -> X * 2 end),
    {ok, F} = py_channel:try_receive(Ch),
    ?assertEqual(42, F(21)).

channel_in_message() ->
    {ok, Outer} = py_channel:new(),
    {ok, Inner} = py_channel:new(),
    ok = py_channel:send(Inner, hello),
    ok = py_channel:send(Outer, {here, Inner, [Inner]}),
    ok = py_channel:send(Outer, Outer),
    {ok, {here, Got, [Got2]}} = py_channel:try_receive(Outer),
    ?assert(Got =:= Inner),
    ?assert(Got2 =:= Inner),
    ?assertEqual({ok, hello}, py_channel:try_receive(Got)),
    {ok, Self} = py_channel:try_receive(Outer),
    ?assert(Self =:= Outer).

deep_nesting() ->
    {ok, Ch} = py_channel:new(),
    Deep = lists:foldl(fun(_, Acc) -> [Acc] end, [], lists:seq(1, 200000)),
    DeepTuple = lists:foldl(fun(_, Acc) -> {Acc} end, x, lists:seq(1, 200000)),
    ok = py_channel:send(Ch, Deep),
    ok = py_channel:send(Ch, DeepTuple),
    ?assertEqual({ok, Deep}, py_channel:try_receive(Ch)),
    ?assertEqual({ok, DeepTuple}, py_channel:try_receive(Ch)).

fifo_order() ->
    {ok, Ch} = py_channel:new(),
    [ok = py_channel:send(Ch, N) || N <- lists:seq(1, 5000)],
    ?assertEqual(lists:seq(1, 5000), drain(Ch)).

term_size_measure() ->
    ?assertEqual(8, py_channel:term_size(atom)),
    ?assertEqual(8, py_channel:term_size(42)),
    ?assertEqual(16, py_channel:term_size(1.5)),
    ?assertEqual(16 + 1000, py_channel:term_size(binary:copy(<<1>>, 1000))),
    ?assertEqual(16 + 5, py_channel:term_size(<<"hello">>)),
    ?assertEqual(8 + 8 + 8, py_channel:term_size({a, b})),
    ?assertEqual(3 * 16, py_channel:term_size([1, 2, 3])),
    ?assertEqual(8, py_channel:term_size([])),
    ?assertEqual(24 + 2 * 8, py_channel:term_size(#{a => 1})),
    %% Nested terms add up; a bignum counts at least its digits.
    ?assertEqual(8 + 8 + (16 + 4) + 3 * 16,
                 py_channel:term_size({x, <<"data">>, [1, 2, 3]})),
    ?assert(py_channel:term_size(1 bsl 1000) >= 1000 div 8).

byte_accounting() ->
    {ok, Ch} = py_channel:new(),
    Terms = [<<"x">>, {a, b}, lists:seq(1, 100), binary:copy(<<1>>, 1000)],
    Sizes = [py_channel:term_size(T) || T <- Terms],
    Total = lists:sum(Sizes),
    [ok = py_channel:send(Ch, T) || T <- Terms],
    ?assertMatch(#{size := Total, length := 4}, py_channel:info(Ch)),
    {ok, _} = py_channel:try_receive(Ch),
    ?assertEqual(lists:sum(tl(Sizes)), maps:get(size, py_channel:info(Ch))),
    drain(Ch),
    ?assertEqual(0, maps:get(size, py_channel:info(Ch))).

busy_rule() ->
    Term = binary:copy(<<7>>, 100),
    Bytes = py_channel:term_size(Term),
    {ok, Ch} = py_channel:new(#{max_size => 3 * Bytes}),
    ?assertEqual(ok, py_channel:send(Ch, Term)),
    ?assertEqual(ok, py_channel:send(Ch, Term)),
    ?assertEqual(ok, py_channel:send(Ch, Term)),
    ?assertEqual(busy, py_channel:send(Ch, Term)),
    ?assertEqual(busy, py_channel:send(Ch, a)),
    ?assertMatch(#{size := S, max_size := M} when S =:= M, py_channel:info(Ch)),
    {ok, Term} = py_channel:try_receive(Ch),
    ?assertEqual(ok, py_channel:send(Ch, Term)),
    %% Nothing refused was queued: exactly the four accepted come out.
    ?assertEqual([Term, Term, Term], drain(Ch)).

too_large() ->
    {ok, Ch} = py_channel:new(#{max_size => 64}),
    Huge = binary:copy(<<1>>, 49),
    ?assertEqual({error, too_large}, py_channel:send(Ch, Huge)),
    %% Even on an empty channel, never an endless busy.
    ?assertEqual({error, too_large}, py_channel:send(Ch, Huge)),
    ?assertEqual(ok, py_channel:send(Ch, small)),
    ?assertEqual([small], drain(Ch)).

close_then_drain() ->
    {ok, Ch} = py_channel:new(),
    [ok = py_channel:send(Ch, N) || N <- [1, 2, 3]],
    ok = py_channel:close(Ch),
    ?assertMatch(#{closed := true, length := 3}, py_channel:info(Ch)),
    ?assertEqual({ok, 1}, py_channel:try_receive(Ch)),
    ?assertEqual({ok, 2}, py_channel:recv(Ch, 0)),
    ?assertEqual({ok, 3}, py_channel:recv(Ch)),
    ?assertEqual({error, closed}, py_channel:try_receive(Ch)),
    ?assertEqual({error, closed}, py_channel:recv(Ch, 1000)).

close_twice() ->
    {ok, Ch} = py_channel:new(),
    ?assertEqual(ok, py_channel:close(Ch)),
    ?assertEqual(ok, py_channel:close(Ch)),
    ?assertEqual({error, closed}, py_channel:send(Ch, late)),
    ?assertEqual({error, closed}, py_channel:try_receive(Ch)).

bad_options() ->
    ?assertError(function_clause, py_channel:new(not_a_map)),
    ?assertError(function_clause, py_channel:new([{max_size, 10}])),
    ?assertEqual({error, {badarg, max_size}}, py_channel:new(#{max_size => -1})),
    ?assertEqual({error, {badarg, max_size}}, py_channel:new(#{max_size => 1.5})),
    ?assertEqual({error, {badarg, max_size}}, py_channel:new(#{max_size => big})),
    ?assertEqual({error, {badarg, max_size}}, py_channel:new(#{max_size => 1 bsl 47})),
    ?assertMatch({ok, _}, py_channel:new(#{max_size => 1 bsl 47 - 1})),
    ?assertEqual({error, {badarg, owner}}, py_channel:new(#{owner => self})),
    ?assertEqual({error, {badarg, owner}}, py_channel:new(#{owner => make_ref()})),
    ?assertEqual({error, {badarg, colour}}, py_channel:new(#{colour => blue})),
    ?assertEqual({error, {badarg, "max_size"}}, py_channel:new(#{"max_size" => 1})),
    %% Nothing half-made was left behind.
    ?assertMatch({ok, _}, py_channel:new(#{max_size => 0, owner => self()})).

non_channel_badarg() ->
    NotChannels = [foo, 1, <<"ch">>, make_ref(), self(), {channel, 1}, []],
    lists:foreach(
      fun(Bad) ->
              ?assertError(badarg, py_channel:send(Bad, x)),
              ?assertError(badarg, py_channel:close(Bad)),
              ?assertError(badarg, py_channel:info(Bad)),
              ?assertError(badarg, py_channel:try_receive(Bad)),
              ?assertError(badarg, py_channel:recv(Bad, 10))
      end, NotChannels),
    {ok, Ch} = py_channel:new(),
    ?assertError(badarg, py_channel:recv(Ch, -1)),
    ?assertError(badarg, py_channel:recv(Ch, soon)).

owner_exit_closes() ->
    Owner = spawn(fun() -> receive stop -> ok end end),
    {ok, Ch} = py_channel:new(#{owner => Owner}),
    [ok = py_channel:send(Ch, N) || N <- [1, 2]],
    Ref = monitor(process, Owner),
    Owner ! stop,
    receive {'DOWN', Ref, process, Owner, _} -> ok end,
    wait_until(fun() -> maps:get(closed, py_channel:info(Ch)) end),
    ?assertEqual({error, closed}, py_channel:send(Ch, 3)),
    ?assertEqual([1, 2], drain(Ch)),
    ?assertEqual({error, closed}, py_channel:try_receive(Ch)).

creator_is_owner() ->
    Parent = self(),
    Creator = spawn(fun() ->
                            {ok, Ch} = py_channel:new(),
                            Parent ! {channel, Ch},
                            receive stop -> ok end
                    end),
    Ch = receive {channel, C} -> C end,
    ?assertMatch(#{closed := false}, py_channel:info(Ch)),
    %% A reader blocked in recv/2 ends when the owner exits.
    Reader = spawn_reader(Ch),
    Creator ! stop,
    ?assertEqual({error, closed}, reader_result(Reader)).

dead_owner() ->
    Dead = spawn(fun() -> ok end),
    Ref = monitor(process, Dead),
    receive {'DOWN', Ref, process, Dead, _} -> ok end,
    {ok, Ch} = py_channel:new(#{owner => Dead}),
    ?assertMatch(#{closed := true}, py_channel:info(Ch)),
    ?assertEqual({error, closed}, py_channel:send(Ch, x)).

freed_when_unreferenced() ->
    Before = live_channels(),
    Parent = self(),
    {Pid, Ref} = spawn_monitor(
                   fun() ->
                           Chs = [begin {ok, C} = py_channel:new(), C end
                                  || _ <- lists:seq(1, 50)],
                           [ok = py_channel:send(C, {payload, binary:copy(<<1>>, 1000)})
                            || C <- Chs],
                           Parent ! {live, live_channels()}
                   end),
    receive {live, During} -> ?assert(During >= Before + 50) end,
    receive {'DOWN', Ref, process, Pid, normal} -> ok end,
    wait_until(fun() -> live_channels() =< Before end).

pinned_channel_lifetime() ->
    {ok, Outer} = py_channel:new(),
    Parent = self(),
    {Pid, Ref} = spawn_monitor(
                   fun() ->
                           {ok, Inner} = py_channel:new(#{owner => Parent}),
                           ok = py_channel:send(Inner, inside),
                           ok = py_channel:send(Outer, {inner, Inner})
                   end),
    receive {'DOWN', Ref, process, Pid, normal} -> ok end,
    %% Only the queued message refers to Inner now, and it keeps it alive:
    %% were it freed, the reference would no longer be a channel (badarg).
    erlang:garbage_collect(),
    {ok, {inner, Inner}} = py_channel:try_receive(Outer),
    ?assertEqual({ok, inside}, py_channel:try_receive(Inner)).

self_reference_freed() ->
    Before = settled_live_channels(),
    {Pid, Ref} = spawn_monitor(
                   fun() ->
                           {ok, A} = py_channel:new(),
                           {ok, B} = py_channel:new(),
                           ok = py_channel:send(A, A),
                           ok = py_channel:send(A, {a_and_b, A, B}),
                           ok = py_channel:send(B, {b, [B]})
                   end),
    receive {'DOWN', Ref, process, Pid, normal} -> ok end,
    %% A and B each hold themselves, and A holds B: nothing outside refers
    %% to them, so both are freed.
    ?assertEqual(Before, settled_live_channels()).

binaries_released_when_received() ->
    Parent = self(),
    {ok, Ch} = py_channel:new(),
    Baseline = erlang:memory(binary),
    {Pid, Ref} = spawn_monitor(
                   fun() ->
                           [ok = py_channel:send(Ch, binary:copy(<<N:8>>, 100000))
                            || N <- lists:seq(1, 200)],
                           Parent ! sent
                   end),
    receive sent -> ok end,
    receive {'DOWN', Ref, process, Pid, normal} -> ok end,
    %% 20 MB of binaries, held by the queue alone.
    ?assert(erlang:memory(binary) >= Baseline + 200 * 100000),
    {Reader, ReaderRef} = spawn_monitor(
                            fun() ->
                                    Got = drain(Ch),
                                    200 = length(Got),
                                    true = lists:all(fun(B) -> byte_size(B) =:= 100000 end, Got)
                            end),
    receive {'DOWN', ReaderRef, process, Reader, Why} -> ?assertEqual(normal, Why) end,
    %% Freed on other threads, a binary's memory is given back when its allocating
    %% scheduler next runs its aux work: allow a busy machine 30 s.
    py_test_support:wait_until(fun() -> erlang:memory(binary) < Baseline + 2000000 end, 3000).

recv_waits_for_send() ->
    {ok, Ch} = py_channel:new(),
    Reader = spawn_reader(Ch),
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 1 end),
    ok = py_channel:send(Ch, {hello, 1}),
    ?assertEqual({ok, {hello, 1}}, reader_result(Reader)),
    ?assertEqual(0, maps:get(waiting_readers, py_channel:info(Ch))).

recv_timeout() ->
    {ok, Ch} = py_channel:new(),
    T0 = erlang:monotonic_time(millisecond),
    ?assertEqual({error, timeout}, py_channel:recv(Ch, 50)),
    ?assert(erlang:monotonic_time(millisecond) - T0 >= 50),
    ?assertEqual(0, maps:get(waiting_readers, py_channel:info(Ch))),
    ?assertEqual({error, timeout}, py_channel:recv(Ch, 0)),
    receive Stray -> ?assertEqual(no_stray_message, Stray) after 0 -> ok end.

close_wakes_readers() ->
    {ok, Ch} = py_channel:new(),
    Readers = [spawn_reader(Ch) || _ <- lists:seq(1, 5)],
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 5 end),
    ok = py_channel:close(Ch),
    ?assertEqual(lists:duplicate(5, {error, closed}),
                 [reader_result(R) || R <- Readers]).

many_readers() ->
    %% Repeated: the end of the stream races with readers taking the last
    %% terms, and every reader must see it.
    [many_readers_round() || _ <- lists:seq(1, 40)].

many_readers_round() ->
    {ok, Ch} = py_channel:new(#{max_size => 2000}),
    Parent = self(),
    Readers = [spawn_link(fun() -> Parent ! {self(), recv_all(Ch)} end)
               || _ <- lists:seq(1, 4)],
    Values = lists:seq(1, 3000),
    [send_retrying(Ch, V) || V <- Values],
    ok = py_channel:close(Ch),
    Got = lists:append([receive {R, Vs} -> Vs after 5000 -> error({reader_hung, R}) end
                        || R <- Readers]),
    ?assertEqual(Values, lists:sort(Got)).

eight_producers_one_reader() ->
    {ok, Ch} = py_channel:new(#{max_size => 64 * 1024}),
    Parent = self(),
    Producers = 8,
    PerProducer = 10000,
    [spawn_link(fun() ->
                        [send_retrying(Ch, {P, N}) || N <- lists:seq(1, PerProducer)],
                        Parent ! {done, P}
                end) || P <- lists:seq(1, Producers)],
    Reader = spawn_link(fun() -> Parent ! {self(), recv_all(Ch)} end),
    [receive {done, P} -> ok end || P <- lists:seq(1, Producers)],
    ok = py_channel:close(Ch),
    Got = receive {Reader, Vs} -> Vs end,
    ?assertEqual(Producers * PerProducer, length(Got)),
    Expected = [{P, N} || P <- lists:seq(1, Producers), N <- lists:seq(1, PerProducer)],
    ?assertEqual(Expected, lists:sort(Got)),
    %% Each producer's values arrive in the order it sent them.
    [?assertEqual(lists:seq(1, PerProducer), [N || {P1, N} <- Got, P1 =:= P])
     || P <- lists:seq(1, Producers)].

%% Helpers

drain(Ch) ->
    case py_channel:try_receive(Ch) of
        {ok, T} -> [T | drain(Ch)];
        {error, _} -> []
    end.

spawn_reader(Ch) ->
    Parent = self(),
    spawn_link(fun() -> Parent ! {self(), py_channel:recv(Ch, 10000)} end).

reader_result(Reader) ->
    receive {Reader, Result} -> Result after 10000 -> reader_hung end.

live_channels() ->
    maps:get(live_channels, py_channel:stats()).

%% The live count once every process has dropped its garbage.
settled_live_channels() ->
    [erlang:garbage_collect(P) || P <- processes()],
    live_channels().

info_totals() ->
    {ok, Ch} = py_channel:new(#{max_size => 100}),
    ?assertMatch(#{sent := 0, received := 0, busy := 0, sent_bytes := 0, received_bytes := 0},
                 py_channel:info(Ch)),
    Sizes = [py_channel:term_size(T) || T <- [one, {two, 2}, <<"three">>]],
    [ok = py_channel:send(Ch, T) || T <- [one, {two, 2}, <<"three">>]],
    busy = py_channel:send(Ch, binary:copy(<<"x">>, 80)),
    busy = py_channel:send(Ch, binary:copy(<<"x">>, 80)),
    {error, too_large} = py_channel:send(Ch, binary:copy(<<"x">>, 200)),
    {ok, one} = py_channel:try_receive(Ch),
    %% Python takes the next term, and sees the same totals, key for key.
    {ok, {PyInfo, two}} =
        py:eval(<<"(lambda c: (c.info(), c.receive(0)[0]))(Channel(ch))">>, #{ch => Ch}),
    Info = py_channel:info(Ch),
    ?assertEqual(lists:sort(maps:keys(Info)),
                 lists:sort([binary_to_atom(K) || K <- maps:keys(PyInfo)])),
    [First, Second, _] = Sizes,
    ?assertMatch(#{<<"sent">> := 3, <<"received">> := 1, <<"busy">> := 2}, PyInfo),
    Expected = #{sent => 3, received => 2, busy => 2, sent_bytes => lists:sum(Sizes),
                 received_bytes => First + Second},
    ?assertEqual(Expected, maps:with(maps:keys(Expected), Info)),
    %% Closing changes no total; a send refused as closed is not busy.
    ok = py_channel:close(Ch),
    {error, closed} = py_channel:send(Ch, one),
    {ok, <<"three">>} = py_channel:try_receive(Ch),
    ?assertEqual(Expected#{received := 3, received_bytes := lists:sum(Sizes)},
                 maps:with(maps:keys(Expected), py_channel:info(Ch))).

stats_jobs() ->
    Keys = [live_channels, python_threads, python_jobs_running, python_jobs_queued],
    ?assertEqual(lists:sort(Keys), lists:sort(maps:keys(py_channel:stats()))),
    %% A job of an earlier test may still be finishing (it counted in Before and then
    %% not in During once, under Python 3.13): start once none runs.
    wait_until(fun() -> maps:get(python_jobs_running, py_channel:stats()) =:= 0 end),
    Before = 0,
    {ok, Ch} = py_channel:new(),
    ok = py:exec(<<"def drain(ch):\n    return list(Channel(ch))\n">>),
    Readers = [py:spawn_call('__main__', drain, [Ch]) || _ <- lists:seq(1, 3)],
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 3 end),
    #{python_jobs_running := During, python_jobs_queued := Queued, python_threads := Threads} =
        py_channel:stats(),
    ?assertEqual(Before + 3, During),
    ?assertEqual(0, Queued),
    ?assert(Threads >= During),
    ok = py_channel:close(Ch),
    [{ok, []} = py:await(Reader) || Reader <- Readers],
    wait_until(fun() -> maps:get(python_jobs_running, py_channel:stats()) =:= Before end).

